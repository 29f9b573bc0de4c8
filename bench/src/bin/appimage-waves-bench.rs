//! Progressive-rollout benchmark (issue 28, BENCHMARKS.md): N Deployments (one Pod each) of one
//! AppImage in 4 namespaces, on kube-controlplane with kwok nodes and appimage-webhook as a
//! real process, in one run:
//!
//! 1. all at once: no rollout policy; the AppImage is updated and the time is taken until every
//!    Deployment runs the new revision with its Pod Ready (today's Auto rollout);
//! 2. in 4 waves (one per namespace, readiness gates only): the same AppImage goes back to
//!    the seed's spec; per wave, when it started and when its last workload was Ready; the
//!    gates' own cost is the time between a wave's last Ready workload and the next wave's
//!    start (or the end), summed;
//! 3. abort: a revision whose Pods never become Ready (kwok's env hook); the first wave's
//!    deadline fails; the time from the failed gate to every moved workload back on the old
//!    revision and Ready, against the time the forward move of those workloads took.
//!
//! ```text
//! appimage-waves-bench --controlplane target/controlplane/kube-controlplane \
//!     --webhook target/release/appimage-webhook --workloads 1000 --nodes 12
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use appimage::manifest;
use appimage::progressive::AppImageRollout;
use appimage::resource::AppImage;
use appimage::revision::REVISION_HASH;
use appimage::signature::payload;
use appimage::workload::{self, DeployOptions, Kind, Workload, revision_hash};
use appimage_bench::cluster::{
    install_crd, namespace, poll, register, start_controlplane, start_webhook,
};
use appimage_bench::fixtures;
use appimage_bench::harness::{cpu_seconds, kube_client, memory_kib};
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::json;

#[derive(Parser)]
#[command(about = "A rollout in 4 gated waves against all at once, and an abort (BENCHMARKS.md)")]
struct Args {
    #[arg(long)]
    controlplane: PathBuf,
    /// appimage-webhook binary (a release build).
    #[arg(long)]
    webhook: PathBuf,
    /// Deployments in all (a quarter per namespace and wave).
    #[arg(long, default_value_t = 1000)]
    workloads: usize,
    /// kwok nodes (each takes 110 Pods).
    #[arg(long, default_value_t = 12)]
    nodes: usize,
    #[arg(long, default_value = "30m", value_parser = appimage::duration::parse)]
    limit: Duration,
    #[arg(long)]
    dir: Option<PathBuf>,
}

const IMAGE: &str = "waves-seed";
const UPDATE_FILE: &str = "examples/secretflow-image-update.yaml";
const MANAGER: &str = "appimage-waves-bench";
const WAVES: usize = 4;

fn ns(i: usize) -> String {
    format!("bench-wave-{i}")
}

/// What a watch of every Deployment last saw: its template's revision hash, and whether its
/// one Pod of that template is Ready; with when it last changed.
type Seen = Arc<Mutex<BTreeMap<(String, String), (String, bool, Instant)>>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tmp = tempfile::tempdir()?;
    let work = args.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&work)?;
    let root = appimage_e2e::repo_root();
    let (_cp, kubeconfig) =
        start_controlplane(&args.controlplane, &work.join("cp"), args.nodes, args.nodes)?;
    let client = kube_client(&kubeconfig).await?;
    for crd in [
        "appimages.kuscia.secretflow",
        "appimagerevisions.appimage.kuscia.secretflow",
        "appimagerollouts.appimage.kuscia.secretflow",
    ] {
        install_crd(&client, &root, crd).await?;
    }
    let (hook, tls, signer) = start_webhook(&args.webhook, &work, &kubeconfig).await?;
    register(&client, "appimage-waves-bench", &hook, &tls).await?;
    let sign = |mut img: AppImage| {
        img.spec.image.sign = Some(signer.sign(&payload(&img)));
        img
    };
    let seed = sign(fixtures::seed(&root, IMAGE)?);
    let update = sign(load_update(&root, false)?);
    let bad = sign(load_update(&root, true)?);
    let images = Api::<AppImage>::all(client.clone());
    let apply = PatchParams::apply(MANAGER).force();
    images.patch(IMAGE, &apply, &Patch::Apply(&seed)).await?;
    let seen: Seen = Arc::default();
    tokio::spawn(watch(client.clone(), seen.clone()));
    for i in 0..WAVES {
        namespace(&client, &ns(i)).await?;
    }
    create(&client, &seed, args.workloads).await?;
    let n = args.workloads;
    let h = |img: &AppImage| revision_hash(&img.spec);
    settle(&seen, &h(&seed), n, args.limit).await?;
    eprintln!("{n} Deployments Ready on the seed");
    let rss_watched = memory_kib(hook.pid())?;

    // 1. All at once.
    let cpu = cpu_seconds(hook.pid())?;
    let t = Instant::now();
    images.patch(IMAGE, &apply, &Patch::Apply(&update)).await?;
    settle(&seen, &h(&update), n, args.limit).await?;
    let all = t.elapsed();
    let all_cpu = cpu_seconds(hook.pid())? - cpu;
    eprintln!("all at once: {all:.1?}");

    // 2. In 4 waves, back to the seed's spec.
    let waves: Vec<_> = (0..WAVES)
        .map(|i| json!({"name": format!("w{i}"), "namespaces": [ns(i)]}))
        .collect();
    let mut waves = serde_json::Value::from(waves);
    waves[0]["gate"] = json!({"progressDeadlineSeconds": 30});
    let policy = json!({"apiVersion": "appimage.kuscia.secretflow/v1alpha1", "kind": "AppImageRollout",
        "metadata": {"name": IMAGE}, "spec": {"waves": waves}});
    let rollouts = Api::<AppImageRollout>::all(client.clone());
    rollouts
        .patch(IMAGE, &apply, &Patch::Apply(&policy))
        .await?;
    phase(&rollouts, "Succeeded", args.limit).await?;
    let starts = Arc::new(Mutex::new(BTreeMap::new()));
    tokio::spawn(wave_starts(rollouts.clone(), starts.clone()));
    let cpu = cpu_seconds(hook.pid())?;
    let load = loadavg();
    let t = Instant::now();
    images.patch(IMAGE, &apply, &Patch::Apply(&seed)).await?;
    settle(&seen, &h(&seed), n, args.limit).await?;
    phase(&rollouts, "Succeeded", args.limit).await?;
    let waved = t.elapsed();
    let waves_cpu = cpu_seconds(hook.pid())? - cpu;
    let rss_peak = memory_kib(hook.pid())?;
    report_waves(&seen, &starts, t, waved, all, &h(&seed));

    // 3. Abort: the first wave never becomes Ready.
    let t = Instant::now();
    images.patch(IMAGE, &apply, &Patch::Apply(&bad)).await?;
    let moved = moved_all(&seen, &ns(0), &h(&bad), n / WAVES, args.limit).await?;
    let forward = moved - t;
    phase(&rollouts, "Aborting", args.limit).await.ok();
    let failed = Instant::now();
    settle(&seen, &h(&seed), n, args.limit).await?;
    let back = failed.elapsed();
    phase(&rollouts, "Aborted", args.limit).await?;
    println!(
        "abort: the first wave ({} workloads) moved forward in {forward:.1?}; from the failed gate to all of them back on the old revision and Ready: {back:.1?} ({:.2}x the forward move; target <= 2x)",
        n / WAVES,
        back.as_secs_f64() / forward.as_secs_f64()
    );
    println!(
        "webhook: RSS {:.1} MiB with {n} workloads watched, peak {:.1} MiB; CPU {all_cpu:.1} s all at once, {waves_cpu:.1} s in waves; load before the waves {load}",
        rss_watched.rss_kib as f64 / 1024.0,
        rss_peak.peak_rss_kib as f64 / 1024.0,
    );
    Ok(())
}

fn load_update(root: &std::path::Path, never_ready: bool) -> anyhow::Result<AppImage> {
    let text = std::fs::read_to_string(root.join(UPDATE_FILE))?;
    let mut img = manifest::appimages(UPDATE_FILE, &text)?
        .into_iter()
        .next()
        .context("no AppImage")?;
    img.metadata.name = Some(IMAGE.into());
    if never_ready {
        let mut v = serde_json::to_value(&img)?;
        v["spec"]["deployTemplates"][0]["spec"]["containers"][0]["env"] =
            json!([{"name": "APPIMAGE_TEST_HOOK", "value": "never-ready"}]);
        img = serde_json::from_value(v)?;
    }
    Ok(img)
}

/// `n` Auto Deployments of one Pod, a quarter per namespace, as `deploy` makes them.
async fn create(client: &Client, image: &AppImage, n: usize) -> anyhow::Result<()> {
    let params = PatchParams::apply(workload::MANAGER).force();
    let writes = (0..n).map(|i| {
        let (client, params) = (client.clone(), params.clone());
        async move {
            let opts = DeployOptions {
                kind: Kind::Deployment,
                name: Some(format!("app-{i:04}")),
                namespace: ns(i % WAVES),
                replicas: Some(1),
                ..Default::default()
            };
            let Workload::Deployment(d) = workload::build(image, &opts)? else {
                bail!("expected a Deployment");
            };
            let api = Api::<Deployment>::namespaced(client, &ns(i % WAVES));
            api.patch(&d.name_any(), &params, &Patch::Apply(&*d))
                .await?;
            Ok(())
        }
    });
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(writes)
        .buffer_unordered(32)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Keep `seen` current from a watch of every Deployment.
async fn watch(client: Client, seen: Seen) {
    let api = Api::<Deployment>::all(client);
    let mut events = watcher(api, watcher::Config::default()).boxed();
    while let Some(event) = events.next().await {
        let (watcher::Event::Apply(d) | watcher::Event::InitApply(d)) = (match event {
            Ok(e) => e,
            Err(_) => continue,
        }) else {
            continue;
        };
        let hash = d
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(REVISION_HASH))
            .cloned()
            .unwrap_or_default();
        let s = d.status.clone().unwrap_or_default();
        let current = s.observed_generation == d.metadata.generation;
        let ready = current
            && s.updated_replicas == Some(1)
            && s.ready_replicas == Some(1)
            && s.replicas == Some(1);
        let key = (d.namespace().unwrap_or_default(), d.name_any());
        let mut map = seen.lock().unwrap_or_else(|p| p.into_inner());
        let changed = map
            .get(&key)
            .is_none_or(|(h, r, _)| *h != hash || *r != ready);
        if changed {
            map.insert(key, (hash, ready, Instant::now()));
        }
    }
}

/// Until all `n` Deployments run `hash` with their Pod Ready.
async fn settle(seen: &Seen, hash: &str, n: usize, limit: Duration) -> anyhow::Result<()> {
    poll(limit, "every Deployment Ready on the revision", || async {
        let map = seen.lock().unwrap_or_else(|p| p.into_inner());
        Ok(map.values().filter(|(h, r, _)| h == hash && *r).count() == n)
    })
    .await
}

/// When all `n` Deployments of `namespace` were first seen naming `hash`.
async fn moved_all(
    seen: &Seen,
    namespace: &str,
    hash: &str,
    n: usize,
    limit: Duration,
) -> anyhow::Result<Instant> {
    let mut at = None;
    poll(limit, "the first wave moved", || {
        let map = seen.lock().unwrap_or_else(|p| p.into_inner());
        let of: Vec<Instant> = map
            .iter()
            .filter(|((ns, _), (h, _, _))| ns == namespace && h == hash)
            .map(|(_, (_, _, t))| *t)
            .collect();
        if of.len() == n {
            at = of.into_iter().max();
        }
        std::future::ready(Ok(at.is_some()))
    })
    .await?;
    at.context("moved")
}

async fn phase(api: &Api<AppImageRollout>, want: &str, limit: Duration) -> anyhow::Result<()> {
    poll(limit, &format!("rollout {want}"), || async {
        let r = api.get(IMAGE).await?;
        Ok(r.status
            .and_then(|s| s.phase)
            .is_some_and(|p| p.as_str() == want))
    })
    .await
}

/// When each wave index was first seen in the rollout's status.
async fn wave_starts(api: Api<AppImageRollout>, starts: Arc<Mutex<BTreeMap<i64, Instant>>>) {
    let mut events = watcher(api, watcher::Config::default()).boxed();
    while let Some(Ok(event)) = events.next().await {
        if let watcher::Event::Apply(r) | watcher::Event::InitApply(r) = event {
            let wave = r.status.map_or(-1, |s| s.wave);
            starts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(wave)
                .or_insert_with(Instant::now);
        }
    }
}

/// Per wave: when it started and when its last workload was Ready on `hash`; the gates' cost.
fn report_waves(
    seen: &Seen,
    starts: &Arc<Mutex<BTreeMap<i64, Instant>>>,
    t0: Instant,
    total: Duration,
    all: Duration,
    hash: &str,
) {
    let map = seen.lock().unwrap_or_else(|p| p.into_inner());
    let starts = starts.lock().unwrap_or_else(|p| p.into_inner());
    let mut gates = Duration::ZERO;
    for i in 0..WAVES {
        let last = map
            .iter()
            .filter(|((n, _), (h, r, _))| *n == ns(i) && h == hash && *r)
            .map(|(_, (_, _, t))| *t)
            .max();
        let start = starts.get(&(i as i64)).copied().unwrap_or(t0).max(t0);
        let next = starts.get(&(i as i64 + 1)).copied().unwrap_or(t0 + total);
        let (Some(last), s) = (last, start) else {
            continue;
        };
        let gate = next.saturating_duration_since(last);
        gates += gate;
        println!(
            "wave {i}: started at {:.1?}, last workload Ready at {:.1?}, next wave {:.1?} later",
            s - t0,
            last - t0,
            gate
        );
    }
    let ready = total.saturating_sub(gates);
    println!(
        "in waves: {total:.1?} in all (all at once: {all:.1?}; {:.2}x); the gates' own cost {gates:.1?} = {:.1}% of the {ready:.1?} the workloads took to become Ready (target <= 10%)",
        total.as_secs_f64() / all.as_secs_f64(),
        100.0 * gates.as_secs_f64() / ready.as_secs_f64().max(0.001)
    );
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_default()
}
