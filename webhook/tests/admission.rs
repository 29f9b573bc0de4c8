//! /mutate and /validate on AdmissionReview fixtures, against the webhook's AppImage store filled
//! with real AppImages signed by `openssl`.

// Tests unwrap: a panic is their failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use appimage::labels;
use appimage::resource::AppImage;
use appimage::signature::TrustedKey;
use appimage_webhook::admission::Outcome;
use appimage_webhook::admission::{self, Policy, SignaturePolicy};
use appimage_webhook::api::{self, AppState, Limits};
use appimage_webhook::catalog::Catalog;
use appimage_webhook::metrics::Metrics;
use appimage_webhook::trust::Trust;
use axum::body::Body;
use base64::Engine;
use common::*;
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use tower::ServiceExt;

const REQUIRED: Policy = Policy {
    require_signature: true,
    signatures: SignaturePolicy::DEFAULT,
};
const LENIENT: Policy = Policy {
    require_signature: false,
    signatures: SignaturePolicy::DEFAULT,
};

struct Fixture {
    _dir: tempfile::TempDir,
    catalog: Catalog,
    key: TrustedKey,
    /// Signed and valid.
    good: AppImage,
}

/// Store: `demo` (signed), `retagged` (tag changed after signing), `unsigned`.
fn fixture() -> Fixture {
    let dir = temp_dir();
    let key = make_signing_key(dir.path(), "signer");
    let mut good = appimage("demo", "10");
    sign(dir.path(), "signer", &mut good);
    let mut retagged = appimage("retagged", "11");
    sign(dir.path(), "signer", &mut retagged);
    retagged.spec.image.tag = "v2".into();
    let unsigned = appimage("unsigned", "12");
    let (reader, _writer) = store(&[good.clone(), retagged, unsigned], true);
    let catalog = Catalog::new(reader, Trust::fixed(vec![key.clone()]));
    Fixture {
        _dir: dir,
        catalog,
        key,
        good,
    }
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("json")
}

fn response(reply: &admission::Reply) -> Value {
    let wire = reply.to_json().expect("review encodes");
    let review: Value = serde_json::from_slice(&wire).expect("review is JSON");
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["kind"], "AdmissionReview");
    review["response"].clone()
}

fn message(resp: &Value) -> String {
    resp["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The JSON patch of a response, decoded: base64, as the API defines `[]byte`.
fn patch_of(resp: &Value) -> Option<json_patch::Patch> {
    let raw: Vec<u8> = match &resp["patch"] {
        Value::String(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("patch is base64"),
        Value::Null => return None,
        other => panic!("patch must be a base64 string, got {other}"),
    };
    assert_eq!(resp["patchType"], "JSONPatch");
    Some(serde_json::from_slice(&raw).expect("patch is a JSON patch"))
}

fn mutate(f: &Fixture, review: &Value, policy: Policy) -> (admission::Reply, Value) {
    let reply = admission::mutate(&bytes(review), &f.catalog, policy).expect("answerable");
    let resp = response(&reply);
    assert_eq!(resp["uid"], "4b4cd2b7-1b27-4a1e-9d0e-0c0a8a2b7c11");
    (reply, resp)
}

#[test]
fn labelled_pod_is_patched_into_the_injected_pod_and_reinvocation_is_a_noop() {
    let f = fixture();
    let original = pod("job-0", "alice", Some("demo"));
    let (reply, resp) = mutate(&f, &pod_review(original.clone()), REQUIRED);
    assert_eq!(resp["allowed"], true, "{resp}");
    assert_eq!(reply.outcome, Outcome::Patched);
    assert_eq!(reply.appimage.as_deref(), Some("demo"));
    let patch = patch_of(&resp).expect("a patch");

    // The patch applied to the original is exactly the core's injected Pod.
    let mut patched =
        serde_json::to_value(serde_json::from_value::<Pod>(original.clone()).expect("pod"))
            .expect("pod json");
    json_patch::patch(&mut patched, &patch.0).expect("patch applies");
    let pod: Pod = serde_json::from_value(patched.clone()).expect("patched pod decodes");
    let expected = appimage::injection::inject(
        &f.good,
        &serde_json::from_value(original).expect("pod"),
        &appimage::injection::Request {
            namespace: "alice".into(),
            pod_name: "job-0".into(),
            ..Default::default()
        },
    )
    .expect("core injects");
    assert_eq!(pod, expected.pod);

    let spec = pod.spec.as_ref().expect("spec");
    assert_eq!(spec.containers.len(), 1);
    let c = &spec.containers[0];
    // image.id is the image ID (Kuscia): without --verify-image-ids the Pod names name:tag
    // and carries the id in its annotation.
    assert_eq!(c.image.as_deref(), Some("secretflow/app:v1"));
    assert_eq!(
        pod.metadata.annotations.as_ref().unwrap()[labels::IMAGE_ID],
        DIGEST
    );
    let ports = c.ports.as_ref().expect("ports");
    assert_eq!(ports[0].name.as_deref(), Some("global"));
    let env = c.env.as_ref().expect("env");
    assert!(env.iter().any(|e| e.name == "APP_NAME"));
    assert!(env.iter().any(|e| e.name == "KUSCIA_PORT_GLOBAL_NUMBER"
        && e.value.as_deref() == Some(ports[0].container_port.to_string().as_str())));
    let mount = &c.volume_mounts.as_ref().expect("mounts")[0];
    assert_eq!(mount.mount_path, "/work/kuscia/task.conf");
    assert_eq!(mount.name, labels::CONFIG_VOLUME);
    let ann = pod.metadata.annotations.as_ref().expect("annotations");
    assert_eq!(
        ann[&format!("{}task.conf", labels::CONFIG_PREFIX)],
        "task_id=\ndomain=alice\n"
    );
    assert_eq!(ann[labels::IMAGE_ID], DIGEST);

    // Reinvocation on the mutated Pod: allowed, no patch.
    let (again, resp) = mutate(&f, &pod_review(patched), REQUIRED);
    assert_eq!(resp["allowed"], true);
    assert!(resp.get("patch").is_none(), "{resp}");
    assert_eq!(again.outcome, Outcome::Allowed);
}

#[test]
fn generate_name_pods_get_a_name() {
    let f = fixture();
    let mut p = pod("", "alice", Some("demo"));
    p["metadata"].as_object_mut().expect("meta").remove("name");
    p["metadata"]["generateName"] = json!("job-");
    let (reply, resp) = mutate(&f, &pod_review(p), REQUIRED);
    assert_eq!(reply.outcome, Outcome::Patched, "{resp}");
    let patch = patch_of(&resp).expect("patch");
    let sets_name = patch.0.iter().any(|op| {
        let v = serde_json::to_value(op).expect("op");
        v["path"] == "/metadata/name" && v["value"].as_str().is_some_and(|n| n.starts_with("job-"))
    });
    assert!(sets_name, "{patch:?}");
    assert!(reply.name.starts_with("job-") && reply.name.len() > 4);

    let mut nameless = pod("", "alice", Some("demo"));
    nameless["metadata"]
        .as_object_mut()
        .expect("meta")
        .remove("name");
    let (_, resp) = mutate(&f, &pod_review(nameless), REQUIRED);
    assert_eq!(resp["allowed"], false);
    assert_eq!(message(&resp), "Pod has neither name nor generateName");
}

#[test]
fn unlabelled_and_kube_system_pods_pass_untouched() {
    let f = fixture();
    for p in [
        pod("web", "alice", None),
        pod("dns", "kube-system", Some("demo")),
    ] {
        let (reply, resp) = mutate(&f, &pod_review(p), REQUIRED);
        assert_eq!(resp["allowed"], true);
        assert!(resp.get("patch").is_none());
        assert_eq!(reply.outcome, Outcome::Allowed);
    }
}

#[test]
fn unknown_appimage_is_denied_with_the_fix() {
    let f = fixture();
    let (reply, resp) = mutate(
        &f,
        &pod_review(pod("job-0", "alice", Some("nope"))),
        REQUIRED,
    );
    assert_eq!(resp["allowed"], false);
    assert_eq!(reply.outcome, Outcome::Denied);
    assert_eq!(
        message(&resp),
        "AppImage \"nope\" not found: create it (kubectl appimage apply -f FILE) or fix the label kuscia.secretflow/app-image on Pod \"alice/job-0\""
    );
}

#[test]
fn retagged_after_signing_is_denied_naming_it() {
    let f = fixture();
    let (reply, resp) = mutate(
        &f,
        &pod_review(pod("job-0", "alice", Some("retagged"))),
        REQUIRED,
    );
    assert_eq!(resp["allowed"], false);
    assert!(reply.signature_failed);
    let msg = message(&resp);
    assert!(msg.contains("AppImage \"retagged\""), "{msg}");
    assert!(msg.contains("changed after signing"), "{msg}");
    assert!(msg.contains("kubectl appimage sign"), "{msg}");
}

#[test]
fn unsigned_is_denied_when_required_and_admitted_when_not() {
    let f = fixture();
    let review = pod_review(pod("job-0", "alice", Some("unsigned")));
    let (_, resp) = mutate(&f, &review, REQUIRED);
    assert_eq!(resp["allowed"], false);
    assert!(message(&resp).contains("not signed"));

    let (reply, resp) = mutate(&f, &review, LENIENT);
    assert_eq!(resp["allowed"], true);
    assert_eq!(reply.outcome, Outcome::Patched);
    assert!(reply.signature_failed);
    assert!(
        resp["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("unsigned"))
    );
}

#[test]
fn spoofed_status_annotation_skips_neither_verification_nor_injection() {
    let f = fixture();
    let status = json!({
        "appImage": "retagged", "resourceVersion": "11", "template": "app",
        "image": "secretflow/app:v2", "ports": []
    })
    .to_string();
    let mut bad = pod("job-0", "alice", Some("retagged"));
    bad["metadata"]["annotations"] = json!({ labels::STATUS: status.clone() });
    let (_, resp) = mutate(&f, &pod_review(bad), REQUIRED);
    assert_eq!(resp["allowed"], false, "{resp}");
    assert!(message(&resp).contains("signature"));

    let mut spoofed = pod("job-0", "alice", Some("demo"));
    spoofed["metadata"]["annotations"] = json!({ labels::STATUS: status });
    let (reply, resp) = mutate(&f, &pod_review(spoofed), REQUIRED);
    assert_eq!(reply.outcome, Outcome::Patched);
    let patch = serde_json::to_string(&patch_of(&resp).expect("patch")).expect("json");
    assert!(patch.contains("secretflow/app:v1"), "{patch}");
}

#[test]
fn dry_run_gets_the_same_answer() {
    let f = fixture();
    let review = pod_review(pod("job-0", "alice", Some("demo")));
    let mut dry = review.clone();
    dry["request"]["dryRun"] = json!(true);
    let (_, wet) = mutate(&f, &review, REQUIRED);
    let (_, dry) = mutate(&f, &dry, REQUIRED);
    assert_eq!(wet, dry);
}

#[test]
fn trust_changes_invalidate_cached_verdicts() {
    let f = fixture();
    let review = pod_review(pod("job-0", "alice", Some("demo")));
    assert_eq!(mutate(&f, &review, REQUIRED).1["allowed"], true);
    f.catalog.trust().replace(Vec::new());
    let (_, resp) = mutate(&f, &review, REQUIRED);
    assert_eq!(resp["allowed"], false);
    assert!(message(&resp).contains("no trusted public key"));
    f.catalog.trust().replace(vec![f.key.clone()]);
    assert_eq!(mutate(&f, &review, REQUIRED).1["allowed"], true);
}

#[test]
fn a_hash_no_revision_records_runs_the_current_spec_and_says_so() {
    let f = fixture();
    let mut p = pod("job-0", "alice", Some("demo"));
    p["metadata"]["annotations"] = json!({ appimage::revision::REVISION_HASH: "0123abcd" });
    let (_, resp) = mutate(&f, &pod_review(p), REQUIRED);
    assert_eq!(resp["allowed"], true, "{resp}");
    let warnings = resp["warnings"].to_string();
    assert!(warnings.contains("names revision hash 0123abcd"), "{resp}");
    assert!(
        warnings.contains("it runs the current spec instead"),
        "{resp}"
    );
    // The current spec's own hash is no fallback: no warning.
    let current = appimage::workload::revision_hash(&f.good.spec);
    let mut p = pod("job-1", "alice", Some("demo"));
    p["metadata"]["annotations"] = json!({ appimage::revision::REVISION_HASH: current });
    let (_, resp) = mutate(&f, &pod_review(p), REQUIRED);
    assert!(
        !resp["warnings"].to_string().contains("names revision hash"),
        "{resp}"
    );
}

#[test]
fn a_revoked_key_denies_pods_and_blocks_the_rollouts_check_at_once() {
    let f = fixture();
    let review = pod_review(pod("job-0", "alice", Some("demo")));
    assert_eq!(mutate(&f, &review, REQUIRED).1["allowed"], true);
    let mut revoked = f.key.clone();
    revoked.revoked = true;
    f.catalog.trust().replace(vec![revoked]);
    let (_, resp) = mutate(&f, &review, REQUIRED);
    assert_eq!(resp["allowed"], false);
    assert!(message(&resp).contains("which is revoked"), "{resp}");
    // The rollout's own check (a spec read elsewhere than the store) refuses it too.
    let err = f
        .catalog
        .verify(&f.good, &REQUIRED.signatures.to_run())
        .unwrap_err()
        .to_string();
    assert!(err.contains("which is revoked"), "{err}");
    f.catalog.trust().replace(vec![f.key.clone()]);
    assert!(
        f.catalog
            .verify(&f.good, &REQUIRED.signatures.to_run())
            .is_ok()
    );
}

#[test]
fn bad_options_and_bad_pods_are_denied_not_errors() {
    let f = fixture();
    let mut p = pod("job-0", "alice", Some("demo"));
    p["metadata"]["annotations"] = json!({ labels::OPT_VALUES: "not json" });
    let (_, resp) = mutate(&f, &pod_review(p), REQUIRED);
    assert_eq!(resp["allowed"], false);
    assert!(message(&resp).contains(labels::OPT_VALUES), "{resp}");

    let mut p = pod("job-0", "alice", Some("demo"));
    p["spec"]["containers"] = json!("not a list");
    let (reply, resp) = mutate(&f, &pod_review(p), REQUIRED);
    assert_eq!(reply.outcome, Outcome::Denied);
    assert!(message(&resp).contains("spec.containers"), "{resp}");

    let mut missing = pod_review(pod("job-0", "alice", Some("demo")));
    missing["request"]
        .as_object_mut()
        .expect("req")
        .remove("object");
    let (_, resp) = mutate(&f, &missing, REQUIRED);
    assert_eq!(resp["allowed"], false);
    assert!(message(&resp).contains("no object"));

    let wrong = review(
        APPIMAGE,
        "CREATE",
        "",
        serde_json::to_value(&f.good).expect("json"),
    );
    let (_, resp) = mutate(&f, &wrong, REQUIRED);
    assert_eq!(resp["allowed"], false);
    assert!(message(&resp).contains("Pods only"));
}

/// A well-formed review's `request`.
fn review_request() -> Value {
    pod_review(pod("job-0", "alice", Some("demo")))["request"].clone()
}

/// [`review_request`]'s fields as an array, in `AdmissionRequest`'s field order.
fn request_as_array() -> Value {
    let r = review_request();
    let fields = [
        "uid",
        "kind",
        "resource",
        "subResource",
        "requestKind",
        "requestResource",
        "requestSubResource",
        "name",
        "namespace",
        "operation",
        "userInfo",
        "object",
        "oldObject",
        "dryRun",
        "options",
    ];
    Value::Array(fields.iter().map(|f| r[*f].clone()).collect())
}

#[test]
fn undecodable_bodies_are_bad_requests() {
    let f = fixture();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{not json".to_vec(), "not valid JSON"),
        (b"[1,2]".to_vec(), "not a JSON object"),
        (
            bytes(&json!({"apiVersion": "v1", "kind": "Pod"})),
            "expected kind \"AdmissionReview\"",
        ),
        (
            bytes(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"})),
            "no request",
        ),
        (
            bytes(
                &json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "request": {"uid": 5}}),
            ),
            "invalid AdmissionReview at request",
        ),
        // Invalid UTF-8 in a field nobody reads is still not JSON (found by the fuzzer).
        (
            {
                let mut request = review_request();
                request["userInfo"]["unread"] = json!("a\u{7f}XXXX");
                let mut body = bytes(&json!({"apiVersion": "admission.k8s.io/v1",
                    "kind": "AdmissionReview", "request": request}));
                let at = body.windows(4).position(|w| w == b"XXXX").expect("marker");
                body[at..at + 4].copy_from_slice(&[0xff; 4]);
                body
            },
            "not valid JSON",
        ),
        // The shapes a derived struct would read from an array, in field order: still refused.
        (
            bytes(&json!([
                "admission.k8s.io/v1",
                "AdmissionReview",
                review_request()
            ])),
            "not a JSON object",
        ),
        (
            bytes(
                &json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "request": request_as_array()}),
            ),
            "request must be a JSON object",
        ),
    ];
    for (body, want) in cases {
        let err = admission::mutate(&body, &f.catalog, REQUIRED).expect_err("bad request");
        assert!(err.0.contains(want), "{} should contain {want:?}", err.0);
        let err = admission::validate(&body, &f.catalog.trust().snapshot(), REQUIRED)
            .expect_err("bad request");
        assert!(err.0.contains(want), "{}", err.0);
    }
}

fn validate(f: &Fixture, image: Value, policy: Policy) -> (admission::Reply, Value) {
    let body = bytes(&review(APPIMAGE, "CREATE", "", image));
    let reply = admission::validate(&body, &f.catalog.trust().snapshot(), policy).expect("ok");
    let resp = response(&reply);
    (reply, resp)
}

#[test]
fn validate_checks_fields_and_signatures() {
    let f = fixture();
    let good = serde_json::to_value(&f.good).expect("json");
    let (reply, resp) = validate(&f, good.clone(), REQUIRED);
    assert_eq!(resp["allowed"], true, "{resp}");
    assert_eq!(reply.outcome, Outcome::Allowed);

    let mut invalid = good.clone();
    invalid["spec"]["image"]["name"] = json!("");
    invalid["spec"]["deployTemplates"][0]["spec"]["containers"][0]["name"] = json!("Bad_Name");
    let (_, resp) = validate(&f, invalid, REQUIRED);
    assert_eq!(resp["allowed"], false);
    let msg = message(&resp);
    assert!(msg.contains("spec.image.name: "), "{msg}");
    assert!(
        msg.contains("; spec.deployTemplates[0].spec.containers[0].name: "),
        "{msg}"
    );

    let mut undecodable = good.clone();
    undecodable["spec"]["deployTemplates"][0]["replicas"] = json!("three");
    let (_, resp) = validate(&f, undecodable, REQUIRED);
    assert_eq!(resp["allowed"], false);
    assert!(
        message(&resp).contains("spec.deployTemplates[0].replicas"),
        "{resp}"
    );

    let mut retagged = good.clone();
    retagged["spec"]["image"]["tag"] = json!("v9");
    let (_, resp) = validate(&f, retagged.clone(), REQUIRED);
    assert_eq!(resp["allowed"], false);
    assert!(message(&resp).contains("AppImage \"demo\" failed signature verification"));
    let (reply, resp) = validate(&f, retagged, LENIENT);
    assert_eq!(resp["allowed"], true);
    assert!(reply.signature_failed);
    assert!(
        resp["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("changed after signing"))
    );
}

fn state(f: &Fixture) -> Arc<AppState> {
    Arc::new(AppState {
        catalog: Some(f.catalog.clone()),
        trust: f.catalog.trust().clone(),
        policy: REQUIRED,
        pod_rules: Default::default(),
        metrics: Metrics::new(),
        leader_identity: None,
        noop_patch: None,
        sync_wait: Duration::from_millis(100),
        require_client_cert: false,
    })
}

async fn call(app: &axum::Router, method: &str, path: &str, body: Vec<u8>) -> (u16, String) {
    let request = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn http_statuses_body_limit_probes_and_metrics() {
    let f = fixture();
    let state = state(&f);
    let app = api::router(
        state.clone(),
        Limits {
            max_body_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(4),
        },
    );
    let ok = bytes(&pod_review(pod("job-0", "alice", Some("demo"))));
    let (status, body) = call(&app, "POST", "/mutate", ok).await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).expect("review");
    assert_eq!(v["response"]["allowed"], true);

    let denied = bytes(&pod_review(pod("job-0", "alice", Some("nope"))));
    let (status, body) = call(&app, "POST", "/mutate", denied).await;
    assert_eq!(status, 200, "denials are HTTP 200");
    assert!(body.contains("\"allowed\":false"));

    let (status, body) = call(&app, "POST", "/mutate", b"{oops".to_vec()).await;
    assert_eq!(status, 400);
    assert!(body.contains("not valid JSON"), "{body}");

    let huge = vec![b' '; 65 * 1024];
    let (status, _) = call(&app, "POST", "/mutate", huge).await;
    assert_eq!(status, 413);

    let (status, _) = call(&app, "GET", "/mutate", Vec::new()).await;
    assert_eq!(status, 405);
    assert_eq!(
        call(&app, "GET", "/healthz", Vec::new()).await,
        (200, "ok".into())
    );
    assert_eq!(
        call(&app, "GET", "/readyz", Vec::new()).await,
        (200, "ok".into())
    );

    let invalid = bytes(&review(
        APPIMAGE,
        "CREATE",
        "",
        json!({"metadata": {"name": "x"}}),
    ));
    let (status, body) = call(&app, "POST", "/validate", invalid).await;
    assert_eq!(status, 200);
    assert!(body.contains("cannot decode the AppImage"), "{body}");

    let (status, metrics) = call(&app, "GET", "/metrics", Vec::new()).await;
    assert_eq!(status, 200);
    for want in [
        "appimage_webhook_requests_total{endpoint=\"mutate\",outcome=\"patched\"} 1",
        "appimage_webhook_requests_total{endpoint=\"mutate\",outcome=\"denied\"} 1",
        "appimage_webhook_requests_total{endpoint=\"mutate\",outcome=\"error\"} 2",
        "appimage_webhook_requests_total{endpoint=\"validate\",outcome=\"denied\"} 1",
        "appimage_webhook_request_duration_seconds_bucket{le=",
        "appimage_webhook_appimages_cached 3",
        "appimage_webhook_signature_failures_total 0",
    ] {
        assert!(metrics.contains(want), "missing {want:?} in\n{metrics}");
    }
}

#[tokio::test]
async fn readyz_waits_for_the_initial_list() {
    let dir = temp_dir();
    let key = make_signing_key(dir.path(), "k");
    // One readiness flag: the store's initial list.
    let (reader, mut writer) = store(&[], false);
    let f = Fixture {
        _dir: dir,
        catalog: Catalog::new(reader, Trust::fixed(vec![key.clone()])),
        key,
        good: appimage("demo", "1"),
    };
    let app = api::router(
        state(&f),
        Limits {
            max_body_bytes: 1024,
            request_timeout: Duration::from_secs(4),
        },
    );
    let (status, _) = call(&app, "GET", "/readyz", Vec::new()).await;
    assert_eq!(status, 503);
    // Before the initial list, an empty store must not deny the Pod as "not found".
    let review = bytes(&pod_review(pod("job-0", "alice", Some("demo"))));
    let (status, body) = call(&app, "POST", "/mutate", review.clone()).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("AppImage watch has not synced"), "{body}");
    // A request that arrives while the list is under way waits for it, then is answered.
    let pending = tokio::spawn({
        let app = app.clone();
        let review = review.clone();
        async move { call(&app, "POST", "/mutate", review).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    use kube::runtime::watcher::Event;
    writer.apply_watcher_event(&Event::Init);
    writer.apply_watcher_event(&Event::InitApply(f.good.clone()));
    writer.apply_watcher_event(&Event::InitDone);
    let (status, body) = pending.await.expect("joined");
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("not found"), "{body}");
    let mut status = 0;
    for _ in 0..100 {
        status = call(&app, "GET", "/readyz", Vec::new()).await.0;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(status, 200);
}

#[test]
fn an_updated_appimage_gets_a_fresh_verdict() {
    let dir = temp_dir();
    let key = make_signing_key(dir.path(), "signer");
    let mut image = appimage("demo", "1");
    sign(dir.path(), "signer", &mut image);
    let (reader, mut writer) = store(std::slice::from_ref(&image), true);
    let catalog = Catalog::new(reader, Trust::fixed(vec![key]));
    let body = bytes(&pod_review(pod("job-0", "alice", Some("demo"))));
    let allowed = |catalog: &Catalog| {
        let reply = admission::mutate(&body, catalog, REQUIRED).expect("answer");
        response(&reply)["allowed"] == true
    };
    assert!(allowed(&catalog));
    // Same resourceVersion twice: served from the cache.
    assert!(allowed(&catalog));
    image.spec.image.tag = "v2".into();
    image.metadata.resource_version = Some("2".into());
    writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(image.clone()));
    assert!(!allowed(&catalog));
    writer.apply_watcher_event(&kube::runtime::watcher::Event::Delete(image));
    let reply = admission::mutate(&body, &catalog, REQUIRED).expect("answer");
    assert!(message(&response(&reply)).contains("not found"));
}

fn update(f: &Fixture, old: Option<&Value>, new: Value) -> Value {
    let mut body = review(APPIMAGE, "UPDATE", "", new);
    if let Some(old) = old {
        body["request"]["oldObject"] = old.clone();
    }
    let snapshot = f.catalog.trust().snapshot();
    response(&admission::validate(&bytes(&body), &snapshot, REQUIRED).expect("ok"))
}

#[test]
fn a_published_appimage_refuses_spec_edits_but_may_move_back_to_draft() {
    let f = fixture();
    let mut published = serde_json::to_value(&f.good).expect("json");
    published["metadata"]["labels"] = json!({labels::STAGE: "published"});
    let mut edited = published.clone();
    edited["spec"]["deployTemplates"][0]["replicas"] = json!(5);
    let resp = update(&f, Some(&published), edited.clone());
    assert_eq!(resp["allowed"], false, "{resp}");
    let msg = message(&resp);
    assert!(
        msg.contains("is published") && msg.contains("create a new AppImage"),
        "{msg}"
    );
    assert!(msg.contains("kubectl appimage draft demo"), "{msg}");

    // Back to draft is a label change: allowed; a draft then takes the edit.
    let mut draft = published.clone();
    draft["metadata"]["labels"] = json!({});
    assert_eq!(update(&f, Some(&published), draft.clone())["allowed"], true);
    assert_eq!(update(&f, Some(&draft), draft.clone())["allowed"], true);
    // An UPDATE without the object before cannot be checked: refused, not passed.
    let resp = update(&f, None, edited);
    assert!(message(&resp).contains("no oldObject"), "{resp}");
}
