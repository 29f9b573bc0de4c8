//! Scenarios 1 and 3: admission throughput and latency. Scenario 1 sets the seed AppImage's
//! mutation against a `--noop` webhook and against the ceiling (`--noop` answering with the
//! same patch); scenario 3 runs the large AppImage on the same webhook.

use appimage_bench::fixtures;
use appimage_bench::harness::{Memory, Webhook};
use appimage_bench::loadgen::Report;
use appimage_bench::review;
use serde_json::json;

use crate::bench::{Bench, LARGE, SEED};
use crate::load::Load;
use crate::results::{Results, p50_p99, verdict};

/// One webhook's runs: as fast as possible, and at the fixed rate.
struct Pair {
    max: Report,
    rate: Report,
}

impl Bench {
    pub(crate) async fn throughput(&mut self) -> anyhow::Result<()> {
        let (noop, noop_mem) = self.noop_runs().await?;
        let hook = self.webhook("mutate", false).await?;
        let start_mem = hook.memory_kib()?;
        let mutate = self.mutate_runs(&hook).await?;
        let seed_mem = hook.memory_kib()?;
        let ceiling = self.ceiling_run(&hook).await?;

        let rate = self.args.rate;
        let r = &mut self.results;
        let ratio = report_speed(r, &noop, &mutate, rate);
        report_ceiling(r, &noop.max, &mutate.max, &ceiling);
        let s1_errors = noop.max.errors
            + noop.rate.errors
            + mutate.max.errors
            + mutate.rate.errors
            + ceiling.errors;
        r.row(
            "1",
            "errors (all scenario-1 runs)",
            s1_errors.to_string(),
            "0",
            verdict(s1_errors == 0),
        );
        r.detail(
            "s1",
            json!({
                "noop_max_rps": noop.max.rps, "mutate_max_rps": mutate.max.rps, "ratio": ratio,
                "noop_rate": noop.rate.latency_ms, "mutate_rate": mutate.rate.latency_ms,
                "noop_memory": noop_mem, "mutate_memory_start": start_mem,
                "mutate_memory_after": seed_mem,
                "ceiling_max_rps": ceiling.rps,
                "cpu_us_per_request": {
                    "noop": noop.max.cpu_us_per_request, "ceiling": ceiling.cpu_us_per_request,
                    "mutate": mutate.max.cpu_us_per_request,
                },
            }),
        );
        if self.want(3) {
            self.large(&hook, &mutate.max).await?;
        }
        Ok(())
    }

    /// The `--noop` webhook's runs and its memory after them.
    async fn noop_runs(&mut self) -> anyhow::Result<(Pair, Memory)> {
        let (w, rate) = (self.args.warmup, self.args.rate);
        let noop = self.webhook("noop", true).await?;
        let max = Load::max("s1 noop max", "allowed", SEED, w);
        let max = self.load(&noop, max).await?;
        let at_rate = Load::max("s1 noop @rate", "allowed", SEED, w).at(rate);
        let at_rate = self.load(&noop, at_rate).await?;
        Ok((Pair { max, rate: at_rate }, noop.memory_kib()?))
    }

    /// The seed AppImage's runs on the mutating webhook `hook`.
    async fn mutate_runs(&mut self, hook: &Webhook) -> anyhow::Result<Pair> {
        let (w, rate) = (self.args.warmup, self.args.rate);
        let max = Load::max("s1 mutate max", "patched", SEED, w).profiled("s1-mutate-max");
        let max = self.load(hook, max).await?;
        let at_rate = Load::max("s1 mutate @rate", "patched", SEED, w).at(rate);
        let at_rate = self.load(hook, at_rate).await?;
        Ok(Pair { max, rate: at_rate })
    }

    /// The stack's ceiling for an answer this size: --noop answering every request with the
    /// patch `hook` answers, so no handler work but the same bytes on the wire.
    async fn ceiling_run(&mut self, hook: &Webhook) -> anyhow::Result<Report> {
        // One seed Pod, as the load generator sends it.
        let review = review::pod_create(0, "bench", SEED);
        let ceiling = self.replaying("ceiling", hook, review).await?;
        let max = Load::max("s1 noop+patch max", "patched", SEED, self.args.warmup);
        self.load(&ceiling, max).await
    }

    /// Scenario 3: the large AppImage on `hook`, against the seed's `seed_max`.
    async fn large(&mut self, hook: &Webhook, seed_max: &Report) -> anyhow::Result<()> {
        let (w, lr) = (self.args.warmup, self.args.large_rate);
        let max = Load::max("s3 large max", "patched", LARGE, w).profiled("s3-large-max");
        let big_max = self.load(hook, max).await?;
        let at_rate = Load::max("s3 large @rate", "patched", LARGE, w).at(lr);
        let big_rate = self.load(hook, at_rate).await?;
        report_large(&mut self.results, &big_max, &big_rate, seed_max, lr);
        let errors = big_max.errors + big_rate.errors + big_rate.unsent;
        self.results
            .row("3", "errors", errors.to_string(), "0", verdict(errors == 0));
        let mem = hook.memory_kib()?;
        self.results.detail(
            "s3",
            json!({
                "containers": fixtures::LARGE_CONTAINERS, "ports": fixtures::LARGE_PORTS,
                "config_bytes": fixtures::LARGE_CONFIG_BYTES,
                "max_rps": big_max.rps, "max_latency": big_max.latency_ms,
                "rate": lr, "rate_latency": big_rate.latency_ms, "memory_after": mem,
            }),
        );
        Ok(())
    }
}

/// Scenario 1's throughput, latency and answer size rows; returns mutate / noop throughput.
fn report_speed(r: &mut Results, noop: &Pair, mutate: &Pair, rate: f64) -> f64 {
    let ratio = mutate.max.rps / noop.max.rps.max(1e-9);
    r.info(
        "1",
        "noop max throughput, c=32 (req/s)",
        format!("{:.0}", noop.max.rps),
    );
    r.info(
        "1",
        "mutate max throughput, c=32 (req/s)",
        format!("{:.0}", mutate.max.rps),
    );
    r.row(
        "1",
        "mutate / noop throughput",
        format!("{ratio:.2}x"),
        ">= 0.8x",
        verdict(ratio >= 0.8),
    );
    let (noop_lat, mut_lat) = (&noop.rate.latency_ms, &mutate.rate.latency_ms);
    r.info(
        "1",
        &format!("noop p50 / p99 at {rate:.0} req/s (ms)"),
        p50_p99(noop_lat, 3),
    );
    r.info(
        "1",
        &format!("mutate p50 / p99.9 at {rate:.0} req/s (ms)"),
        format!("{:.3} / {:.3}", mut_lat.p50, mut_lat.p999),
    );
    r.row(
        "1",
        &format!("mutate p99 at {rate:.0} req/s (ms)"),
        format!("{:.3}", mut_lat.p99),
        "<= 1 ms",
        verdict(mut_lat.p99 <= 1.0 && mutate.rate.unsent == 0),
    );
    r.info(
        "1",
        "mean answer size, noop / mutate (bytes)",
        format!(
            "{:.0} / {:.0}",
            noop.max.response_bytes_mean, mutate.max.response_bytes_mean
        ),
    );
    ratio
}

/// Scenario 1's rows on the ceiling and on CPU per request.
fn report_ceiling(r: &mut Results, noop_max: &Report, mut_max: &Report, ceil_max: &Report) {
    r.info(
        "1",
        "ceiling: noop answering the mutate patch, c=32 (req/s)",
        format!("{:.0}", ceil_max.rps),
    );
    r.info(
        "1",
        "ceiling / noop throughput (the best any handler could do)",
        format!("{:.2}x", ceil_max.rps / noop_max.rps.max(1e-9)),
    );
    r.info(
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
    ] = [noop_max, ceil_max, mut_max].map(cpu);
    r.info(
        "1",
        "CPU per request at max throughput, webhook: noop / ceiling / mutate (µs)",
        format!("{noop_server:.1} / {ceil_server:.1} / {mut_server:.1}"),
    );
    r.info(
        "1",
        "CPU per request at max throughput, load generator: noop / ceiling / mutate (µs)",
        format!("{noop_gen:.1} / {ceil_gen:.1} / {mut_gen:.1}"),
    );
}

/// Scenario 3's throughput, latency and answer size rows.
fn report_large(r: &mut Results, big_max: &Report, big_rate: &Report, seed_max: &Report, lr: f64) {
    r.info(
        "3",
        "large: max throughput, c=32 (req/s)",
        format!("{:.0}", big_max.rps),
    );
    r.info(
        "3",
        "large: p50 / p99 at max throughput (ms)",
        p50_p99(&big_max.latency_ms, 2),
    );
    r.info(
        "3",
        &format!("large: p50 / p99 at {lr:.0} req/s (ms)"),
        p50_p99(&big_rate.latency_ms, 2),
    );
    r.info(
        "3",
        "large: throughput vs seed (x)",
        format!("{:.3}x", big_max.rps / seed_max.rps.max(1e-9)),
    );
    r.info(
        "3",
        "large: mean answer size (bytes)",
        format!("{:.0}", big_max.response_bytes_mean),
    );
}
