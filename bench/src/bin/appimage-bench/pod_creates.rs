//! Scenario 5: Pod create latency through the apiserver, with the webhook, without any, with a
//! `--noop` webhook, the injected Pod created directly, the ceiling (the injected Pod through
//! the `--noop` webhook), and the webhook's patch replayed by a `--noop` webhook (the
//! apiserver's work on the patch without our handler); sequential and at concurrency 4.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use appimage::labels;
use appimage_bench::harness::Webhook;
use appimage_bench::review;
use appimage_bench::util::{mean, quantile};
use appimage_e2e::webhook::pod_registration;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::{Value, json};

use crate::bench::{Bench, SEED, log};
use crate::results::{Results, ms, verdict};

const POD_NAMESPACE: &str = "bench-pods";
const NOOP_NAMESPACE: &str = "bench-pods-noop";
const REPLAY_NAMESPACE: &str = "bench-pods-replay";
const NS_LABEL: &str = "appimage-bench";

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

/// The mean and p99 (ms) of each variant's creates, in the order of [`variants`].
struct Latencies {
    mean: [f64; VARIANTS],
    p99: [f64; VARIANTS],
}

const VARIANTS: usize = 6;

impl Bench {
    pub(crate) async fn pod_creates(&mut self) -> anyhow::Result<()> {
        let hook = self.webhook("mutate-pods", false).await?;
        let noop = self.webhook("noop-pods", true).await?;
        self.register(POD_NAMESPACE, "on", &hook.url("/mutate"))
            .await?;
        self.register(NOOP_NAMESPACE, "noop", &noop.url("/mutate"))
            .await?;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), POD_NAMESPACE);
        let noop_pods: Api<Pod> = Api::namespaced(self.client.clone(), NOOP_NAMESPACE);
        wait_for_webhooks(&pods, &noop_pods, &hook, &noop).await?;
        // The patch our webhook gives the Pod of REPLAY_NAMESPACE, replayed by a noop webhook:
        // the apiserver's work on that patch, without our handler.
        let review = review::pod_review(0, &serde_json::to_value(pod(REPLAY_NAMESPACE, true))?);
        let replay = self.replaying("replay-pods", &hook, review).await?;
        self.register(REPLAY_NAMESPACE, "replay", &replay.url("/mutate"))
            .await?;
        let replay_pods: Api<Pod> = Api::namespaced(self.client.clone(), REPLAY_NAMESPACE);
        wait_for_injection(&replay_pods, REPLAY_NAMESPACE).await?;
        let variants = variants(&pods, &noop_pods, &replay_pods).await?;
        // Warm up every path (connections, caches), not recorded.
        creates(&variants, "warm", 20, 1).await?;
        let mut summary = serde_json::Map::new();
        for concurrency in [1usize, 4] {
            let n = self.args.pods;
            let t = creates(&variants, &format!("c{concurrency}"), n, concurrency).await?;
            let details = report_creates(&mut self.results, n, concurrency, &t);
            summary.insert(format!("concurrency_{concurrency}"), details);
        }
        self.results.detail("s5", Value::Object(summary));
        self.unregister().await;
        Ok(())
    }

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

    /// Deletes what [`Self::register`] made; best effort.
    async fn unregister(&self) {
        let registrations: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        for value in ["on", "noop", "replay"] {
            let _ = registrations
                .delete(&format!("appimage-bench-{value}"), &DeleteParams::default())
                .await;
        }
        for ns in [POD_NAMESPACE, NOOP_NAMESPACE, REPLAY_NAMESPACE] {
            let _ = namespaces.delete(ns, &DeleteParams::default()).await;
        }
    }
}

/// Wait until the apiserver calls both webhooks (its registration cache lags a little).
async fn wait_for_webhooks(
    pods: &Api<Pod>,
    noop_pods: &Api<Pod>,
    hook: &Webhook,
    noop: &Webhook,
) -> anyhow::Result<()> {
    let dry = dry_run();
    let started = Instant::now();
    loop {
        let probe = pods.create(&dry, &pod(POD_NAMESPACE, true)).await;
        let live = probe.as_ref().is_ok_and(injected);
        let noop_probe = noop_pods.create(&dry, &pod(NOOP_NAMESPACE, true)).await;
        let noop_live = noop_probe.is_ok() && noop.log_tail(5).contains(NOOP_NAMESPACE);
        if live && noop_live {
            return Ok(());
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
}

/// Wait until a dry-run create in `namespace` comes back injected.
async fn wait_for_injection(pods: &Api<Pod>, namespace: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let probe = pods.create(&dry_run(), &pod(namespace, true)).await;
        if probe.as_ref().is_ok_and(injected) {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!(
                "namespace {namespace}: Pods not injected after 30 s: {:?}",
                probe.err()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn dry_run() -> PostParams {
    PostParams {
        dry_run: true,
        ..PostParams::default()
    }
}

/// The six ways a Pod is created: without a webhook, through the noop webhook, pre-injected,
/// with the webhook, the ceiling, and with the webhook's patch replayed.
async fn variants(
    pods: &Api<Pod>,
    noop_pods: &Api<Pod>,
    replay_pods: &Api<Pod>,
) -> anyhow::Result<[Variant; VARIANTS]> {
    let pre = preinjected(pods).await?;
    // The ceiling: that same final Pod, labelled, through the noop webhook. It pays for the
    // webhook round trip and the larger object, not for our handler.
    let mut ceiling = pre.clone();
    ceiling.metadata.namespace = Some(NOOP_NAMESPACE.into());
    ceiling
        .metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(labels::APP_IMAGE.into(), SEED.into());
    let variant = |kind, api: &Api<Pod>, pod, injected| Variant {
        kind,
        api: api.clone(),
        pod,
        injected,
    };
    Ok([
        variant("without", pods, pod(POD_NAMESPACE, false), false),
        variant("noop", noop_pods, pod(NOOP_NAMESPACE, true), false),
        variant("preinjected", pods, pre, false),
        variant("with", pods, pod(POD_NAMESPACE, true), true),
        variant("ceiling", noop_pods, ceiling, true),
        variant("replay", replay_pods, pod(REPLAY_NAMESPACE, true), true),
    ])
}

/// The Pod the webhook stores, to be created directly (label removed, so the webhook is not
/// called): separates the cost of the admission call from that of a larger object.
async fn preinjected(pods: &Api<Pod>) -> anyhow::Result<Pod> {
    let mut pre = pods.create(&dry_run(), &pod(POD_NAMESPACE, true)).await?;
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
    Ok(pre)
}

/// A Pod with one container, as a user would write it; `labelled` asks for the seed AppImage.
#[allow(clippy::expect_used, reason = "a constant Pod shape")]
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

/// Create every variant `n` times, interleaved (so drift of the apiserver and etcd affects all
/// alike; the order rotates), by `concurrency` workers; time each create.
async fn creates(
    variants: &[Variant],
    tag: &str,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<CreateTimes> {
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let variants: Arc<Vec<Variant>> = Arc::new(variants.to_vec());
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (next, tag, variants) = (next.clone(), tag.to_string(), variants.clone());
        workers.push(tokio::spawn(create_worker(variants, next, tag, n)));
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

/// One worker of [`creates`]: takes round `i` from `next` until `n`, and creates every variant
/// once in it. Returns its times per variant and its failures.
async fn create_worker(
    variants: Arc<Vec<Variant>>,
    next: Arc<AtomicUsize>,
    tag: String,
    n: usize,
) -> (Vec<Vec<f64>>, usize) {
    let mut times = vec![Vec::new(); variants.len()];
    let mut failures = 0;
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
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
}

/// The rows of one concurrency of [`Bench::pod_creates`]; returns its details.
fn report_creates(r: &mut Results, n: usize, concurrency: usize, t: &CreateTimes) -> Value {
    let l = Latencies {
        mean: std::array::from_fn(|k| mean(&t.times[k])),
        p99: std::array::from_fn(|k| quantile(&t.times[k], 0.99)),
    };
    let [pm, nm, prm, hm, ..] = l.mean;
    let [p99p, p99n, p99pre, p99h, ..] = l.p99;
    let how = if concurrency == 1 {
        "sequential".to_string()
    } else {
        format!("concurrency {concurrency}")
    };
    r.info(
        "5",
        &format!("{n}x5 creates, {how}: mean without / noop hook / pre-injected / with (ms)"),
        format!("{pm:.2} / {nm:.2} / {prm:.2} / {hm:.2}"),
    );
    r.info(
        "5",
        &format!("{n}x5 creates, {how}: p99 without / noop hook / pre-injected / with (ms)"),
        format!("{p99p:.2} / {p99n:.2} / {p99pre:.2} / {p99h:.2}"),
    );
    for (what, with, without) in [("mean", hm, pm), ("p99", p99h, p99p)] {
        r.row(
            "5",
            &format!("{how}: {what} create latency, with / without webhook"),
            format!("{:.2}x", with / without.max(1e-9)),
            "<= 1.1x",
            verdict(with / without.max(1e-9) <= 1.1),
        );
    }
    r.info(
        "5",
        &format!("{how}: mean, noop webhook / without"),
        format!("{:.2}x", nm / pm.max(1e-9)),
    );
    report_ceiling(r, n, &how, &l);
    r.row(
        "5",
        &format!("{how}: Pods not injected / failed creates"),
        t.failures.to_string(),
        "0",
        verdict(t.failures == 0),
    );
    create_details(t, &l)
}

/// The rows that set the webhook's creates against the ceiling's.
fn report_ceiling(r: &mut Results, n: usize, how: &str, l: &Latencies) {
    let (hm, cm, p99h, p99c) = (l.mean[3], l.mean[4], l.p99[3], l.p99[4]);
    r.info(
        "5",
        &format!("{n} creates, {how}: mean / p99 of the ceiling (final Pod, noop hook) (ms)"),
        format!("{cm:.2} / {p99c:.2}"),
    );
    for (what, with, ceiling) in [("mean", hm, cm), ("p99", p99h, p99c)] {
        let ratio = with / ceiling.max(1e-9);
        r.row(
            "5",
            &format!("{how}: {what} create latency, with / ceiling"),
            format!("{ratio:.2}x"),
            "<= 1.1x",
            verdict(ratio <= 1.1),
        );
    }
    // Where the difference lies: the replayed patch costs the apiserver what ours does, with
    // no handler behind it.
    let rm = l.mean[5];
    r.info(
        "5",
        &format!("{how}: mean of the replayed patch (noop hook answering our patch) (ms)"),
        format!("{rm:.2}"),
    );
    r.info(
        "5",
        &format!("{how}: mean, with / replayed patch (our handler's share)"),
        format!("{:.2}x", hm / rm.max(1e-9)),
    );
    r.info(
        "5",
        &format!("{how}: mean, replayed patch / ceiling (the apiserver's work on the patch)"),
        format!("{:.2}x", rm / cm.max(1e-9)),
    );
}

/// The JSON details of one concurrency.
fn create_details(t: &CreateTimes, l: &Latencies) -> Value {
    let stats = |v: &[f64]| {
        json!({"mean": mean(v), "p50": quantile(v, 0.5), "p99": quantile(v, 0.99),
               "max": quantile(v, 1.0), "n": v.len()})
    };
    let [plain, noop, pre, hooked, ceil, replay] = [0, 1, 2, 3, 4, 5].map(|k| stats(&t.times[k]));
    let [pm, nm, _, hm, cm, rm] = l.mean;
    let [p99p, _, _, p99h, p99c, _] = l.p99;
    json!({
        "without_ms": plain, "noop_webhook_ms": noop,
        "preinjected_ms": pre, "with_ms": hooked,
        "ceiling_ms": ceil, "ceiling_mean_ratio": hm / cm.max(1e-9),
        "replayed_patch_ms": replay, "replay_mean_ratio": hm / rm.max(1e-9),
        "replay_over_ceiling_mean_ratio": rm / cm.max(1e-9),
        "ceiling_p99_ratio": p99h / p99c.max(1e-9),
        "mean_ratio": hm / pm.max(1e-9), "p99_ratio": p99h / p99p.max(1e-9),
        "noop_mean_ratio": nm / pm.max(1e-9),
        "wall_s": t.wall.as_secs_f64(),
    })
}
