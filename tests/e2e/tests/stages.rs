//! AppImage stages (issue 19) through the real validating and mutating webhooks on a real
//! kube-apiserver, with the real kubectl and the plugin on PATH: a published spec refuses edits,
//! a deprecated AppImage's Pods are admitted with a warning kubectl prints, `deploy` refuses a
//! deprecated AppImage, and a Deployment already running it still scales up.

use std::time::Duration;

use appimage::labels;
use appimage::manifest;
use appimage::resource::AppImage;
use appimage::signature::payload;
use appimage_e2e::webhook::{SigningKey, Tls, Webhook, register};
use appimage_e2e::world::REVISIONS_CRD;
use appimage_e2e::{Cluster, cluster, repo_root, text, unique, wait_until};
use serde_json::{Value, json};

const DIGEST: &str = "sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945";

/// The seed AppImage, signed, labelled so the validating webhook sees it.
fn signed_seed(name: &str, tag: &str, signer: &SigningKey) -> AppImage {
    let path = repo_root().join("examples/secretflow-image.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut img = manifest::appimages("seed", &text).unwrap().remove(0);
    img.metadata.name = Some(name.into());
    img.metadata.labels = Some([("appimage-e2e".to_string(), tag.to_string())].into());
    img.spec.image.id = Some(DIGEST.into());
    img.spec.image.sign = Some(signer.sign(&payload(&img)));
    img
}

fn write(c: &Cluster, value: &Value) -> String {
    let file = c.dir().join(format!("{}.json", unique("obj")));
    std::fs::write(&file, serde_json::to_vec(value).unwrap()).unwrap();
    file.to_string_lossy().into_owned()
}

fn pod(ns: &str, name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": ns,
            "labels": {labels::APP_IMAGE: image},
            "annotations": {labels::OPT_TASK_ID: "t1"}
        },
        "spec": {"containers": []}
    })
}

/// kubectl's exit code and stderr.
fn run(c: &Cluster, args: &[&str]) -> (bool, String) {
    let out = c.kubectl(args);
    (out.status.success(), text(&out).1)
}

fn workload_pods(c: &Cluster, ns: &str, workload: &str) -> Vec<Value> {
    let selector = format!("appimage.kuscia.secretflow/workload={workload}");
    let out = c.kubectl_ok(&["get", "pods", "-n", ns, "-l", &selector, "-o", "json"]);
    let list: Value = serde_json::from_str(&out).expect("JSON");
    list["items"].as_array().cloned().unwrap_or_default()
}

fn wait_running(c: &Cluster, ns: &str, workload: &str, n: usize, hook: &Webhook) {
    let mut last = Vec::new();
    let ok = wait_until(Duration::from_secs(90), || {
        last = workload_pods(c, ns, workload);
        last.len() == n && last.iter().all(|p| p["status"]["phase"] == "Running")
    });
    assert!(
        ok,
        "wanted {n} Running Pods of {workload}: {last:#?}\n{}",
        hook.logs()
    );
}

#[test]
fn stage_rules_hold_through_the_real_webhooks() {
    let c = cluster();
    // The revisions controller (which tells a deprecated AppImage's workloads) needs its CRD.
    c.kubectl_ok(&["apply", "--server-side", "-f", REVISIONS_CRD.path]);
    let served = wait_until(Duration::from_secs(60), || {
        c.kubectl(&["get", "appimagerevisions"]).status.success()
    });
    assert!(served, "the AppImageRevision CRD is not served");
    let work = tempfile::tempdir().unwrap();
    let tls = Tls::new(&work.path().join("tls"), "appimage-webhook");
    let signer = SigningKey::new(work.path());
    let hook = Webhook::start(c, &tls, &signer.pub_dir, &[]);
    let tag = unique("st");
    let ns = c.namespace("st");
    c.kubectl_ok(&["label", "namespace", &ns, &format!("appimage-e2e={tag}")]);
    register(c, &hook, &tls, &tag);

    let name = unique("staged");
    let img = serde_json::to_value(signed_seed(&name, &tag, &signer)).unwrap();
    let (ok, err) = run(c, &["apply", "-f", &write(c, &img)]);
    assert!(ok, "{err}\n{}", hook.logs());
    let probe = write(c, &pod(&ns, "probe", &name));
    let seen = wait_until(Duration::from_secs(20), || {
        run(c, &["create", "-f", &probe, "--dry-run=server"]).0
    });
    assert!(seen, "webhook never saw {name}:\n{}", hook.logs());

    // A Deployment of it runs while it is still a draft.
    c.kubectl_ok(&["appimage", "deploy", &name, "-n", &ns, "--name", "web"]);
    wait_running(c, &ns, "web", 1, &hook);

    // Published: a spec edit is refused with the way out; a metadata edit is not.
    c.kubectl_ok(&["appimage", "publish", &name]);
    let edit = r#"[{"op":"replace","path":"/spec/deployTemplates/0/replicas","value":3}]"#;
    let (ok, err) = run(c, &["patch", "appimage", &name, "--type=json", "-p", edit]);
    assert!(!ok, "a published spec was edited");
    assert!(err.contains("denied the request"), "{err}");
    assert!(
        err.contains("is published") && err.contains("create a new AppImage"),
        "{err}"
    );
    assert!(
        err.contains(&format!("kubectl appimage draft {name}")),
        "{err}"
    );
    c.kubectl_ok(&["label", "appimage", &name, "team=e2e"]);

    // Deprecated: Pods are admitted, and kubectl prints the warning naming the replacement.
    // The replacement exists (deprecate refuses one that does not).
    let next = format!("{name}-next");
    let next_img = serde_json::to_value(signed_seed(&next, &tag, &signer)).unwrap();
    let (ok, err) = run(c, &["apply", "-f", &write(c, &next_img)]);
    assert!(ok, "{err}");
    c.kubectl_ok(&["appimage", "deprecate", &name, "--replaced-by", &next]);
    let want =
        format!("Warning: AppImage \"{name}\" is deprecated; use AppImage \"{next}\" instead");
    let warned = wait_until(Duration::from_secs(20), || {
        let (ok, err) = run(c, &["create", "-f", &probe, "--dry-run=server"]);
        ok && err.contains(&want)
    });
    assert!(warned, "no deprecation warning:\n{}", hook.logs());
    let (ok, err) = run(c, &["create", "-f", &write(c, &pod(&ns, "job-0", &name))]);
    assert!(ok && err.contains(&want), "{err}");

    // deploy refuses a deprecated AppImage unless told otherwise.
    let (ok, err) = run(
        c,
        &["appimage", "deploy", &name, "-n", &ns, "--name", "web2"],
    );
    assert!(!ok && err.contains("--allow-deprecated"), "{err}");
    assert!(!run(c, &["get", "deployment", "web2", "-n", &ns]).0);
    let allowed = [
        "appimage",
        "deploy",
        &name,
        "-n",
        &ns,
        "--name",
        "web2",
        "--allow-deprecated",
        "--dry-run=client",
    ];
    c.kubectl_ok(&allowed);

    // What already runs keeps scaling: the new Pod is admitted (with the warning) and runs.
    c.kubectl_ok(&["scale", "deployment", "web", "-n", &ns, "--replicas=2"]);
    wait_running(c, &ns, "web", 2, &hook);

    // The warning admission gave the Deployment's controller reaches the user as one Warning
    // Event on the Deployment (issue 30), not one per Pod.
    let deprecated = || {
        let out = c.kubectl_ok(&[
            "get",
            "events",
            "-n",
            &ns,
            "--field-selector",
            "involvedObject.kind=Deployment,involvedObject.name=web,reason=AppImageDeprecated",
            "-o",
            "jsonpath={range .items[*]}{.type}: {.message}{\"\\n\"}{end}",
        ]);
        out.lines().map(String::from).collect::<Vec<_>>()
    };
    let told = wait_until(Duration::from_secs(60), || !deprecated().is_empty());
    assert!(
        told,
        "no AppImageDeprecated Event on deployment/web:\n{}",
        hook.logs()
    );
    let events = deprecated();
    assert_eq!(events.len(), 1, "{events:?}");
    // `want` is kubectl's "Warning: <the warning>": the Event's type and message read the same.
    assert!(events[0].starts_with(&want), "{events:?}");
}
