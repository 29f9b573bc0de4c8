//! Rollout benchmark (issue 17, BENCHMARKS.md): one AppImage referenced by N Deployments
//! (built by the core's workload builder, as `kubectl appimage deploy` builds them) on a
//! kube-controlplane with kwok nodes and appimage-webhook running as a real process.
//!
//! - Controller arm: N Auto Deployments; the AppImage is updated (the seed's update,
//!   examples/secretflow-image-update.yaml, signed) and the time is taken until a watch has seen
//!   every pod template pointed at the new revision by the webhook's rollout controller.
//! - Plain arm(s): N more Deployments the controller does not follow (no AppImage label on the
//!   Deployment, Manual policy), given the same template patch (server-side apply) by this
//!   process at a chosen concurrency, timed by the same watch.
//!
//! Reports both times and their ratio (target <= 1.2x), the webhook's RSS with the workloads
//! watched, its CPU time, the machine's load average and the apiserver's requests per arm.
//!
//!     appimage-rollout-bench --controlplane target/controlplane/kube-controlplane \
//!         --webhook target/release/appimage-webhook --workloads 1000

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use appimage::labels;
use appimage::manifest;
use appimage::resource::AppImage;
use appimage::revision::{AppImageRevision, LATEST, REVISION, REVISION_HASH};
use appimage::signature::payload;
use appimage::workload::{self, DeployOptions, Kind, UpdatePolicy, Workload};
use appimage_bench::cluster::{
    install_crd, namespace, poll, quiet, rate, register, requests, start_controlplane,
    start_webhook,
};
use appimage_bench::fixtures;
use appimage_bench::harness::{Webhook, cpu_seconds, kube_client, memory_kib};
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(
    about = "Rollout controller vs. a plain client patching the same pod templates (BENCHMARKS.md)"
)]
struct Args {
    /// kube-controlplane binary (scripts/controlplane.sh build prints it).
    #[arg(long)]
    controlplane: PathBuf,
    /// appimage-webhook binary (a release build).
    #[arg(long)]
    webhook: PathBuf,
    /// Deployments per arm.
    #[arg(long, default_value_t = 1000)]
    workloads: usize,
    /// Replicas of each Deployment (0: templates only, no Pods).
    #[arg(long, default_value_t = 0)]
    replicas: i32,
    /// kwok nodes of the control plane.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Writes in flight at once for each plain arm, one arm per value (e.g. 32,1).
    #[arg(long, default_value = "32", value_delimiter = ',')]
    plain_concurrency: Vec<usize>,
    /// Give up on a wait after this long.
    #[arg(long, default_value = "30m", value_parser = appimage::duration::parse)]
    limit: Duration,
    /// Work directory (kept); default: a temporary one.
    #[arg(long)]
    dir: Option<PathBuf>,
}

const IMAGE: &str = "rollout-seed";
const UPDATE_FILE: &str = "examples/secretflow-image-update.yaml";
const FIELD_MANAGER: &str = "appimage-rollout-bench";
const AUTO_NS: &str = "bench-auto";

/// What one arm measured.
struct Arm {
    name: String,
    /// From the first write to the watch seeing every template updated.
    time: Duration,
    /// From the first write to the last write answered (plain arms only).
    acked: Option<Duration>,
    requests: BTreeMap<String, f64>,
    webhook_cpu: f64,
    load: (String, String),
}

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
    // The AppImage CRD before the webhook, whose readiness waits for its AppImage watch.
    install_crd(&client, &root, "appimages.kuscia.secretflow").await?;
    install_crd(
        &client,
        &root,
        "appimagerevisions.appimage.kuscia.secretflow",
    )
    .await?;
    let (hook, tls, signer) = start_webhook(&args.webhook, &work, &kubeconfig).await?;
    register(&client, "appimage-rollout-bench", &hook, &tls).await?;
    let mut image = fixtures::seed(&root, IMAGE)?;
    image.spec.image.sign = Some(signer.sign(&payload(&image)));
    let mut update = load_update(&root)?;
    update.spec.image.sign = Some(signer.sign(&payload(&update)));
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    let images = Api::<AppImage>::all(client.clone());
    images.patch(IMAGE, &apply, &Patch::Apply(&image)).await?;
    wait_revisions(&client, 1, args.limit).await?;
    let baseline = rate(&client).await?;
    let rss_empty = memory_kib(hook.pid())?;
    eprintln!(
        "idle: {baseline:.0} apiserver requests/s, webhook RSS {} KiB",
        rss_empty.rss_kib
    );

    let started = Instant::now();
    namespace(&client, AUTO_NS).await?;
    create(&client, &image, AUTO_NS, UpdatePolicy::Auto, &args).await?;
    for &c in &args.plain_concurrency {
        let ns = plain_ns(c);
        namespace(&client, &ns).await?;
        create(&client, &image, &ns, UpdatePolicy::Manual, &args).await?;
    }
    // The controller notes revision 1 on every Auto workload (and makes their Services).
    let auto = Api::<Deployment>::namespaced(client.clone(), AUTO_NS);
    let n = args.workloads;
    poll(
        args.limit,
        "revision 1 noted on every Auto workload",
        || async {
            let list = auto.list(&ListParams::default()).await?;
            let noted = list
                .items
                .iter()
                .filter(|d| d.annotations().get(LATEST).map(String::as_str) == Some("1"))
                .count();
            Ok(noted == n)
        },
    )
    .await?;
    let settled = quiet(&client, baseline, args.limit).await?;
    eprintln!(
        "{} workloads created and settled in {:.1?} (quiet after {settled:.1?})",
        n * (1 + args.plain_concurrency.len()),
        started.elapsed()
    );
    let rss_watched = memory_kib(hook.pid())?;

    let mut arms = Vec::new();
    let arm = measure(&client, &hook, AUTO_NS, n, "controller", || async {
        images.patch(IMAGE, &apply, &Patch::Apply(&update)).await?;
        Ok(None)
    })
    .await?;
    let rss_after = memory_kib(hook.pid())?;
    eprintln!("controller: {:.1?}", arm.time);
    arms.push(arm);
    let aftermath = quiet(&client, baseline, args.limit).await?;
    eprintln!("quiet again after {aftermath:.1?}");

    let target = rolled_to(&auto).await?;
    for &c in &args.plain_concurrency {
        let ns = plain_ns(c);
        let api = Api::<Deployment>::namespaced(client.clone(), &ns);
        let arm = measure(&client, &hook, &ns, n, &format!("plain c={c}"), || async {
            let t = Instant::now();
            patch_all(&api, &target, c).await?;
            Ok(Some(t.elapsed()))
        })
        .await?;
        eprintln!("{}: {:.1?}", arm.name, arm.time);
        arms.push(arm);
        quiet(&client, baseline, args.limit).await?;
    }
    let rss_end = memory_kib(hook.pid())?;
    report(
        &arms,
        n,
        &args,
        [rss_empty, rss_watched, rss_after, rss_end],
    );
    Ok(())
}

fn plain_ns(concurrency: usize) -> String {
    format!("bench-plain-c{concurrency}")
}

fn load_update(root: &Path) -> anyhow::Result<AppImage> {
    let text = std::fs::read_to_string(root.join(UPDATE_FILE))
        .with_context(|| format!("reading {UPDATE_FILE}"))?;
    let mut update = manifest::appimages(UPDATE_FILE, &text)?
        .into_iter()
        .next()
        .with_context(|| format!("{UPDATE_FILE} holds no AppImage"))?;
    update.metadata.name = Some(IMAGE.into());
    Ok(update)
}

/// Time one arm: `write` starts it; the arm ends when a watch of `ns` has seen all `n` pod
/// templates name a revision.
async fn measure<F, Fut>(
    client: &Client,
    hook: &Webhook,
    ns: &str,
    n: usize,
    name: &str,
    write: F,
) -> anyhow::Result<Arm>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<Duration>>>,
{
    let api = Api::<Deployment>::namespaced(client.clone(), ns);
    let (synced_tx, synced) = tokio::sync::oneshot::channel();
    let watch = tokio::spawn(observe(api, n, synced_tx));
    synced.await.context("the watch ended before it synced")?;
    let load_before = loadavg();
    let before = requests(client).await?;
    let cpu = cpu_seconds(hook.pid())?;
    let t = Instant::now();
    let acked = write().await?;
    let done = watch.await??;
    let time = done - t;
    let after = requests(client).await?;
    let delta = after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect();
    Ok(Arm {
        name: name.into(),
        time,
        acked,
        requests: delta,
        webhook_cpu: cpu_seconds(hook.pid())? - cpu,
        load: (load_before, loadavg()),
    })
}

/// When the watch has seen `n` Deployments whose pod template names a revision.
async fn observe(
    api: Api<Deployment>,
    n: usize,
    synced: tokio::sync::oneshot::Sender<()>,
) -> anyhow::Result<Instant> {
    let mut synced = Some(synced);
    let mut done = HashSet::new();
    let mut events = watcher(api, watcher::Config::default()).boxed();
    while let Some(event) = events.next().await {
        match event? {
            watcher::Event::Apply(d) | watcher::Event::InitApply(d) if names_revision(&d) => {
                done.insert(d.name_any());
            }
            watcher::Event::InitDone => {
                if let Some(tx) = synced.take() {
                    let _ = tx.send(());
                }
            }
            _ => {}
        }
        if synced.is_none() && done.len() == n {
            return Ok(Instant::now());
        }
    }
    bail!("the Deployment watch ended")
}

fn names_revision(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref())
        .is_some_and(|a| a.contains_key(REVISION))
}

/// The seed deployed `n` times into `ns` by the core's builder, server-side applied as
/// `kubectl appimage deploy` does. Manual ones are hidden from the webhook ([`hide`]).
async fn create(
    client: &Client,
    image: &AppImage,
    ns: &str,
    policy: UpdatePolicy,
    args: &Args,
) -> anyhow::Result<()> {
    let api = Api::<Deployment>::namespaced(client.clone(), ns);
    let params = PatchParams::apply(workload::MANAGER).force();
    let mut objects = Vec::new();
    for i in 0..args.workloads {
        let opts = DeployOptions {
            kind: Kind::Deployment,
            name: Some(format!("app-{i:04}")),
            namespace: ns.into(),
            replicas: Some(args.replicas),
            update_policy: policy,
            ..Default::default()
        };
        let Workload::Deployment(mut d) = workload::build(image, &opts)? else {
            bail!("expected a Deployment");
        };
        if policy == UpdatePolicy::Manual {
            hide(&mut d);
        }
        objects.push(d);
    }
    let writes = objects.iter().map(|d| {
        let (api, params) = (api.clone(), params.clone());
        async move {
            api.patch(&d.name_any(), &params, &Patch::Apply(d))
                .await
                .map(|_| ())
        }
    });
    let results: Vec<_> = futures::stream::iter(writes)
        .buffer_unordered(32)
        .collect()
        .await;
    results.into_iter().collect::<Result<(), _>>()?;
    Ok(())
}

/// Out of every watch of the webhook, so that it holds only the Auto workloads: no AppImage or
/// workload label on the Deployment (the rollout and Services controllers watch those) and no
/// AppImage label on its pod template (else its ReplicaSets would carry it; with no replicas
/// no Pod needs it).
fn hide(d: &mut Deployment) {
    d.labels_mut().remove(labels::APP_IMAGE);
    d.labels_mut().remove(workload::WORKLOAD);
    if let Some(meta) = d.spec.as_mut().and_then(|s| s.template.metadata.as_mut()) {
        meta.labels
            .get_or_insert_default()
            .remove(labels::APP_IMAGE);
    }
}

/// The fields the controller wrote on an Auto workload: the revision noted, the template's
/// revision annotations and the containers' image.
struct Target {
    latest: String,
    revision: String,
    hash: String,
    containers: Vec<Value>,
}

async fn rolled_to(api: &Api<Deployment>) -> anyhow::Result<Target> {
    let d = api.get("app-0000").await?;
    let latest = d.annotations().get(LATEST).cloned().unwrap_or_default();
    let template = d.spec.map(|s| s.template).unwrap_or_default();
    let a = template
        .metadata
        .and_then(|m| m.annotations)
        .unwrap_or_default();
    let containers = template
        .spec
        .map(|s| s.containers)
        .unwrap_or_default()
        .into_iter()
        .map(|c| json!({"name": c.name, "image": c.image}))
        .collect();
    Ok(Target {
        latest,
        revision: a.get(REVISION).cloned().context("no revision rolled out")?,
        hash: a.get(REVISION_HASH).cloned().unwrap_or_default(),
        containers,
    })
}

/// The controller's patch (the revision noted as label and annotation, the template's revision
/// and image), sent by a plain client to every Deployment of `api`'s namespace.
async fn patch_all(
    api: &Api<Deployment>,
    target: &Target,
    concurrency: usize,
) -> anyhow::Result<()> {
    let names: Vec<String> = api
        .list_metadata(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|m| m.name_any())
        .collect();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let writes = names.iter().map(|name| {
        let body = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": {LATEST: target.latest},
                         "annotations": {LATEST: target.latest}},
            "spec": {"template": {
                "metadata": {"annotations": {REVISION: target.revision, REVISION_HASH: target.hash}},
                "spec": {"containers": target.containers},
            }},
        });
        let (api, params) = (api.clone(), params.clone());
        async move { api.patch(name, &params, &Patch::Apply(&body)).await.map(|_| ()) }
    });
    let results: Vec<_> = futures::stream::iter(writes)
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect::<Result<(), _>>()?;
    Ok(())
}

fn report(arms: &[Arm], n: usize, args: &Args, rss: [appimage_bench::harness::Memory; 4]) {
    let mib = |k: u64| k as f64 / 1024.0;
    let controller = arms[0].time.as_secs_f64();
    println!(
        "{n} Deployments per arm, replicas {}, {} kwok nodes",
        args.replicas, args.nodes
    );
    println!(
        "webhook RSS (MiB): no workloads {:.1}; {} workloads watched {:.1}; after the rollout {:.1}; at the end {:.1}; peak {:.1}",
        mib(rss[0].rss_kib),
        n * (1 + args.plain_concurrency.len()),
        mib(rss[1].rss_kib),
        mib(rss[2].rss_kib),
        mib(rss[3].rss_kib),
        mib(rss[3].peak_rss_kib),
    );
    println!(
        "| arm | all templates updated (s) | writes answered (s) | controller / this | webhook CPU (s) | load avg before → after | apiserver requests |"
    );
    println!("|---|---|---|---|---|---|---|");
    for arm in arms {
        let total: f64 = arm.requests.values().sum();
        println!(
            "| {} | {:.1} | {} | {:.2}x | {:.1} | {} → {} | {total:.0} |",
            arm.name,
            arm.time.as_secs_f64(),
            arm.acked
                .map_or("-".into(), |a| format!("{:.1}", a.as_secs_f64())),
            controller / arm.time.as_secs_f64(),
            arm.webhook_cpu,
            arm.load.0,
            arm.load.1,
        );
    }
    for arm in arms {
        let mut top: Vec<(&String, &f64)> = arm.requests.iter().collect();
        top.sort_by(|a, b| b.1.total_cmp(a.1));
        let shown: Vec<String> = top
            .iter()
            .take(10)
            .map(|(k, v)| format!("{k} {v:.0}"))
            .collect();
        println!("requests, {}: {}", arm.name, shown.join(", "));
    }
}

/// The 1-minute load average, as `uptime` shows it.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_default()
}

async fn wait_revisions(client: &Client, count: usize, limit: Duration) -> anyhow::Result<()> {
    let api = Api::<AppImageRevision>::all(client.clone());
    poll(limit, "AppImage revision recorded", || async {
        let list = api.list(&ListParams::default()).await?;
        Ok(list
            .items
            .iter()
            .filter(|r| r.spec.app_image == IMAGE)
            .count()
            >= count)
    })
    .await
}
