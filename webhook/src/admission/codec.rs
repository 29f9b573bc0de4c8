//! The AdmissionReview wire format: one derived type each way. The request's `object` stays
//! raw JSON text, decoded by the handler into the type it expects; `oldObject` and the other
//! fields no rule reads are skipped. The answer carries the JSONPatch as base64, which is how
//! the API encodes its `[]byte`.

use std::borrow::Cow;
use std::fmt;

use k8s_openapi::api::authentication::v1::UserInfo;
use kube::core::Status;
use kube::core::admission::Operation;
use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use super::BadRequest;

const API_VERSIONS: [&str; 2] = ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"];
const KIND: &str = "AdmissionReview";

/// An AdmissionReview as the API server sends it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Review<'a> {
    #[serde(default, borrow)]
    api_version: Cow<'a, str>,
    #[serde(default, borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow, deserialize_with = "object_or_null")]
    request: Option<Request<'a>>,
}

/// The request fields the webhook reads (and checks the shape of, as the API defines them).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request<'a> {
    #[serde(borrow)]
    pub uid: Cow<'a, str>,
    #[serde(borrow)]
    pub kind: Kind<'a>,
    #[serde(borrow)]
    pub resource: Resource<'a>,
    #[serde(default, borrow)]
    pub name: Cow<'a, str>,
    #[serde(default, borrow)]
    pub namespace: Option<Cow<'a, str>>,
    pub operation: Operation,
    pub user_info: UserInfo,
    /// The object, left as text.
    #[serde(default, borrow)]
    pub object: Option<&'a RawValue>,
    /// The object before an UPDATE, left as text.
    #[serde(default, borrow)]
    pub old_object: Option<&'a RawValue>,
    #[serde(default)]
    pub dry_run: bool,
    /// The apiVersion of the review, echoed in the answer.
    #[serde(skip)]
    pub api_version: Cow<'a, str>,
}

/// `request.kind`: the object's group, version and kind.
#[derive(Debug, Deserialize)]
pub struct Kind<'a> {
    #[serde(default, borrow)]
    pub group: Cow<'a, str>,
    #[serde(borrow)]
    pub version: Cow<'a, str>,
    #[serde(borrow)]
    pub kind: Cow<'a, str>,
}

/// `request.resource`: the resource the request was made to.
#[derive(Debug, Deserialize)]
pub struct Resource<'a> {
    #[serde(default, borrow)]
    pub group: Cow<'a, str>,
    #[serde(borrow)]
    pub version: Cow<'a, str>,
    #[serde(borrow)]
    pub resource: Cow<'a, str>,
}

/// A derived struct would also read a JSON array, field by field; the API sends objects.
fn object_or_null<'de, D>(deserializer: D) -> Result<Option<Request<'de>>, D::Error>
where
    D: Deserializer<'de>,
{
    struct ObjectOnly;
    impl<'de> Visitor<'de> for ObjectOnly {
        type Value = Option<Request<'de>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("request must be a JSON object")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Self::Value, M::Error> {
            Request::deserialize(MapAccessDeserializer::new(map)).map(Some)
        }
    }
    deserializer.deserialize_any(ObjectOnly)
}

/// Decode a review in one pass; errors name the failing field.
pub fn decode(body: &[u8]) -> Result<Request<'_>, BadRequest> {
    // The typed pass skips unread fields without checking their UTF-8: check it all first.
    let text = std::str::from_utf8(body)
        .map_err(|e| BadRequest(format!("request body is not valid JSON: {e}")))?;
    // A derived struct would also read a JSON array; a review is an object.
    if text.trim_start().starts_with('[') {
        return Err(BadRequest("request body is not a JSON object".into()));
    }
    // Decoded without tracking the path first: the same decode, so the same verdict, and the
    // path is needed only for an error's text.
    let Ok(review) = serde_json::from_str::<Review>(text) else {
        return Err(review_error(text));
    };
    if review.kind != KIND {
        let got = &review.kind;
        return Err(BadRequest(format!("expected kind \"{KIND}\", got {got:?}")));
    }
    if !API_VERSIONS.contains(&&*review.api_version) {
        let got = &review.api_version;
        return Err(BadRequest(format!(
            "expected apiVersion \"{}\", got {got:?}",
            API_VERSIONS[0]
        )));
    }
    let mut request = review
        .request
        .ok_or_else(|| BadRequest("the AdmissionReview has no request".into()))?;
    request.api_version = review.api_version;
    Ok(request)
}

/// Why `text`, which does not decode as a review, does not: the failing field's path.
fn review_error(text: &str) -> BadRequest {
    let mut json = serde_json::Deserializer::from_str(text);
    let review: Result<Review, _> = serde_path_to_error::deserialize(&mut json);
    if let Err(e) = review {
        let (path, inner) = (e.path().to_string(), e.into_inner());
        return match (inner.is_data(), path == ".") {
            (true, false) => BadRequest(format!("invalid AdmissionReview at {path}: {inner}")),
            (true, true) => BadRequest("request body is not a JSON object".into()),
            (false, _) => BadRequest(format!("request body is not valid JSON: {inner}")),
        };
    }
    match json.end() {
        Err(e) => BadRequest(format!("request body is not valid JSON: {e}")),
        // Not reached: the untracked decode failed on the same text.
        Ok(()) => BadRequest("request body is not a valid AdmissionReview".into()),
    }
}

/// Decode `object` as `T`; the error names the failing field path.
pub fn decode_object<T: DeserializeOwned>(object: &RawValue) -> Result<T, String> {
    let mut json = serde_json::Deserializer::from_str(object.get());
    serde_path_to_error::deserialize(&mut json).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.inner().to_string()
        } else {
            format!("{path}: {}", e.inner())
        }
    })
}

/// Decode `object` as a `T` that borrows from its text (the Pod as admission reads it,
/// [`appimage::pod_view::PodView`]), without tracking the path: the caller explains a failure
/// with [`decode_object`] of the type it stands for.
pub fn decode_borrowed<'a, T: Deserialize<'a>>(object: &'a RawValue) -> serde_json::Result<T> {
    serde_json::from_str(object.get())
}

/// The answer to one request.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    pub uid: String,
    pub allowed: bool,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<&'static str>,
    /// The JSONPatch's base64: most of the answer, which [`ReviewOut`] writes with sonic-rs,
    /// whose escape scan of a string this long is SIMD.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl Response {
    /// Allow `uid`, unchanged.
    pub fn allow(uid: &str) -> Response {
        Response {
            uid: uid.to_string(),
            allowed: true,
            ..Response::default()
        }
    }

    pub fn deny(&mut self, message: String) {
        self.allowed = false;
        self.status.message = message;
        self.patch_type = None;
        self.patch = None;
    }

    /// Set `patch`, a JSONPatch document.
    pub fn set_patch(&mut self, patch: &[u8]) {
        self.patch = Some(base64_simd::STANDARD.encode_to_string(patch));
        self.patch_type = Some("JSONPatch");
    }

    /// The JSONPatch, decoded from its base64.
    pub fn patch_bytes(&self) -> Option<Vec<u8>> {
        base64_simd::STANDARD
            .decode_to_vec(self.patch.as_deref()?)
            .ok()
    }

    /// Bytes the answer takes, about (to size its buffer once).
    pub fn size_hint(&self) -> usize {
        256 + self.patch.as_ref().map_or(0, String::len)
    }
}

/// An AdmissionReview answer as sent to the API server.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewOut<'a> {
    pub api_version: &'a str,
    pub kind: &'static str,
    pub response: &'a Response,
}

impl<'a> ReviewOut<'a> {
    pub fn new(api_version: &'a str, response: &'a Response) -> ReviewOut<'a> {
        ReviewOut {
            api_version,
            kind: KIND,
            response,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answer is written with sonic-rs: the same bytes serde_json writes.
    #[test]
    fn sonic_writes_the_answer_as_serde_json_does() {
        let mut response = Response::allow("4b4cd2b7-\"uid\"");
        response.set_patch(b"[{\"op\":\"add\",\"path\":\"/a\",\"value\":\"\\u0001\xc3\xa9\"}]");
        response
            .warnings
            .push("quote \" backslash \\ newline \n tab \t bell \u{7} é 😀 <&>".into());
        let mut denied = Response::allow("x");
        denied.deny("AppImage \"a\" failed:\n\tbad \u{1f} key".into());
        for response in [&response, &denied] {
            let out = ReviewOut::new("admission.k8s.io/v1", response);
            let sonic = sonic_rs::to_vec(&out).unwrap();
            let serde = serde_json::to_vec(&out).unwrap();
            assert_eq!(String::from_utf8(sonic), String::from_utf8(serde));
        }
        assert!(response.patch_bytes().unwrap().starts_with(b"[{\"op\""));
    }
}
