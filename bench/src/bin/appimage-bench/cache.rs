//! Scenarios 2 and 4: the webhook's AppImage cache with `--appimages` copies of the seed.
//! Scenario 2: sync time, memory, and latency over every name against one name; scenario 4:
//! the burst of first requests for `--cold` AppImages, against the same burst warm.

use std::time::{Duration, Instant};

use appimage::resource::AppImage;
use appimage_bench::fixtures;
use appimage_bench::harness::{Memory, Webhook};
use appimage_bench::loadgen::Report;
use serde_json::{Value, json};

use crate::bench::{Bench, SEED, log};
use crate::load::{Load, averaged};
use crate::results::{Results, mib, p50_p99, verdict};

/// The copies are `COPY_PREFIX-0` ... `COPY_PREFIX-(n-1)`.
const COPY_PREFIX: &str = "bench-img";

/// The webhook's memory at each step of scenario 2.
struct Memories {
    synced: Memory,
    cached: Memory,
    after: Memory,
}

impl Bench {
    pub(crate) async fn cache(&mut self) -> anyhow::Result<()> {
        let n = self.args.appimages;
        let took = self.create_copies(n).await?;
        // A fresh webhook: its watch lists all of them before it is ready.
        let started = Instant::now();
        let hook = self.webhook("mutate-10k", false).await?;
        let sync = started.elapsed();
        let synced = hook.memory_kib()?;
        self.report_sync(n, sync, &synced);

        let cold = self.args.cold.min(n);
        let s4 = if self.want(4) {
            self.cold_burst(&hook, cold).await?
        } else {
            json!({})
        };
        self.results.detail("s4", s4);

        // Scenario 2: look every AppImage up once, then measure.
        let fill = Load::burst("s2 fill cache", COPY_PREFIX, n);
        let fill = self.load(&hook, fill).await?;
        let cached = hook.memory_kib()?;
        let (spread, single) = self.spread_and_single(&hook, n).await?;
        let after = hook.memory_kib()?;
        let memory = Memories {
            synced,
            cached,
            after,
        };
        let rate = self.args.rate;
        report_cache(&mut self.results, n, rate, &memory, &spread, &single);
        let errors = fill.errors + spread.errors + single.errors + spread.unsent + single.unsent;
        self.results
            .row("2", "errors", errors.to_string(), "0", verdict(errors == 0));
        self.results.detail(
            "s2",
            json!({
                "appimages": n, "create_s": took.as_secs_f64(), "sync_s": sync.as_secs_f64(),
                "memory_synced": memory.synced, "memory_cached": memory.cached,
                "memory_after": memory.after,
                "spread": spread.latency_ms, "single": single.latency_ms,
                "fill_rps": fill.rps,
            }),
        );
        Ok(())
    }

    /// `n` signed copies of the seed, 16 at a time; returns how long it took.
    async fn create_copies(&mut self, n: usize) -> anyhow::Result<Duration> {
        log(format!(
            "creating {n} AppImages (copies of the seed, signed)"
        ));
        let base = fixtures::seed(&self.paths.root, SEED)?;
        let images: Vec<AppImage> = (0..n)
            .map(|i| {
                let mut img = base.clone();
                img.metadata.name = Some(format!("{COPY_PREFIX}-{i}"));
                self.signed(img)
            })
            .collect();
        let took = self.create_appimages(images, 16).await?;
        self.results.info(
            "2",
            &format!("create {n} AppImages (kube-rs, 16 at a time)"),
            format!("{:.1} s", took.as_secs_f64()),
        );
        Ok(took)
    }

    fn report_sync(&mut self, n: usize, sync: Duration, synced: &Memory) {
        self.results.info(
            "2",
            &format!("webhook start to ready with {n} AppImages"),
            format!("{:.2} s", sync.as_secs_f64()),
        );
        self.results.info(
            "2",
            "RSS after sync, nothing looked up yet",
            mib(synced.rss_kib),
        );
    }

    /// Scenario 4: the first request for each of `cold` AppImages, as fast as possible, then
    /// the same burst again; returns its details.
    async fn cold_burst(&mut self, hook: &Webhook, cold: usize) -> anyhow::Result<Value> {
        let c = self
            .load(hook, Load::burst("s4 cold burst", COPY_PREFIX, cold))
            .await?;
        let warm = Load::burst("s4 same burst, warm", COPY_PREFIX, cold);
        let warm = self.load(hook, warm).await?;
        let quantiles = |r: &Report| {
            let l = &r.latency_ms;
            format!("{:.2}/{:.2}/{:.2}/{:.2}", l.p50, l.p90, l.p99, l.max)
        };
        let r = &mut self.results;
        r.info(
            "4",
            &format!("cold burst: {cold} first requests, c=32, p50/p90/p99/max (ms)"),
            quantiles(&c),
        );
        r.info(
            "4",
            "same burst again, warm: p50/p90/p99/max (ms)",
            quantiles(&warm),
        );
        r.info(
            "4",
            "cold vs warm burst: req/s",
            format!("{:.0} vs {:.0}", c.rps, warm.rps),
        );
        let errors = c.errors + warm.errors;
        r.row("4", "errors", errors.to_string(), "0", verdict(errors == 0));
        Ok(json!({"cold": c, "warm": warm}))
    }

    /// The fixed rate over all `n` names and over one name, A B B A (machine noise, e.g. other
    /// builds on the two cores, hits both alike); returns the means of each.
    async fn spread_and_single(
        &mut self,
        hook: &Webhook,
        n: usize,
    ) -> anyhow::Result<(Report, Report)> {
        let (w, rate) = (self.args.warmup, self.args.rate);
        let one_name = format!("{COPY_PREFIX}-0");
        let mut spread_runs = Vec::new();
        let mut single_runs = Vec::new();
        for (round, all_names) in [(1, true), (1, false), (2, false), (2, true)] {
            if all_names {
                let label = format!("s2 @rate over all names #{round}");
                let run = Load::max(&label, "patched", COPY_PREFIX, w).over(n);
                spread_runs.push(self.load(hook, run.at(rate)).await?);
            } else {
                let label = format!("s2 @rate over one name #{round}");
                let run = Load::max(&label, "patched", &one_name, w);
                single_runs.push(self.load(hook, run.at(rate)).await?);
            }
        }
        Ok((averaged(&spread_runs), averaged(&single_runs)))
    }
}

/// Scenario 2's memory and latency rows.
fn report_cache(
    r: &mut Results,
    n: usize,
    rate: f64,
    memory: &Memories,
    spread: &Report,
    single: &Report,
) {
    let (cached, after) = (&memory.cached, &memory.after);
    r.row(
        "2",
        &format!("RSS with {n} AppImages cached"),
        mib(cached.rss_kib),
        "<= 30 MiB",
        verdict(cached.rss_kib <= 30 * 1024),
    );
    r.info(
        "2",
        "RSS / peak RSS after the load runs",
        format!("{} / {}", mib(after.rss_kib), mib(after.peak_rss_kib)),
    );
    let (spread, single) = (&spread.latency_ms, &single.latency_ms);
    r.info(
        "2",
        &format!("p50 / p99 at {rate:.0} req/s over {n} names (ms)"),
        p50_p99(spread, 3),
    );
    r.info(
        "2",
        &format!("p50 / p99 at {rate:.0} req/s over 1 name (ms)"),
        p50_p99(single, 3),
    );
    let p50_ratio = spread.p50 / single.p50.max(1e-9);
    let p99_ratio = spread.p99 / single.p99.max(1e-9);
    r.row(
        "2",
        &format!("{n} names vs 1 name: p50 ratio"),
        format!("{p50_ratio:.2}x"),
        "~1x (<= 1.25x)",
        verdict(p50_ratio <= 1.25),
    );
    r.info(
        "2",
        &format!("{n} names vs 1 name: p99 ratio"),
        format!("{p99_ratio:.2}x"),
    );
}
