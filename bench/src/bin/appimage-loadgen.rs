//! `appimage-loadgen`: send AdmissionReviews (v1, CREATE of a labelled Pod) to a running
//! appimage-webhook over TLS at a fixed concurrency and rate for a fixed time; print requests/s,
//! latency percentiles and errors as a table line or as JSON.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use appimage_bench::client::HttpVersion;
use appimage_bench::loadgen::{self, LoadConfig, Report};
use appimage_bench::review::Expect;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "appimage-loadgen",
    version,
    about = "Open-loop AdmissionReview load generator for appimage-webhook (latency from the scheduled send time)"
)]
struct Cli {
    /// The webhook's mutate URL, e.g. https://127.0.0.1:8443/mutate
    #[arg(long)]
    url: String,
    /// PEM CA certificate the webhook's serving certificate chains to.
    #[arg(long)]
    ca: PathBuf,
    /// Requests in flight at most (workers; with http1, keep-alive connections).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Target requests per second (open loop); 0 = closed loop, as fast as answers come.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// How long to measure, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = appimage::duration::parse)]
    duration: Duration,
    /// Same load before measuring, not recorded (warms caches and connections).
    #[arg(long, default_value = "0s", value_parser = appimage::duration::parse)]
    warmup: Duration,
    /// Stop measuring after this many requests (e.g. one per AppImage for a cold-cache burst).
    #[arg(long)]
    requests: Option<u64>,
    /// AppImage the Pods are labelled with; repeat or comma-separate to spread requests
    /// round-robin over several.
    #[arg(long = "appimage", value_delimiter = ',', required = true)]
    appimages: Vec<String>,
    /// Spread over NAME-0 ... NAME-(N-1) for each --appimage NAME.
    #[arg(long)]
    appimage_count: Option<usize>,
    /// What every answer must be: patched (injected) or allowed without a patch (--noop).
    #[arg(long, value_enum, default_value_t = Expect::Patched)]
    expect: Expect,
    /// Also decode every patch and require a non-empty list of operations.
    #[arg(long)]
    deep_check: bool,
    #[arg(long, value_enum, default_value_t = HttpVersion::Http1)]
    http: HttpVersion,
    /// Namespace of the Pods in the requests.
    #[arg(long, default_value = "bench")]
    namespace: String,
    /// Per-request time limit; a request past it counts as a transport error.
    #[arg(long, default_value = "10s", value_parser = appimage::duration::parse)]
    timeout: Duration,
    /// Name of this run in the table and the JSON.
    #[arg(long, default_value = "loadgen")]
    label: String,
    /// Print the report as JSON instead of a table line.
    #[arg(long)]
    json: bool,
    /// The server's process id, to report its CPU time per request (a server on this machine).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Generator threads (default: the number of CPUs, at most 4).
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let threads = cli.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get().min(4))
            .unwrap_or(2)
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("appimage-loadgen: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = LoadConfig {
        url: cli.url,
        ca: cli.ca,
        http: cli.http,
        concurrency: cli.concurrency,
        rate: (cli.rate > 0.0).then_some(cli.rate),
        duration: cli.duration,
        warmup: cli.warmup,
        requests: cli.requests,
        appimages: loadgen::spread(&cli.appimages, cli.appimage_count),
        namespace: cli.namespace,
        expect: cli.expect,
        deep_check: cli.deep_check,
        timeout: cli.timeout,
        label: cli.label,
        server_pid: cli.server_pid,
    };
    match runtime.block_on(loadgen::run(config)) {
        Ok(report) => {
            if cli.json {
                // A Report is plain data: it always serializes.
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                println!("{}", Report::table_header());
                println!("{}", report.table_row());
                for e in &report.error_samples {
                    eprintln!("error: {e}");
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("appimage-loadgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}
