//! AdmissionReview in, AdmissionResponse out. No IO: the AppImages and keys come from a
//! [`Catalog`] / [`TrustSnapshot`] snapshot, so every rule is testable on plain JSON.

use std::collections::HashMap;

use appimage::injection::{Request, inject_pod, pod_name};
use appimage::labels;
use appimage::resource::AppImage;
use appimage::signature::verify;
use appimage::validation::validate as validate_image;
use k8s_openapi::api::authentication::v1::UserInfo;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::{DynamicObject, GroupVersionKind, GroupVersionResource, Status, TypeMeta};
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::cache::Catalog;
use crate::metrics::Outcome;
use crate::trust::TrustSnapshot;

/// Namespace whose Pods are never touched, so a broken webhook cannot wedge the cluster.
pub const SKIPPED_NAMESPACE: &str = "kube-system";

/// How strict the webhook is.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub require_signature: bool,
}

/// The body is not an AdmissionReview we can answer: HTTP 400 with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

/// The answer, plus what the caller logs and counts.
#[derive(Debug)]
pub struct Reply {
    pub review: AdmissionReview<DynamicObject>,
    pub outcome: Outcome,
    pub uid: String,
    pub namespace: String,
    /// The object's name (or generateName) as far as it is known.
    pub name: String,
    pub appimage: Option<String>,
    pub signature_failed: bool,
}

impl Reply {
    pub fn response(&self) -> Option<&AdmissionResponse> {
        self.review.response.as_ref()
    }

    /// The review as sent to the API server. `patch` is `[]byte` in the API, hence base64
    /// (kube-core 5 would write a JSON array of numbers, about 2.7 times the bytes). The base64
    /// goes straight into the output: it never needs escaping, and it is most of the answer.
    pub fn to_json(&self) -> serde_json::Result<Vec<u8>> {
        let types = &self.review.types;
        let patch = self.response().and_then(|r| r.patch.as_deref());
        let base64 = base64_simd::STANDARD;
        let base64_len = patch.map_or(0, |p| base64.encoded_length(p.len()));
        let mut out = Vec::with_capacity(256 + base64_len);
        out.extend_from_slice(b"{\"apiVersion\":");
        serde_json::to_writer(&mut out, &types.api_version)?;
        out.extend_from_slice(b",\"kind\":");
        serde_json::to_writer(&mut out, &types.kind)?;
        if let Some(r) = self.response() {
            out.extend_from_slice(b",\"response\":");
            let response = WireResponse {
                uid: &r.uid,
                allowed: r.allowed,
                status: &r.result,
                audit_annotations: &r.audit_annotations,
                warnings: r.warnings.as_deref(),
            };
            serde_json::to_writer(&mut out, &response)?;
            if let Some(patch) = patch {
                // Reopen the response object (it always ends with '}') to add the patch.
                out.pop();
                out.extend_from_slice(b",\"patchType\":\"JSONPatch\",\"patch\":\"");
                // SIMD base64: the patch is most of the answer.
                let at = out.len();
                out.resize(at + base64_len, 0);
                let _ = base64.encode(patch, base64_simd::Out::from_slice(&mut out[at..]));
                out.extend_from_slice(b"\"}");
            }
        }
        out.push(b'}');
        Ok(out)
    }
}

/// The response fields but the patch, which [`Reply::to_json`] adds.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireResponse<'a> {
    uid: &'a str,
    allowed: bool,
    status: &'a Status,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    audit_annotations: &'a HashMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warnings: Option<&'a [String]>,
}

/// A decoded request and its raw `object` (decoded later, so errors can become denials).
struct Decoded<'a> {
    request: AdmissionRequest<DynamicObject>,
    object: Option<Object<'a>>,
}

/// The request's `object`: raw JSON text from the fast path, or a value from the slow one.
enum Object<'a> {
    Raw(&'a RawValue),
    Value(Value),
}

/// Decode a review. A well-formed one is read in one typed pass that leaves `object` as raw
/// text; anything else goes through [`decode_slow`], whose messages say what is wrong.
fn decode(body: &[u8]) -> Result<Decoded<'_>, BadRequest> {
    match decode_fast(body) {
        Some(decoded) => Ok(decoded),
        None => decode_slow(body),
    }
}

/// An AdmissionReview with the request's objects left raw.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FastReview<'a> {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(borrow)]
    request: Option<&'a RawValue>,
}

/// [`AdmissionRequest`]'s fields, with `object` as raw text and `oldObject` (never used) skipped.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FastRequest<'a> {
    uid: String,
    kind: GroupVersionKind,
    resource: GroupVersionResource,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    request_kind: Option<GroupVersionKind>,
    #[serde(default)]
    request_resource: Option<GroupVersionResource>,
    #[serde(default)]
    request_sub_resource: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    operation: Operation,
    user_info: UserInfo,
    #[serde(default, borrow)]
    object: Option<&'a RawValue>,
    #[serde(default)]
    #[allow(dead_code)]
    old_object: IgnoredAny,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    options: Option<RawExtension>,
}

/// `None` when the body is not a well-formed review; the slow path then says why.
fn decode_fast(body: &[u8]) -> Option<Decoded<'_>> {
    // A derived struct would also accept a JSON array; the slow path refuses one, so must this.
    let is_object = |text: &[u8]| text.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if !is_object(body) {
        return None;
    }
    // The typed pass skips unknown fields without checking their UTF-8; the slow path's
    // full parse refuses invalid UTF-8 anywhere, so check the whole body first.
    let text = std::str::from_utf8(body).ok()?;
    let review: FastReview = serde_json::from_str(text).ok()?;
    let known = matches!(
        review.api_version.as_str(),
        "admission.k8s.io/v1" | "admission.k8s.io/v1beta1"
    );
    let request = review.request?.get();
    if review.kind != "AdmissionReview" || !known || !is_object(request.as_bytes()) {
        return None;
    }
    let r: FastRequest = serde_json::from_str(request).ok()?;
    let object = r.object.map(Object::Raw);
    let request = AdmissionRequest {
        types: TypeMeta {
            api_version: review.api_version,
            kind: review.kind,
        },
        uid: r.uid,
        kind: r.kind,
        resource: r.resource,
        sub_resource: r.sub_resource,
        request_kind: r.request_kind,
        request_resource: r.request_resource,
        request_sub_resource: r.request_sub_resource,
        name: r.name,
        namespace: r.namespace,
        operation: r.operation,
        user_info: r.user_info,
        object: None,
        old_object: None,
        dry_run: r.dry_run,
        options: r.options,
    };
    Some(Decoded { request, object })
}

fn decode_slow(body: &[u8]) -> Result<Decoded<'_>, BadRequest> {
    let mut value: Value = serde_json::from_slice(body)
        .map_err(|e| BadRequest(format!("request body is not valid JSON: {e}")))?;
    let Some(top) = value.as_object_mut() else {
        return Err(BadRequest("request body is not a JSON object".into()));
    };
    let kind = top.get("kind").and_then(Value::as_str).unwrap_or_default();
    if kind != "AdmissionReview" {
        return Err(BadRequest(format!(
            "expected kind \"AdmissionReview\", got {kind:?}"
        )));
    }
    let api_version = top
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !matches!(
        api_version,
        "admission.k8s.io/v1" | "admission.k8s.io/v1beta1"
    ) {
        return Err(BadRequest(format!(
            "expected apiVersion \"admission.k8s.io/v1\", got {api_version:?}"
        )));
    }
    let object = match top.get_mut("request") {
        Some(Value::Object(req)) => {
            // oldObject is never used; objects are decoded by the handlers themselves.
            req.remove("oldObject");
            req.remove("object").filter(|o| !o.is_null())
        }
        Some(Value::Null) | None => {
            return Err(BadRequest("the AdmissionReview has no request".into()));
        }
        Some(_) => return Err(BadRequest("request must be a JSON object".into())),
    };
    let review: AdmissionReview<DynamicObject> =
        serde_path_to_error::deserialize(value).map_err(|e| {
            BadRequest(format!(
                "invalid AdmissionReview at {}: {}",
                e.path(),
                e.inner()
            ))
        })?;
    let request: AdmissionRequest<DynamicObject> = review
        .try_into()
        .map_err(|_| BadRequest("the AdmissionReview has no request".into()))?;
    Ok(Decoded {
        request,
        object: object.map(Object::Value),
    })
}

/// Decode `object` as `T`; the error names the failing field path. Raw text is decoded
/// straight into `T`; on an error it is decoded again through a value, so that the message
/// is the same whichever path the review took (no line and column of the raw text).
fn decode_object<T: DeserializeOwned>(object: Object<'_>) -> Result<T, String> {
    let value = match object {
        Object::Raw(raw) => match serde_json::from_str(raw.get()) {
            Ok(t) => return Ok(t),
            Err(_) => serde_json::from_str::<Value>(raw.get()).map_err(|e| e.to_string())?,
        },
        Object::Value(v) => v,
    };
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.inner().to_string()
        } else {
            format!("{path}: {}", e.inner())
        }
    })
}

struct Answer {
    response: AdmissionResponse,
    outcome: Outcome,
    name: String,
    namespace: String,
    appimage: Option<String>,
    signature_failed: bool,
}

impl Answer {
    fn new(request: &AdmissionRequest<DynamicObject>) -> Answer {
        Answer {
            response: AdmissionResponse::from(request),
            outcome: Outcome::Allowed,
            name: request.name.clone(),
            namespace: request.namespace.clone().unwrap_or_default(),
            appimage: None,
            signature_failed: false,
        }
    }

    fn deny(mut self, message: impl Into<String>) -> Answer {
        let message: String = message.into();
        self.response = self.response.deny(message);
        self.outcome = Outcome::Denied;
        self
    }

    /// Allow with `patch`, a JSONPatch already encoded.
    fn patched(mut self, patch: Vec<u8>) -> Answer {
        // kube-core sets patchType only through `with_patch`, which encodes a `Patch`: give
        // it an empty one (it cannot fail to encode), then the bytes. The uid is moved out
        // and back, so that even that failure answers the right request.
        let uid = std::mem::take(&mut self.response.uid);
        match self.response.with_patch(json_patch::Patch(Vec::new())) {
            Ok(mut response) => {
                response.uid = uid;
                response.patch = Some(patch);
                self.response = response;
                self.outcome = Outcome::Patched;
                self
            }
            Err(e) => {
                let mut response = AdmissionResponse::invalid("");
                response.uid = uid;
                let mut answer = Answer { response, ..self }
                    .deny(format!("internal error encoding the patch: {e}"));
                answer.outcome = Outcome::Error;
                answer
            }
        }
    }

    fn warn(&mut self, warning: String) {
        self.response
            .warnings
            .get_or_insert_with(Vec::new)
            .push(warning);
    }

    fn into_reply(self, uid: String) -> Reply {
        Reply {
            review: self.response.into_review(),
            outcome: self.outcome,
            uid,
            namespace: self.namespace,
            name: self.name,
            appimage: self.appimage,
            signature_failed: self.signature_failed,
        }
    }
}

/// `/mutate` in benchmark-baseline mode: decode, then allow without a patch, or with the fixed
/// `patch` (what an answer of that size costs, without the work of making it).
pub fn noop(body: &[u8], patch: Option<&[u8]>) -> Result<Reply, BadRequest> {
    let Decoded { request, .. } = decode(body)?;
    let mut answer = Answer::new(&request);
    if let Some(patch) = patch {
        answer = answer.patched(patch.to_vec());
    }
    Ok(answer.into_reply(request.uid.clone()))
}

/// `/mutate`: inject the labelled Pod's AppImage.
pub fn mutate(body: &[u8], catalog: &Catalog, policy: Policy) -> Result<Reply, BadRequest> {
    let Decoded { request, object } = decode(body)?;
    let answer = mutate_request(&request, object, catalog, policy);
    Ok(answer.into_reply(request.uid.clone()))
}

fn mutate_request(
    request: &AdmissionRequest<DynamicObject>,
    object: Option<Object<'_>>,
    catalog: &Catalog,
    policy: Policy,
) -> Answer {
    let mut answer = Answer::new(request);
    if !request.kind.group.is_empty() || request.kind.kind != "Pod" {
        let got = format!("{}/{}", request.kind.group, request.kind.kind);
        return answer.deny(format!("/mutate admits Pods only, got {got}"));
    }
    if !matches!(request.operation, Operation::Create) {
        return answer;
    }
    let Some(object) = object else {
        return answer.deny("the AdmissionReview request has no object (the Pod)");
    };
    let pod: Pod = match decode_object(object) {
        Ok(p) => p,
        Err(e) => return answer.deny(format!("cannot decode the Pod: {e}")),
    };
    let meta = &pod.metadata;
    if answer.namespace.is_empty() {
        answer.namespace = meta.namespace.clone().unwrap_or_default();
    }
    if answer.name.is_empty() {
        answer.name = meta
            .name
            .clone()
            .or_else(|| meta.generate_name.clone())
            .unwrap_or_default();
    }
    let label = meta.labels.as_ref().and_then(|l| l.get(labels::APP_IMAGE));
    let Some(image_name) = label.cloned() else {
        return answer;
    };
    if answer.namespace == SKIPPED_NAMESPACE {
        return answer;
    }
    let pod_ref = format!("{}/{}", answer.namespace, answer.name);
    if image_name.is_empty() {
        return answer.deny(format!(
            "label {} on Pod {pod_ref:?} is empty: set it to the name of an AppImage",
            labels::APP_IMAGE
        ));
    }
    answer.appimage = Some(image_name.clone());
    let Some(prepared) = catalog.lookup(&image_name) else {
        return answer.deny(format!(
            "AppImage {image_name:?} not found: create it (kubectl appimage apply -f FILE) or fix the label {} on Pod {pod_ref:?}",
            labels::APP_IMAGE
        ));
    };
    if let Err(e) = &prepared.derived.signature {
        answer.signature_failed = true;
        let message = format!("AppImage {image_name:?} failed signature verification: {e}");
        if policy.require_signature {
            return answer.deny(message);
        }
        tracing::warn!(
            uid = %request.uid,
            appimage = %image_name,
            "admitting Pod {pod_ref} despite: {message} (--require-signature=false)"
        );
        answer.warn(message);
    }
    let Some(name) = pod_name(&pod, &request.uid) else {
        return answer.deny("Pod has neither name nor generateName");
    };
    answer.name = name.clone();
    let templates = match &prepared.derived.templates {
        Ok(t) => t,
        Err(e) => return answer.deny(e.clone()),
    };
    let req = match Request::from_pod(&pod, &answer.namespace, &name) {
        Ok(r) => r,
        Err(e) => return answer.deny(format!("Pod {pod_ref:?}: {e}")),
    };
    let internal = |answer: Answer, e: serde_json::Error| {
        let mut answer = answer.deny(format!("internal error encoding the Pod: {e}"));
        answer.outcome = Outcome::Error;
        answer
    };
    // The original as JSON first: injection then takes the Pod itself, not a copy.
    let before = match serde_json::to_value(&pod) {
        Ok(v) => v,
        Err(e) => return internal(answer, e),
    };
    let injection = match inject_pod(&prepared.image, templates, pod, &req) {
        Ok(i) => i,
        Err(e) => return answer.deny(e.to_string()),
    };
    let after = match serde_json::to_value(&injection.pod) {
        Ok(v) => v,
        Err(e) => return internal(answer, e),
    };
    let Some(patch) = appimage::patch::diff(&before, &after) else {
        return answer;
    };
    answer.patched(patch)
}

/// `/validate`: check an AppImage's fields and signature.
pub fn validate(body: &[u8], trust: &TrustSnapshot, policy: Policy) -> Result<Reply, BadRequest> {
    let Decoded { request, object } = decode(body)?;
    let answer = validate_request(&request, object, trust, policy);
    Ok(answer.into_reply(request.uid.clone()))
}

fn validate_request(
    request: &AdmissionRequest<DynamicObject>,
    object: Option<Object<'_>>,
    trust: &TrustSnapshot,
    policy: Policy,
) -> Answer {
    let mut answer = Answer::new(request);
    let kind = &request.kind;
    if kind.group != appimage::resource::GROUP || kind.kind != appimage::resource::KIND {
        let got = format!("{}/{}", kind.group, kind.kind);
        return answer.deny(format!("/validate admits AppImages only, got {got}"));
    }
    if !matches!(request.operation, Operation::Create | Operation::Update) {
        return answer;
    }
    let Some(object) = object else {
        return answer.deny("the AdmissionReview request has no object (the AppImage)");
    };
    let image: AppImage = match decode_object(object) {
        Ok(i) => i,
        Err(e) => return answer.deny(format!("cannot decode the AppImage: {e}")),
    };
    let name = image.name().to_string();
    answer.appimage = Some(name.clone());
    if answer.name.is_empty() {
        answer.name = name.clone();
    }
    let errors = validate_image(&image);
    if !errors.is_empty() {
        let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
        return answer.deny(format!("AppImage {name:?} is invalid: {}", list.join("; ")));
    }
    if let Err(e) = verify(&image.spec.image, &trust.keys) {
        answer.signature_failed = true;
        let message = format!("AppImage {name:?} failed signature verification: {e}");
        if policy.require_signature {
            return answer.deny(message);
        }
        answer.warn(message);
    }
    answer
}
