//! What the whole-cluster benchmarks (`appimage-batch-bench`, `appimage-rollout-bench`) set up
//! the same way: the control plane process, the webhook's registration, the CRDs, a namespace
//! the webhook admits, and polling until a condition holds.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use appimage::labels;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::json;

use crate::harness::{SigningKey, Tls, Webhook};

/// The label of the namespaces whose Pods the benchmark's webhook registration admits.
pub const NAMESPACE_LABEL: &str = "appimage-bench";

/// Starts kube-controlplane with `nodes` kwok nodes in `dir`, its node leases sized for a
/// `fleet` of nodes (those and any the benchmark adds); returns it and its kubeconfig once it
/// prints `READY`. Its log is `dir/controlplane.log`.
pub fn start_controlplane(
    binary: &Path,
    dir: &Path,
    nodes: usize,
    fleet: usize,
) -> anyhow::Result<(std::process::Child, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let log = std::fs::File::create(dir.join("controlplane.log"))?;
    // A lease second per 25 nodes past 1,000 (the kubelet's 40 s below): the renewals of
    // 5,000 nodes at 40 s would crowd out the rest (see kube-controlplane's --node-lease-seconds).
    let lease = (fleet / 25).max(40);
    let mut child = std::process::Command::new(binary)
        .args(["--nodes", &nodes.to_string()])
        .args(["--node-lease-seconds", &lease.to_string(), "--parent-pid"])
        .arg(std::process::id().to_string())
        .arg("--dir")
        .arg(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let stdout = child.stdout.take().context("stdout")?;
    for line in std::io::BufReader::new(stdout).lines() {
        if let Some(path) = line?.strip_prefix("READY ") {
            return Ok((child, PathBuf::from(path.trim())));
        }
    }
    bail!(
        "the control plane exited; see {}",
        dir.join("controlplane.log").display()
    )
}

/// The webhook as the cluster benchmarks run it (controllers on, no leader election, text
/// log at `work/webhook.log`), with its TLS and the key it trusts, made in `work`.
pub async fn start_webhook(
    binary: &Path,
    work: &Path,
    kubeconfig: &Path,
) -> anyhow::Result<(Webhook, Tls, SigningKey)> {
    let tls = Tls::new(&work.join("tls"), "appimage-webhook");
    let signer = SigningKey::new(&work.join("keys"));
    let args = [
        "--trusted-keys-dir".into(),
        signer.pub_dir.to_string_lossy().into_owned(),
        "--kubeconfig".into(),
        kubeconfig.to_string_lossy().into_owned(),
        "--leader-elect=false".into(),
        "--log-format=text".into(),
    ];
    let hook = Webhook::start(binary, &tls, &args, work.join("webhook.log")).await?;
    Ok((hook, tls, signer))
}

/// Calls `f` every 250 ms until it says true; an error names `what` after `limit`.
pub async fn poll<F, Fut>(limit: Duration, what: &str, mut f: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let start = Instant::now();
    while !f().await? {
        if start.elapsed() > limit {
            bail!("{what}: not within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

/// The mutating webhook for Pods of labelled namespaces, as the chart registers it.
pub async fn register(
    client: &Client,
    name: &str,
    hook: &Webhook,
    tls: &Tls,
) -> anyhow::Result<()> {
    let cfg: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": name},
        "webhooks": [{
            "name": "pods.appimage.kuscia.secretflow",
            "admissionReviewVersions": ["v1"], "sideEffects": "None", "failurePolicy": "Fail",
            "reinvocationPolicy": "IfNeeded", "timeoutSeconds": 10,
            "clientConfig": {"url": hook.url("/mutate"), "caBundle": tls.ca_bundle()},
            "objectSelector": {"matchExpressions": [{"key": labels::APP_IMAGE, "operator": "Exists"}]},
            "namespaceSelector": {"matchLabels": {NAMESPACE_LABEL: "yes"}},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]
        }]
    }))?;
    Api::<MutatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &cfg)
        .await?;
    Ok(())
}

/// Creates the chart's CRD `name` and waits until it is Established and served.
pub async fn install_crd(client: &Client, root: &Path, name: &str) -> anyhow::Result<()> {
    let path = root.join(format!("charts/appimage-webhook/crds/{name}.yaml"));
    let crd: CustomResourceDefinition = serde_yaml_ng::from_str(&std::fs::read_to_string(path)?)?;
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    api.create(&PostParams::default(), &crd).await?;
    poll(Duration::from_secs(60), "CRD Established", || async {
        let crd = api.get(name).await?;
        let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
        Ok(conditions
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True"))
    })
    .await?;
    // Discovery can lag the condition a moment.
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(())
}

/// A labelled namespace (the webhook admits its Pods) with its default ServiceAccount.
pub async fn namespace(client: &Client, name: &str) -> anyhow::Result<()> {
    let ns: Namespace = serde_json::from_value(
        json!({"metadata": {"name": name, "labels": {NAMESPACE_LABEL: "yes"}}}),
    )?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    let sa = Api::<ServiceAccount>::namespaced(client.clone(), name);
    poll(
        Duration::from_secs(60),
        "default ServiceAccount",
        || async { Ok(sa.get_opt("default").await?.is_some()) },
    )
    .await
}

/// apiserver_request_total by "VERB resource[/subresource]", summed over the other labels.
pub async fn requests(client: &Client) -> anyhow::Result<BTreeMap<String, f64>> {
    let req = hyper::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(req).await?;
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix("=\""))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        let (resource, sub) = (label("resource"), label("subresource"));
        let key = if sub.is_empty() {
            format!("{} {resource}", label("verb"))
        } else {
            format!("{} {resource}/{sub}", label("verb"))
        };
        *out.entry(key).or_insert(0.0) += value;
    }
    Ok(out)
}

/// apiserver requests per second over a few seconds.
pub async fn rate(client: &Client) -> anyhow::Result<f64> {
    const WINDOW: Duration = Duration::from_secs(5);
    let a: f64 = requests(client).await?.values().sum();
    tokio::time::sleep(WINDOW).await;
    let b: f64 = requests(client).await?.values().sum();
    Ok((b - a) / WINDOW.as_secs_f64())
}

/// Until the apiserver's request rate is back near the idle `baseline`: the controllers (ours
/// and Kubernetes') have finished what the last step set off.
pub async fn quiet(client: &Client, baseline: f64, limit: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    while rate(client).await? > baseline * 1.5 + 10.0 {
        if start.elapsed() > limit {
            bail!("the cluster did not quieten within {limit:?}");
        }
    }
    Ok(start.elapsed())
}

/// The largest of `after - before` (by "VERB resource"), `n` at most, for a line of text.
pub fn top_requests(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
    n: usize,
) -> String {
    let mut delta: Vec<(f64, &str)> = after
        .iter()
        .map(|(k, v)| (v - before.get(k).copied().unwrap_or(0.0), k.as_str()))
        .filter(|(d, _)| *d > 0.0)
        .collect();
    delta.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    delta
        .iter()
        .take(n)
        .map(|(d, k)| format!("{k} {d:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}
