//! Load runs: appimage-loadgen against a webhook, its JSON report, and optionally a `perf`
//! profile of the webhook while it runs.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use appimage_bench::harness::Webhook;
use appimage_bench::loadgen::Report;

use crate::bench::{Bench, log};

/// What one appimage-loadgen run sends, how fast and for how long.
pub(crate) struct Load<'a> {
    label: &'a str,
    /// What every answer must be: `allowed` or `patched`.
    expect: &'a str,
    /// The AppImage the Pods ask for, or with a count `name-0` ... `name-(count-1)` in turn.
    names: (&'a str, Option<usize>),
    /// Requests/s; `None` as fast as the concurrency allows.
    rate: Option<f64>,
    warmup: Duration,
    /// A run of this many requests instead of `--duration`.
    requests: Option<u64>,
    /// With `--perf`, a profile of the webhook under this name.
    perf: Option<&'a str>,
}

impl<'a> Load<'a> {
    /// `--duration` as fast as possible after `warmup`, every Pod asking for `appimage`.
    pub(crate) fn max(
        label: &'a str,
        expect: &'a str,
        appimage: &'a str,
        warmup: Duration,
    ) -> Self {
        Load {
            label,
            expect,
            names: (appimage, None),
            rate: None,
            warmup,
            requests: None,
            perf: None,
        }
    }

    /// `count` requests for `prefix-0` ... `prefix-(count-1)`, as fast as possible, no warm-up.
    pub(crate) fn burst(label: &'a str, prefix: &'a str, count: usize) -> Self {
        Load {
            names: (prefix, Some(count)),
            requests: Some(count as u64),
            ..Load::max(label, "patched", prefix, Duration::ZERO)
        }
    }

    /// At a fixed rate instead.
    pub(crate) fn at(self, rate: f64) -> Self {
        Load {
            rate: Some(rate),
            ..self
        }
    }

    /// Over `prefix-0` ... `prefix-(count-1)` instead of one name.
    pub(crate) fn over(self, count: usize) -> Self {
        Load {
            names: (self.names.0, Some(count)),
            ..self
        }
    }

    /// Profiled as `name` with `--perf`.
    pub(crate) fn profiled(self, name: &'a str) -> Self {
        Load {
            perf: Some(name),
            ..self
        }
    }
}

/// The mean of several runs' latencies and counts (for A B B A pairs).
pub(crate) fn averaged(runs: &[Report]) -> Report {
    let mut out = runs[0].clone();
    let k = runs.len() as f64;
    let avg = |f: &dyn Fn(&Report) -> f64| runs.iter().map(f).sum::<f64>() / k;
    out.label = format!(
        "{} (mean of {})",
        out.label.trim_end_matches(" #1"),
        runs.len()
    );
    out.rps = avg(&|r| r.rps);
    out.latency_ms.mean = avg(&|r| r.latency_ms.mean);
    out.latency_ms.p50 = avg(&|r| r.latency_ms.p50);
    out.latency_ms.p90 = avg(&|r| r.latency_ms.p90);
    out.latency_ms.p99 = avg(&|r| r.latency_ms.p99);
    out.latency_ms.p999 = avg(&|r| r.latency_ms.p999);
    out.latency_ms.max = runs.iter().map(|r| r.latency_ms.max).fold(0.0, f64::max);
    out.requests = runs.iter().map(|r| r.requests).sum();
    out.errors = runs.iter().map(|r| r.errors).sum();
    out.unsent = runs.iter().map(|r| r.unsent).sum();
    out
}

impl Bench {
    /// Run appimage-loadgen against `hook` and parse its JSON report.
    pub(crate) async fn load(&mut self, hook: &Webhook, run: Load<'_>) -> anyhow::Result<Report> {
        let child = self
            .loadgen(hook, &run)
            .spawn()
            .context("starting appimage-loadgen")?;
        let profile = match run.perf {
            Some(name) if self.args.perf => Some(self.start_perf(hook.pid(), name, run.warmup)?),
            _ => None,
        };
        let out = child.wait_with_output().await?;
        if let Some((mut perf_child, data, name)) = profile {
            let _ = perf_child.wait().await;
            self.perf_report(&data, &name).await;
        }
        let label = run.label;
        if !out.status.success() {
            bail!(
                "appimage-loadgen {label} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let report: Report = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("parsing the report of {label}"))?;
        println!("     {}", report.table_row());
        for e in &report.error_samples {
            println!("     error sample: {e}");
        }
        self.results.runs.push(report.clone());
        Ok(report)
    }

    /// The appimage-loadgen command line of `run`.
    fn loadgen(&self, hook: &Webhook, run: &Load<'_>) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(self.bin("appimage-loadgen"));
        cmd.kill_on_drop(true)
            .arg("--url")
            .arg(hook.url("/mutate"))
            .arg("--ca")
            .arg(&self.tls.ca)
            .arg("--concurrency")
            .arg(self.args.concurrency.to_string())
            .arg("--rate")
            .arg(run.rate.unwrap_or(0.0).to_string())
            .arg("--duration")
            // A request-bounded run: the duration is only a limit.
            .arg(match run.requests {
                Some(_) => "120s".to_string(),
                None => format!("{}ms", self.args.duration.as_millis()),
            })
            .arg("--warmup")
            .arg(format!("{}ms", run.warmup.as_millis()))
            .arg("--appimage")
            .arg(run.names.0)
            .arg("--expect")
            .arg(run.expect)
            .arg("--label")
            .arg(run.label)
            .arg("--threads")
            .arg(self.args.loadgen_threads.to_string())
            .arg("--server-pid")
            .arg(hook.pid().to_string())
            .arg("--json")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(n) = run.names.1 {
            cmd.arg("--appimage-count").arg(n.to_string());
        }
        if let Some(n) = run.requests {
            cmd.arg("--requests").arg(n.to_string());
        }
        cmd
    }

    /// `perf record` of `pid` during the measured part of a run.
    fn start_perf(
        &self,
        pid: u32,
        name: &str,
        warmup: Duration,
    ) -> anyhow::Result<(tokio::process::Child, PathBuf, String)> {
        let data = self.paths.work.join(format!("perf-{name}.data"));
        let seconds = (warmup + self.args.duration / 2).as_secs_f64() + 0.5;
        let child = tokio::process::Command::new("perf")
            .kill_on_drop(true)
            .args(["record", "-F", "499", "-g", "-o"])
            .arg(&data)
            .arg("-p")
            .arg(pid.to_string())
            .arg("--")
            .arg("sleep")
            .arg(format!("{seconds:.1}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting perf (install linux-perf, or run without --perf)")?;
        Ok((child, data, name.to_string()))
    }

    async fn perf_report(&mut self, data: &Path, name: &str) {
        let out = tokio::process::Command::new("perf")
            .args(["report", "--stdio", "--no-children", "--sort", "symbol"])
            .args(["--percent-limit", "0.7", "-g", "none", "-i"])
            .arg(data)
            .stderr(Stdio::null())
            .output()
            .await;
        let text = match out {
            Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
            Err(e) => format!("perf report failed: {e}"),
        };
        let file = self.paths.perf_dir().join(format!("perf-{name}.txt"));
        if std::fs::write(&file, &text).is_ok() {
            log(format!("profile of {name}: {}", file.display()));
        }
    }
}
