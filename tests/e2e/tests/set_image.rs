//! `kubectl appimage set-image` and the function-style example (issue 19, sections 2 and 4) on
//! the whole test cluster: the real kubectl with the plugin on PATH, the webhook's admission
//! and its leader-elected controllers (revisions and rollouts), kwok nodes.
//!
//! - set-image with `--key` on a signed AppImage that an Auto Deployment runs: the AppImage is
//!   re-signed in the same write, a new revision is recorded with the change cause, and the
//!   Deployment rolls to Pods of the new image; without `--key` it is refused, and a published
//!   AppImage is refused by the plugin before anything is written.
//! - examples/function-app.yaml: `render` shows both handlers' code in the config files, and
//!   `deploy` gives running Pods whose spec mounts that code.
//!
//! Every test starts its own webhook (admission for its namespace), all with the same trusted
//! key and one shared Lease, so exactly one of them runs the controllers at a time.

use std::collections::BTreeMap;
use std::time::Duration;

use appimage::manifest;
use appimage::resource::AppImage;
use appimage_e2e::world::{REVISIONS_CRD, Shared, WAIT, WORKLOAD};
use appimage_e2e::{repo_root, text, wait_until, workspace_bin, write_json};
use serde_json::{Value, json};

const FUNCTION_APP: &str = "examples/function-app.yaml";
const CONFIG_PREFIX: &str = "config.appimage.kuscia.secretflow/";
const OLD_DIGEST: &str = "sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945";
const NEW_DIGEST: &str = "sha256:9b2a6f0c1d3e4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c";

appimage_e2e::world_wrapper!(
    /// One test's world: a webhook, a namespace it admits, the tag its registrations select on.
    World = Shared::once(&[REVISIONS_CRD], "set-image")
);

impl World {
    /// Apply `img` labelled for this world's validating webhook, and wait until admission
    /// knows it (a server dry run of a Pod using it is admitted).
    fn apply(&self, mut img: AppImage) -> String {
        let name = img.metadata.name.clone().unwrap();
        img.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert("appimage-e2e".into(), self.tag.clone());
        let file = write_json(self.work.path(), &serde_json::to_value(&img).unwrap());
        let out = self.c.kubectl(&["apply", "-f", &file.to_string_lossy()]);
        assert!(out.status.success(), "apply {name}: {:?}", text(&out));
        let probe = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "probe", "namespace": self.ns,
                         "labels": {"kuscia.secretflow/app-image": name}},
            "spec": {"containers": []}
        });
        let probe = write_json(self.work.path(), &probe);
        let probe = probe.to_string_lossy();
        let seen = wait_until(Duration::from_secs(30), || {
            let args = ["create", "-f", &probe, "--dry-run=server"];
            self.c.kubectl(&args).status.success()
        });
        assert!(seen, "admission never knew {name}:\n{}", self.hook.logs());
        name
    }

    /// The plugin's exit status, stdout and stderr.
    fn try_plugin(&self, args: &[&str]) -> (bool, String, String) {
        let mut full = vec!["appimage"];
        full.extend_from_slice(args);
        let out = self.c.kubectl(&full);
        let (o, e) = text(&out);
        (out.status.success(), o, e)
    }

    /// The seed AppImage under this world's name, pinned to `OLD_DIGEST` and signed by the
    /// trusted key.
    fn signed_seed(&self) -> AppImage {
        let mut img = self.example("secretflow-image.yaml", &self.image);
        img.spec.image.id = Some(OLD_DIGEST.into());
        self.sign(&mut img);
        img
    }

    fn appimage(&self, name: &str) -> Value {
        let out = self.c.kubectl_ok(&["get", "appimage", name, "-o", "json"]);
        serde_json::from_str(&out).expect("JSON")
    }

    fn pods(&self, workload: &str) -> Vec<Value> {
        self.items(&["pods", "-l", &format!("{WORKLOAD}={workload}")])
    }

    /// Wait until `workload` has exactly `n` Pods, all Running and not being deleted, every
    /// one passing `check`; the Pods.
    fn wait_pods(&self, workload: &str, n: usize, check: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut last = Vec::new();
        let ok = wait_until(WAIT, || {
            last = self.pods(workload);
            last.len() == n
                && last.iter().all(|p| {
                    p["status"]["phase"] == "Running"
                        && p["metadata"]["deletionTimestamp"].is_null()
                        && check(p)
                })
        });
        assert!(
            ok,
            "wanted {n} Running Pods of {workload}: {last:#?}\n{}",
            self.hook.logs()
        );
        last
    }

    fn private_key(&self) -> String {
        self.s.signer.private.to_string_lossy().into_owned()
    }

    fn public_key(&self) -> String {
        self.s
            .signer
            .pub_dir
            .join("sign.pub")
            .to_string_lossy()
            .into_owned()
    }
}

fn container_images(pod: &Value) -> Vec<String> {
    pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["image"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn set_image_with_a_key_rolls_an_auto_deployment_and_refusals_write_nothing() {
    let w = World::new("si");
    let name = w.apply(w.signed_seed());
    // Pods name name:tag; the image id is Kuscia's image ID, in their annotation (issue 27).
    let old_image = "secretflow/secretflow-lite-anolis8:latest".to_string();
    w.deploy("web", &[]);
    w.wait_pods("web", 1, |p| container_images(p) == [old_image.clone()]);
    let recorded = wait_until(WAIT, || w.try_plugin(&["history", &name]).0);
    assert!(recorded, "revision 1 never recorded:\n{}", w.hook.logs());
    let before = w.appimage(&name)["spec"]["image"].clone();

    // Without a key a signed AppImage is refused, and nothing is written.
    let new_ref = "registry.example.com/sf/secretflow-lite:1.11";
    let (ok, _, err) = w.try_plugin(&["set-image", &name, new_ref, "--image-id", NEW_DIGEST]);
    assert!(!ok, "a signed AppImage took a new image without a key");
    assert!(
        err.contains(&format!("AppImage {name:?} is signed"))
            && err.contains("would no longer verify")
            && err.contains("--key")
            && err.contains("--allow-unsigned"),
        "{err}"
    );
    assert_eq!(w.appimage(&name)["spec"]["image"], before);

    // A server dry run is checked by the server (the validating webhook too) and stores nothing.
    let key = w.private_key();
    let with_key = |extra: &[&str]| {
        let mut args = vec![
            "set-image",
            &name,
            new_ref,
            "--image-id",
            NEW_DIGEST,
            "--key",
            &key,
        ];
        args.extend_from_slice(extra);
        w.plugin(&args)
    };
    let out = with_key(&["--dry-run=server"]);
    assert_eq!(
        out,
        format!("appimage.kuscia.secretflow/{name} image updated (server dry run)\n")
    );
    assert_eq!(w.appimage(&name)["spec"]["image"], before);

    // With the key: re-signed in the same write, the change recorded.
    let out = with_key(&[
        "--change-cause",
        "release 1.11",
        "--task-id",
        "cfthf85s99bgu9olqr50",
    ]);
    assert_eq!(
        out,
        format!("appimage.kuscia.secretflow/{name} image updated\n")
    );
    let stored = w.appimage(&name);
    let img = &stored["spec"]["image"];
    assert_eq!(img["name"], "registry.example.com/sf/secretflow-lite");
    assert_eq!(img["tag"], "1.11");
    assert_eq!(img["id"], NEW_DIGEST);
    let annotations = &stored["metadata"]["annotations"];
    assert_eq!(annotations["kubernetes.io/change-cause"], "release 1.11");
    assert_eq!(
        annotations["kuscia.secretflow/task-id"],
        "cfthf85s99bgu9olqr50"
    );
    let verified = w.plugin(&["verify", &name, "--key", &w.public_key()]);
    assert!(verified.contains("signature verified"), "{verified}");

    // The Auto Deployment rolls: its only Pods run the new image.
    let new_image = new_ref.to_string();
    w.wait_pods("web", 1, |p| container_images(p) == [new_image.clone()]);

    // history shows the change cause and the task id on the new revision.
    let mut rows = BTreeMap::new();
    let shown = wait_until(WAIT, || {
        let (_, out, _) = w.try_plugin(&["history", &name]);
        rows = out
            .lines()
            .skip(1)
            .filter_map(|l| {
                l.split_once(' ')
                    .map(|(n, r)| (n.to_string(), r.to_string()))
            })
            .collect();
        rows.get("2")
            .is_some_and(|r| r.contains("release 1.11") && r.contains("cfthf85s99bgu9olqr50"))
    });
    assert!(shown, "history: {rows:#?}\n{}", w.hook.logs());
    assert!(!rows["1"].contains("release 1.11"), "{rows:#?}");

    // Published: the plugin refuses before writing (no webhook denial), and nothing changes.
    w.plugin(&["publish", &name]);
    let (ok, _, err) = w.try_plugin(&["set-image", &name, "python:3.12-slim", "--key", &key]);
    assert!(!ok, "a published AppImage took a new image");
    assert!(
        err.contains(&format!("AppImage {name:?} is published"))
            && err.contains(&format!("kubectl appimage draft {name}")),
        "{err}"
    );
    assert!(
        !err.contains("denied the request"),
        "the plugin must refuse first: {err}"
    );
    assert_eq!(w.appimage(&name)["spec"]["image"], *img);
}

/// The example's config files: file name -> code.
fn example_code() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(repo_root().join(FUNCTION_APP)).unwrap();
    let img = manifest::appimages(FUNCTION_APP, &text).unwrap().remove(0);
    img.spec.config_templates.into_iter().collect()
}

/// The plugin run offline: no kubeconfig, from the repository root.
fn offline(args: &[&str]) -> std::process::Output {
    std::process::Command::new(workspace_bin("kubectl-appimage"))
        .args(args)
        .current_dir(repo_root())
        .env(
            "KUBECONFIG",
            "/nonexistent/kubectl-appimage-test/kubeconfig",
        )
        .output()
        .expect("run kubectl-appimage")
}

#[test]
fn the_function_example_renders_both_handlers_offline() {
    let code = example_code();
    assert!(code["handler.py"].contains("def process(event, context):"));
    assert!(code["index.js"].contains("exports.handler = async (event, context)"));
    let out = offline(&["render", "-f", FUNCTION_APP, "-o", "json"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    // Each file is the code verbatim (no template keys in it).
    for (file, body) in &code {
        assert_eq!(doc["configFiles"][file], body.as_str(), "{file}");
    }
    let pod = &doc["pod"];
    check_handler_mounts(pod);
    let shown = offline(&["render", "-f", FUNCTION_APP, "--show-config", "index.js"]);
    assert!(shown.status.success(), "{:?}", text(&shown));
    assert_eq!(String::from_utf8_lossy(&shown.stdout), code["index.js"]);
}

/// Both function services of `pod` mount their handler and runner.
fn check_handler_mounts(pod: &Value) {
    check_mounts(
        pod,
        "test-python",
        "/functions/python",
        &["handler.py", "runner.py"],
    );
    check_mounts(
        pod,
        "test-node",
        "/functions/node",
        &["index.js", "runner.js"],
    );
}

/// `container` of `pod` mounts each of `files` from the config volume at `dir/<file>`, and
/// that volume projects the file from the Pod's config annotation.
fn check_mounts(pod: &Value, container: &str, dir: &str, files: &[&str]) {
    let c = pod["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == container)
        .unwrap_or_else(|| panic!("no container {container}: {pod:#}"));
    assert_eq!(
        c["image"],
        "nikolaik/python-nodejs:python3.12-nodejs22-slim"
    );
    let mounts = c["volumeMounts"].as_array().cloned().unwrap_or_default();
    let volumes = pod["spec"]["volumes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let config = volumes
        .iter()
        .find(|v| v["name"] == "appimage-config")
        .unwrap_or_else(|| panic!("no config volume: {volumes:#?}"));
    for file in files {
        let path = format!("{dir}/{file}");
        let mounted = mounts.iter().any(|m| {
            m["name"] == "appimage-config"
                && m["mountPath"] == path.as_str()
                && m["subPath"] == *file
        });
        assert!(
            mounted,
            "{container} does not mount {file} at {path}: {mounts:#?}"
        );
        let field = format!("metadata.annotations['{CONFIG_PREFIX}{file}']");
        let projected = config["downwardAPI"]["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["path"] == *file && i["fieldRef"]["fieldPath"] == field.as_str());
        assert!(projected, "{file} is not projected: {config:#}");
    }
}

#[test]
fn the_function_example_deploys_pods_that_mount_the_code() {
    let w = World::new("fn");
    let name = w.image.clone();
    let text = std::fs::read_to_string(repo_root().join(FUNCTION_APP)).unwrap();
    let file = w.work.path().join("function-app.yaml");
    std::fs::write(
        &file,
        text.replacen("name: function-app", &format!("name: {name}"), 1),
    )
    .unwrap();
    // Signed with the plugin, as the example's comment says.
    let key = w.private_key();
    let signed = w.plugin(&["sign", "-f", &file.to_string_lossy(), "--key", &key]);
    let img = manifest::appimages("signed", &signed).unwrap().remove(0);
    w.apply(img);

    w.deploy("functions", &[]);
    let pods = w.wait_pods("functions", 1, |_| true);
    let pod = &pods[0];
    check_handler_mounts(pod);
    // The projected files hold the code itself.
    for (file, body) in example_code() {
        let key = format!("{CONFIG_PREFIX}{file}");
        assert_eq!(
            pod["metadata"]["annotations"][&key],
            body.as_str(),
            "{file}"
        );
    }
    // Each function service is told its port, and its handlers.
    let env = |container: &str, var: &str| -> Option<String> {
        pod["spec"]["containers"]
            .as_array()?
            .iter()
            .find(|c| c["name"] == container)?["env"]
            .as_array()?
            .iter()
            .find(|e| e["name"] == var)?["value"]
            .as_str()
            .map(str::to_string)
    };
    assert_eq!(
        env("test-python", "FUNCTIONS").as_deref(),
        Some("process=handler.process")
    );
    assert_eq!(
        env("test-node", "FUNCTIONS").as_deref(),
        Some("process=index.handler")
    );
    for container in ["test-python", "test-node"] {
        for var in ["KUSCIA_PORT_PYTHON_NUMBER", "KUSCIA_PORT_NODE_NUMBER"] {
            let port = env(container, var).unwrap_or_default();
            assert!(port.parse::<u16>().is_ok(), "{container} {var}={port:?}");
        }
    }
}
