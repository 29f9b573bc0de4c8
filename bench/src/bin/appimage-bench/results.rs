//! The results: one row a measurement (printed as it comes, and as a Markdown table at the
//! end), every load generator report and per-scenario details, written as JSON.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use appimage_bench::loadgen::{Latency, Report};
use serde::Serialize;
use serde_json::{Value, json};

use crate::Args;

/// One line of the results table.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    scenario: String,
    metric: String,
    value: String,
    target: String,
    /// `met`, `MISSED` or `-` (no target).
    verdict: String,
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct Results {
    pub(crate) machine: Value,
    pub(crate) args: Option<Args>,
    started_unix: u64,
    elapsed_s: f64,
    rows: Vec<Row>,
    /// Every load generator report, in order.
    pub(crate) runs: Vec<Report>,
    /// Per-scenario extra numbers.
    details: serde_json::Map<String, Value>,
    /// Errors of scenarios that could not finish.
    pub(crate) failures: Vec<String>,
}

fn machine() -> Value {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
        .unwrap_or_default();
    let meminfo = read("/proc/meminfo");
    let mem = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": model,
        "mem_total": mem,
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "loadavg_start": read("/proc/loadavg").trim(),
    })
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub(crate) fn verdict(ok: bool) -> String {
    if ok { "met" } else { "MISSED" }.to_string()
}

/// `p50 / p99` of a run's latencies (ms) to `decimals` places.
pub(crate) fn p50_p99(l: &Latency, decimals: usize) -> String {
    format!("{:.*} / {:.*}", decimals, l.p50, decimals, l.p99)
}

pub(crate) fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

impl Results {
    /// Empty results, with the machine and the start time.
    pub(crate) fn start() -> Results {
        Results {
            machine: machine(),
            started_unix: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default(),
            ..Results::default()
        }
    }

    /// A measurement with a target; printed at once.
    pub(crate) fn row(
        &mut self,
        scenario: &str,
        metric: &str,
        value: String,
        target: &str,
        verdict: String,
    ) {
        let row = Row {
            scenario: scenario.into(),
            metric: metric.into(),
            value,
            target: target.into(),
            verdict,
        };
        println!(
            "{:<4} {:<52} {:>22}  {:<14} {}",
            row.scenario, row.metric, row.value, row.target, row.verdict
        );
        self.rows.push(row);
    }

    /// A measurement without a target.
    pub(crate) fn info(&mut self, scenario: &str, metric: &str, value: String) {
        self.row(scenario, metric, value, "", "-".into());
    }

    pub(crate) fn detail(&mut self, key: &str, value: Value) {
        self.details.insert(key.into(), value);
    }

    /// The run's length (since `started`) and the load at its end.
    pub(crate) fn finish(&mut self, started: Instant) {
        self.elapsed_s = started.elapsed().as_secs_f64();
        if let Value::Object(m) = &mut self.machine {
            let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
            m.insert("loadavg_end".into(), json!(load.trim()));
        }
    }

    /// Prints the rows as a Markdown table and writes everything to `out` as JSON.
    pub(crate) fn write(&self, out: &Path) -> anyhow::Result<()> {
        println!();
        println!("| # | measurement | value | target | verdict |\n|---|---|---|---|---|");
        for r in &self.rows {
            println!(
                "| {} | {} | {} | {} | {} |",
                r.scenario, r.metric, r.value, r.target, r.verdict
            );
        }
        std::fs::write(out, serde_json::to_vec_pretty(self)?)?;
        println!("\nresults: {}", out.display());
        Ok(())
    }
}
