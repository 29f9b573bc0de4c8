//! The whole test cluster (kube-controlplane with controller-manager, scheduler and kwok
//! nodes) runs workloads: a Deployment's Pods are injected by the webhook, scheduled onto
//! simulated nodes, become Ready with IPs and fill their Services' EndpointSlices; a Job
//! completes; the garbage collector follows owner references; namespaces finish deleting;
//! nodeSelectors are honoured; and the documented kwok test hooks work.

use std::collections::BTreeSet;
use std::time::Duration;

use appimage::labels;
use appimage::manifest;
use appimage::resource::AppImage;
use appimage::signature::payload;
use appimage_e2e::webhook::{SigningKey, Tls, Webhook, register};
use appimage_e2e::{
    Cluster, NODE_LABEL, NODES, POOL_LABEL, cluster, node_name, repo_root, text, unique,
    wait_until, write_json,
};
use serde_json::{Value, json};

/// The kwok Stage hooks of kube-controlplane (tests/controlplane/README.md).
const HOOK_POD_FAIL: &str = "appimage.test/pod-fail";
const HOOK_POD_NEVER_READY: &str = "appimage.test/pod-never-ready";
const HOOK_NODE_NOT_READY: &str = "appimage.test/node-not-ready";

const WAIT: Duration = Duration::from_secs(90);

fn get(c: &Cluster, args: &[&str]) -> Option<Value> {
    let mut full = vec!["get"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["-o", "json"]);
    let out = c.kubectl(&full);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).expect("kubectl JSON"))
}

fn items(c: &Cluster, args: &[&str]) -> Vec<Value> {
    get(c, args)
        .and_then(|v| v["items"].as_array().cloned())
        .unwrap_or_default()
}

fn apply(c: &Cluster, value: &Value) {
    let file = write_json(c.dir(), value);
    let out = c.kubectl(&["apply", "-f", &file.to_string_lossy()]);
    assert!(out.status.success(), "apply {value}: {:?}", text(&out));
}

fn condition(obj: &Value, kind: &str) -> Option<String> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .and_then(|c| c["status"].as_str())
        .map(str::to_string)
}

fn running_and_ready(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running" && condition(pod, "Ready").as_deref() == Some("True")
}

fn pods(c: &Cluster, ns: &str, selector: &str) -> Vec<Value> {
    items(c, &["pods", "-n", ns, "-l", selector])
}

fn names(values: &[Value]) -> Vec<String> {
    values
        .iter()
        .map(|v| {
            v["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// The webhook, registered for one labelled namespace, and a signed seed AppImage in it.
struct Setup {
    work: tempfile::TempDir,
    hook: Option<Webhook>,
    reg: String,
    ns: String,
    image: String,
    image_ref: String,
}

impl Setup {
    fn new(c: &Cluster, example: &str) -> Setup {
        let work = tempfile::tempdir().expect("temp dir");
        let tls = Tls::new(&work.path().join("tls"), "appimage-webhook");
        let signer = SigningKey::new(work.path());
        let hook = Webhook::start(c, &tls, &signer.pub_dir, &[]);
        let tag = unique("cl");
        let ns = c.namespace("cl");
        c.kubectl_ok(&["label", "namespace", &ns, &format!("appimage-e2e={tag}")]);
        let reg = register(c, &hook, &tls, &tag);
        let image = unique("img");
        let text = std::fs::read_to_string(repo_root().join("examples").join(example)).unwrap();
        let mut img: AppImage = manifest::appimages(example, &text).unwrap().remove(0);
        img.metadata.name = Some(image.clone());
        img.metadata.labels = Some([("appimage-e2e".to_string(), tag)].into());
        img.spec.image.sign = Some(signer.sign(&payload(&img)));
        let image_ref = img.image_ref();
        apply(c, &serde_json::to_value(&img).unwrap());
        Setup {
            work,
            hook: Some(hook),
            reg,
            ns,
            image,
            image_ref,
        }
    }

    /// Wait until the webhook's cache has the AppImage: a server-side dry run of `probe`
    /// (a Pod carrying the AppImage label) is admitted.
    fn wait_for_image(&self, c: &Cluster, probe: &Value) {
        let file = write_json(self.work.path(), probe);
        let ok = wait_until(Duration::from_secs(30), || {
            c.kubectl(&["create", "--dry-run=server", "-f", &file.to_string_lossy()])
                .status
                .success()
        });
        assert!(ok, "the webhook never admitted {probe}");
    }

    fn unregister(&self, c: &Cluster) {
        c.kubectl_ok(&[
            "delete",
            "mutatingwebhookconfiguration,validatingwebhookconfiguration",
            &self.reg,
        ]);
    }
}

/// A Pod template that names the AppImage and leaves the rest to the webhook. A workload's
/// template needs a container with an image: the same-named one is merged with the
/// AppImage's, and the image always comes from the AppImage.
fn template(image: &str, app: &str, container: &str) -> Value {
    json!({
        "metadata": {
            "labels": {labels::APP_IMAGE: image, "app": app},
            "annotations": {labels::OPT_TASK_ID: "t1"}
        },
        "spec": {"containers": [{"name": container, "image": "replaced.invalid/by-the-webhook"}]}
    })
}

fn probe_pod(ns: &str, image: &str, container: &str) -> Value {
    let mut pod = template(image, "probe", container);
    pod["apiVersion"] = json!("v1");
    pod["kind"] = json!("Pod");
    pod["metadata"]["name"] = json!(unique("probe"));
    pod["metadata"]["namespace"] = json!(ns);
    pod
}

fn deployment(ns: &str, name: &str, replicas: u32, template: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": template["metadata"]["labels"]["app"]}},
            "template": template
        }
    })
}

/// Wait until `n` Pods match `selector`, all Running and Ready; returns them.
fn wait_ready_pods(c: &Cluster, ns: &str, selector: &str, n: usize) -> Vec<Value> {
    let mut last = Vec::new();
    let ok = wait_until(WAIT, || {
        last = pods(c, ns, selector);
        last.len() == n && last.iter().all(running_and_ready)
    });
    assert!(
        ok,
        "wanted {n} Ready Pods for {selector} in {ns}, have: {}",
        serde_json::to_string_pretty(&last).unwrap()
    );
    last
}

fn endpoint_ips(c: &Cluster, ns: &str, service: &str) -> BTreeSet<String> {
    let sel = format!("kubernetes.io/service-name={service}");
    items(c, &["endpointslices", "-n", ns, "-l", &sel])
        .iter()
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect()
}

#[test]
fn deployment_pods_are_injected_run_on_nodes_and_fill_endpoint_slices() {
    let c = cluster();
    let s = Setup::new(c, "secretflow-image.yaml");
    s.wait_for_image(c, &probe_pod(&s.ns, &s.image, "secretflow"));
    let app = unique("deploy");
    apply(
        c,
        &deployment(&s.ns, &app, 3, template(&s.image, &app, "secretflow")),
    );
    let ready = wait_ready_pods(c, &s.ns, &format!("app={app}"), 3);

    let task_config = format!("{}task-config.conf", labels::CONFIG_PREFIX);
    for pod in &ready {
        let name = pod["metadata"]["name"].as_str().unwrap();
        // Made by the ReplicaSet controller, injected by the webhook.
        assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "ReplicaSet");
        assert_eq!(
            pod["spec"]["containers"][0]["image"],
            s.image_ref.as_str(),
            "{name} not injected"
        );
        assert!(
            pod["metadata"]["annotations"][&task_config].is_string(),
            "{name} has no task config"
        );
        assert_eq!(
            pod["metadata"]["labels"][labels::POD_IDENTITY],
            name,
            "{name}"
        );
        // Scheduled onto a simulated node, with an IP from that node's podCIDR.
        let node = pod["spec"]["nodeName"].as_str().unwrap_or_default();
        assert!(node.starts_with("kwok-node-"), "{name} on node {node:?}");
        let ip = pod["status"]["podIP"].as_str().unwrap_or_default();
        let index = node.trim_start_matches("kwok-node-");
        assert!(
            ip.starts_with(&format!("10.244.{index}.")),
            "{name} on {node} has IP {ip:?}"
        );

        // Its Services (one per Cluster/Domain port) get an EndpointSlice with its IP.
        let sel = format!("{}={name}", labels::POD_IDENTITY);
        let mut services = Vec::new();
        let made = wait_until(WAIT, || {
            services = names(&items(c, &["services", "-n", &s.ns, "-l", &sel]));
            services.len() == 3
        });
        assert!(
            made,
            "{name}: Services {services:?}; webhook log:\n{}",
            s.hook.as_ref().map(Webhook::logs).unwrap_or_default()
        );
        for svc in &services {
            let mut ips = BTreeSet::new();
            let filled = wait_until(WAIT, || {
                ips = endpoint_ips(c, &s.ns, svc);
                ips.len() == 1 && ips.contains(ip)
            });
            assert!(filled, "Service {svc}: endpoint IPs {ips:?}, want {ip}");
        }
    }
    s.unregister(c);
}

#[test]
fn job_with_an_appimage_label_completes() {
    let c = cluster();
    let s = Setup::new(c, "secretflow-image.yaml");
    s.wait_for_image(c, &probe_pod(&s.ns, &s.image, "secretflow"));
    let name = unique("job");
    let mut tpl = template(&s.image, &name, "secretflow");
    tpl["spec"]["restartPolicy"] = json!("Never");
    apply(
        c,
        &json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": s.ns},
            "spec": {"backoffLimit": 0, "template": tpl}
        }),
    );
    let mut job = Value::Null;
    let complete = wait_until(WAIT, || {
        job = get(c, &["job", &name, "-n", &s.ns]).unwrap_or_default();
        condition(&job, "Complete").as_deref() == Some("True")
    });
    assert!(complete, "Job did not complete: {job}");
    assert_eq!(job["status"]["succeeded"], 1);
    let pod = pods(c, &s.ns, &format!("job-name={name}"));
    assert_eq!(pod.len(), 1, "{}", names(&pod).join(","));
    assert_eq!(pod[0]["status"]["phase"], "Succeeded");
    assert_eq!(
        pod[0]["spec"]["containers"][0]["image"],
        s.image_ref.as_str()
    );
    s.unregister(c);
}

#[test]
fn garbage_collector_removes_a_pods_objects_and_namespaces_finish_deleting() {
    let c = cluster();
    let mut s = Setup::new(c, "app-template.yaml");
    let server = "server-0";
    let mut pod = probe_pod(&s.ns, &s.image, "app");
    pod["metadata"]["name"] = json!(server);
    pod["metadata"]["annotations"][labels::OPT_ROLE] = json!("server");
    pod["spec"]["containers"] = json!([]);
    s.wait_for_image(c, &pod);
    let file = write_json(c.dir(), &pod);
    c.kubectl_ok(&["create", "-f", &file.to_string_lossy()]);
    let sel = format!("{}={server}", labels::POD_IDENTITY);
    let np = format!("{server}-ingress");
    let made = wait_until(WAIT, || {
        !items(c, &["services", "-n", &s.ns, "-l", &sel]).is_empty()
            && get(c, &["networkpolicy", &np, "-n", &s.ns]).is_some()
    });
    assert!(made, "no Services or NetworkPolicy for {server}");

    // With the webhook (and its reconciler) gone, only the garbage collector can remove them.
    s.unregister(c);
    drop(s.hook.take());
    c.kubectl_ok(&["delete", "pod", server, "-n", &s.ns, "--wait=false"]);
    let collected = wait_until(WAIT, || {
        items(c, &["services", "-n", &s.ns, "-l", &sel]).is_empty()
            && get(c, &["networkpolicy", &np, "-n", &s.ns]).is_none()
    });
    assert!(
        collected,
        "not collected: Services {:?}, NetworkPolicy {}",
        names(&items(c, &["services", "-n", &s.ns, "-l", &sel])),
        get(c, &["networkpolicy", &np, "-n", &s.ns]).is_some()
    );

    // A namespace with a running Deployment finishes deleting.
    let app = unique("doomed");
    apply(
        c,
        &deployment(&s.ns, &app, 2, plain_template(&app, json!({}))),
    );
    wait_ready_pods(c, &s.ns, &format!("app={app}"), 2);
    c.kubectl_ok(&["delete", "namespace", &s.ns, "--wait=false"]);
    let gone = wait_until(WAIT, || {
        !c.kubectl(&["get", "namespace", &s.ns]).status.success()
    });
    assert!(
        gone,
        "namespace {} still there: {}",
        s.ns,
        get(c, &["namespace", &s.ns]).unwrap_or_default()
    );
}

fn plain_template(app: &str, node_selector: Value) -> Value {
    json!({
        "metadata": {"labels": {"app": app}},
        "spec": {
            "nodeSelector": node_selector,
            "containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10"}]
        }
    })
}

fn nodes_of(pods: &[Value]) -> BTreeSet<String> {
    pods.iter()
        .map(|p| {
            p["spec"]["nodeName"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

#[test]
fn node_selectors_place_pods_only_on_matching_nodes() {
    let c = cluster();
    let ns = c.namespace("sel");
    // Every node has the pool label from --node-labels and its own name label.
    let all = items(c, &["nodes", "-l", &format!("{POOL_LABEL}=e2e")]);
    assert_eq!(names(&all).len(), NODES, "{:?}", names(&all));
    let last = node_name(NODES - 1);

    let one = unique("one");
    apply(
        c,
        &deployment(
            &ns,
            &one,
            3,
            plain_template(&one, json!({NODE_LABEL: last})),
        ),
    );
    let placed = wait_ready_pods(c, &ns, &format!("app={one}"), 3);
    assert_eq!(nodes_of(&placed), BTreeSet::from([last.clone()]));

    // A label of this test's own on the first two nodes: 6 Pods, none on the last node.
    let key = format!("appimage.test/{}", unique("sel"));
    let chosen = BTreeSet::from([node_name(0), node_name(1)]);
    for node in &chosen {
        c.kubectl_ok(&["label", "node", node, &format!("{key}=yes")]);
    }
    let two = unique("two");
    apply(
        c,
        &deployment(&ns, &two, 6, plain_template(&two, json!({&key: "yes"}))),
    );
    let placed = wait_ready_pods(c, &ns, &format!("app={two}"), 6);
    let used = nodes_of(&placed);
    for node in &chosen {
        c.kubectl_ok(&["label", "node", node, &format!("{key}-")]);
    }
    assert!(
        !used.is_empty() && used.is_subset(&chosen),
        "Pods on {used:?}, allowed {chosen:?}"
    );
}

fn bare_pod(ns: &str, name: &str, annotations: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "annotations": annotations},
        "spec": {"containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10"}]}
    })
}

#[test]
fn hooks_fail_a_pod_keep_one_unready_and_mark_a_node_not_ready() {
    let c = cluster();
    let ns = c.namespace("hooks");
    for (name, annotations) in [
        ("failing", json!({HOOK_POD_FAIL: "true"})),
        ("unready", json!({HOOK_POD_NEVER_READY: "true"})),
        ("normal", json!({})),
    ] {
        apply(c, &bare_pod(&ns, name, annotations));
    }
    let mut failing = Value::Null;
    let failed = wait_until(WAIT, || {
        failing = get(c, &["pod", "failing", "-n", &ns]).unwrap_or_default();
        failing["status"]["phase"] == "Failed"
    });
    assert!(failed, "the pod-fail hook: {failing}");
    let state = &failing["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(state["exitCode"], 1, "{failing}");

    let mut unready = Value::Null;
    let running = wait_until(WAIT, || {
        unready = get(c, &["pod", "unready", "-n", &ns]).unwrap_or_default();
        unready["status"]["phase"] == "Running" && unready["status"]["podIP"].is_string()
    });
    assert!(running, "the never-ready hook: {unready}");
    assert_eq!(condition(&unready, "Ready").as_deref(), Some("False"));
    // The same Pod without the hook becomes Ready.
    let normal = wait_until(WAIT, || {
        get(c, &["pod", "normal", "-n", &ns]).is_some_and(|p| running_and_ready(&p))
    });
    assert!(normal, "a Pod without hooks never became Ready");

    // A node of this test's own (tainted, so no other test's Pod lands on it).
    let node = unique("kwok-extra");
    apply(
        c,
        &json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": node, "annotations": {"kwok.x-k8s.io/node": "fake"}},
            "spec": {"taints": [{"key": "appimage.test/isolated", "effect": "NoSchedule"}]}
        }),
    );
    let ready_is = |want: &str| {
        wait_until(WAIT, || {
            get(c, &["node", &node])
                .is_some_and(|n| condition(&n, "Ready").as_deref() == Some(want))
        })
    };
    assert!(ready_is("True"), "node {node} never became Ready");
    c.kubectl_ok(&[
        "label",
        "node",
        &node,
        &format!("{HOOK_NODE_NOT_READY}=true"),
    ]);
    assert!(
        ready_is("False"),
        "the node-not-ready hook did not mark {node} NotReady"
    );
    c.kubectl_ok(&["label", "node", &node, &format!("{HOOK_NODE_NOT_READY}-")]);
    assert!(
        ready_is("True"),
        "{node} did not recover once the label was removed"
    );
    c.kubectl_ok(&["delete", "node", &node]);
}
