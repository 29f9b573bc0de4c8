//! `/validate-pods`: Pods stay as admitted. Registered for Pod UPDATE and
//! `pods/ephemeralcontainers` in a ValidatingWebhookConfiguration, not beside `/mutate`: a
//! validating webhook sees the object after every mutating webhook (ours included) is done,
//! so no later mutation can slip an image or label past the check. The objectSelector keeps
//! Pods without the AppImage label away (a Pod gaining the label still comes: the apiserver
//! matches the old and the new object). The rule itself is the core's `pod_integrity`.

use std::sync::Arc;

use appimage::admitted::SealKey;
use appimage::overrides::PodOverrides;
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::Operation;

use crate::registry::Registry;

use super::{Answer, BadRequest, Denial, Reply, codec};

/// What the webhook does to Pods beyond injecting them.
#[derive(Debug, Clone, Default)]
pub struct PodRules {
    /// Seals every injected Pod (see `appimage::admitted`); `None` leaves Pods unsealed, and
    /// then the controllers build nothing for them.
    pub seal_key: Option<SealKey>,
    /// What a Pod may override of its deploy template (`--pod-overrides`).
    pub pod_overrides: PodOverrides,
    /// Checks `spec.image.id` against the registry and pins Pods to the manifest that has it
    /// (`--verify-image-ids`); `None`: Pods name `name:tag`, as in Kuscia.
    pub registry: Option<Arc<Registry>>,
}

/// `/validate-pods`: refuse an UPDATE that changes what admission decided.
pub fn validate_pod(body: &[u8]) -> Result<Reply, BadRequest> {
    let request = codec::decode(body)?;
    let mut answer = Answer::new(&request);
    let result = validate_pod_request(&request, &mut answer);
    Ok(answer.finish(result, &request.api_version))
}

fn validate_pod_request(request: &codec::Request<'_>, answer: &mut Answer) -> Result<(), Denial> {
    let kind = &request.kind;
    if !kind.group.is_empty() || kind.kind != "Pod" {
        let got = format!("{}/{}", kind.group, kind.kind);
        return Err(format!("/validate-pods admits Pods only, got {got}").into());
    }
    if !matches!(request.operation, Operation::Update) {
        return Ok(());
    }
    let (Some(object), Some(old)) = (request.object, request.old_object) else {
        return Err("the AdmissionReview UPDATE request needs object and oldObject (the Pod after and before)".into());
    };
    let new: Pod =
        codec::decode_object(object).map_err(|e| format!("cannot decode the Pod: {e}"))?;
    let old: Pod =
        codec::decode_object(old).map_err(|e| format!("cannot decode the old Pod: {e}"))?;
    let label = |p: &Pod| {
        let labels = p.metadata.labels.as_ref();
        labels
            .and_then(|l| l.get(appimage::labels::APP_IMAGE))
            .cloned()
    };
    answer.appimage = label(&old).or_else(|| label(&new));
    if answer.namespace == super::SKIPPED_NAMESPACE {
        return Ok(());
    }
    appimage::pod_integrity::check_update(&old, &new).map_err(Denial::from)
}
