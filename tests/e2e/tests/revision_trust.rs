//! Revisions and stages that cannot be forged (issue 24, section 3), on the whole test cluster:
//! the chart's ValidatingAdmissionPolicies rendered from the chart and installed, and every
//! test's webhook running as the chart's ServiceAccount (a token from the TokenRequest API),
//! the one identity the revisions policy lets write AppImageRevisions.
//!
//! - a user with `create` on appimagerevisions (and even a cluster admin) cannot write one;
//! - a forged revision (another hash than its template's, squatting the next name) is ignored
//!   by admission and by the controllers, with a Warning Event, and recording moves past it;
//! - a re-created AppImage never gives a Pod pinned to "revision N, hash H" another spec;
//! - leaving published, or deleting a published AppImage, needs `unpublish`: `update` and
//!   `delete` alone are refused, with a message naming the permission.
//!
//! The webhooks run with `--require-signature=false`: signatures are another test's subject.

use std::process::Output;
use std::sync::OnceLock;

use appimage::resource::AppImageSpec;
use appimage::workload::revision_hash;
use appimage_e2e::policies::{Installed, install, wait_enforced};
use appimage_e2e::world::{REVISIONS_CRD, Shared, WAIT, World};
use appimage_e2e::{text, unique, wait_until, write_json};
use serde_json::{Value, json};

const REVISION: &str = "appimage.kuscia.secretflow/revision";
const REVISION_HASH: &str = "appimage.kuscia.secretflow/revision-hash";
const STAGE: &str = "appimage.kuscia.secretflow/stage";
const EXAMPLE: &str = "secretflow-image.yaml";

fn shared() -> &'static Shared {
    Shared::once(&[REVISIONS_CRD], "trust")
}

/// The policies and the webhook's identity, made once per test binary, with the users the
/// tests impersonate: `mallory` (create on appimagerevisions), `editor` (every verb on
/// appimages but unpublish) and `releaser` (the release manager: editor plus unpublish).
fn installed() -> &'static Installed {
    static INSTALLED: OnceLock<Installed> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let s = shared();
        let installed = install(s.c);
        let appimages = ["get", "list", "watch", "create", "update", "patch", "delete"];
        let mut manager = appimages.to_vec();
        manager.push("unpublish");
        for (user, group, resource, verbs) in [
            ("mallory", "appimage.kuscia.secretflow", "appimagerevisions", vec!["get", "create", "update", "patch"]),
            ("editor", "kuscia.secretflow", "appimages", appimages.to_vec()),
            ("releaser", "kuscia.secretflow", "appimages", manager),
        ] {
            let name = unique(user);
            let role = json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": name},
                "rules": [{"apiGroups": [group], "resources": [resource], "verbs": verbs}]
            });
            let binding = json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]
            });
            for obj in [role, binding] {
                let file = write_json(s.c.dir(), &obj);
                s.c.kubectl_ok(&["apply", "-f", &file.to_string_lossy()]);
            }
        }
        installed
    })
}

/// A world whose webhook runs as the chart's ServiceAccount, on the shared Lease.
fn world(prefix: &str) -> World {
    let i = installed();
    let s = shared();
    let lease = format!("--lease-name={}", s.lease);
    let kubeconfig = format!("--kubeconfig={}", i.kubeconfig.display());
    World::with_webhook_args(
        s,
        prefix,
        &[
            &lease,
            "--lease-duration=2s",
            &kubeconfig,
            "--require-signature=false",
        ],
    )
}

/// kubectl with `args`, as `user` when given.
fn kubectl_as(w: &World, user: Option<&str>, args: &[&str]) -> Output {
    let as_user = user.map(|u| format!("--as={u}"));
    let mut full: Vec<&str> = args.to_vec();
    full.extend(as_user.as_deref());
    w.c.kubectl(&full)
}

/// `kubectl create -f` of `value`, as `user` when given.
fn create_as(w: &World, user: Option<&str>, value: &Value) -> Output {
    let file = write_json(w.work.path(), value);
    kubectl_as(w, user, &["create", "-f", &file.to_string_lossy()])
}

/// The example AppImage under the world's name with image tag `tag`, applied.
fn apply_example(w: &World, tag: &str, labels: Value) {
    let mut img = w.example(EXAMPLE, &w.image);
    img.spec.image.tag = tag.into();
    let mut value = serde_json::to_value(&img).unwrap();
    value["metadata"]["labels"] = labels;
    w.apply_json(&value);
}

fn revision_json(w: &World, n: i64) -> Value {
    w.revision(n);
    let name = format!("{}-{n}", w.image);
    serde_json::from_str(&w.c.kubectl_ok(&["get", "appimagerevision", &name, "-o", "json"]))
        .unwrap()
}

/// Revision `real` re-numbered `number` and cleaned for a create: what a forger starts from.
fn forged(w: &World, real: &Value, number: i64) -> Value {
    let mut rev = real.clone();
    rev["metadata"] = json!({
        "name": format!("{}-{number}", w.image),
        "ownerReferences": real["metadata"]["ownerReferences"],
    });
    rev["spec"]["revision"] = json!(number);
    rev
}

/// A bare Pod of the world's AppImage with `annotations`: kubectl's output.
fn pinned_pod(w: &World, name: &str, annotations: Value) -> Output {
    create_as(
        w,
        None,
        &json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": w.ns, "annotations": annotations,
                         "labels": {"kuscia.secretflow/app-image": w.image}},
            "spec": {"containers": []}
        }),
    )
}

/// The image of Pod `name`'s injected container.
fn pod_image(w: &World, name: &str) -> String {
    let pod = w.get_json(&[&format!("pod/{name}")]);
    pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == "secretflow")
        .and_then(|c| c["image"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// The Warning Events on AppImage `name` (in `default`, where cluster-scoped objects' go).
fn warnings(w: &World, name: &str) -> Vec<String> {
    let selector = format!("involvedObject.name={name},type=Warning");
    let out = w.c.kubectl_ok(&[
        "get",
        "events",
        "-n",
        "default",
        "--field-selector",
        &selector,
        "-o",
        "json",
    ]);
    let list: Value = serde_json::from_str(&out).unwrap();
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            format!(
                "{}: {}",
                e["reason"].as_str().unwrap_or_default(),
                e["message"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

#[test]
fn only_the_controllers_write_revisions() {
    let w = world("trust-writers");
    apply_example(&w, "1.0", json!({}));
    // The controllers, running as the chart's ServiceAccount, recorded it.
    let real = revision_json(&w, 1);
    let forged = forged(&w, &real, 2);
    let message = "only the appimage-webhook controllers";
    let enforced = wait_enforced(|| create_as(&w, Some("mallory"), &forged), message);
    let out = create_as(&w, Some("mallory"), &forged);
    assert!(
        enforced,
        "a user with create on appimagerevisions wrote one: {:?}",
        text(&out)
    );
    let err = text(&out).1;
    assert!(
        err.contains(&installed().username) && err.contains("mallory"),
        "{err}"
    );
    // A cluster admin is refused too, and nobody changes a recorded one.
    let out = create_as(&w, None, &forged);
    assert!(
        !out.status.success() && text(&out).1.contains(message),
        "{:?}",
        text(&out)
    );
    let name = format!("{}-1", w.image);
    for user in [Some("mallory"), None] {
        let out = kubectl_as(&w, user, &["label", "appimagerevision", &name, "x=y"]);
        assert!(
            !out.status.success() && text(&out).1.contains(message),
            "{:?}",
            text(&out)
        );
    }
}

#[test]
fn forged_revisions_are_ignored_and_recording_moves_past_them() {
    let w = world("trust-forged");
    apply_example(&w, "1.0", json!({}));
    let real = revision_json(&w, 1);
    let h1 = real["spec"]["hash"].as_str().unwrap().to_string();
    // Squat the next name with an unpublished spec that claims the real hash (only someone
    // holding the controllers' identity can still write it: impersonated here).
    let mut evil = forged(&w, &real, 2);
    evil["spec"]["template"]["image"]["tag"] = json!("evil");
    let out = create_as(&w, Some(&installed().username), &evil);
    assert!(out.status.success(), "{:?}", text(&out));

    // A Pod pinned to the forged number is refused; one naming the real hash gets revision 1.
    let out = pinned_pod(&w, "by-number", json!({REVISION: "2"}));
    let (_, err) = text(&out);
    assert!(
        !out.status.success() && err.contains("revision 2 of AppImage"),
        "{err}"
    );
    let out = pinned_pod(&w, "by-hash", json!({REVISION_HASH: h1}));
    assert!(out.status.success(), "{:?}\n{}", text(&out), w.logs());
    let image = pod_image(&w, "by-hash");
    assert!(image.contains(":1.0") && !image.contains("evil"), "{image}");

    // The controllers warn on the AppImage, and record the next spec past the squatted name.
    let ok = wait_until(WAIT, || {
        warnings(&w, &w.image)
            .iter()
            .any(|m| m.starts_with("RevisionIgnored") && m.contains("is not its template's"))
    });
    assert!(
        ok,
        "no RevisionIgnored Event: {:?}\n{}",
        warnings(&w, &w.image),
        w.logs()
    );
    apply_example(&w, "2.0", json!({}));
    let three = revision_json(&w, 3);
    let spec: AppImageSpec = serde_json::from_value(three["spec"]["template"].clone()).unwrap();
    assert_eq!(spec.image.tag, "2.0");
    assert_eq!(three["spec"]["hash"], revision_hash(&spec));
    let uid = w.c.kubectl_ok(&[
        "get",
        "appimage",
        &w.image,
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    assert_eq!(three["metadata"]["ownerReferences"][0]["uid"], uid.as_str());
}

#[test]
fn a_recreated_appimage_never_gives_a_pinned_pod_another_spec() {
    let w = world("trust-recreated");
    apply_example(&w, "1.0", json!({}));
    w.revision(1);
    apply_example(&w, "2.0", json!({}));
    let old_two = w.revision(2);
    // Deleted: the garbage collector removes its revisions; then re-created with other specs.
    w.c.kubectl_ok(&["delete", "appimage", &w.image]);
    let gone = wait_until(WAIT, || {
        w.c.kubectl_ok(&[
            "get",
            "appimagerevisions",
            "--field-selector",
            &format!("spec.appImage={}", w.image),
            "-o",
            "name",
        ])
        .trim()
        .is_empty()
    });
    assert!(gone, "the old revisions were never garbage-collected");
    apply_example(&w, "3.0", json!({}));
    w.revision(1);
    apply_example(&w, "4.0", json!({}));
    let new_two = w.revision(2);
    assert_ne!(old_two, new_two);

    // Pinned to the old revision 2 (as a rollout pins): refused, saying why.
    let out = pinned_pod(
        &w,
        "old-pin",
        json!({REVISION: "2", REVISION_HASH: old_two}),
    );
    let (_, err) = text(&out);
    assert!(
        !out.status.success() && err.contains("now has hash") && err.contains("re-created"),
        "a Pod pinned to the old revision 2 was admitted: {err}\nits image: {}",
        if out.status.success() {
            pod_image(&w, "old-pin")
        } else {
            String::new()
        }
    );
    let out = pinned_pod(
        &w,
        "new-pin",
        json!({REVISION: "2", REVISION_HASH: new_two}),
    );
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(pod_image(&w, "new-pin").contains(":4.0"));
}

#[test]
fn leaving_published_needs_unpublish() {
    let w = world("trust-stage");
    apply_example(&w, "1.0", json!({STAGE: "published"}));
    let name = w.image.clone();
    let label = |stage: &str| format!("{STAGE}={stage}");
    let message = "needs the permission unpublish on appimages.kuscia.secretflow";
    let draft = label("draft");
    let demote = |user: &str| {
        kubectl_as(
            &w,
            Some(user),
            &["label", "appimage", &name, &draft, "--overwrite"],
        )
    };
    let enforced = wait_enforced(|| demote("editor"), message);
    assert!(
        enforced,
        "update alone moved a published AppImage to draft: {:?}",
        text(&demote("editor"))
    );
    let err = text(&demote("editor")).1;
    assert!(
        err.contains("moving to draft") && err.contains("editor"),
        "{err}"
    );
    // Nor by deprecating (a deprecated AppImage may be edited), removing the label or deleting.
    let deprecated = label("deprecated");
    let stage_key = format!("{STAGE}-");
    for args in [
        vec!["label", "appimage", &name, &deprecated, "--overwrite"],
        vec!["label", "appimage", &name, &stage_key],
        vec!["delete", "appimage", &name],
    ] {
        let out = kubectl_as(&w, Some("editor"), &args);
        let (_, err) = text(&out);
        assert!(
            !out.status.success() && err.contains(message),
            "{args:?}: {err}"
        );
    }
    // Other changes of a published AppImage stay with update.
    let out = kubectl_as(
        &w,
        Some("editor"),
        &["annotate", "appimage", &name, "note=x"],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    // The release manager may; an editor may publish again, and delete a draft.
    let out = demote("releaser");
    assert!(out.status.success(), "{:?}", text(&out));
    let published = label("published");
    let out = kubectl_as(
        &w,
        Some("editor"),
        &["label", "appimage", &name, &published, "--overwrite"],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let out = kubectl_as(&w, Some("releaser"), &["delete", "appimage", &name]);
    assert!(out.status.success(), "{:?}", text(&out));
}
