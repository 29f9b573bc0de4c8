//! The injection plan (issue 31): over many AppImages and Pods, the patch a plan writes from its
//! parts is byte for byte the diff of the Pod `render` prints, and the diff of the plan's own
//! injection; applied to the Pod, it gives that Pod.

// Tests unwrap: a panic is their failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use appimage::admitted::{self, SealKey};
use appimage::injection::{Plan, Request, inject, parse_templates};
use appimage::labels;
use appimage::manifest;
use appimage::patch::pod_diff;
use appimage::pod_view::PodView;
use appimage::resource::AppImage;
use k8s_openapi::api::core::v1::Pod;
use proptest::prelude::*;
use serde_json::{Value, json};

fn example(name: &str) -> AppImage {
    let path = format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    manifest::appimages(&path, &text).unwrap().remove(0)
}

const EXAMPLES: [&str; 4] = [
    "secretflow-image.yaml",
    "secretflow-image-update.yaml",
    "app-template.yaml",
    "function-app.yaml",
];

/// Pieces of config templates: text, per-Pod values, the plan's own, queries of each, and
/// what fails.
const PIECES: [&str; 14] = [
    "{\"a\": \"",
    "\"}\n",
    "{{.TASK_ID}}",
    "{{.KUSCIA_DOMAIN_ID}}",
    "{{.ALLOCATED_PORTS}}",
    "{{{.ALLOCATED_PORTS.ports[0].port}}}",
    "{{{.TASK_CLUSTER_DEFINE.parties[0].name}}}",
    "{{{.TASK_CLUSTER_DEFINE.parties[.TASK_CLUSTER_DEFINE.selfPartyIdx].name}}}",
    "{{{.TASK_INPUT_CONFIG.x[7]}}}",
    "{{.KUSCIA_PORT_GLOBAL_NUMBER}}",
    "{{.APP_NAME}}",
    "{{.NOT_SET}}",
    "é \\ \u{1} ",
    "{{{.ALLOCATED_PORTS.ports[.ALLOCATED_PORTS.ports[0].port]}}}",
];

/// An example AppImage, perhaps with other config templates, an image id and a pod-overrides
/// annotation.
fn appimage() -> impl Strategy<Value = AppImage> {
    let template = prop::collection::vec(0..PIECES.len(), 0..6)
        .prop_map(|ids| ids.into_iter().map(|i| PIECES[i]).collect::<String>());
    (
        0..EXAMPLES.len(),
        prop::option::of(template),
        any::<bool>(),
        prop::sample::select(vec![None, Some("all"), Some("none"), Some("bogus")]),
    )
        .prop_map(|(i, template, id, overrides)| {
            let mut image = example(EXAMPLES[i]);
            if let Some(text) = template {
                for t in image.spec.config_templates.values_mut() {
                    *t = text.clone();
                }
            }
            if !id {
                image.spec.image.id = None;
            }
            image.metadata.resource_version = Some("7".into());
            if let Some(o) = overrides {
                let a = image
                    .metadata
                    .annotations
                    .get_or_insert_with(Default::default);
                a.insert(labels::POD_OVERRIDES.into(), o.into());
            }
            image
        })
}

fn text() -> impl Strategy<Value = String> {
    "[a-z0-9/~\"\\\\\né-]{0,8}"
}

/// A Pod labelled for `image`: bare, or with a container of its own; named or generated; with
/// options, stale injected annotations and a controller, or not.
fn pod(image: String) -> impl Strategy<Value = Pod> {
    let role = prop::sample::select(vec!["", "server", "client", "nobody"]);
    let annotations = prop::collection::btree_map(
        prop::sample::select(vec![
            labels::OPT_TASK_ID.to_string(),
            labels::OPT_INPUT_CONFIG.to_string(),
            labels::OPT_SERVING_ID.to_string(),
            labels::OPT_CLUSTER_DEFINE.to_string(),
            labels::OPT_STRICT.to_string(),
            labels::OPT_VALUES.to_string(),
            labels::STATUS.to_string(),
            labels::TASK_ID.to_string(),
            format!("{}task-config.conf", labels::CONFIG_PREFIX),
            format!("{}stale.conf", labels::CONFIG_PREFIX),
            "other/a~b".to_string(),
        ]),
        text(),
        0..4,
    );
    (
        role,
        prop::option::of(annotations),
        prop::option::of("[a-z]{1,6}"),
        any::<bool>(),
        prop::option::of("[a-z]{0,3}"),
        0..3u8,
    )
        .prop_map(
            move |(role, annotations, name, controlled, workload, spec)| {
                let mut labels = json!({labels::APP_IMAGE: image});
                if !role.is_empty() {
                    labels[labels::OPT_ROLE] = json!(role);
                    labels[labels::POD_ROLE] = json!("stale");
                }
                if let Some(w) = workload {
                    labels[labels::WORKLOAD] = json!(w);
                }
                let mut annotations = annotations.map(|a| json!(a));
                if let Some(a) = annotations.as_mut()
                    && a.get(labels::OPT_VALUES).is_some()
                {
                    a[labels::OPT_VALUES] = json!("{\"APP_NAME\": \"x\"}");
                }
                if let Some(a) = annotations.as_mut()
                    && a.get(labels::OPT_STRICT).is_some()
                {
                    a[labels::OPT_STRICT] = json!("true");
                }
                let mut meta = json!({"namespace": "alice", "labels": labels});
                match name {
                    Some(n) => meta["name"] = json!(n),
                    None => meta["generateName"] = json!("gen-"),
                }
                if let Some(a) = annotations {
                    meta["annotations"] = a;
                }
                if controlled {
                    meta["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "rs", "uid": "u", "controller": true}]);
                }
                let spec = match spec {
                    0 => json!({"containers": []}),
                    1 => json!({"containers": [{"name": "app", "image": "x"}]}),
                    _ => json!({"containers": [], "restartPolicy": "Always"}),
                };
                serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": meta, "spec": spec}))
                .unwrap()
            },
        )
}

fn case() -> impl Strategy<Value = (AppImage, Pod, bool)> {
    appimage().prop_flat_map(|image| {
        let name = image.name().to_string();
        (Just(image), pod(name), any::<bool>())
    })
}

/// The patch `render`'s Pod makes of `pod`, sealed as the webhook seals: the reference.
fn rendered(image: &AppImage, pod: &Pod, req: &Request, seal: Option<&SealKey>) -> String {
    let mut out = match inject(image, pod, req) {
        Ok(out) => out.pod,
        Err(e) => return format!("error: {e}"),
    };
    if let Some(key) = seal {
        admitted::seal(key, "alice", &mut out);
    }
    let before = serde_json::to_value(pod).unwrap();
    let patch = pod_diff(&before, out.clone()).unwrap();
    if let Some(bytes) = &patch {
        let ops: json_patch::Patch = serde_json::from_slice(bytes).unwrap();
        let mut doc = before;
        json_patch::patch(&mut doc, &ops).unwrap();
        assert_eq!(doc, serde_json::to_value(&out).unwrap());
    }
    String::from_utf8(patch.unwrap_or_default()).unwrap()
}

/// What admission answers: the plan's patch when it covers the Pod, else its injection's diff.
/// `Err(())` when the plan does not cover the Pod.
fn planned(
    image: &AppImage,
    pod: &Pod,
    view: &PodView<'_>,
    req: &Request,
    seal: Option<&SealKey>,
) -> Result<String, ()> {
    let templates = match parse_templates(image) {
        Ok(t) => t,
        Err(e) => return Ok(format!("error: {e}")),
    };
    let plan = match Plan::build(image, &templates, req) {
        Ok(plan) => plan,
        Err(e) => return Ok(format!("error: {e}")),
    };
    let sealed = seal.map(|k| (k, "alice"));
    match plan.patch(image, view, req, sealed) {
        Some(Ok(p)) => Ok(String::from_utf8(p.patch.unwrap_or_default()).unwrap()),
        Some(Err(e)) => Ok(format!("error: {e}")),
        None => {
            // Covered or not, the plan's own injection diffs the same.
            let mut out = match plan.inject(image, &templates, pod.clone(), req) {
                Ok(out) => out.pod,
                Err(e) => return Ok(format!("error: {e}")),
            };
            if let Some(key) = seal {
                admitted::seal(key, "alice", &mut out);
            }
            let before = serde_json::to_value(pod).unwrap();
            let patch = pod_diff(&before, out).unwrap().unwrap_or_default();
            assert_eq!(
                String::from_utf8(patch).unwrap(),
                rendered(image, pod, req, seal)
            );
            Err(())
        }
    }
}

fn check(image: &AppImage, pod: &Pod, seal: bool) -> bool {
    let key = SealKey::new(&[b'k'; 32]).unwrap();
    let seal = seal.then_some(&key);
    let name = appimage::injection::pod_name(pod, "uid-1").unwrap();
    let Ok(mut req) = Request::from_pod(pod, "alice", &name) else {
        return false;
    };
    req.pod_overrides = appimage::overrides::PodOverrides::Env;
    let want = rendered(image, pod, &req, seal);
    // The view of the tree, and the view decoded from the Pod's JSON as admission decodes it.
    let text = serde_json::to_string(pod).unwrap();
    let raw: &serde_json::value::RawValue = serde_json::from_str(&text).unwrap();
    let decoded: PodView = serde_json::from_str(raw.get()).unwrap();
    let tree = planned(image, pod, &PodView::of(pod), &req, seal);
    let from_json = planned(image, pod, &decoded, &req, seal);
    assert_eq!(tree, from_json, "the two views");
    match tree {
        Ok(got) => {
            assert_eq!(got, want);
            true
        }
        Err(()) => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn a_plan_patches_what_render_prints((image, pod, seal) in case()) {
        check(&image, &pod, seal);
    }
}

/// The generator reaches the plan's patch, not only the fallback.
#[test]
fn the_plan_covers_bare_pods_of_every_example() {
    for file in EXAMPLES {
        let image = example(file);
        let role = match file {
            "app-template.yaml" => "server",
            _ => "",
        };
        let mut labels = json!({labels::APP_IMAGE: image.name()});
        if !role.is_empty() {
            labels[labels::OPT_ROLE] = json!(role);
        }
        let pod: Pod =
            serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "alice",
            "labels": labels, "annotations": {labels::OPT_TASK_ID: "t1"}},
            "spec": {"containers": []}}))
            .unwrap();
        assert!(check(&image, &pod, false), "{file}");
        assert!(check(&image, &pod, true), "{file} sealed");
    }
}

/// A Pod that brings a container of its own is injected and diffed, not planned.
#[test]
fn a_pod_with_containers_is_not_planned() {
    let image = example("secretflow-image.yaml");
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p",
        "labels": {labels::APP_IMAGE: image.name()}},
        "spec": {"containers": [{"name": "secretflow"}]}}))
    .unwrap();
    assert!(!check(&image, &pod, false));
    let view: Value = serde_json::to_value(&pod).unwrap();
    assert!(view["spec"]["containers"].is_array());
}
