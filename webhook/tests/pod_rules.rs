//! Pods stay as admitted, at the handler: /mutate seals what it injects and applies the
//! pod-overrides policy; /validate-pods refuses the UPDATEs that would undo admission.

// Tests unwrap: a panic is their failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use appimage::admitted::{self, SealKey};
use appimage::labels;
use appimage::overrides::PodOverrides;
use appimage_webhook::admission::{self, Outcome, PodRules, Policy};
use appimage_webhook::catalog::Catalog;
use appimage_webhook::trust::Trust;
use common::*;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

const REQUIRED: Policy = Policy {
    require_signature: true,
    signatures: admission::SignaturePolicy::DEFAULT,
};

fn key() -> SealKey {
    SealKey::new(b"a-test-seal-key-of-at-least-32-bytes").unwrap()
}

/// The catalog with AppImage `demo`, signed, and the rules under test.
fn catalog(dir: &std::path::Path) -> Catalog {
    let key = make_signing_key(dir, "signer");
    let mut good = appimage("demo", "10");
    sign(dir, "signer", &mut good);
    let (reader, _writer) = store(&[good], true);
    Catalog::new(reader, Trust::fixed(vec![key]))
}

/// `pod` as /mutate leaves it under `rules`: the patched Pod, or the denial.
fn admit(catalog: &Catalog, pod: Value, rules: &PodRules) -> Result<Pod, String> {
    let body = serde_json::to_vec(&pod_review(pod.clone())).unwrap();
    let reply = admission::mutate_with(&body, catalog, REQUIRED, rules).unwrap();
    if reply.outcome == Outcome::Denied {
        return Err(reply.response().status.message.clone());
    }
    let patch: json_patch::Patch =
        serde_json::from_slice(&reply.response().patch_bytes().unwrap_or(b"[]".to_vec())).unwrap();
    let mut patched = pod;
    json_patch::patch(&mut patched, &patch).unwrap();
    Ok(serde_json::from_value(patched).unwrap())
}

#[test]
fn mutate_seals_what_it_injects_and_replaces_a_brought_seal() {
    let dir = temp_dir();
    let catalog = catalog(dir.path());
    let rules = PodRules {
        seal_key: Some(key()),
        pod_overrides: PodOverrides::Env,
        ..PodRules::default()
    };
    let mut forged = pod("job-0", "alice", Some("demo"));
    forged["metadata"]["annotations"] = json!({labels::ADMITTED: "v1:forged"});
    let injected = admit(&catalog, forged, &rules).unwrap();
    assert!(admitted::is_sealed(&key(), &injected));
    // Without a key (tests, benchmarks) nothing is sealed, and the controllers build nothing.
    let unsealed = admit(
        &catalog,
        pod("job-1", "alice", Some("demo")),
        &PodRules::default(),
    );
    assert!(!admitted::is_sealed(&key(), &unsealed.unwrap()));
}

#[test]
fn mutate_applies_the_pod_overrides_policy() {
    let dir = temp_dir();
    let catalog = catalog(dir.path());
    let mut own_command = pod("job-0", "alice", Some("demo"));
    own_command["spec"]["containers"][0]["command"] = json!(["sh", "-c", "evil"]);
    let under = |policy| PodRules {
        seal_key: None,
        pod_overrides: policy,
        ..PodRules::default()
    };
    let err = admit(&catalog, own_command.clone(), &under(PodOverrides::Env)).unwrap_err();
    assert!(err.contains("spec.containers[0].command"), "{err}");
    let pod = admit(&catalog, own_command, &under(PodOverrides::All)).unwrap();
    let command = pod.spec.unwrap().containers[0].command.clone().unwrap();
    assert_eq!(command, ["sh", "-c", "evil"], "`all` is Kuscia's merge");
}

#[test]
fn an_appimage_annotation_only_tightens_the_policy() {
    let dir = temp_dir();
    let key = make_signing_key(dir.path(), "signer");
    let mut strict = appimage("strict", "20");
    strict.metadata.annotations =
        Some([(labels::POD_OVERRIDES.to_string(), "none".to_string())].into());
    sign(dir.path(), "signer", &mut strict);
    let mut loose = appimage("loose", "21");
    loose.metadata.annotations =
        Some([(labels::POD_OVERRIDES.to_string(), "all".to_string())].into());
    sign(dir.path(), "signer", &mut loose);
    let (reader, _writer) = store(&[strict, loose], true);
    let catalog = Catalog::new(reader, Trust::fixed(vec![key]));
    let with_env = |image: &str| {
        let mut p = pod("job-0", "alice", Some(image));
        p["spec"]["containers"][0]["env"] = json!([{"name": "A", "value": "1"}]);
        p
    };
    let all = PodRules {
        seal_key: None,
        pod_overrides: PodOverrides::All,
        ..PodRules::default()
    };
    // `none` on the AppImage wins over the webhook's `all`...
    let err = admit(&catalog, with_env("strict"), &all).unwrap_err();
    assert!(err.contains("spec.containers[0].env"), "{err}");
    assert!(err.contains("policy \"none\""), "{err}");
    // ...and `all` on the AppImage cannot loosen the webhook's `env`.
    let mut own_command = pod("job-1", "alice", Some("loose"));
    own_command["spec"]["containers"][0]["command"] = json!(["./other"]);
    let env = PodRules::default();
    let err = admit(&catalog, own_command, &env).unwrap_err();
    assert!(err.contains("spec.containers[0].command"), "{err}");
}

/// An UPDATE review of `old` to `new`, to `subresource` when given.
fn update(old: &Value, new: &Value, subresource: Option<&str>) -> Vec<u8> {
    let mut review = review(POD, "UPDATE", "alice", new.clone());
    review["request"]["oldObject"] = old.clone();
    if let Some(sub) = subresource {
        review["request"]["subResource"] = json!(sub);
    }
    serde_json::to_vec(&review).unwrap()
}

fn verdict(body: &[u8]) -> Result<(), String> {
    let reply = admission::validate_pod(body).unwrap();
    match reply.outcome {
        Outcome::Allowed => Ok(()),
        _ => Err(reply.response().status.message.clone()),
    }
}

#[test]
fn validate_pods_keeps_pods_as_admitted() {
    let dir = temp_dir();
    let catalog = catalog(dir.path());
    let injected = admit(
        &catalog,
        pod("job-0", "alice", Some("demo")),
        &PodRules::default(),
    );
    let old = serde_json::to_value(injected.unwrap()).unwrap();
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut new = old.clone();
        f(&mut new);
        new
    };
    // A free label: allowed.
    let team = edit(&|p| p["metadata"]["labels"]["team"] = json!("a"));
    assert_eq!(verdict(&update(&old, &team, None)), Ok(()));
    // The image, the AppImage label, the status: denied, each saying what and how.
    let swapped = edit(&|p| p["spec"]["containers"][0]["image"] = json!("evil:1"));
    let err = verdict(&update(&old, &swapped, None)).unwrap_err();
    assert!(err.contains("spec.containers[0].image"), "{err}");
    assert!(err.contains("kubectl appimage rollout"), "{err}");
    let relabelled = edit(&|p| p["metadata"]["labels"][labels::APP_IMAGE] = json!("other"));
    assert!(verdict(&update(&old, &relabelled, None)).is_err());
    let status = edit(&|p| p["metadata"]["annotations"][labels::STATUS] = json!("{}"));
    assert!(verdict(&update(&old, &status, None)).is_err());
    // kubectl debug: an ephemeral container through the subresource.
    let debugged = edit(&|p| {
        p["spec"]["ephemeralContainers"] = json!([{"name": "debugger", "image": "busybox"}]);
    });
    let err = verdict(&update(&old, &debugged, Some("ephemeralcontainers"))).unwrap_err();
    assert!(
        err.contains("ephemeral containers cannot be added"),
        "{err}"
    );
    // A plain Pod gaining the label.
    let plain = pod("plain", "alice", None);
    let mut labelled = plain.clone();
    labelled["metadata"]["labels"][labels::APP_IMAGE] = json!("demo");
    let err = verdict(&update(&plain, &labelled, None)).unwrap_err();
    assert!(err.contains("was not injected"), "{err}");
}

#[test]
fn validate_pods_answers_pods_only_and_updates_only() {
    let plain = pod("p", "alice", Some("demo"));
    let create = serde_json::to_vec(&pod_review(plain.clone())).unwrap();
    assert_eq!(verdict(&create), Ok(()));
    let image = serde_json::to_value(appimage("x", "1")).unwrap();
    let image = serde_json::to_vec(&review(APPIMAGE, "UPDATE", "", image)).unwrap();
    let err = verdict(&image).unwrap_err();
    assert!(err.contains("/validate-pods admits Pods only"), "{err}");
    let mut no_old = review(POD, "UPDATE", "alice", plain);
    no_old["request"]["oldObject"] = Value::Null;
    let err = verdict(&serde_json::to_vec(&no_old).unwrap()).unwrap_err();
    assert!(err.contains("oldObject"), "{err}");
}
