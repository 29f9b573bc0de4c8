//! `appimage-bench`: every scenario of BENCHMARKS.md in one run, on one control plane, with
//! release builds of appimage-webhook, kubectl-appimage and appimage-loadgen. Prints a results
//! table and writes the numbers as JSON. `scripts/bench.sh` builds everything and calls it.
//!
//! One module per measurement: `throughput` (scenarios 1 and 3), `cache` (2 and 4),
//! `pod_creates` (5), `plugin_commands` (6). They share the harness in `bench` (webhooks,
//! kubectl, AppImages), the load generator runs in `load` and the rows in `results`.

mod bench;
mod cache;
mod load;
mod plugin_commands;
mod pod_creates;
mod results;
mod throughput;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use appimage_bench::harness::ControlPlane;
use appimage_bench::loadgen::Report;
use clap::Parser;
use serde::Serialize;

use crate::bench::{Bench, Paths, log};
use crate::results::Results;

#[derive(Debug, Clone, Parser, Serialize)]
#[command(
    name = "appimage-bench",
    about = "Run the appimage-webhook / kubectl-appimage benchmark scenarios (see BENCHMARKS.md)"
)]
struct Args {
    /// kube-controlplane binary (scripts/controlplane.sh build prints it).
    #[arg(long)]
    controlplane: PathBuf,
    /// Repository root.
    #[arg(long, default_value = ".")]
    root: PathBuf,
    /// Where the release binaries are.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Results file.
    #[arg(long, default_value = "target/bench/results.json")]
    out: PathBuf,
    /// Scratch directory (TLS, keys, logs, the control plane's data); emptied first.
    #[arg(long, default_value = "target/bench/work")]
    work: PathBuf,
    /// kubectl to compare the plugin with and to install the CRD.
    #[arg(
        long,
        env = "KUBECTL",
        default_value = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33"
    )]
    kubectl: PathBuf,
    /// Measurement time of each load run.
    #[arg(long, default_value = "10s", value_parser = appimage::duration::parse)]
    #[serde(serialize_with = "secs")]
    duration: Duration,
    /// Warm-up before each load run (same load, not recorded).
    #[arg(long, default_value = "3s", value_parser = appimage::duration::parse)]
    #[serde(serialize_with = "secs")]
    warmup: Duration,
    /// Concurrency of the load runs.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Fixed rate of the latency runs, requests/s.
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
    /// Fixed rate of the large AppImage's latency run, requests/s.
    #[arg(long, default_value_t = 200.0)]
    large_rate: f64,
    /// AppImages in the cache for scenario 2.
    #[arg(long, default_value_t = 10_000)]
    appimages: usize,
    /// Distinct AppImages of the cold-cache burst (scenario 4).
    #[arg(long, default_value_t = 1_000)]
    cold: usize,
    /// Pods created with and without the webhook (scenario 5), each way, per concurrency.
    #[arg(long, default_value_t = 300)]
    pods: usize,
    /// Runs of each plugin command (scenario 6).
    #[arg(long, default_value_t = 30)]
    plugin_runs: usize,
    /// Load generator threads.
    #[arg(long, default_value_t = 2)]
    loadgen_threads: usize,
    /// Record `perf` profiles of the webhook during the saturating runs (target/bench/perf-*.txt).
    #[arg(long)]
    perf: bool,
    /// Run only these scenarios (1-6); default all.
    #[arg(long, value_delimiter = ',')]
    only: Vec<u8>,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    // On SIGINT/SIGTERM the run is dropped, which kills every process it started.
    let stopped = async {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        }
    };
    let result = tokio::select! {
        r = run(args) => r,
        signal = stopped => Err(anyhow::anyhow!("stopped by {signal}")),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("appimage-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let started = Instant::now();
    let paths = Paths::prepare(&args)?;
    let results = Results::start();
    log(format!("machine: {}", results.machine));

    log("starting the control plane");
    let controlplane = ControlPlane::start(&args.controlplane, &paths.work.join("controlplane"))?;
    let mut bench = Bench::new(args, paths, &controlplane.kubeconfig, results).await?;
    bench.install_crd().await?;
    bench.create_fixtures().await?;

    println!("{}", Report::table_header().replacen("run ", "     run", 1));
    for n in scenarios(&bench) {
        run_scenario(&mut bench, n).await;
    }

    bench.results.finish(started);
    bench.results.write(&bench.paths.out)?;
    drop(controlplane);
    if !bench.results.failures.is_empty() {
        bail!("{}", bench.results.failures.join("\n"));
    }
    Ok(())
}

/// The scenario runs to start, in order: 1 also measures 3, and 2 also measures 4.
fn scenarios(bench: &Bench) -> Vec<u8> {
    let mut scenarios: Vec<u8> = Vec::new();
    let wanted: BTreeSet<u8> = (1..=6).filter(|n| bench.want(*n)).collect();
    if wanted.contains(&1) || wanted.contains(&3) {
        scenarios.push(1);
    }
    for n in [2u8, 5, 6] {
        if wanted.contains(&n) || (n == 2 && wanted.contains(&4)) {
            scenarios.push(n);
        }
    }
    scenarios
}

/// Scenario run `n` of [`scenarios`]; a failure is logged and recorded, and the next one runs.
async fn run_scenario(bench: &mut Bench, n: u8) {
    log(format!("scenario {n}"));
    let result = match n {
        1 => bench.throughput().await,
        2 => bench.cache().await,
        5 => bench.pod_creates().await,
        _ => bench.plugin_commands().await,
    };
    if let Err(e) = result {
        let message = format!("scenario {n}: {e:#}");
        log(&message);
        bench.results.failures.push(message);
    }
}
