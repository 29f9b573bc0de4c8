//! The webhook's `/mutate` handler function, `appimage_webhook::admission::mutate`, on fuzzed
//! request bodies, with a fixed catalog: `demo` / `demo-ed` / `app` signed, `unsigned`,
//! `retagged` (tag changed after signing), all with trusted keys.
//!
//! Invariants:
//! - never a panic; a body that is not an answerable AdmissionReview gets a non-empty
//!   BadRequest text (HTTP 400);
//! - the reply echoes the request uid;
//! - a Pod of an unsigned or tampered AppImage, or in kube-system, is never patched;
//! - a patch applies to the decoded Pod, gives a Pod that decodes, carries the status
//!   annotation and the AppImage's image, and admitting that Pod again yields no patch
//!   (injection is idempotent);
//! - the patch is byte for byte the one `render`'s injection (no plan's patch) makes of the
//!   decoded Pod, whether admission wrote it from the AppImage's injection plan (a bare Pod)
//!   or diffed the plan's injection (issue 31).
#![no_main]

use appimage::injection::{Request, inject};
use appimage::labels;
use appimage_fuzz::catalog;
use appimage_webhook::admission::{self, Policy};
use appimage_webhook::admission::Outcome;
use k8s_openapi::api::core::v1::Pod;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const REQUIRED: Policy = Policy {
    require_signature: true,
    signatures: admission::SignaturePolicy::DEFAULT,
};

fuzz_target!(|data: &[u8]| {
    let catalog = catalog();
    let reply = match admission::mutate(data, catalog, REQUIRED) {
        Ok(r) => r,
        Err(e) => {
            assert!(!e.0.is_empty(), "empty 400 text");
            return;
        }
    };
    let review: Value =
        serde_json::from_slice(&reply.to_json().expect("the review encodes")).expect("JSON");
    let response = &review["response"];
    assert_eq!(response["uid"].as_str(), Some(reply.uid()));
    let allowed = response["allowed"].as_bool().expect("allowed is a bool");
    let patch = reply.response().patch_bytes();

    if matches!(reply.appimage.as_deref(), Some("unsigned" | "retagged")) {
        assert!(
            !allowed,
            "Pod of a badly signed AppImage admitted: {response}"
        );
        assert_eq!(reply.outcome, Outcome::Denied);
    }
    if reply.namespace == admission::SKIPPED_NAMESPACE {
        assert!(patch.is_none(), "kube-system Pod patched");
    }
    let Some(patch) = patch else {
        assert_ne!(reply.outcome, Outcome::Patched);
        return;
    };
    assert!(allowed, "a denial carries a patch");
    assert_eq!(reply.outcome, Outcome::Patched);

    // The patch applies to the Pod as decoded, and the result is an injected Pod.
    let mut body: Value = serde_json::from_slice(data).expect("an answered body is JSON");
    let object = body["request"]["object"].clone();
    let pod: Pod = serde_json::from_value(object).expect("a patched object is a Pod");
    let mut patched = serde_json::to_value(&pod).expect("Pod encodes");
    let ops: json_patch::Patch = serde_json::from_slice(&patch).expect("a JSON patch");
    json_patch::patch(&mut patched, &ops.0).expect("the patch applies to the Pod");
    let injected: Pod = serde_json::from_value(patched.clone()).expect("patched Pod decodes");
    let annotations = injected.metadata.annotations.clone().unwrap_or_default();
    assert!(
        annotations.contains_key(labels::STATUS),
        "no status annotation"
    );
    let name = reply
        .appimage
        .clone()
        .expect("a patched Pod names its AppImage");
    let prepared = catalog.lookup(&name).expect("known AppImage");
    let image_ref = prepared.head().image_ref();
    let spec = injected.spec.as_ref().expect("spec");
    assert!(
        spec.containers
            .iter()
            .any(|c| c.image.as_deref() == Some(image_ref.as_str())),
        "no container runs {image_ref}"
    );

    // The same bytes as render's path: the AppImage's injection of the decoded Pod, diffed.
    let whole = catalog.appimage(&name).expect("known AppImage");
    let pod_name = reply.name.clone();
    let mut request =
        Request::from_pod(&pod, &reply.namespace, &pod_name).expect("options admission read");
    request.pod_overrides = admission::PodRules::default().pod_overrides;
    let rendered = inject(&whole, &pod, &request).expect("render injects what admission did");
    let before = serde_json::to_value(&pod).expect("Pod encodes");
    let want = appimage::patch::pod_diff(&before, rendered.pod).expect("the diff encodes");
    assert_eq!(
        want.as_deref().map(String::from_utf8_lossy),
        Some(String::from_utf8_lossy(&patch)),
        "admission's patch is not render's"
    );

    // Admitting the injected Pod again changes nothing.
    body["request"]["object"] = patched;
    let again = serde_json::to_vec(&body).expect("encodes");
    let second = admission::mutate(&again, catalog, REQUIRED).expect("answerable again");
    let review: Value =
        serde_json::from_slice(&second.to_json().expect("encodes")).expect("JSON");
    assert_eq!(
        review["response"]["allowed"], true,
        "re-admission denied: {review}"
    );
    assert!(
        second.response().patch.is_none(),
        "re-admission of an injected Pod patched it again: {review}"
    );
});
