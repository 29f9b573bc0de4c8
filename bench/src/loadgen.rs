//! The load generator: a fixed number of workers send AdmissionReviews over pooled keep-alive
//! connections, either open-loop at a fixed rate or closed-loop as fast as answers come back.
//!
//! Open loop: request `i` is *scheduled* at `start + i / rate`, whatever happened before. A
//! worker takes the next number; if its time is still ahead it sleeps until then and measures
//! from the moment it sends (a free worker that wakes a little late because of timer
//! granularity is the generator's delay, not the server's). If its time has already passed —
//! every worker was busy waiting for slow answers — latency is measured from the scheduled
//! time, so a stall of the server is charged to every request it delayed (no coordinated
//! omission).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use hyper::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use crate::client::{HttpVersion, HttpsClient, https_client, send};
use crate::harness::cpu_seconds;
use crate::review::{Expect, check, pod_create, uid};

/// Largest latency recorded (longer ones are clamped): one hour, in microseconds.
const MAX_MICROS: u64 = 3_600_000_000;
/// Shortest measurement whose CPU time per request is reported.
const CPU_MIN_SECONDS: f64 = 2.0;
/// Error messages kept for the report.
const SAMPLES: usize = 5;

#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// e.g. `https://127.0.0.1:8443/mutate`.
    pub url: String,
    pub ca: std::path::PathBuf,
    pub http: HttpVersion,
    pub concurrency: usize,
    /// Requests per second (open loop); `None` is closed loop, as fast as possible.
    pub rate: Option<f64>,
    pub duration: Duration,
    /// Same load, not recorded, before the measurement.
    pub warmup: Duration,
    /// Stop the measurement after this many requests.
    pub requests: Option<u64>,
    /// Request `i` names `appimages[i % len]`.
    pub appimages: Vec<String>,
    pub namespace: String,
    pub expect: Expect,
    /// Also decode every patch (costs the generator CPU).
    pub deep_check: bool,
    pub timeout: Duration,
    pub label: String,
    /// The server's process, to report its CPU per request (same machine only).
    pub server_pid: Option<u32>,
}

/// Latencies in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latency {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// The result of one measurement.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub label: String,
    pub url: String,
    /// `open-loop` or `closed-loop`.
    pub mode: String,
    pub http: String,
    pub concurrency: usize,
    pub target_rate: Option<f64>,
    /// Distinct AppImage names the requests were spread over.
    pub appimages: usize,
    pub expect: String,
    /// Wall time of the measurement, seconds.
    pub elapsed_s: f64,
    /// Answered or failed requests.
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    /// Answers other than 200.
    pub errors_status: u64,
    /// Connection, TLS or HTTP failures and time-outs.
    pub errors_transport: u64,
    /// 200 answers that are not what the scenario expects (denied, no patch, wrong uid...).
    pub errors_mismatch: u64,
    /// Open loop: requests scheduled within the duration that were never sent because the
    /// generator was still behind its schedule when the grace period after the end ran out.
    pub unsent: u64,
    /// Requests per second achieved.
    pub rps: f64,
    /// Mean size of a 200 answer's body, bytes.
    pub response_bytes_mean: f64,
    pub latency_ms: Latency,
    /// CPU time per answered request during the measurement, microseconds (none for a
    /// measurement under 2 s: /proc counts in 10 ms ticks).
    #[serde(default)]
    pub cpu_us_per_request: Option<CpuPerRequest>,
    pub error_samples: Vec<String>,
}

/// Where the CPU of a run went: what separates the server's cost from the generator's on a
/// machine they share.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CpuPerRequest {
    /// The server process (`--server-pid`), all its threads.
    pub server: Option<f64>,
    /// This generator.
    pub generator: f64,
}

impl Report {
    pub fn table_header() -> String {
        format!(
            "{:<34} {:>6} {:>4} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6}",
            "run",
            "mode",
            "conc",
            "rate",
            "reqs",
            "req/s",
            "p50(ms)",
            "p90(ms)",
            "p99(ms)",
            "max(ms)",
            "errors"
        )
    }

    pub fn table_row(&self) -> String {
        let rate = self
            .target_rate
            .map_or_else(|| "max".to_string(), |r| format!("{r:.0}"));
        let mode = if self.mode == "open-loop" {
            "open"
        } else {
            "closed"
        };
        format!(
            "{:<34} {:>6} {:>4} {:>7} {:>7} {:>8.0} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>6}",
            self.label,
            mode,
            self.concurrency,
            rate,
            self.requests,
            self.rps,
            self.latency_ms.p50,
            self.latency_ms.p90,
            self.latency_ms.p99,
            self.latency_ms.max,
            self.errors + self.unsent
        )
    }
}

struct Shared {
    config: LoadConfig,
    client: HttpsClient,
    names: Vec<Arc<str>>,
}

/// One worker's tally.
struct Tally {
    histogram: Histogram<u64>,
    ok: u64,
    status: u64,
    transport: u64,
    mismatch: u64,
    /// Bytes of the answers' bodies.
    response_bytes: u64,
    samples: Vec<String>,
}

impl Tally {
    #[allow(clippy::expect_used, reason = "constant, valid bounds")]
    fn new() -> Tally {
        Tally {
            histogram: Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("histogram bounds"),
            ok: 0,
            status: 0,
            transport: 0,
            mismatch: 0,
            response_bytes: 0,
            samples: Vec::new(),
        }
    }

    fn sample(&mut self, message: String) {
        if self.samples.len() < SAMPLES {
            self.samples.push(message);
        }
    }

    #[allow(clippy::expect_used, reason = "every Tally has the same bounds")]
    fn merge(&mut self, other: Tally) {
        self.histogram
            .add(&other.histogram)
            .expect("histograms of equal bounds");
        self.ok += other.ok;
        self.status += other.status;
        self.transport += other.transport;
        self.mismatch += other.mismatch;
        self.response_bytes += other.response_bytes;
        for s in other.samples {
            self.sample(s);
        }
    }
}

/// Open connections before measuring: `concurrency` concurrent GETs of `/healthz`, so TLS
/// handshakes are not part of any recorded latency.
async fn prime(shared: &Shared) -> anyhow::Result<()> {
    let healthz = origin(&shared.config.url)? + "/healthz";
    let mut tasks = Vec::new();
    for _ in 0..shared.config.concurrency {
        let client = shared.client.clone();
        let url = healthz.clone();
        tasks.push(tokio::spawn(async move {
            send(&client, Method::GET, &url, bytes::Bytes::new()).await
        }));
    }
    for t in tasks {
        let (status, body) = t.await.context("priming task")??;
        anyhow::ensure!(
            status == StatusCode::OK,
            "{healthz}: {status} {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(())
}

/// `https://host:port` of a URL.
fn origin(url: &str) -> anyhow::Result<String> {
    let uri: hyper::Uri = url.parse().with_context(|| format!("bad URL {url:?}"))?;
    let scheme = uri.scheme_str().unwrap_or("https");
    let authority = uri
        .authority()
        .with_context(|| format!("URL {url:?} has no host"))?;
    Ok(format!("{scheme}://{authority}"))
}

/// Run the warm-up (if any) and the measurement.
pub async fn run(config: LoadConfig) -> anyhow::Result<Report> {
    anyhow::ensure!(config.concurrency > 0, "concurrency must be at least 1");
    anyhow::ensure!(!config.appimages.is_empty(), "name at least one AppImage");
    if let Some(rate) = config.rate {
        anyhow::ensure!(rate > 0.0, "rate must be positive");
    }
    let client = https_client(&config.ca, config.http, config.concurrency)?;
    let names = config
        .appimages
        .iter()
        .map(|n| Arc::from(n.as_str()))
        .collect();
    let shared = Arc::new(Shared {
        config,
        client,
        names,
    });
    prime(&shared).await?;
    if !shared.config.warmup.is_zero() {
        phase(&shared, shared.config.warmup, None, 1 << 40).await;
    }
    let server = |pid: Option<u32>| pid.map(cpu_seconds).transpose();
    let me = std::process::id();
    let (server_before, me_before) = (server(shared.config.server_pid)?, cpu_seconds(me)?);
    let started = Instant::now();
    let (tally, unsent) = phase(&shared, shared.config.duration, shared.config.requests, 0).await;
    let elapsed = started.elapsed().as_secs_f64();
    let (server_after, me_after) = (server(shared.config.server_pid)?, cpu_seconds(me)?);
    let mut report = report(&shared.config, tally, unsent, elapsed);
    let per_request = |before: f64, after: f64| (after - before) * 1e6 / report.ok.max(1) as f64;
    // /proc counts CPU time in clock ticks (10 ms): too coarse for a short burst.
    report.cpu_us_per_request = (elapsed >= CPU_MIN_SECONDS).then(|| CpuPerRequest {
        server: server_before
            .zip(server_after)
            .map(|(b, a)| per_request(b, a)),
        generator: per_request(me_before, me_after),
    });
    Ok(report)
}

/// One timed phase; returns the merged tally and the open-loop requests left unsent.
/// `seq_base` keeps uids of the warm-up apart from those measured.
async fn phase(
    shared: &Arc<Shared>,
    duration: Duration,
    cap: Option<u64>,
    seq_base: u64,
) -> (Tally, u64) {
    let start = Instant::now();
    let end = start + duration;
    // Past the end, an open-loop generator that fell behind gets this long to catch up.
    let hard_stop = end + (duration / 4).max(Duration::from_secs(2));
    let next = Arc::new(AtomicU64::new(0));
    let scheduled_total = match shared.config.rate {
        Some(rate) => {
            let n = (duration.as_secs_f64() * rate).ceil() as u64;
            Some(cap.map_or(n, |c| c.min(n)))
        }
        None => None,
    };
    let mut workers = Vec::with_capacity(shared.config.concurrency);
    for _ in 0..shared.config.concurrency {
        let (shared, next) = (shared.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            worker(&shared, &next, start, end, hard_stop, cap, seq_base).await
        }));
    }
    let mut tally = Tally::new();
    for w in workers {
        match w.await {
            Ok(t) => tally.merge(t),
            Err(e) => {
                tally.transport += 1;
                tally.sample(format!("worker failed: {e}"));
            }
        }
    }
    let done = tally.ok + tally.status + tally.transport + tally.mismatch;
    let unsent = scheduled_total.map_or(0, |n| n.saturating_sub(done));
    (tally, unsent)
}

async fn worker(
    shared: &Shared,
    next: &AtomicU64,
    start: Instant,
    end: Instant,
    hard_stop: Instant,
    cap: Option<u64>,
    seq_base: u64,
) -> Tally {
    let config = &shared.config;
    let mut tally = Tally::new();
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if cap.is_some_and(|c| i >= c) {
            break;
        }
        let picked = Instant::now();
        let origin = match config.rate {
            Some(rate) => {
                let scheduled = start + Duration::from_secs_f64(i as f64 / rate);
                if scheduled >= end || picked >= hard_stop {
                    break;
                }
                if scheduled > picked {
                    tokio::time::sleep_until(scheduled.into()).await;
                    Instant::now()
                } else {
                    scheduled
                }
            }
            None => {
                if picked >= end {
                    break;
                }
                picked
            }
        };
        let seq = seq_base + i;
        let name = &shared.names[(i % shared.names.len() as u64) as usize];
        let body = pod_create(seq, &config.namespace, name);
        let result = tokio::time::timeout(
            config.timeout,
            send(&shared.client, Method::POST, &config.url, body),
        )
        .await;
        let latency = origin.elapsed();
        let micros = (latency.as_micros() as u64).clamp(1, MAX_MICROS);
        // Clamped to the bounds, so recording cannot fail.
        let _ = tally.histogram.record(micros);
        match result {
            Err(_) => {
                tally.transport += 1;
                tally.sample(format!("timed out after {:?}", config.timeout));
            }
            Ok(Err(e)) => {
                tally.transport += 1;
                tally.sample(format!("transport: {e:#}"));
            }
            Ok(Ok((status, body))) if status != StatusCode::OK => {
                tally.status += 1;
                let text = String::from_utf8_lossy(&body);
                tally.sample(format!("HTTP {status}: {}", text.trim()));
            }
            Ok(Ok((_, body))) => {
                tally.response_bytes += body.len() as u64;
                match check(&body, &uid(seq), config.expect, config.deep_check) {
                    Ok(()) => tally.ok += 1,
                    Err(e) => {
                        tally.mismatch += 1;
                        tally.sample(format!("AppImage {name:?}: {e}"));
                    }
                }
            }
        }
    }
    tally
}

fn report(config: &LoadConfig, tally: Tally, unsent: u64, elapsed: f64) -> Report {
    let h = &tally.histogram;
    let ms = |micros: u64| micros as f64 / 1000.0;
    let errors = tally.status + tally.transport + tally.mismatch;
    let requests = tally.ok + errors;
    let latency_ms = if h.is_empty() {
        Latency::default()
    } else {
        Latency {
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    };
    let mut distinct = config.appimages.clone();
    distinct.sort();
    distinct.dedup();
    Report {
        label: config.label.clone(),
        url: config.url.clone(),
        mode: if config.rate.is_some() {
            "open-loop"
        } else {
            "closed-loop"
        }
        .into(),
        http: config.http.as_str().into(),
        concurrency: config.concurrency,
        target_rate: config.rate,
        appimages: distinct.len(),
        expect: config.expect.as_str().into(),
        elapsed_s: elapsed,
        requests,
        ok: tally.ok,
        errors,
        errors_status: tally.status,
        errors_transport: tally.transport,
        errors_mismatch: tally.mismatch,
        unsent,
        rps: if elapsed > 0.0 {
            requests as f64 / elapsed
        } else {
            0.0
        },
        response_bytes_mean: tally.response_bytes as f64
            / (tally.ok + tally.mismatch).max(1) as f64,
        latency_ms,
        cpu_us_per_request: None,
        error_samples: tally.samples,
    }
}

/// `name` once, or `name-0` ... `name-(count-1)`.
pub fn spread(names: &[String], count: Option<usize>) -> Vec<String> {
    match count {
        Some(n) => names
            .iter()
            .flat_map(|name| (0..n).map(move |i| format!("{name}-{i}")))
            .collect(),
        None => names.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_spread() {
        let one = vec!["img".to_string()];
        assert_eq!(spread(&one, None), ["img"]);
        assert_eq!(spread(&one, Some(3)), ["img-0", "img-1", "img-2"]);
    }

    #[test]
    fn origin_of_url() {
        assert_eq!(
            origin("https://127.0.0.1:8443/mutate").unwrap(),
            "https://127.0.0.1:8443"
        );
    }

    #[test]
    fn table_row_lines_up() {
        let r = Report {
            label: "x".into(),
            mode: "closed-loop".into(),
            ..Report::default()
        };
        assert_eq!(
            Report::table_header().split_whitespace().count(),
            r.table_row().split_whitespace().count()
        );
    }
}
