//! Batch deployment benchmark (issue 18, BENCHMARKS.md): deploy the seed AppImage to N
//! simulated kwok nodes (a) directly, the same per-node Deployments created by server-side
//! apply with a plain client and waited for until every one is Ready, and (b) as one
//! BatchDeployment run by appimage-webhook's controller until it is Succeeded. Both arms go
//! through the same admission webhook; each starts from an empty namespace. Reports the times,
//! their ratio, the webhook's RSS and the apiserver's request count (apiserver_request_total)
//! per arm.
//!
//!     appimage-batch-bench --controlplane target/controlplane/kube-controlplane \
//!         --webhook target/release/appimage-webhook --nodes 1000

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use appimage::batch::{self, BatchDeployment, BatchDeploymentSpec};
use appimage::resource::AppImage;
use appimage::signature::payload;
use appimage::workload::Workload;
use appimage_bench::cluster::{
    install_crd, namespace, poll, quiet, rate, register, requests, start_controlplane,
    start_webhook, top_requests,
};
use appimage_bench::fixtures;
use appimage_bench::harness::{kube_client, memory_kib};
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

#[derive(Parser)]
#[command(about = "BatchDeployment controller vs. direct per-node workloads (BENCHMARKS.md)")]
struct Args {
    /// kube-controlplane binary (scripts/controlplane.sh build prints it).
    #[arg(long)]
    controlplane: PathBuf,
    /// appimage-webhook binary (a release build).
    #[arg(long)]
    webhook: PathBuf,
    /// Simulated nodes to deploy to.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Writes in flight at once for the direct arm (the controller uses 32 too).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Give up on an arm after this long.
    #[arg(long, default_value = "30m", value_parser = appimage::duration::parse)]
    limit: Duration,
    /// Work directory (kept); default: a temporary one.
    #[arg(long)]
    dir: Option<PathBuf>,
}

const GROUP: &str = "bench.appimage/batch";
const FIELD_MANAGER: &str = "appimage-batch-bench";
const IMAGE: &str = "batch-seed";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tmp = tempfile::tempdir()?;
    let work = args.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&work)?;
    let root = appimage_e2e::repo_root();
    // One node of its own so that kwok runs; the benchmark adds the rest as Node objects.
    let (_cp, kubeconfig) =
        start_controlplane(&args.controlplane, &work.join("cp"), 1, args.nodes)?;
    let client = kube_client(&kubeconfig).await?;
    let started = Instant::now();
    let nodes = add_nodes(&client, args.nodes, args.limit).await?;
    eprintln!("{} nodes Ready in {:.1?}", nodes.len(), started.elapsed());

    // The AppImage CRD before the webhook, whose readiness waits for its AppImage watch.
    install_crd(&client, &root, "appimages.kuscia.secretflow").await?;
    let (hook, tls, signer) = start_webhook(&args.webhook, &work, &kubeconfig).await?;
    register(&client, "appimage-batch-bench", &hook, &tls).await?;
    let mut image = fixtures::seed(&root, IMAGE)?;
    image.spec.image.sign = Some(signer.sign(&payload(&image)));
    let params = PatchParams::apply(FIELD_MANAGER).force();
    Api::<AppImage>::all(client.clone())
        .patch(IMAGE, &params, &Patch::Apply(&image))
        .await?;
    install_crd(
        &client,
        &root,
        "batchdeployments.appimage.kuscia.secretflow",
    )
    .await?;
    // Let the webhook's catalog see the AppImage before either arm.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let baseline = rate(&client).await?;
    eprintln!("idle: {baseline:.0} apiserver requests/s");

    let direct_ns = "bench-direct".to_string();
    namespace(&client, &direct_ns).await?;
    let before = requests(&client).await?;
    let t = Instant::now();
    direct(&client, &direct_ns, &image, &nodes, &args).await?;
    let direct_time = t.elapsed();
    let after = requests(&client).await?;
    let direct_requests = total(&after) - total(&before);
    eprintln!("direct: {direct_time:.1?}, {direct_requests} apiserver requests");
    eprintln!("  most: {}", top_requests(&before, &after, 8));
    let rss_idle = memory_kib(hook.pid())?;
    drain(&client, &direct_ns, args.limit).await?;
    // What the direct arm set off (the Services of its workloads, their deletion) must not
    // run on into the controller's arm.
    let settled = quiet(&client, baseline, args.limit).await?;
    eprintln!("quiet after the direct arm's drain: {settled:.1?}");

    let batch_ns = "bench-batch".to_string();
    namespace(&client, &batch_ns).await?;
    let before = requests(&client).await?;
    let t = Instant::now();
    let size = controller(&client, &batch_ns, &args).await?;
    let batch_time = t.elapsed();
    let after = requests(&client).await?;
    let batch_requests = total(&after) - total(&before);
    let rss = memory_kib(hook.pid())?;
    eprintln!("batch: {batch_time:.1?}, {batch_requests} apiserver requests");
    eprintln!("  most: {}", top_requests(&before, &after, 8));
    eprintln!(
        "the BatchDeployment at the end: {size} bytes of JSON ({:.1}% of the 1.5 MiB object limit)",
        size as f64 * 100.0 / (1.5 * 1024.0 * 1024.0)
    );

    let ratio = batch_time.as_secs_f64() / direct_time.as_secs_f64();
    println!(
        "| nodes | direct (s) | BatchDeployment (s) | ratio | target | webhook RSS before / after / peak (MiB) | apiserver requests direct / batch |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {} | {:.1} | {:.1} | {ratio:.2}x | <= 1.2x {} | {:.0} / {:.0} / {:.0} | {direct_requests:.0} / {batch_requests:.0} |",
        args.nodes,
        direct_time.as_secs_f64(),
        batch_time.as_secs_f64(),
        if ratio <= 1.2 { "met" } else { "MISSED" },
        rss_idle.rss_kib as f64 / 1024.0,
        rss.rss_kib as f64 / 1024.0,
        rss.peak_rss_kib as f64 / 1024.0,
    );
    Ok(())
}

/// `n` kwok nodes labelled [`GROUP`], tainted so nothing is scheduled there by accident.
async fn add_nodes(client: &Client, n: usize, limit: Duration) -> anyhow::Result<Vec<String>> {
    let api = Api::<Node>::all(client.clone());
    let names: Vec<String> = (0..n).map(|i| format!("edge-{i:04}")).collect();
    let creates = names.iter().map(|name| {
        let api = api.clone();
        let node = serde_json::from_value::<Node>(json!({
            "metadata": {"name": name, "labels": {GROUP: "yes"},
                         "annotations": {"kwok.x-k8s.io/node": "fake"}},
            "spec": {"taints": [{"key": "bench.appimage/isolated", "effect": "NoSchedule"}]}
        }));
        async move {
            let node = node.map_err(|e| anyhow::anyhow!("the bench's Node: {e}"))?;
            api.create(&PostParams::default(), &node).await?;
            anyhow::Ok(())
        }
    });
    let results: Vec<_> = futures::stream::iter(creates)
        .buffer_unordered(32)
        .collect()
        .await;
    results.into_iter().collect::<Result<(), _>>()?;
    let lp = ListParams::default().labels(&format!("{GROUP}=yes"));
    poll(limit, "nodes Ready", || async {
        let list = api.list(&lp).await?;
        let ready = list
            .items
            .iter()
            .filter(|n| batch::workload::node_fact(n).ready)
            .count();
        Ok(ready == n)
    })
    .await?;
    Ok(names)
}

/// The job both arms run: the seed on every benchmark node.
fn job(ns: &str) -> BatchDeployment {
    let mut bd = BatchDeployment::new(
        "rollout",
        BatchDeploymentSpec {
            app_image: IMAGE.into(),
            node_selector: [(GROUP.to_string(), "yes".to_string())].into(),
            timeout: Some("0".into()),
            ..Default::default()
        },
    );
    bd.metadata.namespace = Some(ns.into());
    bd
}

/// Arm (a): the controller's per-node Deployments (same builder), applied by a plain client,
/// then waited for until each has its Pod Ready.
async fn direct(
    client: &Client,
    ns: &str,
    image: &AppImage,
    nodes: &[String],
    args: &Args,
) -> anyhow::Result<()> {
    let bd = job(ns);
    let api = Api::<Deployment>::namespaced(client.clone(), ns);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut objects = Vec::new();
    for node in nodes {
        match batch::workload::build(&bd, image, node, 1).map_err(anyhow::Error::msg)? {
            Workload::Deployment(d) => objects.push(d),
            other => bail!("expected a Deployment, got {other:?}"),
        }
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
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    results.into_iter().collect::<Result<(), _>>()?;
    let n = nodes.len();
    poll(args.limit, "direct Deployments Ready", || async {
        let list = api.list(&ListParams::default()).await?;
        let ready = list
            .items
            .iter()
            .filter(|d| d.status.as_ref().and_then(|s| s.ready_replicas) == Some(1))
            .count();
        Ok(ready == n)
    })
    .await
}

/// Arm (b): one BatchDeployment, until Succeeded.
/// Run the job to Succeeded; the size of its object then (JSON bytes, as stored: the status
/// must stay under the API server's 1.5 MiB object limit).
async fn controller(client: &Client, ns: &str, args: &Args) -> anyhow::Result<usize> {
    let api = Api::<BatchDeployment>::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), &job(ns)).await?;
    poll(args.limit, "BatchDeployment Succeeded", || async {
        let bd = api.get("rollout").await?;
        let status = bd.status.unwrap_or_default();
        if status.phase == batch::Phase::Failed {
            bail!("the job failed: {:?}", status.conditions);
        }
        Ok(status.phase == batch::Phase::Succeeded)
    })
    .await?;
    let mut bd = api.get("rollout").await?;
    bd.metadata.managed_fields = None;
    Ok(serde_json::to_vec(&bd)?.len())
}

/// Delete the direct arm's namespace and wait until its Pods are gone, so the second arm
/// starts from the same quiet cluster.
async fn drain(client: &Client, ns: &str, limit: Duration) -> anyhow::Result<()> {
    Api::<Namespace>::all(client.clone())
        .delete(ns, &Default::default())
        .await?;
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    let deployments = Api::<Deployment>::namespaced(client.clone(), ns);
    poll(limit, "direct namespace drained", || async {
        let lp = ListParams::default().limit(1);
        Ok(pods.list(&lp).await?.items.is_empty() && deployments.list(&lp).await?.items.is_empty())
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    Ok(())
}

/// The requests of every verb and resource.
fn total(requests: &std::collections::BTreeMap<String, f64>) -> f64 {
    requests.values().sum()
}
