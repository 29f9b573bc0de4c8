//! Pods stay as admitted (issue 24, section 2), on the real control plane: after admission a
//! user with `pods patch` can neither swap an injected image, nor add an ephemeral container,
//! nor relabel a plain Pod into an AppImage's identity; the Services controller builds nothing
//! from a status the webhook did not seal; what a Pod may override of its template is the
//! `--pod-overrides` policy; a user-set `pod-role` does not survive injection.

use std::time::Duration;

use appimage::labels;
use appimage_e2e::world::{Crd, REVISIONS_CRD, Shared, World};
use appimage_e2e::{text, wait_until, write_json};
use serde_json::{Value, json};

/// The webhook watches AppImageRevisions too.
const CRDS: &[Crd] = &[REVISIONS_CRD];

fn world(prefix: &str) -> World {
    Shared::once(CRDS, "integrity").world(prefix)
}

fn pod(ns: &str, name: &str, labels: Value, annotations: Value, containers: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels, "annotations": annotations},
        "spec": {"containers": containers}
    })
}

/// `kubectl create` of `value`, once the webhook's cache has the AppImage (dry runs first).
fn create_injected(w: &World, value: &Value) {
    let file = write_json(w.work.path(), value);
    let f = file.to_string_lossy().into_owned();
    let admitted = wait_until(Duration::from_secs(30), || {
        w.c.kubectl(&["create", "--dry-run=server", "-f", &f])
            .status
            .success()
    });
    let dry = text(&w.c.kubectl(&["create", "--dry-run=server", "-f", &f]));
    assert!(
        admitted,
        "the webhook never admitted {value}: {dry:?}\n{}",
        w.logs()
    );
    w.c.kubectl_ok(&["create", "-f", &f]);
}

fn create(w: &World, value: &Value) -> std::process::Output {
    let file = write_json(w.work.path(), value);
    w.c.kubectl(&["create", "-f", &file.to_string_lossy()])
}

/// An injected Pod `name` of the world's (signed seed) AppImage.
fn injected_pod(w: &World, name: &str) -> Value {
    let value = pod(
        &w.ns,
        name,
        json!({labels::APP_IMAGE: w.image}),
        json!({labels::OPT_TASK_ID: "t1"}),
        json!([]),
    );
    create_injected(w, &value);
    get_pod(w, &w.ns, name)
}

fn get_pod(w: &World, ns: &str, name: &str) -> Value {
    let out =
        w.c.kubectl_ok(&["get", "pod", name, "-n", ns, "-o", "json"]);
    serde_json::from_str(&out).unwrap()
}

/// A refused kubectl call: its stderr, which must name `want`.
fn refused(w: &World, args: &[&str], want: &[&str]) -> String {
    let out = w.c.kubectl(args);
    let (stdout, stderr) = text(&out);
    assert!(
        !out.status.success(),
        "kubectl {args:?} was allowed: {stdout}\n{}",
        w.logs()
    );
    for want in want {
        assert!(
            stderr.contains(want),
            "kubectl {args:?}: {want:?} not in {stderr}"
        );
    }
    stderr
}

fn seed(prefix: &str) -> World {
    let w = world(prefix);
    w.apply_signed_example("secretflow-image.yaml", &w.image);
    w
}

#[test]
fn an_injected_image_cannot_be_swapped() {
    let w = seed("swap");
    let before = injected_pod(&w, "job-0");
    let image = before["spec"]["containers"][0]["image"].clone();
    let stderr = refused(
        &w,
        &[
            "set",
            "image",
            "pod/job-0",
            "-n",
            &w.ns,
            "secretflow=busybox:evil",
        ],
        &["spec.containers[0].image", "kubectl appimage rollout"],
    );
    eprintln!("denied as it should be: {stderr}");
    // A JSON patch, as any client would send it.
    let patch = r#"[{"op":"replace","path":"/spec/containers/0/image","value":"busybox:evil"}]"#;
    refused(
        &w,
        &[
            "patch",
            "pod",
            "job-0",
            "-n",
            &w.ns,
            "--type=json",
            "-p",
            patch,
        ],
        &["cannot change"],
    );
    assert_eq!(
        get_pod(&w, &w.ns, "job-0")["spec"]["containers"][0]["image"],
        image
    );
    // Other labels stay free.
    w.c.kubectl_ok(&["label", "pod", "job-0", "-n", &w.ns, "team=a"]);
}

#[test]
fn no_ephemeral_container_joins_an_injected_pod() {
    let w = seed("debug");
    injected_pod(&w, "job-0");
    let stderr = refused(
        &w,
        &[
            "debug",
            "job-0",
            "-n",
            &w.ns,
            "--image=busybox",
            "-c",
            "dbg",
            "--profile=general",
        ],
        &["ephemeral containers cannot be added"],
    );
    eprintln!("denied as it should be: {stderr}");
    let stored = get_pod(&w, &w.ns, "job-0");
    assert!(
        stored["spec"].get("ephemeralContainers").is_none(),
        "{stored}"
    );
}

#[test]
fn identity_labels_and_webhook_annotations_stay() {
    let w = seed("ident");
    injected_pod(&w, "job-0");
    let ns = w.ns.clone();
    let pod_args = |rest: &[&str]| {
        let mut args = vec!["-n", ns.as_str()];
        args.extend_from_slice(rest);
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    for change in [
        vec!["label", "pod", "job-0", "kuscia.secretflow/app-image-"],
        vec![
            "label",
            "pod",
            "job-0",
            "--overwrite",
            "kuscia.secretflow/app-image=other",
        ],
        vec!["label", "pod", "job-0", "kuscia.secretflow/pod-role=server"],
        vec![
            "label",
            "pod",
            "job-0",
            "--overwrite",
            "kuscia.secretflow/pod-identity=x",
        ],
        vec![
            "annotate",
            "pod",
            "job-0",
            "--overwrite",
            "appimage.kuscia.secretflow/status={}",
        ],
        vec![
            "annotate",
            "pod",
            "job-0",
            "--overwrite",
            "config.appimage.kuscia.secretflow/task-config.conf=evil",
        ],
    ] {
        let args = pod_args(&change);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(&w, &args, &["cannot be added", "as admitted"]);
    }
}

/// An injected Pod `job-0` once the controllers made its Services; its status and seal
/// annotations; a busybox container list.
fn injected_with_services(w: &World) -> (Value, Value, Value) {
    let real = injected_pod(w, "job-0");
    // The controllers work: the injected Pod gets its Services.
    let sel = format!("{}=job-0", labels::POD_IDENTITY);
    let has_services = wait_until(Duration::from_secs(60), || {
        !w.items(&["services", "-l", &sel]).is_empty()
    });
    assert!(
        has_services,
        "the injected Pod got no Services:\n{}",
        w.logs()
    );
    let mut copied = serde_json::Map::new();
    for key in [labels::STATUS, labels::ADMITTED] {
        if let Some(value) = real["metadata"]["annotations"].get(key) {
            copied.insert(key.into(), value.clone());
        }
    }
    let copied = Value::Object(copied);
    let busybox = json!([{"name": "main", "image": "busybox"}]);
    (real, copied, busybox)
}

#[test]
fn a_plain_pod_cannot_gain_the_label() {
    let w = seed("forge");
    let (_, copied, busybox) = injected_with_services(&w);
    // A plain Pod with the copied annotations (no label: the webhook never sees its CREATE)
    // cannot take the label afterwards.
    let plain = pod(&w.ns, "plain", json!({}), copied.clone(), busybox.clone());
    let out = create(&w, &plain);
    assert!(out.status.success(), "{:?}", text(&out));
    let label = format!("{}={}", labels::APP_IMAGE, w.image);
    let stderr = refused(
        &w,
        &["label", "pod", "plain", "-n", &w.ns, &label],
        &["was not injected", "cannot gain the label"],
    );
    eprintln!("denied as it should be: {stderr}");
}

#[test]
fn a_forged_status_builds_no_services() {
    let w = seed("sealed");
    let (real, copied, busybox) = injected_with_services(&w);
    assert!(
        real["metadata"]["annotations"]
            .get(labels::STATUS)
            .is_some()
    );
    // The same Pod where the webhook is bypassed (a namespace it does not admit) keeps the
    // label and the copied status, but has no valid seal: the controller builds nothing.
    let bypassed = w.c.namespace("forge-bypassed");
    let forged = pod(
        &bypassed,
        "job-0",
        json!({labels::APP_IMAGE: w.image}),
        copied,
        busybox,
    );
    let out = create(&w, &forged);
    assert!(out.status.success(), "{:?}", text(&out));
    let built = wait_until(Duration::from_secs(15), || {
        let out =
            w.c.kubectl(&["get", "services", "-n", &bypassed, "-o", "name"]);
        !text(&out).0.trim().is_empty()
    });
    let services = text(&w.c.kubectl(&["get", "services", "-n", &bypassed, "-o", "name"])).0;
    assert!(!built, "Services built from a forged status: {services}");
}

#[test]
fn a_user_set_role_label_does_not_survive_injection() {
    let w = seed("role");
    let value = pod(
        &w.ns,
        "job-0",
        json!({labels::APP_IMAGE: w.image, labels::POD_ROLE: "server"}),
        json!({labels::OPT_TASK_ID: "t1"}),
        json!([]),
    );
    create_injected(&w, &value);
    let stored = get_pod(&w, &w.ns, "job-0");
    assert!(
        stored["metadata"]["labels"].get(labels::POD_ROLE).is_none(),
        "no role was asked, yet the Pod is a {:?} peer",
        stored["metadata"]["labels"][labels::POD_ROLE]
    );
}

#[test]
fn a_pod_may_override_env_and_resources_only_by_default() {
    let w = seed("override");
    let container = |extra: Value| {
        let mut c = json!({"name": "secretflow", "image": "placeholder",
                           "env": [{"name": "LOG_LEVEL", "value": "debug"}],
                           "resources": {"limits": {"memory": "1Gi"}}});
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        c
    };
    let make = |name: &str, containers: Value| {
        pod(
            &w.ns,
            name,
            json!({labels::APP_IMAGE: w.image}),
            json!({}),
            containers,
        )
    };
    // env and resources: admitted, and they reach the container.
    create_injected(&w, &make("env-0", json!([container(json!({}))])));
    let stored = get_pod(&w, &w.ns, "env-0");
    let c = &stored["spec"]["containers"][0];
    assert_eq!(c["resources"]["limits"]["memory"], "1Gi");
    assert!(
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "LOG_LEVEL")
    );
    // A command of its own, or a second container: denied with the field path.
    let cmd = make(
        "cmd-0",
        json!([container(json!({"command": ["sh", "-c", "evil"]}))]),
    );
    let out = create(&w, &cmd);
    let (_, stderr) = text(&out);
    assert!(!out.status.success(), "a command override was admitted");
    assert!(stderr.contains("spec.containers[0].command"), "{stderr}");
    assert!(stderr.contains("pod-overrides"), "{stderr}");
    let extra = make(
        "extra-0",
        json!([container(json!({})), {"name": "sidecar", "image": "busybox"}]),
    );
    let out = create(&w, &extra);
    let (_, stderr) = text(&out);
    assert!(!out.status.success(), "an extra container was admitted");
    assert!(stderr.contains("spec.containers[1]"), "{stderr}");
}
