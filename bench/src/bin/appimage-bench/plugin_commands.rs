//! Scenario 6: how long kubectl-appimage's commands take, through kubectl and as the plugin
//! binary alone, against `kubectl get` (with hyperfine when it is installed, else a loop).

use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context as _, bail};
use appimage_bench::fixtures;
use appimage_bench::util::{mean, quantile};
use serde::Serialize;
use serde_json::Value;

use crate::bench::{Bench, SEED, log};
use crate::results::{Results, ms, verdict};

/// A command to time: its label and its words.
type Command<'a> = (&'a str, String);
/// Environment variables of the timed commands.
type Env<'a> = [(&'a str, String)];

#[derive(Debug, Clone, Serialize)]
struct Timing {
    label: String,
    command: String,
    mean_ms: f64,
    median_ms: f64,
    min_ms: f64,
    max_ms: f64,
}

impl Bench {
    pub(crate) async fn plugin_commands(&mut self) -> anyhow::Result<()> {
        let path = self.plugin_path()?;
        let commands = commands();
        let env = [
            ("PATH", path),
            ("KUBECONFIG", self.kubeconfig.to_string_lossy().into_owned()),
            (
                "HOME",
                self.paths.work.join("home").to_string_lossy().into_owned(),
            ),
        ];
        // Each must work before it is timed.
        for (_, command) in &commands {
            let out = run(command, &env, &self.paths.root)
                .output()
                .with_context(|| format!("running {command}"))?;
            if !out.status.success() {
                bail!("{command}: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        let runs = self.args.plugin_runs;
        let hyperfine = std::process::Command::new("hyperfine")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        let timings = if hyperfine {
            self.hyperfine(&commands, &env, runs)?
        } else {
            log("hyperfine not found: timing a plain loop instead");
            loop_timings(&commands, &env, &self.paths.root, runs)?
        };
        let tool = if hyperfine { "hyperfine" } else { "loop" };
        report(&mut self.results, &timings, tool, runs);
        self.results.detail("s6", serde_json::to_value(&timings)?);
        Ok(())
    }

    /// A directory with `kubectl` and `kubectl-appimage` (the release build), first on the
    /// returned PATH.
    fn plugin_path(&self) -> anyhow::Result<String> {
        let path_dir = self.paths.work.join("bin");
        std::fs::create_dir_all(&path_dir)?;
        for (link, target) in [
            ("kubectl", self.args.kubectl.clone()),
            ("kubectl-appimage", self.bin("kubectl-appimage")),
        ] {
            let link = path_dir.join(link);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&target, &link)
                .with_context(|| format!("linking {}", target.display()))?;
        }
        Ok(format!(
            "{}:{}",
            path_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        ))
    }

    fn hyperfine(
        &self,
        commands: &[Command<'_>],
        env: &Env<'_>,
        runs: usize,
    ) -> anyhow::Result<Vec<Timing>> {
        let export = self.paths.work.join("hyperfine.json");
        let mut cmd = std::process::Command::new("hyperfine");
        cmd.args([
            "-N",
            "--warmup",
            "3",
            "--runs",
            &runs.to_string(),
            "--style",
            "none",
        ])
        .arg("--export-json")
        .arg(&export);
        for (label, command) in commands {
            cmd.arg("-n").arg(label).arg(command);
        }
        let out = cmd
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(&self.paths.root)
            .stdin(Stdio::null())
            .output()
            .context("running hyperfine")?;
        if !out.status.success() {
            bail!("hyperfine: {}", String::from_utf8_lossy(&out.stderr));
        }
        let value: Value = serde_json::from_slice(&std::fs::read(&export)?)?;
        let results = value["results"].as_array().context("hyperfine JSON")?;
        Ok(results
            .iter()
            .zip(commands)
            .map(|(r, (label, command))| Timing {
                label: label.to_string(),
                command: command.clone(),
                mean_ms: r["mean"].as_f64().unwrap_or(0.0) * 1000.0,
                median_ms: r["median"].as_f64().unwrap_or(0.0) * 1000.0,
                min_ms: r["min"].as_f64().unwrap_or(0.0) * 1000.0,
                max_ms: r["max"].as_f64().unwrap_or(0.0) * 1000.0,
            })
            .collect())
    }
}

/// The commands timed: the plugin's `get` and offline `render`, through kubectl and direct,
/// `kubectl get` to compare with, and kubectl's own start-up.
fn commands() -> Vec<Command<'static>> {
    let seed_file = fixtures::SEED_FILE;
    vec![
        (
            "kubectl appimage get",
            format!("kubectl appimage get {SEED}"),
        ),
        (
            "kubectl get appimage",
            format!("kubectl get appimage {SEED}"),
        ),
        (
            "kubectl-appimage get (direct)",
            format!("kubectl-appimage get {SEED}"),
        ),
        (
            "kubectl version --client (kubectl start-up)",
            "kubectl version --client".to_string(),
        ),
        (
            "kubectl appimage render (offline)",
            format!("kubectl appimage render -f {seed_file} --task-id t1"),
        ),
        (
            "kubectl-appimage render (offline, direct)",
            format!("kubectl-appimage render -f {seed_file} --task-id t1"),
        ),
    ]
}

/// `command` (split at white space) with `env`, in `root`, no stdin.
fn run(command: &str, env: &Env<'_>, root: &Path) -> std::process::Command {
    let argv: Vec<&str> = command.split_whitespace().collect();
    let mut cmd = std::process::Command::new(argv[0]);
    cmd.args(&argv[1..])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(root)
        .stdin(Stdio::null());
    cmd
}

/// Without hyperfine: run each command `runs` times (after 3 untimed runs).
fn loop_timings(
    commands: &[Command<'_>],
    env: &Env<'_>,
    root: &Path,
    runs: usize,
) -> anyhow::Result<Vec<Timing>> {
    let mut out = Vec::new();
    for (label, command) in commands {
        let mut times = Vec::with_capacity(runs);
        for i in 0..runs + 3 {
            let started = Instant::now();
            let status = run(command, env, root)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()?;
            let took = ms(started.elapsed());
            if !status.success() {
                bail!("{command} failed");
            }
            if i >= 3 {
                times.push(took);
            }
        }
        times.sort_by(f64::total_cmp);
        out.push(Timing {
            label: label.to_string(),
            command: command.clone(),
            mean_ms: mean(&times),
            median_ms: quantile(&times, 0.5),
            min_ms: quantile(&times, 0.0),
            max_ms: quantile(&times, 1.0),
        });
    }
    Ok(out)
}

/// Scenario 6's rows: every command's time, then the targets.
fn report(r: &mut Results, timings: &[Timing], tool: &str, runs: usize) {
    let find = |label: &str| timings.iter().find(|t| t.label == label).cloned();
    for t in timings {
        r.info(
            "6",
            &format!("{} ({tool}, {runs} runs): mean / p50", t.label),
            format!("{:.1} / {:.1} ms", t.mean_ms, t.median_ms),
        );
    }
    // The target as the issue words it, through kubectl (whose own start-up is most of
    // it), and for the plugin binary alone.
    let kubectl_get = find("kubectl get appimage");
    for (label, metric) in [
        (
            "kubectl appimage get",
            "`kubectl appimage get` vs `kubectl get` (mean)",
        ),
        (
            "kubectl-appimage get (direct)",
            "plugin binary `get` vs `kubectl get` (mean)",
        ),
    ] {
        if let (Some(a), Some(b)) = (find(label), kubectl_get.as_ref()) {
            let ratio = a.mean_ms / b.mean_ms.max(1e-9);
            r.row(
                "6",
                metric,
                format!("{ratio:.2}x"),
                "<= 0.5x",
                verdict(ratio <= 0.5),
            );
        }
    }
    for (label, metric) in [
        (
            "kubectl-appimage render (offline, direct)",
            "render offline, plugin binary (mean)",
        ),
        (
            "kubectl appimage render (offline)",
            "render offline via `kubectl appimage` (mean)",
        ),
    ] {
        if let Some(t) = find(label) {
            r.row(
                "6",
                metric,
                format!("{:.2} ms", t.mean_ms),
                "<= 5 ms",
                verdict(t.mean_ms <= 5.0),
            );
        }
    }
}
