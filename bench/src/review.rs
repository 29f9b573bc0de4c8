//! The AdmissionReviews the load generator sends, and the check of each answer.

use appimage::labels;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;

/// What every answer of a run must be.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// Allowed with a non-empty JSONPatch (the AppImage was injected).
    Patched,
    /// Allowed without a patch (the `--noop` baseline).
    Allowed,
}

impl Expect {
    pub fn as_str(self) -> &'static str {
        match self {
            Expect::Patched => "patched",
            Expect::Allowed => "allowed",
        }
    }
}

/// The uid of request number `seq`: a valid UUID, unique within a run.
pub fn uid(seq: u64) -> String {
    format!("b0000000-0000-4000-8000-{:012x}", seq & 0xffff_ffff_ffff)
}

/// An `admission.k8s.io/v1` AdmissionReview: CREATE of a Pod labelled with `appimage`, as the
/// apiserver sends it for `kubectl create` of a Pod that carries only the label and a task id.
pub fn pod_create(seq: u64, namespace: &str, appimage: &str) -> Bytes {
    let name = format!("bench-{seq}");
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {labels::APP_IMAGE: appimage},
            "annotations": {labels::OPT_TASK_ID: format!("t{seq}")},
        },
        "spec": {"containers": []},
    });
    pod_review(seq, &pod)
}

/// An AdmissionReview of the CREATE of `pod` (its namespace and name as the request's).
pub fn pod_review(seq: u64, pod: &serde_json::Value) -> Bytes {
    let name = &pod["metadata"]["name"];
    let namespace = &pod["metadata"]["namespace"];
    let gvk = json!({"group": "", "version": "v1", "kind": "Pod"});
    let gvr = json!({"group": "", "version": "v1", "resource": "pods"});
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid(seq),
            "kind": gvk,
            "resource": gvr,
            "requestKind": gvk,
            "requestResource": gvr,
            "name": name,
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "appimage-bench", "groups": ["system:authenticated"]},
            "object": pod,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    });
    // A serde_json::Value always serializes.
    Bytes::from(serde_json::to_vec(&review).unwrap_or_default())
}

#[derive(Deserialize)]
struct Review {
    #[serde(default)]
    response: Option<Response>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    #[serde(default)]
    uid: String,
    #[serde(default)]
    allowed: bool,
    #[serde(default)]
    patch: Option<Patch>,
    #[serde(default)]
    patch_type: Option<String>,
    #[serde(default)]
    status: Option<serde_json::Value>,
}

/// `response.patch`: a base64 string as the Kubernetes API defines it, or (as kube-core 5's
/// `AdmissionResponse` serializes its `Vec<u8>`) a JSON array of byte values, which the
/// apiserver's decoder also accepts.
enum Patch {
    Base64(String),
    Bytes(Vec<u8>),
}

impl Patch {
    fn is_empty(&self) -> bool {
        match self {
            Patch::Base64(s) => s.is_empty(),
            Patch::Bytes(b) => b.is_empty(),
        }
    }

    fn decode(&self) -> Result<Vec<u8>, String> {
        match self {
            Patch::Base64(s) => STANDARD
                .decode(s)
                .map_err(|e| format!("patch is not base64: {e}")),
            Patch::Bytes(b) => Ok(b.clone()),
        }
    }
}

impl<'de> Deserialize<'de> for Patch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Patch, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Patch;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a base64 string or an array of bytes")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Patch, E> {
                Ok(Patch::Base64(v.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Patch, A::Error> {
                let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(b) = seq.next_element::<u8>()? {
                    bytes.push(b);
                }
                Ok(Patch::Bytes(bytes))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// The JSONPatch an answer carries, decoded.
pub fn patch(body: &[u8]) -> Result<Vec<u8>, String> {
    let review: Review = serde_json::from_slice(body)
        .map_err(|e| format!("answer is not an AdmissionReview: {e}"))?;
    review
        .response
        .and_then(|r| r.patch)
        .ok_or_else(|| "the answer has no patch".to_string())?
        .decode()
}

/// `Ok` when `body` answers request `uid` the way `expect` says; else what differs.
/// With `deep`, a patch must also decode to a non-empty JSON array of operations.
pub fn check(body: &[u8], uid: &str, expect: Expect, deep: bool) -> Result<(), String> {
    let review: Review = serde_json::from_slice(body)
        .map_err(|e| format!("answer is not an AdmissionReview: {e}"))?;
    let r = review
        .response
        .ok_or_else(|| "the AdmissionReview has no response".to_string())?;
    if r.uid != uid {
        return Err(format!("response.uid is {:?}, expected {uid:?}", r.uid));
    }
    if !r.allowed {
        let message = r
            .status
            .as_ref()
            .and_then(|s| s.get("message"))
            .and_then(|m| m.as_str())
            .unwrap_or("")
            .to_string();
        return Err(format!("denied: {message}"));
    }
    let patch = r.patch.as_ref().filter(|p| !p.is_empty());
    match (expect, patch) {
        (Expect::Allowed, None) => Ok(()),
        (Expect::Allowed, Some(_)) => Err("allowed with a patch, expected no patch".into()),
        (Expect::Patched, None) => Err("allowed without a patch, expected a patch".into()),
        (Expect::Patched, Some(p)) => {
            if r.patch_type.as_deref() != Some("JSONPatch") {
                return Err(format!(
                    "patchType is {:?}, expected \"JSONPatch\"",
                    r.patch_type
                ));
            }
            if deep {
                let raw = p.decode()?;
                let ops: Vec<serde_json::Value> = serde_json::from_slice(&raw)
                    .map_err(|e| format!("patch is not a JSON array: {e}"))?;
                if ops.is_empty() {
                    return Err("patch holds no operation".into());
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(allowed: bool, patch: Option<&str>) -> Vec<u8> {
        let mut response = json!({"uid": uid(7), "allowed": allowed});
        if let Some(p) = patch {
            response["patch"] = json!(STANDARD.encode(p));
            response["patchType"] = json!("JSONPatch");
        }
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": response,
        }))
        .unwrap()
    }

    #[test]
    fn request_is_a_labelled_pod_create() {
        let body: serde_json::Value = serde_json::from_slice(&pod_create(7, "ns", "img")).unwrap();
        let req = &body["request"];
        assert_eq!(req["uid"], uid(7));
        assert_eq!(req["operation"], "CREATE");
        assert_eq!(
            req["object"]["metadata"]["labels"][labels::APP_IMAGE],
            "img"
        );
        assert_eq!(req["object"]["metadata"]["namespace"], "ns");
        assert_ne!(uid(7), uid(8));
    }

    #[test]
    fn answers_are_checked() {
        let op = r#"[{"op":"add","path":"/x","value":1}]"#;
        let u = uid(7);
        assert_eq!(
            check(&answer(true, None), &u, Expect::Allowed, true),
            Ok(())
        );
        assert_eq!(
            check(&answer(true, Some(op)), &u, Expect::Patched, true),
            Ok(())
        );
        assert!(check(&answer(true, Some(op)), &u, Expect::Allowed, true).is_err());
        assert!(check(&answer(true, None), &u, Expect::Patched, false).is_err());
        assert!(check(&answer(false, None), &u, Expect::Allowed, false).is_err());
        assert!(check(&answer(true, Some("[]")), &u, Expect::Patched, true).is_err());
        assert!(check(&answer(true, None), &uid(8), Expect::Allowed, false).is_err());
        assert!(check(b"nope", &u, Expect::Allowed, false).is_err());
        // kube-core's form: the patch as an array of byte values.
        let mut bytes: serde_json::Value = serde_json::from_slice(&answer(true, Some(op))).unwrap();
        bytes["response"]["patch"] = json!(op.as_bytes());
        let bytes = serde_json::to_vec(&bytes).unwrap();
        assert_eq!(check(&bytes, &u, Expect::Patched, true), Ok(()));
        assert!(check(&bytes, &u, Expect::Allowed, false).is_err());
    }
}
