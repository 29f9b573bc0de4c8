//! Issue 27 item 3: the webhook runs from its own image, through the Helm chart, on the real
//! node (`kube-controlplane --real-node`, see tests/controlplane/README.md). Its own test
//! binary, so its own cluster: the chart's webhook admits and its controllers reconcile
//! cluster-wide, which must not meet the per-test webhooks of the other real-node tests.
//!
//! - `helm install` (helm built from its Go module by `scripts/controlplane.sh build-real-node`)
//!   with the image `scripts/release.sh image` built, pushed to the cluster's registry;
//! - the apiserver calls the webhook through its Service (the registration names the Service;
//!   `--enable-aggregator-routing` sends the call to an endpoint, a Pod IP on the bridge);
//! - a labelled Pod on a kwok node is injected by it;
//! - a second replica takes over the controllers when the Pod holding the Lease is deleted,
//!   and records the AppImage's next revision.
//!
//! Traffic goes only to loopback and to Pod IPs on the real node's bridge.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use appimage::manifest;
use appimage::resource::AppImage;
use appimage::signature::payload;
use appimage_e2e::webhook::SigningKey;
use appimage_e2e::{
    NODE_LABEL, REAL_NODE_LABEL, REAL_NODE_NAME, RealNode, cluster, node_name, real_node,
    repo_root, target_dir, text, unique, wait_until, write_json,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(180);

/// Run `program args` from the repo root; its stdout, or the test fails with its output.
#[track_caller]
fn run(program: &Path, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} ({e})", program.display()));
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "{} {args:?} failed ({}):\n{stdout}\n{stderr}",
        program.display(),
        out.status
    );
    stdout
}

/// The webhook's image (`scripts/release.sh image`) pushed to the registry: its repository
/// there and its tag.
fn push_webhook_image(node: &RealNode) -> (String, String) {
    let out = run(Path::new("bash"), &["scripts/release.sh", "image"]);
    let line = |prefix: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{out}"))
            .trim()
            .to_string()
    };
    let archive = line("image:");
    let reference = line("reference:");
    let (repository, tag) = reference.rsplit_once(':').expect("repository:tag");
    let repository = format!("{}/{repository}", node.registry);
    run(
        Path::new("skopeo"),
        &[
            "copy",
            "-q",
            "--dest-tls-verify=false",
            &format!("oci-archive:{archive}"),
            &format!("docker://{repository}:{tag}"),
        ],
    );
    (repository, tag.to_string())
}

/// The app image's AppImage named `name`, pinned by manifest digest, with `edition` in its
/// config, signed by `key`.
fn app_image(node: &RealNode, name: &str, edition: &str, key: &SigningKey) -> AppImage {
    let yaml = format!(
        r#"apiVersion: kuscia.secretflow/v1alpha1
kind: AppImage
metadata:
  name: {name}
spec:
  configTemplates:
    app.conf: |
      edition: {edition}
  deployTemplates:
    - name: app
      replicas: 1
      spec:
        containers:
          - name: app
            configVolumeMounts:
              - mountPath: /etc/app/app.conf
                subPath: app.conf
        restartPolicy: Always
  image:
    name: {image}
    tag: "{tag}"
    id: {id}
"#,
        image = node.app_name,
        tag = node.app_tag,
        id = node.app_image_id,
    );
    let mut img = manifest::appimages("chart.yaml", &yaml)
        .expect("the test's AppImage")
        .remove(0);
    img.spec.image.sign = Some(key.sign(&payload(&img)));
    img
}

fn get_json(args: &[&str]) -> Value {
    let mut full = vec!["get", "-o", "json"];
    full.extend_from_slice(args);
    serde_json::from_str(&cluster().kubectl_ok(&full)).expect("kubectl JSON")
}

fn is_ready(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_null()
        && pod["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// The holder of the controllers' Lease in `ns` (the one a `-controllers-` Pod holds), if any.
fn leader(ns: &str) -> Option<String> {
    get_json(&["leases", "-n", ns])["items"]
        .as_array()?
        .iter()
        .filter_map(|l| l["spec"]["holderIdentity"].as_str())
        .find(|h| h.contains("-controllers-"))
        .map(str::to_string)
}

#[test]
fn the_chart_runs_the_webhook_from_its_image_on_the_real_node() {
    let Some(node) = real_node() else {
        return;
    };
    let c = cluster();
    let (repository, tag) = push_webhook_image(node);
    let work = tempfile::tempdir().expect("temp dir");
    let key = SigningKey::new(work.path());
    let public = std::fs::read_to_string(key.pub_dir.join("sign.pub")).expect("public key");

    // helm install, every Pod on the real node, the image from the local registry.
    let release_ns = unique("appimage-system");
    let values = write_json(
        work.path(),
        &json!({
            "image": {"repository": repository, "tag": tag},
            "nodeSelector": {REAL_NODE_LABEL: "true"},
            "tolerations": [{"key": REAL_NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"}],
            "trustedKeys": {"keys": {"sign.pem": public}},
            // The registry listens on the host's loopback, which Pods cannot reach; the image
            // id check runs in real_node.rs, from a webhook on the host.
            "imageIds": {"verify": false},
        }),
    );
    let helm = target_dir().join("controlplane/helm");
    let install = c
        .command(&helm.to_string_lossy())
        .args([
            "install",
            "aw",
            "charts/appimage-webhook",
            "-n",
            &release_ns,
        ])
        .args(["--create-namespace", "--wait", "--timeout", "180s", "-f"])
        .arg(&values)
        .arg("--kubeconfig")
        .arg(c.kubeconfig())
        .output()
        .expect("run helm");
    assert!(
        install.status.success(),
        "helm install: {:?}\npods: {}",
        text(&install),
        c.kubectl_ok(&["get", "pods", "-n", &release_ns, "-o", "wide"])
    );
    let pods = get_json(&["pods", "-n", &release_ns])["items"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let controllers: Vec<&Value> = pods
        .iter()
        .filter(|p| {
            p["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.contains("-controllers-"))
        })
        .collect();
    assert!(pods.len() >= 4 && controllers.len() >= 2, "pods: {pods:?}");
    for pod in &pods {
        assert_eq!(
            pod["spec"]["nodeName"], REAL_NODE_NAME,
            "{}",
            pod["metadata"]["name"]
        );
        assert!(is_ready(pod), "not Ready: {}", pod["status"]);
        let image = pod["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap_or_default();
        assert_eq!(image, format!("{repository}:{tag}"));
        let ip = pod["status"]["podIP"].as_str().unwrap_or_default();
        assert!(
            ip.starts_with("10.247.24"),
            "Pod IP {ip} not on the real node's bridge"
        );
    }

    // The apiserver calls it through its Service, not a URL.
    let registrations = get_json(&["mutatingwebhookconfigurations"]);
    let ours: Vec<Value> = registrations["items"]
        .as_array()
        .expect("items")
        .iter()
        .flat_map(|r| r["webhooks"].as_array().cloned().unwrap_or_default())
        .filter(|w| w["clientConfig"]["service"]["namespace"] == release_ns.as_str())
        .collect();
    assert!(
        !ours.is_empty(),
        "no registration names the Service: {registrations}"
    );
    for w in &ours {
        assert!(w["clientConfig"]["url"].is_null(), "{w}");
    }

    // A labelled Pod on a kwok node is injected by it.
    let name = unique("chart-app");
    let apply = |img: &AppImage| {
        let file = write_json(
            work.path(),
            &serde_json::to_value(img).expect("AppImage JSON"),
        );
        c.kubectl_ok(&["apply", "-f", &file.to_string_lossy()]);
    };
    apply(&app_image(node, &name, "one", &key));
    let ns = c.namespace("chart");
    let pod = write_json(
        work.path(),
        &json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "on-kwok", "namespace": ns,
                         "labels": {"kuscia.secretflow/app-image": name}},
            "spec": {"containers": [], "nodeSelector": {NODE_LABEL: node_name(0)}}
        }),
    );
    c.kubectl_ok(&["apply", "-f", &pod.to_string_lossy()]);
    let injected = get_json(&["pod", "on-kwok", "-n", &ns]);
    // Without the registry check the Pod names name:tag and carries the image id (Kuscia).
    let named = format!("{}:{}", node.app_name, node.app_tag);
    assert_eq!(
        injected["spec"]["containers"][0]["image"],
        named.as_str(),
        "{injected}"
    );
    assert_eq!(
        injected["metadata"]["annotations"]["kuscia.secretflow/image-id"],
        node.app_image_id.as_str()
    );
    let ok = wait_until(WAIT, || {
        get_json(&["pod", "on-kwok", "-n", &ns])["spec"]["nodeName"] == node_name(0).as_str()
    });
    assert!(ok, "the injected Pod was not scheduled to {}", node_name(0));

    // The controllers record revision 1; then the Pod holding their Lease is deleted, another
    // replica takes over and records revision 2.
    let revision = |n: i64| {
        let rev = format!("{name}-{n}");
        wait_until(WAIT, || {
            c.kubectl(&["get", "appimagerevision", &rev])
                .status
                .success()
        })
    };
    assert!(revision(1), "revision 1 of {name} never recorded");
    let mut first = None;
    assert!(
        wait_until(WAIT, || {
            first = leader(&release_ns);
            first.is_some()
        }),
        "no controllers Pod holds a Lease in {release_ns}"
    );
    let first = first.expect("leader");
    c.kubectl_ok(&["delete", "pod", "-n", &release_ns, &first, "--wait=false"]);
    let mut second = None;
    let took_over = wait_until(WAIT, || {
        second = leader(&release_ns).filter(|h| *h != first);
        second.as_ref().is_some_and(|h| {
            c.kubectl(&["get", "pod", "-n", &release_ns, h])
                .status
                .success()
        })
    });
    assert!(took_over, "no other replica took over from {first}");
    apply(&app_image(node, &name, "two", &key));
    assert!(
        revision(2),
        "revision 2 of {name} never recorded after {} took over from {first}",
        second.unwrap_or_default()
    );
}
