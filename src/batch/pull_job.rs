//! The per-node image pull Job of the pre-pull phase (`spec.prePull`) and what the controller
//! reads back from it.
//!
//! The Job only pulls: its one container names the AppImage's image with
//! `imagePullPolicy: IfNotPresent` and runs `true` instead of the image's entrypoint, so the
//! app never starts. `true` is in every image with a shell or coreutils; in one without it
//! (distroless, scratch) the container cannot start (StartError, CreateContainerError), which
//! the kubelet reports only after the image is on the node, so that counts as pulled too (see
//! [`pull_outcome`]). It runs as nobody, without privileges or a service account token, so it
//! passes the restricted Pod Security Standard.
//!
//! It carries the batch label and [`BATCH_PREPULL`], not the AppImage label: admission leaves
//! it alone (nothing to inject; the app's Pods are the ones admission checks and pins).

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, Pod, PodSecurityContext, PodSpec, PodTemplateSpec, SeccompProfile,
    SecurityContext,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;

use super::overrides;
use super::prepull::{PullOutcome, PullProgress, pull_timeout};
use super::types::BatchDeployment;
use super::workload::node_and_attempt;
use crate::labels::{self, BATCH, BATCH_ATTEMPT, BATCH_NODE};
use crate::naming::pod_identity;
use crate::resource::AppImage;

pub use super::naming::pull_name;
pub use crate::labels::BATCH_PREPULL;

/// The pull container's name.
pub const CONTAINER: &str = "pull";
/// What the pull container runs instead of the image's entrypoint.
pub const COMMAND: &str = "true";
/// The user the pull container runs as (nobody).
const NOBODY: i64 = 65534;

/// Container waiting reasons that mean the image cannot be pulled.
pub const PULL_ERRORS: [&str; 6] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "RegistryUnavailable",
    "SignatureValidationFailed",
];

/// Waiting reasons the kubelet gives only after the image is on the node: the container could
/// not be made or started (for example `true` is not in the image), which does not matter here.
const AFTER_PULL: [&str; 3] = [
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// The reference a pull pulls: what the app's Pods will run. The AppImage's `name:tag`
/// ([`crate::resource::ImageInfo::reference`]), or `pinned`, the `name@sha256:<manifest>` the
/// webhook pins the app's Pods to when it checks a signed image id (`--verify-image-ids`), so
/// that the pull fetches exactly the signed bytes.
pub fn pull_reference(image: &AppImage, pinned: Option<&str>) -> String {
    pinned.map_or_else(|| image.image_ref(), str::to_string)
}

/// The pull Job of `bd` for `node` (whose labels pick the overrides' tolerations), for the job
/// `attempt`, pulling `image` (the reference the app's Pods run: `name:tag`, or the manifest
/// digest the image id pins when the controller knows it).
pub fn pull_job(
    bd: &BatchDeployment,
    image: &str,
    node: &str,
    node_labels: &BTreeMap<String, String>,
    attempt: i32,
) -> Result<Job, String> {
    let spec = &bd.spec;
    let bd_name = bd.metadata.name.clone().unwrap_or_default();
    let prefix = spec.name_prefix.clone().unwrap_or_else(|| bd_name.clone());
    let deadline = pull_timeout(spec)?.as_secs().max(1) as i64;
    let own = BTreeMap::from([
        (BATCH.to_string(), pod_identity(&bd_name)),
        (BATCH_PREPULL.to_string(), "true".to_string()),
    ]);
    let mut labels_ = own.clone();
    labels_.insert(labels::MANAGED_BY.into(), labels::MANAGER.into());
    let annotations = BTreeMap::from([
        (BATCH_NODE.to_string(), node.to_string()),
        (BATCH_ATTEMPT.to_string(), attempt.to_string()),
    ]);
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(pull_name(&prefix, node)),
            namespace: bd.metadata.namespace.clone(),
            labels: Some(labels_),
            annotations: Some(annotations.clone()),
            owner_references: bd.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(deadline),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(own),
                    annotations: Some(annotations),
                    ..Default::default()
                }),
                spec: Some(pod_spec(bd, image, node, node_labels, deadline)?),
            },
            ..Default::default()
        }),
        status: None,
    })
}

/// Pinned to the node, tolerating what the job's Pods tolerate there (spec.podTemplate's and
/// the node's overrides' tolerations), with the job's image pull secrets.
fn pod_spec(
    bd: &BatchDeployment,
    image: &str,
    node: &str,
    node_labels: &BTreeMap<String, String>,
    deadline: i64,
) -> Result<PodSpec, String> {
    let fragment: PodTemplateSpec = match &bd.spec.pod_template {
        None => PodTemplateSpec::default(),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| format!("spec.podTemplate is not a PodTemplateSpec fragment: {e}"))?,
    };
    let from = fragment.spec.unwrap_or_default();
    let mut tolerations = from.tolerations.unwrap_or_default();
    let tweaks = overrides::resolve(&bd.spec, node_labels);
    tolerations.extend(tweaks.tolerations.unwrap_or_default());
    Ok(PodSpec {
        node_name: Some(node.into()),
        restart_policy: Some("Never".into()),
        active_deadline_seconds: Some(deadline),
        tolerations: (!tolerations.is_empty()).then_some(tolerations),
        image_pull_secrets: from.image_pull_secrets,
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(0),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(NOBODY),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        containers: vec![Container {
            name: CONTAINER.into(),
            image: Some(image.into()),
            image_pull_policy: Some("IfNotPresent".into()),
            command: Some(vec![COMMAND.into()]),
            args: Some(Vec::new()),
            security_context: Some(SecurityContext {
                allow_privilege_escalation: Some(false),
                capabilities: Some(Capabilities {
                    drop: Some(vec!["ALL".into()]),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    })
}

/// The pull Job's progress for the machine, from the Job and its Pods.
pub fn pull_progress(job: &Job, pods: &[Pod]) -> PullProgress {
    let (_, attempt) = node_and_attempt(&job.metadata).unwrap_or_default();
    PullProgress {
        name: job.metadata.name.clone().unwrap_or_default(),
        attempt,
        outcome: pull_outcome(job, pods),
    }
}

/// Pulled: the Job completed, or a Pod shows the image is on the node (a container started,
/// ran, has an imageID, or could not be made or started after the pull). Failed: a pull
/// error, or the Job or Pod failed with none of those signs. Else still pulling.
pub fn pull_outcome(job: &Job, pods: &[Pod]) -> PullOutcome {
    let conditions = job.status.as_ref().and_then(|s| s.conditions.as_ref());
    let condition = |type_: &str| {
        conditions
            .into_iter()
            .flatten()
            .find(|c| c.type_ == type_ && c.status == "True")
    };
    if condition("Complete").is_some() || pods.iter().any(pulled) {
        return PullOutcome::Pulled;
    }
    if let Some(failure) = pods.iter().find_map(pod_pull_failure) {
        return failure;
    }
    if let Some(c) = condition("Failed") {
        return PullOutcome::Failed {
            reason: c.reason.clone().unwrap_or_else(|| "JobFailed".into()),
            message: c.message.clone().unwrap_or_default(),
        };
    }
    PullOutcome::Pulling
}

/// Whether `pod` shows its image is on the node.
fn pulled(pod: &Pod) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    if status.phase.as_deref() == Some("Succeeded") {
        return true;
    }
    status.container_statuses.iter().flatten().any(|c| {
        let state = c.state.clone().unwrap_or_default();
        let after_pull =
            |reason: Option<&String>| reason.is_some_and(|r| AFTER_PULL.contains(&r.as_str()));
        !c.image_id.is_empty()
            || state.running.is_some()
            // A container that ran had its image; the kubelet's stand-in for one that never
            // existed (a Pod killed while pulling) did not.
            || state
                .terminated
                .as_ref()
                .is_some_and(|t| t.reason.as_deref() != Some("ContainerStatusUnknown"))
            || state
                .waiting
                .as_ref()
                .is_some_and(|w| after_pull(w.reason.as_ref()))
    })
}

/// A Pod whose image cannot be pulled, or that failed before its image came.
fn pod_pull_failure(pod: &Pod) -> Option<PullOutcome> {
    let status = pod.status.as_ref()?;
    let waiting = status
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.waiting.as_ref())
        .find(|w| {
            w.reason
                .as_deref()
                .is_some_and(|r| PULL_ERRORS.contains(&r))
        });
    if let Some(w) = waiting {
        return Some(PullOutcome::Failed {
            reason: w.reason.clone().unwrap_or_default(),
            message: w.message.clone().unwrap_or_default(),
        });
    }
    (status.phase.as_deref() == Some("Failed")).then(|| PullOutcome::Failed {
        reason: status.reason.clone().unwrap_or_else(|| "PodFailed".into()),
        message: status.message.clone().unwrap_or_else(|| {
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            format!("pull Pod {name} failed")
        }),
    })
}

#[cfg(test)]
#[path = "pull_job_tests.rs"]
mod tests;
