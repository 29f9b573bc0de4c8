//! Issue 27 on a real node (`kube-controlplane --real-node`: containerd, a kubelet, a CNI
//! bridge; see tests/controlplane/README.md): AppImage Pods whose containers really run.
//!
//! 1. A Pod of an AppImage pulls the app image by digest from the cluster's local registry and
//!    runs; its container prints the config file the webhook rendered, and the bytes, read
//!    through `kubectl logs` and over HTTP from the Pod IP, equal `kubectl appimage render
//!    --show-config` for that Pod.
//! 2. A Kuscia-style AppImage (`image.id` = the image ID, the config digest) runs, pinned by
//!    the webhook to the manifest that has that ID; with a wrong id no Pod exists (denied,
//!    naming both IDs); with the manifest digest as id (this project's earlier meaning) it
//!    runs pinned, with a warning that Kuscia would refuse it.
//! 4. An Auto Deployment on the real node rolls to the AppImage's new revision (a new config
//!    template), and its new container prints the new config.
//! 5. A BatchDeployment with image pre-pull (issue 29) pulls the app image on the real node, by
//!    the digest the webhook pins, before its app Pod runs there.
//!
//! Traffic goes only to loopback (the apiserver, the registry) and to Pod IPs on the real
//! node's own bridge (10.247.240.0/20), never to kwok's Pod IPs.

use std::process::{Command, Stdio};

use appimage::manifest;
use appimage::resource::AppImage;
use appimage_e2e::world::{BATCH_CRD, REVISIONS_CRD, Shared, WAIT, WORKLOAD};
use appimage_e2e::{REAL_NODE_LABEL, REAL_NODE_NAME, RealNode, real_node, text, wait_until};
use serde_json::{Value, json};

/// The config file the app image prints and serves, and where the AppImage mounts it.
const CONFIG_FILE: &str = "app.conf";
const CONFIG_PATH: &str = "/etc/app/app.conf";

appimage_e2e::world_wrapper!(
    /// One test's world: a webhook, a namespace it admits, an AppImage of the app image.
    World
);

impl World {
    /// A world on the cluster with the real node; `None` when the real node's prerequisites
    /// are missing (real_node() said so loudly).
    /// Its webhook checks image ids against the cluster's registry (`--verify-image-ids`).
    fn new(prefix: &str) -> Option<(World, &'static RealNode)> {
        let node = real_node()?;
        let shared = Shared::once(&[REVISIONS_CRD, BATCH_CRD], "real");
        let lease = format!("--lease-name={}", shared.lease);
        let registry = format!("--insecure-registry={}", node.registry);
        let args = [
            lease.as_str(),
            "--lease-duration=2s",
            "--verify-image-ids",
            &registry,
        ];
        let world = appimage_e2e::world::World::with_webhook_args(shared, prefix, &args);
        Some((World(world), node))
    }

    /// The AppImage of the app image, under this world's name, with Kuscia's image id (the
    /// image ID, the config digest) and `edition` in its config template; signed with the
    /// shared key.
    fn app_image(&self, node: &RealNode, edition: &str) -> AppImage {
        self.app_image_with_id(node, edition, &node.app_image_id)
    }

    /// [`World::app_image`] with `id` as its `spec.image.id`.
    fn app_image_with_id(&self, node: &RealNode, edition: &str, id: &str) -> AppImage {
        let yaml = format!(
            r#"apiVersion: kuscia.secretflow/v1alpha1
kind: AppImage
metadata:
  name: {name}
spec:
  configTemplates:
    {CONFIG_FILE}: |
      edition: {edition}
      domain: {{{{.KUSCIA_DOMAIN_ID}}}}
      task: "{{{{.TASK_ID}}}}"
  deployTemplates:
    - name: app
      replicas: 1
      spec:
        containers:
          - name: app
            configVolumeMounts:
              - mountPath: {CONFIG_PATH}
                subPath: {CONFIG_FILE}
        restartPolicy: Always
  image:
    name: {image}
    tag: "{tag}"
    id: {id}
"#,
            name = self.image,
            image = node.app_name,
            tag = node.app_tag,
        );
        let mut img = manifest::appimages("real-node.yaml", &yaml)
            .expect("the test's AppImage")
            .remove(0);
        self.sign(&mut img);
        img
    }

    /// What `kubectl appimage render --show-config` says the config of Pod `pod` is.
    fn rendered(&self, pod: &str) -> Vec<u8> {
        let out = self.c.kubectl(&[
            "appimage",
            "render",
            &self.image,
            "-n",
            &self.ns,
            "--pod-name",
            pod,
            "--show-config",
            CONFIG_FILE,
        ]);
        assert!(out.status.success(), "render: {:?}", text(&out));
        out.stdout
    }

    /// Wait until Pod `pod` is Ready; its JSON.
    fn ready(&self, pod: &str) -> Value {
        let mut last = Value::Null;
        let ok = wait_until(WAIT, || {
            last = self.get_json(&[&format!("pod/{pod}")]);
            last["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        });
        assert!(
            ok,
            "pod {pod} never became Ready on the real node: {}\nevents: {}\nwebhook: {}",
            last["status"],
            self.c.kubectl_ok(&["get", "events", "-n", &self.ns]),
            self.logs()
        );
        last
    }

    /// The bytes of `CONFIG_PATH` the container of Pod `pod` printed (`kubectl logs`).
    fn printed(&self, pod: &str) -> Vec<u8> {
        let mut logs = Vec::new();
        let ok = wait_until(WAIT, || {
            let out = self.c.kubectl(&["logs", "-n", &self.ns, pod]);
            logs = out.stdout;
            out.status.success() && logs.ends_with(b"=== end\n")
        });
        assert!(
            ok,
            "kubectl logs {pod}: no complete output: {:?}",
            String::from_utf8_lossy(&logs)
        );
        printed_file(&logs, CONFIG_PATH).unwrap_or_else(|| {
            panic!(
                "{CONFIG_PATH} not in the logs of {pod}: {:?}",
                String::from_utf8_lossy(&logs)
            )
        })
    }

    /// The live (not terminating) Pods of workload `name`.
    fn pods(&self, name: &str) -> Vec<Value> {
        self.items(&["pods", "-l", &format!("{WORKLOAD}={name}")])
            .into_iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .collect()
    }
}

/// The bytes the app image's entrypoint printed for `path`: after a line "=== <path> <size>",
/// exactly <size> bytes (tests/controlplane/images/app-run.sh).
fn printed_file(logs: &[u8], path: &str) -> Option<Vec<u8>> {
    let header = format!("=== {path} ");
    let mut rest = logs;
    while !rest.is_empty() {
        let eol = rest.iter().position(|&b| b == b'\n')?;
        let line = String::from_utf8_lossy(&rest[..eol]).into_owned();
        rest = &rest[eol + 1..];
        if let Some(size) = line.strip_prefix(&header) {
            let size: usize = size.trim().parse().ok()?;
            return rest.get(..size).map(<[u8]>::to_vec);
        }
    }
    None
}

/// GET http://<pod ip>:8080/<file>, only to a Pod IP on the real node's bridge.
fn http_get(pod: &Value, file: &str) -> Vec<u8> {
    let ip = pod["status"]["podIP"].as_str().expect("podIP").to_string();
    assert!(
        ip.starts_with("10.247.24"),
        "Pod IP {ip} is not on the real node's bridge (10.247.240.0/20): no traffic sent"
    );
    let url = format!("http://{ip}:8080/{file}");
    let mut body = Vec::new();
    let ok = wait_until(WAIT, || {
        let out = Command::new("curl")
            .args(["-sf", "--max-time", "5", &url])
            .stdin(Stdio::null())
            .output()
            .expect("run curl");
        body = out.stdout;
        out.status.success()
    });
    assert!(ok, "GET {url} failed");
    body
}

/// The tolerations and node selector that put a Pod on the real node (kwok nodes have neither
/// the label nor the taint, so tests written for kwok never land there).
fn on_real_node() -> (Value, Value) {
    (
        json!([{"key": REAL_NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"}]),
        json!({ REAL_NODE_LABEL: "true" }),
    )
}

#[test]
fn an_appimage_pod_runs_on_the_real_node_and_reads_its_rendered_config() {
    let Some((w, node)) = World::new("rn-pod") else {
        return;
    };
    w.apply_image(&w.app_image(node, "one"));
    w.revision(1);

    // A bare Pod of the AppImage: the webhook fills in its container and config.
    let (tolerations, selector) = on_real_node();
    w.apply_json(&json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "app", "namespace": w.ns,
                     "labels": {"kuscia.secretflow/app-image": w.image}},
        "spec": {"containers": [], "tolerations": tolerations, "nodeSelector": selector,
                 "terminationGracePeriodSeconds": 1}
    }));
    let pod = w.ready("app");
    assert_eq!(pod["spec"]["nodeName"], REAL_NODE_NAME);

    // Pulled by the manifest the webhook pinned (the one whose config digest is the signed
    // image id), from the local registry; the id itself rides in the annotation, as in Kuscia.
    let pinned = format!("{}@{}", node.app_name, node.app_manifest_digest);
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(
        annotations["kuscia.secretflow/image-id"],
        node.app_image_id.as_str()
    );
    assert_eq!(pod["spec"]["containers"][0]["image"], pinned.as_str());
    let status = &pod["status"]["containerStatuses"][0];
    assert_eq!(status["imageID"], pinned.as_str(), "{status}");
    assert_eq!(status["ready"], true, "{status}");

    // The same bytes three ways: render, the container's own print, HTTP from the Pod.
    let rendered = w.rendered("app");
    assert!(
        String::from_utf8_lossy(&rendered).contains(&format!("domain: {}", w.ns)),
        "render: {:?}",
        String::from_utf8_lossy(&rendered)
    );
    let printed = w.printed("app");
    assert_eq!(
        String::from_utf8_lossy(&printed),
        String::from_utf8_lossy(&rendered),
        "kubectl logs vs render --show-config"
    );
    assert_eq!(printed, rendered);
    let served = http_get(&pod, CONFIG_FILE);
    assert_eq!(
        served, rendered,
        "HTTP from the Pod IP vs render --show-config"
    );

    // kubectl exec reaches the container too (apiserver -> kubelet -> containerd).
    let exec =
        w.c.kubectl(&["exec", "-n", &w.ns, "app", "--", "cat", CONFIG_PATH]);
    assert!(exec.status.success(), "kubectl exec: {:?}", text(&exec));
    assert_eq!(
        exec.stdout, rendered,
        "kubectl exec cat vs render --show-config"
    );
}

/// A bare Pod of the world's AppImage on the real node: `kubectl create`'s output.
fn create_pod(w: &World, name: &str) -> std::process::Output {
    let (tolerations, selector) = on_real_node();
    let file = w.work.path().join(format!("{name}.json"));
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": w.ns,
                     "labels": {"kuscia.secretflow/app-image": w.image}},
        "spec": {"containers": [], "tolerations": tolerations, "nodeSelector": selector,
                 "terminationGracePeriodSeconds": 1}
    });
    std::fs::write(&file, pod.to_string()).expect("pod file");
    w.c.kubectl(&["create", "-f", &file.to_string_lossy()])
}

#[test]
fn the_image_id_means_the_image_id_and_a_wrong_one_never_runs() {
    let Some((w, node)) = World::new("rn-id") else {
        return;
    };
    // Another image under the same tag (Kuscia #774): the signed id is not what the tag holds.
    let other = format!("sha256:{}", "e".repeat(64));
    w.apply_image(&w.app_image_with_id(node, "one", &other));
    w.revision(1);
    let denied = create_pod(&w, "wrong");
    let (_, err) = text(&denied);
    assert!(
        !denied.status.success(),
        "a Pod of a wrong image id was created"
    );
    assert!(
        err.contains(&format!(
            "spec.image.id {other} is not the image ID of {}:{}",
            node.app_name, node.app_tag
        )) && err.contains(&node.app_image_id)
            && err.contains(&node.app_manifest_digest),
        "{err}"
    );
    let stored = w.c.kubectl(&["get", "pod", "wrong", "-n", &w.ns]);
    assert!(!stored.status.success(), "the denied Pod exists");

    // The manifest digest as id (this project's earlier meaning): still the signed bytes, so it
    // runs pinned, and every admission warns that Kuscia's node agent would refuse it.
    w.apply_image(&w.app_image_with_id(node, "one", &node.app_manifest_digest));
    w.revision(2);
    let created = create_pod(&w, "legacy");
    let (_, err) = text(&created);
    assert!(created.status.success(), "{err}");
    assert!(
        err.contains("is the manifest digest")
            && err.contains(&format!("--image-id {}", node.app_image_id)),
        "no warning: {err}"
    );
    let pod = w.ready("legacy");
    let pinned = format!("{}@{}", node.app_name, node.app_manifest_digest);
    assert_eq!(pod["spec"]["containers"][0]["image"], pinned.as_str());

    // Kuscia's meaning: runs, pinned to the manifest that has the ID.
    w.apply_image(&w.app_image(node, "one"));
    w.revision(3);
    let created = create_pod(&w, "kuscia");
    assert!(created.status.success(), "{:?}", text(&created));
    let pod = w.ready("kuscia");
    assert_eq!(pod["spec"]["containers"][0]["image"], pinned.as_str());
    assert_eq!(
        pod["status"]["containerStatuses"][0]["imageID"],
        pinned.as_str()
    );
}

#[test]
fn an_auto_deployment_on_the_real_node_rolls_to_the_new_config() {
    let Some((w, node)) = World::new("rn-roll") else {
        return;
    };
    w.apply_image(&w.app_image(node, "one"));
    w.revision(1);
    let (tolerations, _) = on_real_node();
    let fragment = w.work.path().join("on-real-node.json");
    std::fs::write(
        &fragment,
        json!({"spec": {"tolerations": tolerations, "terminationGracePeriodSeconds": 1}})
            .to_string(),
    )
    .expect("pod template fragment");
    w.deploy(
        "web",
        &[
            "--replicas",
            "1",
            "--node-selector",
            &format!("{REAL_NODE_LABEL}=true"),
            "--pod-template",
            &fragment.to_string_lossy(),
        ],
    );

    // The Pod running revision 1 prints edition one, as render says for that Pod.
    let first = running_pod(&w, "web", "one");
    assert_eq!(first.1, w.rendered(&first.0));

    // A new config template: revision 2, rolled out by the controller (update policy Auto).
    w.apply_image(&w.app_image(node, "two"));
    w.revision(2);
    let second = running_pod(&w, "web", "two");
    assert_ne!(first.0, second.0, "the rollout made a new Pod");
    assert_eq!(second.1, w.rendered(&second.0));
}

/// Wait until workload `name` has exactly one live Pod, Ready on the real node, whose
/// container printed `edition: <edition>`; its name and printed config.
fn running_pod(w: &World, name: &str, edition: &str) -> (String, Vec<u8>) {
    let mut found = None;
    let mut last = String::new();
    let ok = wait_until(WAIT, || {
        let pods = w.pods(name);
        last = format!("{} live pods", pods.len());
        let [pod] = pods.as_slice() else {
            return false;
        };
        let ready = pod["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
        if !ready || pod["spec"]["nodeName"] != REAL_NODE_NAME {
            last = format!("pod not Ready on {REAL_NODE_NAME}: {}", pod["status"]);
            return false;
        }
        let pod_name = pod["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let logs = w.c.kubectl(&["logs", "-n", &w.ns, &pod_name]).stdout;
        match printed_file(&logs, CONFIG_PATH) {
            Some(conf)
                if String::from_utf8_lossy(&conf).contains(&format!("edition: {edition}\n")) =>
            {
                found = Some((pod_name, conf));
                true
            }
            _ => {
                last = format!("{pod_name} printed {:?}", String::from_utf8_lossy(&logs));
                false
            }
        }
    });
    assert!(
        ok,
        "workload {name} never ran one Pod printing edition {edition}: {last}\nwebhook: {}",
        w.logs()
    );
    found.expect("found")
}

/// Issue 29: the pre-pull's Job really runs on the real node. Its kubelet reports the image
/// (pulled, or already there) for the pull Pod, by the manifest digest the webhook pins Pods
/// to; only then is the app deployed, and it runs from that image.
#[test]
fn a_pre_pull_on_the_real_node_pulls_the_pinned_image_before_the_app_runs() {
    let Some((w, node)) = World::new("rn-pull") else {
        return;
    };
    w.apply_image(&w.app_image(node, "pulled"));
    w.plugin(&[
        "batch",
        "create",
        "pull",
        "--appimage",
        &w.image,
        "--nodes",
        REAL_NODE_NAME,
        "--pre-pull",
        "-n",
        &w.ns,
    ]);
    let mut job = Value::Null;
    let done = wait_until(WAIT, || {
        job = w.get_json(&["bd", "pull"]);
        job["status"]["phase"] == "Succeeded"
    });
    assert!(done, "never Succeeded: {}\n{}", job["status"], w.logs());
    let result = &job["status"]["nodes"][0];
    assert_eq!(result["node"], REAL_NODE_NAME);
    assert_eq!(result["pull"]["phase"], "Pulled", "{result}");
    // The kubelet's word for the pull Pod: the image by the pinned digest.
    let pinned = format!("{}@{}", node.app_name, node.app_manifest_digest);
    let events = w.items(&["events", "--field-selector", "reason=Pulled"]);
    let pulled: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["involvedObject"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("pull-"))
        })
        .collect();
    assert!(
        pulled.iter().any(
            |e| e["message"].as_str().is_some_and(|m| m.contains(&pinned))
                && e["source"]["host"] == REAL_NODE_NAME
        ),
        "no Pulled event of {pinned} for the pull Pod on {REAL_NODE_NAME}: {pulled:?}"
    );
    // The app runs from it.
    let pods = w.items(&["pods", "-l", "appimage.kuscia.secretflow/batch=pull"]);
    let app: Vec<&Value> = pods
        .iter()
        .filter(|p| p["metadata"]["labels"]["appimage.kuscia.secretflow/batch-prepull"].is_null())
        .collect();
    assert_eq!(app.len(), 1, "{pods:?}");
    assert_eq!(app[0]["spec"]["nodeName"], REAL_NODE_NAME);
    assert_eq!(app[0]["spec"]["containers"][0]["image"], pinned.as_str());
}
