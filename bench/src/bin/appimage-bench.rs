//! `appimage-bench`: every scenario of BENCHMARKS.md in one run, on one control plane, with
//! release builds of appimage-webhook, kubectl-appimage and appimage-loadgen. Prints a results
//! table and writes the numbers as JSON. `scripts/bench.sh` builds everything and calls it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail};
use appimage::labels;
use appimage::resource::AppImage;
use appimage::signature::payload;
use appimage_bench::client::{HttpVersion, https_client, send};
use appimage_bench::harness::{ControlPlane, SigningKey, Tls, Webhook};
use appimage_bench::loadgen::Report;
use appimage_bench::util::{mean, quantile};
use appimage_bench::{fixtures, review};
use appimage_e2e::webhook::pod_registration;
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use hyper::{Method, StatusCode};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use serde::Serialize;
use serde_json::{Value, json};

const SEED: &str = "secretflow-image";
const LARGE: &str = "large-image";
/// The 10,000 copies are `COPY_PREFIX-0` ... `COPY_PREFIX-9999`.
const COPY_PREFIX: &str = "bench-img";
const POD_NAMESPACE: &str = "bench-pods";
const NOOP_NAMESPACE: &str = "bench-pods-noop";
const NS_LABEL: &str = "appimage-bench";

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

/// One line of the results table.
#[derive(Debug, Clone, Serialize)]
struct Row {
    scenario: String,
    metric: String,
    value: String,
    target: String,
    /// `met`, `MISSED` or `-` (no target).
    verdict: String,
}

#[derive(Debug, Default, Serialize)]
struct Results {
    machine: Value,
    args: Option<Args>,
    started_unix: u64,
    elapsed_s: f64,
    rows: Vec<Row>,
    /// Every load generator report, in order.
    runs: Vec<Report>,
    /// Per-scenario extra numbers.
    details: serde_json::Map<String, Value>,
    /// Errors of scenarios that could not finish.
    failures: Vec<String>,
}

struct Bench {
    args: Args,
    root: PathBuf,
    bins: PathBuf,
    work: PathBuf,
    tls: Tls,
    signer: SigningKey,
    client: Client,
    kubeconfig: PathBuf,
    results: Results,
    seed_sign: String,
}

fn log(message: impl AsRef<str>) {
    eprintln!("[bench] {}", message.as_ref());
}

fn absolute(root: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        root.join(p)
    }
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

/// The mean of several runs' latencies and counts (for A B B A pairs).
fn averaged(runs: &[Report]) -> Report {
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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn verdict(ok: bool) -> String {
    if ok { "met" } else { "MISSED" }.to_string()
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

impl Bench {
    fn row(&mut self, scenario: &str, metric: &str, value: String, target: &str, verdict: String) {
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
        self.results.rows.push(row);
    }

    fn info(&mut self, scenario: &str, metric: &str, value: String) {
        self.row(scenario, metric, value, "", "-".into());
    }

    fn detail(&mut self, key: &str, value: Value) {
        self.results.details.insert(key.into(), value);
    }

    fn want(&self, n: u8) -> bool {
        self.args.only.is_empty() || self.args.only.contains(&n)
    }

    fn bin(&self, name: &str) -> PathBuf {
        self.bins.join(name)
    }

    /// A webhook process: `--noop`, or mutating with signature verification on.
    async fn webhook(&self, tag: &str, noop: bool) -> anyhow::Result<Webhook> {
        self.webhook_with(tag, noop, Vec::new()).await
    }

    /// [`Self::webhook`] with `extra` arguments.
    async fn webhook_with(
        &self,
        tag: &str,
        noop: bool,
        extra: Vec<String>,
    ) -> anyhow::Result<Webhook> {
        let mut args: Vec<String> = extra;
        if noop {
            args.push("--noop".into());
        } else {
            args.push("--trusted-keys-dir".into());
            args.push(self.signer.pub_dir.to_string_lossy().into());
            args.push("--require-signature".into());
            args.push("--kubeconfig".into());
            args.push(self.kubeconfig.to_string_lossy().into());
            // The Service/NetworkPolicy reconciler is not on the admission path; kept off so
            // its apiserver traffic does not load the two cores during measurements.
            args.push("--reconcile=false".into());
        }
        let log_file = self.work.join(format!("webhook-{tag}.log"));
        let started = Instant::now();
        let hook =
            Webhook::start(&self.bin("appimage-webhook"), &self.tls, &args, log_file).await?;
        log(format!(
            "webhook {tag} (pid {}) ready on port {} in {:.1}s",
            hook.pid(),
            hook.port,
            started.elapsed().as_secs_f64()
        ));
        Ok(hook)
    }

    /// Run appimage-loadgen and parse its JSON report.
    #[allow(clippy::too_many_arguments)]
    async fn load(
        &mut self,
        label: &str,
        hook: &Webhook,
        expect: &str,
        names: (&str, Option<usize>),
        rate: Option<f64>,
        warmup: Duration,
        requests: Option<u64>,
        perf: Option<&str>,
    ) -> anyhow::Result<Report> {
        let mut cmd = tokio::process::Command::new(self.bin("appimage-loadgen"));
        cmd.kill_on_drop(true)
            .arg("--url")
            .arg(hook.url("/mutate"))
            .arg("--ca")
            .arg(&self.tls.ca)
            .arg("--concurrency")
            .arg(self.args.concurrency.to_string())
            .arg("--rate")
            .arg(rate.unwrap_or(0.0).to_string())
            .arg("--duration")
            // A request-bounded run: the duration is only a limit.
            .arg(match requests {
                Some(_) => "120s".to_string(),
                None => format!("{}ms", self.args.duration.as_millis()),
            })
            .arg("--warmup")
            .arg(format!("{}ms", warmup.as_millis()))
            .arg("--appimage")
            .arg(names.0)
            .arg("--expect")
            .arg(expect)
            .arg("--label")
            .arg(label)
            .arg("--threads")
            .arg(self.args.loadgen_threads.to_string())
            .arg("--server-pid")
            .arg(hook.pid().to_string())
            .arg("--json")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(n) = names.1 {
            cmd.arg("--appimage-count").arg(n.to_string());
        }
        if let Some(n) = requests {
            cmd.arg("--requests").arg(n.to_string());
        }
        let child = cmd.spawn().context("starting appimage-loadgen")?;
        let profile = match perf {
            Some(name) if self.args.perf => Some(self.start_perf(hook.pid(), name, warmup)?),
            _ => None,
        };
        let out = child.wait_with_output().await?;
        if let Some((mut perf_child, data, name)) = profile {
            let _ = perf_child.wait().await;
            self.perf_report(&data, &name).await;
        }
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

    /// The patch `hook` answers one seed Pod with, as the load generator would send it.
    async fn answer_patch(&self, hook: &Webhook) -> anyhow::Result<Vec<u8>> {
        let client = https_client(&self.tls.ca, HttpVersion::Http1, 1)?;
        let body = review::pod_create(0, "bench", SEED);
        let (status, answer) = send(&client, Method::POST, &hook.url("/mutate"), body).await?;
        anyhow::ensure!(status == StatusCode::OK, "HTTP {status} from the webhook");
        review::patch(&answer).map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// `perf record` of `pid` during the measured part of a run.
    fn start_perf(
        &self,
        pid: u32,
        name: &str,
        warmup: Duration,
    ) -> anyhow::Result<(tokio::process::Child, PathBuf, String)> {
        let data = self.work.join(format!("perf-{name}.data"));
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
        let file = absolute(&self.root, Path::new("target/bench")).join(format!("perf-{name}.txt"));
        if std::fs::write(&file, &text).is_ok() {
            log(format!("profile of {name}: {}", file.display()));
        }
    }

    async fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = tokio::process::Command::new(&self.args.kubectl)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.work.join("home"))
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| format!("running {}", self.args.kubectl.display()))?;
        if !out.status.success() {
            bail!(
                "kubectl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn signed(&self, mut image: AppImage) -> AppImage {
        image.spec.image.sign = Some(self.seed_sign.clone());
        image
    }

    /// Create AppImages `concurrency` at a time; returns how long it took.
    async fn create_appimages(
        &self,
        images: Vec<AppImage>,
        concurrency: usize,
    ) -> anyhow::Result<Duration> {
        let api: Api<AppImage> = Api::all(self.client.clone());
        let started = Instant::now();
        futures::stream::iter(images)
            .map(|image| {
                let api = api.clone();
                async move {
                    let name = image.metadata.name.clone().unwrap_or_default();
                    api.create(&PostParams::default(), &image)
                        .await
                        .with_context(|| format!("creating AppImage {name}"))
                }
            })
            .buffer_unordered(concurrency)
            .try_for_each(|_| async { Ok(()) })
            .await?;
        Ok(started.elapsed())
    }

    // ---------------------------------------------------------------- scenario 1 and 3

    async fn scenario_1_and_3(&mut self) -> anyhow::Result<()> {
        let (w, rate) = (self.args.warmup, self.args.rate);
        let noop = self.webhook("noop", true).await?;
        let noop_max = self
            .load(
                "s1 noop max",
                &noop,
                "allowed",
                (SEED, None),
                None,
                w,
                None,
                None,
            )
            .await?;
        let noop_rate = self
            .load(
                "s1 noop @rate",
                &noop,
                "allowed",
                (SEED, None),
                Some(rate),
                w,
                None,
                None,
            )
            .await?;
        let noop_mem = noop.memory_kib()?;
        drop(noop);

        let hook = self.webhook("mutate", false).await?;
        let start_mem = hook.memory_kib()?;
        let mut_max = self
            .load(
                "s1 mutate max",
                &hook,
                "patched",
                (SEED, None),
                None,
                w,
                None,
                Some("s1-mutate-max"),
            )
            .await?;
        let mut_rate = self
            .load(
                "s1 mutate @rate",
                &hook,
                "patched",
                (SEED, None),
                Some(rate),
                w,
                None,
                None,
            )
            .await?;
        let seed_mem = hook.memory_kib()?;

        // The stack's ceiling for an answer this size: --noop answering every request with
        // this very patch, so no handler work but the same bytes on the wire.
        let patch = self.answer_patch(&hook).await?;
        let patch_file = self.work.join("ceiling-patch.json");
        std::fs::write(&patch_file, &patch)?;
        let ceiling = self
            .webhook_with(
                "ceiling",
                true,
                vec!["--noop-patch".into(), patch_file.to_string_lossy().into()],
            )
            .await?;
        let ceil_max = self
            .load(
                "s1 noop+patch max",
                &ceiling,
                "patched",
                (SEED, None),
                None,
                w,
                None,
                None,
            )
            .await?;
        drop(ceiling);

        let ratio = mut_max.rps / noop_max.rps.max(1e-9);
        let s1_errors =
            noop_max.errors + noop_rate.errors + mut_max.errors + mut_rate.errors + ceil_max.errors;
        self.info(
            "1",
            "noop max throughput, c=32 (req/s)",
            format!("{:.0}", noop_max.rps),
        );
        self.info(
            "1",
            "mutate max throughput, c=32 (req/s)",
            format!("{:.0}", mut_max.rps),
        );
        self.row(
            "1",
            "mutate / noop throughput",
            format!("{ratio:.2}x"),
            ">= 0.8x",
            verdict(ratio >= 0.8),
        );
        self.info(
            "1",
            &format!("noop p50 / p99 at {rate:.0} req/s (ms)"),
            format!(
                "{:.3} / {:.3}",
                noop_rate.latency_ms.p50, noop_rate.latency_ms.p99
            ),
        );
        self.info(
            "1",
            &format!("mutate p50 / p99.9 at {rate:.0} req/s (ms)"),
            format!(
                "{:.3} / {:.3}",
                mut_rate.latency_ms.p50, mut_rate.latency_ms.p999
            ),
        );
        self.row(
            "1",
            &format!("mutate p99 at {rate:.0} req/s (ms)"),
            format!("{:.3}", mut_rate.latency_ms.p99),
            "<= 1 ms",
            verdict(mut_rate.latency_ms.p99 <= 1.0 && mut_rate.unsent == 0),
        );
        self.info(
            "1",
            "mean answer size, noop / mutate (bytes)",
            format!(
                "{:.0} / {:.0}",
                noop_max.response_bytes_mean, mut_max.response_bytes_mean
            ),
        );
        self.info(
            "1",
            "ceiling: noop answering the mutate patch, c=32 (req/s)",
            format!("{:.0}", ceil_max.rps),
        );
        self.info(
            "1",
            "ceiling / noop throughput (the best any handler could do)",
            format!("{:.2}x", ceil_max.rps / noop_max.rps.max(1e-9)),
        );
        self.info(
            "1",
            "mutate / ceiling throughput",
            format!("{:.2}x", mut_max.rps / ceil_max.rps.max(1e-9)),
        );
        // CPU per request separates the webhook's cost from the generator's on the shared cores.
        let cpu = |r: &Report| {
            r.cpu_us_per_request
                .as_ref()
                .map(|c| (c.server.unwrap_or(f64::NAN), c.generator))
                .unwrap_or((f64::NAN, f64::NAN))
        };
        let [
            (noop_server, noop_gen),
            (ceil_server, ceil_gen),
            (mut_server, mut_gen),
        ] = [&noop_max, &ceil_max, &mut_max].map(cpu);
        self.info(
            "1",
            "CPU per request at max throughput, webhook: noop / ceiling / mutate (µs)",
            format!("{noop_server:.1} / {ceil_server:.1} / {mut_server:.1}"),
        );
        self.info(
            "1",
            "CPU per request at max throughput, load generator: noop / ceiling / mutate (µs)",
            format!("{noop_gen:.1} / {ceil_gen:.1} / {mut_gen:.1}"),
        );
        self.row(
            "1",
            "errors (all scenario-1 runs)",
            s1_errors.to_string(),
            "0",
            verdict(s1_errors == 0),
        );
        self.detail(
            "s1",
            json!({
                "noop_max_rps": noop_max.rps, "mutate_max_rps": mut_max.rps, "ratio": ratio,
                "noop_rate": noop_rate.latency_ms, "mutate_rate": mut_rate.latency_ms,
                "noop_memory": noop_mem, "mutate_memory_start": start_mem,
                "mutate_memory_after": seed_mem,
                "ceiling_max_rps": ceil_max.rps,
                "cpu_us_per_request": {
                    "noop": noop_max.cpu_us_per_request, "ceiling": ceil_max.cpu_us_per_request,
                    "mutate": mut_max.cpu_us_per_request,
                },
            }),
        );

        if self.want(3) {
            let big_max = self
                .load(
                    "s3 large max",
                    &hook,
                    "patched",
                    (LARGE, None),
                    None,
                    w,
                    None,
                    Some("s3-large-max"),
                )
                .await?;
            let lr = self.args.large_rate;
            let big_rate = self
                .load(
                    "s3 large @rate",
                    &hook,
                    "patched",
                    (LARGE, None),
                    Some(lr),
                    w,
                    None,
                    None,
                )
                .await?;
            self.info(
                "3",
                "large: max throughput, c=32 (req/s)",
                format!("{:.0}", big_max.rps),
            );
            self.info(
                "3",
                "large: p50 / p99 at max throughput (ms)",
                format!(
                    "{:.2} / {:.2}",
                    big_max.latency_ms.p50, big_max.latency_ms.p99
                ),
            );
            self.info(
                "3",
                &format!("large: p50 / p99 at {lr:.0} req/s (ms)"),
                format!(
                    "{:.2} / {:.2}",
                    big_rate.latency_ms.p50, big_rate.latency_ms.p99
                ),
            );
            self.info(
                "3",
                "large: throughput vs seed (x)",
                format!("{:.3}x", big_max.rps / mut_max.rps.max(1e-9)),
            );
            self.info(
                "3",
                "large: mean answer size (bytes)",
                format!("{:.0}", big_max.response_bytes_mean),
            );
            let errors = big_max.errors + big_rate.errors + big_rate.unsent;
            self.row("3", "errors", errors.to_string(), "0", verdict(errors == 0));
            let mem = hook.memory_kib()?;
            self.detail(
                "s3",
                json!({
                    "containers": fixtures::LARGE_CONTAINERS, "ports": fixtures::LARGE_PORTS,
                    "config_bytes": fixtures::LARGE_CONFIG_BYTES,
                    "max_rps": big_max.rps, "max_latency": big_max.latency_ms,
                    "rate": lr, "rate_latency": big_rate.latency_ms, "memory_after": mem,
                }),
            );
        }
        Ok(())
    }

    // ---------------------------------------------------------------- scenario 2 and 4

    async fn scenario_2_and_4(&mut self) -> anyhow::Result<()> {
        let n = self.args.appimages;
        log(format!(
            "creating {n} AppImages (copies of the seed, signed)"
        ));
        let base = fixtures::seed(&self.root, SEED)?;
        let images: Vec<AppImage> = (0..n)
            .map(|i| {
                let mut img = base.clone();
                img.metadata.name = Some(format!("{COPY_PREFIX}-{i}"));
                self.signed(img)
            })
            .collect();
        let took = self.create_appimages(images, 16).await?;
        self.info(
            "2",
            &format!("create {n} AppImages (kube-rs, 16 at a time)"),
            format!("{:.1} s", took.as_secs_f64()),
        );

        // A fresh webhook: its watch lists all of them before it is ready.
        let started = Instant::now();
        let hook = self.webhook("mutate-10k", false).await?;
        let sync = started.elapsed();
        let synced = hook.memory_kib()?;
        self.info(
            "2",
            &format!("webhook start to ready with {n} AppImages"),
            format!("{:.2} s", sync.as_secs_f64()),
        );
        self.info(
            "2",
            "RSS after sync, nothing looked up yet",
            mib(synced.rss_kib),
        );

        // Scenario 4: the first request for each of `cold` AppImages, as fast as possible.
        let cold = self.args.cold.min(n);
        let mut s4 = json!({});
        if self.want(4) {
            let c = self
                .load(
                    "s4 cold burst",
                    &hook,
                    "patched",
                    (COPY_PREFIX, Some(cold)),
                    None,
                    Duration::ZERO,
                    Some(cold as u64),
                    None,
                )
                .await?;
            let warm = self
                .load(
                    "s4 same burst, warm",
                    &hook,
                    "patched",
                    (COPY_PREFIX, Some(cold)),
                    None,
                    Duration::ZERO,
                    Some(cold as u64),
                    None,
                )
                .await?;
            self.info(
                "4",
                &format!("cold burst: {cold} first requests, c=32, p50/p90/p99/max (ms)"),
                format!(
                    "{:.2}/{:.2}/{:.2}/{:.2}",
                    c.latency_ms.p50, c.latency_ms.p90, c.latency_ms.p99, c.latency_ms.max
                ),
            );
            self.info(
                "4",
                "same burst again, warm: p50/p90/p99/max (ms)",
                format!(
                    "{:.2}/{:.2}/{:.2}/{:.2}",
                    warm.latency_ms.p50,
                    warm.latency_ms.p90,
                    warm.latency_ms.p99,
                    warm.latency_ms.max
                ),
            );
            self.info(
                "4",
                "cold vs warm burst: req/s",
                format!("{:.0} vs {:.0}", c.rps, warm.rps),
            );
            let errors = c.errors + warm.errors;
            self.row("4", "errors", errors.to_string(), "0", verdict(errors == 0));
            s4 = json!({"cold": c, "warm": warm});
        }
        self.detail("s4", s4);

        // Scenario 2: look every AppImage up once, then measure.
        let fill = self
            .load(
                "s2 fill cache",
                &hook,
                "patched",
                (COPY_PREFIX, Some(n)),
                None,
                Duration::ZERO,
                Some(n as u64),
                None,
            )
            .await?;
        let cached = hook.memory_kib()?;
        let (w, rate) = (self.args.warmup, self.args.rate);
        // A B B A: machine noise (other builds on the two cores) hits both alike.
        let one_name = format!("{COPY_PREFIX}-0");
        let mut spread_runs = Vec::new();
        let mut single_runs = Vec::new();
        for (round, all_names) in [(1, true), (1, false), (2, false), (2, true)] {
            let (label, names) = if all_names {
                (
                    format!("s2 @rate over all names #{round}"),
                    (COPY_PREFIX, Some(n)),
                )
            } else {
                (
                    format!("s2 @rate over one name #{round}"),
                    (one_name.as_str(), None),
                )
            };
            let r = self
                .load(&label, &hook, "patched", names, Some(rate), w, None, None)
                .await?;
            if all_names {
                spread_runs.push(r);
            } else {
                single_runs.push(r);
            }
        }
        let spread = averaged(&spread_runs);
        let single = averaged(&single_runs);
        let after = hook.memory_kib()?;
        self.row(
            "2",
            &format!("RSS with {n} AppImages cached"),
            mib(cached.rss_kib),
            "<= 30 MiB",
            verdict(cached.rss_kib <= 30 * 1024),
        );
        self.info(
            "2",
            "RSS / peak RSS after the load runs",
            format!("{} / {}", mib(after.rss_kib), mib(after.peak_rss_kib)),
        );
        self.info(
            "2",
            &format!("p50 / p99 at {rate:.0} req/s over {n} names (ms)"),
            format!(
                "{:.3} / {:.3}",
                spread.latency_ms.p50, spread.latency_ms.p99
            ),
        );
        self.info(
            "2",
            &format!("p50 / p99 at {rate:.0} req/s over 1 name (ms)"),
            format!(
                "{:.3} / {:.3}",
                single.latency_ms.p50, single.latency_ms.p99
            ),
        );
        let p50_ratio = spread.latency_ms.p50 / single.latency_ms.p50.max(1e-9);
        let p99_ratio = spread.latency_ms.p99 / single.latency_ms.p99.max(1e-9);
        self.row(
            "2",
            &format!("{n} names vs 1 name: p50 ratio"),
            format!("{p50_ratio:.2}x"),
            "~1x (<= 1.25x)",
            verdict(p50_ratio <= 1.25),
        );
        self.info(
            "2",
            &format!("{n} names vs 1 name: p99 ratio"),
            format!("{p99_ratio:.2}x"),
        );
        let errors = fill.errors + spread.errors + single.errors + spread.unsent + single.unsent;
        self.row("2", "errors", errors.to_string(), "0", verdict(errors == 0));
        self.detail(
            "s2",
            json!({
                "appimages": n, "create_s": took.as_secs_f64(), "sync_s": sync.as_secs_f64(),
                "memory_synced": synced, "memory_cached": cached, "memory_after": after,
                "spread": spread.latency_ms, "single": single.latency_ms,
                "fill_rps": fill.rps,
            }),
        );
        Ok(())
    }

    // ---------------------------------------------------------------- scenario 5

    /// A namespace labelled `NS_LABEL=value` and a Pod webhook registration for it.
    async fn register(&self, namespace: &str, value: &str, url: &str) -> anyhow::Result<()> {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let ns: Namespace = serde_json::from_value(json!({
            "metadata": {"name": namespace, "labels": {NS_LABEL: value}}
        }))?;
        namespaces.create(&PostParams::default(), &ns).await?;
        // The ServiceAccount admission plugin refuses Pods until the controller-manager has
        // made the namespace's `default` ServiceAccount.
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        let started = Instant::now();
        while accounts.get_opt("default").await?.is_none() {
            if started.elapsed() > Duration::from_secs(60) {
                bail!("namespace {namespace}: no default ServiceAccount after 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // As the chart registers it.
        let registration: MutatingWebhookConfiguration = serde_json::from_value(pod_registration(
            &format!("appimage-bench-{value}"),
            url,
            &self.tls,
            json!({"matchExpressions": [{"key": labels::APP_IMAGE, "operator": "Exists"}]}),
            json!({"matchLabels": {NS_LABEL: value}}),
        ))?;
        let registrations: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        registrations
            .create(&PostParams::default(), &registration)
            .await?;
        Ok(())
    }

    async fn scenario_5(&mut self) -> anyhow::Result<()> {
        let hook = self.webhook("mutate-pods", false).await?;
        let noop = self.webhook("noop-pods", true).await?;
        self.register(POD_NAMESPACE, "on", &hook.url("/mutate"))
            .await?;
        self.register(NOOP_NAMESPACE, "noop", &noop.url("/mutate"))
            .await?;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), POD_NAMESPACE);
        let noop_pods: Api<Pod> = Api::namespaced(self.client.clone(), NOOP_NAMESPACE);

        // Wait until the apiserver calls both webhooks (its registration cache lags a little).
        let dry = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        let started = Instant::now();
        loop {
            let probe = pods.create(&dry, &pod(POD_NAMESPACE, true)).await;
            let live = probe.as_ref().is_ok_and(injected);
            let noop_probe = noop_pods.create(&dry, &pod(NOOP_NAMESPACE, true)).await;
            let noop_live = noop_probe.is_ok() && noop.log_tail(5).contains(NOOP_NAMESPACE);
            if live && noop_live {
                break;
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!(
                    "the apiserver never called the webhooks: {:?} {:?}\n{}\n{}",
                    probe.err(),
                    noop_probe.err(),
                    hook.log_tail(10),
                    noop.log_tail(10)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        // The Pod the webhook stores, created directly (label removed, so the webhook is not
        // called): separates the cost of the admission call from that of a larger object.
        let mut pre = pods.create(&dry, &pod(POD_NAMESPACE, true)).await?;
        pre.metadata = kube::api::ObjectMeta {
            namespace: pre.metadata.namespace.take(),
            labels: pre.metadata.labels.take().map(|mut l| {
                l.remove(labels::APP_IMAGE);
                l
            }),
            annotations: pre.metadata.annotations.take(),
            ..Default::default()
        };
        pre.status = None;
        // The ceiling: that same final Pod, labelled, through the noop webhook. It pays for the
        // webhook round trip and the larger object, not for our handler.
        let mut ceiling = pre.clone();
        ceiling.metadata.namespace = Some(NOOP_NAMESPACE.into());
        ceiling
            .metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(labels::APP_IMAGE.into(), SEED.into());
        let variants = [
            Variant {
                kind: "without",
                api: pods.clone(),
                pod: pod(POD_NAMESPACE, false),
                injected: false,
            },
            Variant {
                kind: "noop",
                api: noop_pods.clone(),
                pod: pod(NOOP_NAMESPACE, true),
                injected: false,
            },
            Variant {
                kind: "preinjected",
                api: pods.clone(),
                pod: pre,
                injected: false,
            },
            Variant {
                kind: "with",
                api: pods.clone(),
                pod: pod(POD_NAMESPACE, true),
                injected: true,
            },
            Variant {
                kind: "ceiling",
                api: noop_pods.clone(),
                pod: ceiling,
                injected: true,
            },
        ];
        // Warm up every path (connections, caches), not recorded.
        creates(&variants, "warm", 20, 1).await?;
        let mut summary = serde_json::Map::new();
        for concurrency in [1usize, 4] {
            let t = creates(
                &variants,
                &format!("c{concurrency}"),
                self.args.pods,
                concurrency,
            )
            .await?;
            let [plain, noop_t, pre, hooked, ceil] = [0, 1, 2, 3, 4].map(|k| &t.times[k]);
            let (pm, nm, prm, hm) = (mean(plain), mean(noop_t), mean(pre), mean(hooked));
            let cm = mean(ceil);
            let q = |v: &[f64]| quantile(v, 0.99);
            let (p99p, p99n, p99pre, p99h) = (q(plain), q(noop_t), q(pre), q(hooked));
            let p99c = q(ceil);
            let n = self.args.pods;
            let how = if concurrency == 1 {
                "sequential".to_string()
            } else {
                format!("concurrency {concurrency}")
            };
            self.info(
                "5",
                &format!(
                    "{n}x5 creates, {how}: mean without / noop hook / pre-injected / with (ms)"
                ),
                format!("{pm:.2} / {nm:.2} / {prm:.2} / {hm:.2}"),
            );
            self.info(
                "5",
                &format!(
                    "{n}x5 creates, {how}: p99 without / noop hook / pre-injected / with (ms)"
                ),
                format!("{p99p:.2} / {p99n:.2} / {p99pre:.2} / {p99h:.2}"),
            );
            self.row(
                "5",
                &format!("{how}: mean create latency, with / without webhook"),
                format!("{:.2}x", hm / pm.max(1e-9)),
                "<= 1.1x",
                verdict(hm / pm.max(1e-9) <= 1.1),
            );
            self.row(
                "5",
                &format!("{how}: p99 create latency, with / without webhook"),
                format!("{:.2}x", p99h / p99p.max(1e-9)),
                "<= 1.1x",
                verdict(p99h / p99p.max(1e-9) <= 1.1),
            );
            self.info(
                "5",
                &format!("{how}: mean, noop webhook / without"),
                format!("{:.2}x", nm / pm.max(1e-9)),
            );
            self.info(
                "5",
                &format!(
                    "{n} creates, {how}: mean / p99 of the ceiling (final Pod, noop hook) (ms)"
                ),
                format!("{cm:.2} / {p99c:.2}"),
            );
            for (what, with, ceiling) in [("mean", hm, cm), ("p99", p99h, p99c)] {
                let ratio = with / ceiling.max(1e-9);
                self.row(
                    "5",
                    &format!("{how}: {what} create latency, with / ceiling"),
                    format!("{ratio:.2}x"),
                    "<= 1.1x",
                    verdict(ratio <= 1.1),
                );
            }
            self.row(
                "5",
                &format!("{how}: Pods not injected / failed creates"),
                t.failures.to_string(),
                "0",
                verdict(t.failures == 0),
            );
            let stats = |v: &[f64]| {
                json!({"mean": mean(v), "p50": quantile(v, 0.5), "p99": quantile(v, 0.99),
                       "max": quantile(v, 1.0), "n": v.len()})
            };
            summary.insert(
                format!("concurrency_{concurrency}"),
                json!({
                    "without_ms": stats(plain), "noop_webhook_ms": stats(noop_t),
                    "preinjected_ms": stats(pre), "with_ms": stats(hooked),
                    "ceiling_ms": stats(ceil), "ceiling_mean_ratio": hm / cm.max(1e-9),
                    "ceiling_p99_ratio": p99h / p99c.max(1e-9),
                    "mean_ratio": hm / pm.max(1e-9), "p99_ratio": p99h / p99p.max(1e-9),
                    "noop_mean_ratio": nm / pm.max(1e-9),
                    "wall_s": t.wall.as_secs_f64(),
                }),
            );
        }
        self.detail("s5", Value::Object(summary));
        let registrations: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        for value in ["on", "noop"] {
            let _ = registrations
                .delete(&format!("appimage-bench-{value}"), &DeleteParams::default())
                .await;
        }
        for ns in [POD_NAMESPACE, NOOP_NAMESPACE] {
            let _ = namespaces.delete(ns, &DeleteParams::default()).await;
        }
        Ok(())
    }

    // ---------------------------------------------------------------- scenario 6

    async fn scenario_6(&mut self) -> anyhow::Result<()> {
        let path_dir = self.work.join("bin");
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
        let path = format!(
            "{}:{}",
            path_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let seed_file = fixtures::SEED_FILE;
        let commands: Vec<(&str, String)> = vec![
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
        ];
        let env = [
            ("PATH", path.clone()),
            ("KUBECONFIG", self.kubeconfig.to_string_lossy().into_owned()),
            (
                "HOME",
                self.work.join("home").to_string_lossy().into_owned(),
            ),
        ];
        // Each must work before it is timed.
        for (_, command) in &commands {
            let argv: Vec<&str> = command.split_whitespace().collect();
            let out = std::process::Command::new(argv[0])
                .args(&argv[1..])
                .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
                .current_dir(&self.root)
                .stdin(Stdio::null())
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
            loop_timings(&commands, &env, &self.root, runs)?
        };
        let tool = if hyperfine { "hyperfine" } else { "loop" };
        let find = |label: &str| timings.iter().find(|t| t.label == label).cloned();
        for t in &timings {
            self.info(
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
                self.row(
                    "6",
                    metric,
                    format!("{ratio:.2}x"),
                    "<= 0.5x",
                    verdict(ratio <= 0.5),
                );
            }
        }
        if let Some(r) = find("kubectl-appimage render (offline, direct)") {
            self.row(
                "6",
                "render offline, plugin binary (mean)",
                format!("{:.2} ms", r.mean_ms),
                "<= 5 ms",
                verdict(r.mean_ms <= 5.0),
            );
        }
        if let Some(r) = find("kubectl appimage render (offline)") {
            self.row(
                "6",
                "render offline via `kubectl appimage` (mean)",
                format!("{:.2} ms", r.mean_ms),
                "<= 5 ms",
                verdict(r.mean_ms <= 5.0),
            );
        }
        self.detail("s6", serde_json::to_value(&timings)?);
        Ok(())
    }

    fn hyperfine(
        &self,
        commands: &[(&str, String)],
        env: &[(&str, String)],
        runs: usize,
    ) -> anyhow::Result<Vec<Timing>> {
        let export = self.work.join("hyperfine.json");
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
            .current_dir(&self.root)
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

#[derive(Debug, Clone, Serialize)]
struct Timing {
    label: String,
    command: String,
    mean_ms: f64,
    median_ms: f64,
    min_ms: f64,
    max_ms: f64,
}

/// Without hyperfine: run each command `runs` times (after 3 untimed runs).
fn loop_timings(
    commands: &[(&str, String)],
    env: &[(&str, String)],
    root: &Path,
    runs: usize,
) -> anyhow::Result<Vec<Timing>> {
    let mut out = Vec::new();
    for (label, command) in commands {
        let argv: Vec<&str> = command.split_whitespace().collect();
        let mut times = Vec::with_capacity(runs);
        for i in 0..runs + 3 {
            let started = Instant::now();
            let status = std::process::Command::new(argv[0])
                .args(&argv[1..])
                .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
                .current_dir(root)
                .stdin(Stdio::null())
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

/// A Pod with one container, as a user would write it; `labelled` asks for the seed AppImage.
fn pod(namespace: &str, labelled: bool) -> Pod {
    let name = "probe";
    let mut meta = json!({"name": name, "namespace": namespace});
    if labelled {
        meta["labels"] = json!({labels::APP_IMAGE: SEED});
        meta["annotations"] = json!({labels::OPT_TASK_ID: name});
    }
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            "automountServiceAccountToken": false,
            "containers": [{"name": "secretflow", "image": "secretflow/secretflow-lite-anolis8:latest"}]
        }
    }))
    .expect("a valid Pod")
}

/// The stored Pod carries what the webhook injects.
fn injected(pod: &Pod) -> bool {
    let annotations = pod.metadata.annotations.as_ref();
    annotations.is_some_and(|a| a.contains_key(labels::STATUS))
        && pod
            .spec
            .as_ref()
            .is_some_and(|s| s.volumes.as_ref().is_some_and(|v| !v.is_empty()))
}

/// The Pods of scenario 5, each created `n` times.
#[derive(Clone)]
struct Variant {
    kind: &'static str,
    api: Api<Pod>,
    pod: Pod,
    /// The stored Pod must carry the injection.
    injected: bool,
}

struct CreateTimes {
    /// Milliseconds per variant, sorted.
    times: Vec<Vec<f64>>,
    /// Labelled Pods stored without the injection, and failed creates.
    failures: usize,
    wall: Duration,
}

/// Create every variant `n` times, interleaved (so drift of the apiserver and etcd affects all
/// alike; the order rotates), by `concurrency` workers; time each create.
async fn creates(
    variants: &[Variant],
    tag: &str,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<CreateTimes> {
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let variants: Arc<Vec<Variant>> = Arc::new(variants.to_vec());
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (next, tag, variants) = (next.clone(), tag.to_string(), variants.clone());
        workers.push(tokio::spawn(async move {
            let mut times = vec![Vec::new(); variants.len()];
            let mut failures = 0;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    break;
                }
                for k in 0..variants.len() {
                    let v = (i + k) % variants.len();
                    let variant = &variants[v];
                    let mut p = variant.pod.clone();
                    p.metadata.name = Some(format!("{tag}-{}-{i}", variant.kind));
                    let t = Instant::now();
                    let created = variant.api.create(&PostParams::default(), &p).await;
                    let took = ms(t.elapsed());
                    match created {
                        Ok(stored) => {
                            times[v].push(took);
                            if variant.injected && !injected(&stored) {
                                failures += 1;
                            }
                        }
                        Err(e) => {
                            log(format!("create {} {i}: {e}", variant.kind));
                            failures += 1;
                        }
                    }
                }
            }
            (times, failures)
        }));
    }
    let mut out = CreateTimes {
        times: vec![Vec::new(); variants.len()],
        failures: 0,
        wall: Duration::ZERO,
    };
    for w in workers {
        let (times, failures) = w.await?;
        for (all, mine) in out.times.iter_mut().zip(times) {
            all.extend(mine);
        }
        out.failures += failures;
    }
    for t in &mut out.times {
        t.sort_by(f64::total_cmp);
    }
    out.wall = started.elapsed();
    Ok(out)
}

async fn kube_client(kubeconfig: &Path) -> anyhow::Result<Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(Client::try_from(config)?)
}

fn print_table(rows: &[Row]) {
    println!();
    println!("| # | measurement | value | target | verdict |\n|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} |",
            r.scenario, r.metric, r.value, r.target, r.verdict
        );
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    // On SIGINT/SIGTERM the run is dropped, which kills every process it started.
    let stopped = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
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
    let root = args.root.canonicalize().context("repository root")?;
    let bins = absolute(&root, &args.bin_dir);
    for b in ["appimage-webhook", "appimage-loadgen", "kubectl-appimage"] {
        if !bins.join(b).exists() {
            bail!(
                "{} is missing: build with `cargo build --release --workspace --bins`",
                bins.join(b).display()
            );
        }
    }
    let work = absolute(&root, &args.work);
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(work.join("home"))?;
    let out = absolute(&root, &args.out);
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }

    let mut results = Results {
        machine: machine(),
        started_unix: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default(),
        ..Results::default()
    };
    log(format!("machine: {}", results.machine));

    log("starting the control plane");
    let controlplane = ControlPlane::start(&args.controlplane, &work.join("controlplane"))?;
    let kubeconfig = controlplane.kubeconfig.clone();
    let client = kube_client(&kubeconfig).await?;
    let tls = Tls::new(&work.join("tls"), "appimage-bench");
    let signer = SigningKey::new(&work.join("keys"));
    let seed = fixtures::seed(&root, SEED)?;
    let seed_sign = signer.sign(&payload(&seed.spec.image));
    results.args = Some(args.clone());
    let mut bench = Bench {
        args,
        root,
        bins,
        work,
        tls,
        signer,
        client,
        kubeconfig,
        results,
        seed_sign,
    };

    let crd = bench
        .root
        .join("charts/appimage-webhook/crds/appimages.kuscia.secretflow.yaml");
    bench
        .kubectl(&["apply", "-f", &crd.to_string_lossy()])
        .await?;
    bench
        .kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/appimages.kuscia.secretflow",
        ])
        .await?;
    let appimages: Api<AppImage> = Api::all(bench.client.clone());
    let t = Instant::now();
    while appimages
        .list(&ListParams::default().limit(1))
        .await
        .is_err()
    {
        if t.elapsed() > Duration::from_secs(30) {
            bail!("the AppImage API never became available");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The seed (signed, as is) and the large AppImage (signed with the same key).
    let seed = bench.signed(seed);
    let mut large = fixtures::large(LARGE);
    large.spec.image.sign = Some(bench.signer.sign(&payload(&large.spec.image)));
    bench.create_appimages(vec![seed, large], 2).await?;

    println!("{}", Report::table_header().replacen("run ", "     run", 1));
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
    for n in scenarios {
        log(format!("scenario {n}"));
        let result = match n {
            1 => bench.scenario_1_and_3().await,
            2 => bench.scenario_2_and_4().await,
            5 => bench.scenario_5().await,
            _ => bench.scenario_6().await,
        };
        if let Err(e) = result {
            let message = format!("scenario {n}: {e:#}");
            log(&message);
            bench.results.failures.push(message);
        }
    }

    bench.results.elapsed_s = started.elapsed().as_secs_f64();
    if let Value::Object(m) = &mut bench.results.machine {
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        m.insert("loadavg_end".into(), json!(load.trim()));
    }
    print_table(&bench.results.rows);
    std::fs::write(&out, serde_json::to_vec_pretty(&bench.results)?)?;
    println!("\nresults: {}", out.display());
    drop(controlplane);
    if !bench.results.failures.is_empty() {
        bail!("{}", bench.results.failures.join("\n"));
    }
    Ok(())
}
