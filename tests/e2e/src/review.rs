//! AdmissionReview requests as the API server sends them, for driving `/mutate` and `/validate`.

use serde_json::{Value, json};

/// The uid every review here carries; answers must echo it.
pub const UID: &str = "4b4cd2b7-1b27-4a1e-9d0e-0c0a8a2b7c11";

/// `(group, version, kind)` of a Pod and of an AppImage.
pub const POD: (&str, &str, &str) = ("", "v1", "Pod");
pub const APPIMAGE: (&str, &str, &str) = ("kuscia.secretflow", "v1alpha1", "AppImage");

/// An AdmissionReview v1 asking about `object`.
pub fn review(kind: (&str, &str, &str), operation: &str, namespace: &str, object: Value) -> Value {
    let (group, version, kind) = kind;
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": UID,
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": format!("{}s", kind.to_lowercase())},
            "namespace": namespace,
            "operation": operation,
            "userInfo": {"username": "alice"},
            "object": object,
            "dryRun": false
        }
    })
}

/// A review of creating `pod`, in the namespace its metadata names.
pub fn pod_review(pod: Value) -> Value {
    let ns = pod["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_string();
    review(POD, "CREATE", &ns, pod)
}
