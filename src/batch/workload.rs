//! The per-node workload of a BatchDeployment and what the controller reads back from it:
//! names, the builder (a Deployment for `restartPolicy: Always`, else a Job), the workload's
//! progress, and the Node and AppImage facts the state machine takes.
//!
//! The workload only *asks* for the AppImage (its label and the option annotations) and names
//! the deploy template's containers with the AppImage's image so that it validates; the webhook
//! completes every Pod at admission, as for any Pod.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, Node, Pod, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::Resource;

use super::machine::{AppImageFact, NodeFact, Progress, always, instances};
use super::types::{BatchDeployment, RestartPolicy};
use crate::labels;
use crate::naming::{
    MAX_LABEL, dns1123_label_error, dns1123_subdomain_error, pod_identity, short_hash,
};
use crate::resource::AppImage;
use crate::selection;

/// Label on each workload and its Pods: the BatchDeployment's name (hashed to fit a label).
pub const BATCH: &str = "appimage.kuscia.secretflow/batch";
/// Label on each workload and its Pods: the workload's name; the Deployment selects on it.
pub const BATCH_WORKLOAD: &str = "appimage.kuscia.secretflow/batch-workload";
/// Annotation on each workload: the node it is pinned to.
pub const BATCH_NODE: &str = "appimage.kuscia.secretflow/batch-node";
/// Annotation on each workload: the node attempt it was made for.
pub const BATCH_ATTEMPT: &str = "appimage.kuscia.secretflow/batch-attempt";
/// Pod annotation naming the AppImage revision to inject (when `spec.revision` is set).
pub const REVISION: &str = "appimage.kuscia.secretflow/revision";

/// `<prefix>-<node>` when that is a DNS-1123 label; else its first 46 characters (dots made
/// dashes) and 16 hex of its sha256, which stays unique and fits 63.
pub fn workload_name(prefix: &str, node: &str) -> String {
    let full = format!("{prefix}-{node}");
    if dns1123_label_error(&full).is_none() {
        return full;
    }
    let head: String = full
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(MAX_LABEL - 17)
        .collect();
    let head = head.trim_matches('-');
    let hash = short_hash(&full, 16);
    if head.is_empty() {
        format!("w-{hash}")
    } else {
        format!("{head}-{hash}")
    }
}

/// Why `prefix` cannot start workload names; `None` if it can.
pub fn prefix_error(prefix: &str) -> Option<String> {
    dns1123_subdomain_error(prefix)
        .map(|e| format!("spec.namePrefix {prefix:?} {e}; use lower-case letters, digits and '-'"))
}

/// The workload for one node: a Deployment (Always) or a Job (OnFailure, Never).
#[derive(Clone, Debug, PartialEq)]
pub enum NodeWorkload {
    Deployment(Deployment),
    Job(Job),
}

impl NodeWorkload {
    pub fn name(&self) -> &str {
        let meta = match self {
            Self::Deployment(d) => &d.metadata,
            Self::Job(j) => &j.metadata,
        };
        meta.name.as_deref().unwrap_or_default()
    }
}

/// The workload of `bd` for `node`'s `attempt`, running `image`: pinned to the node by
/// `nodeName` (the webhook keeps it; affinity it may replace), owned by `bd`.
pub fn build(
    bd: &BatchDeployment,
    image: &AppImage,
    node: &str,
    attempt: i32,
) -> Result<NodeWorkload, String> {
    let spec = &bd.spec;
    let bd_name = bd.metadata.name.clone().unwrap_or_default();
    let prefix = spec.name_prefix.clone().unwrap_or_else(|| bd_name.clone());
    let name = workload_name(&prefix, node);
    let mut own_labels = BTreeMap::from([
        (BATCH.to_string(), pod_identity(&bd_name)),
        (BATCH_WORKLOAD.to_string(), name.clone()),
    ]);
    let template = pod_template(bd, image, node, &own_labels)?;
    own_labels.insert(labels::MANAGED_BY.into(), labels::MANAGER.into());
    let meta = ObjectMeta {
        name: Some(name.clone()),
        namespace: bd.metadata.namespace.clone(),
        labels: Some(own_labels),
        annotations: Some(BTreeMap::from([
            (BATCH_NODE.to_string(), node.to_string()),
            (BATCH_ATTEMPT.to_string(), attempt.to_string()),
        ])),
        owner_references: bd.controller_owner_ref(&()).map(|o| vec![o]),
        ..Default::default()
    };
    let n = instances(spec);
    if always(spec) {
        let selector = BTreeMap::from([(BATCH_WORKLOAD.to_string(), name)]);
        return Ok(NodeWorkload::Deployment(Deployment {
            metadata: meta,
            spec: Some(DeploymentSpec {
                replicas: Some(n),
                selector: LabelSelector {
                    match_labels: Some(selector),
                    ..Default::default()
                },
                template,
                ..Default::default()
            }),
            ..Default::default()
        }));
    }
    let never = spec.restart_policy == Some(RestartPolicy::Never);
    Ok(NodeWorkload::Job(Job {
        metadata: meta,
        spec: Some(JobSpec {
            completions: Some(n),
            parallelism: Some(n),
            // Never (IEF's 不重启): a failed Pod fails the node, no replacement Pod.
            backoff_limit: never.then_some(0),
            template,
            ..Default::default()
        }),
        ..Default::default()
    }))
}

/// `spec.podTemplate` as the base, then what the job decides on top: the AppImage label and
/// options, the template's containers with the AppImage's image, the node, the restart policy.
fn pod_template(
    bd: &BatchDeployment,
    image: &AppImage,
    node: &str,
    own_labels: &BTreeMap<String, String>,
) -> Result<PodTemplateSpec, String> {
    let spec = &bd.spec;
    let mut t: PodTemplateSpec = match &spec.pod_template {
        None => PodTemplateSpec::default(),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| format!("spec.podTemplate is not a PodTemplateSpec fragment: {e}"))?,
    };
    let role = spec.role.as_deref().unwrap_or_default();
    let index =
        selection::select(image, role, spec.template.as_deref()).map_err(|e| e.to_string())?;
    let meta = t.metadata.get_or_insert_with(Default::default);
    let pod_labels = meta.labels.get_or_insert_with(Default::default);
    pod_labels.extend(own_labels.clone());
    pod_labels.insert(labels::APP_IMAGE.into(), image.name().into());
    meta.annotations
        .get_or_insert_with(Default::default)
        .extend(option_annotations(bd));
    let pod = t.spec.get_or_insert_with(PodSpec::default);
    let image_ref = image.image_ref();
    for c in &image.spec.deploy_templates[index].spec.containers {
        match pod.containers.iter_mut().find(|x| x.name == c.name) {
            Some(given) => given.image = Some(image_ref.clone()),
            None => pod.containers.push(Container {
                name: c.name.clone(),
                image: Some(image_ref.clone()),
                ..Default::default()
            }),
        }
    }
    pod.node_name = Some(node.into());
    let policy = spec.restart_policy.unwrap_or(RestartPolicy::Always);
    pod.restart_policy = Some(policy.as_str().into());
    if let Some(v) = spec.host_pid {
        pod.host_pid = Some(v);
    }
    if let Some(v) = spec.host_network {
        pod.host_network = Some(v);
    }
    Ok(t)
}

/// The render options as the documented Pod annotations the webhook reads.
fn option_annotations(bd: &BatchDeployment) -> BTreeMap<String, String> {
    let spec = &bd.spec;
    let mut out = BTreeMap::new();
    let options = [
        (labels::OPT_ROLE, &spec.role),
        (labels::OPT_TEMPLATE, &spec.template),
        (labels::OPT_TASK_ID, &spec.task_id),
        (labels::OPT_INPUT_CONFIG, &spec.input_config),
        (labels::OPT_SERVING_ID, &spec.serving_id),
    ];
    for (key, value) in options {
        if let Some(v) = value {
            out.insert(key.to_string(), v.clone());
        }
    }
    if !spec.values.is_empty() {
        // A BTreeMap serializes in key order: the same values give the same bytes.
        let json = serde_json::to_string(&spec.values).unwrap_or_default();
        out.insert(labels::OPT_VALUES.into(), json);
    }
    if let Some(r) = spec.revision {
        out.insert(REVISION.into(), r.to_string());
    }
    out
}

/// The node and attempt a workload of this job was made for, from its annotations.
pub fn node_and_attempt(meta: &ObjectMeta) -> Option<(String, i32)> {
    let a = meta.annotations.as_ref()?;
    let node = a.get(BATCH_NODE)?.clone();
    let attempt = a.get(BATCH_ATTEMPT)?.parse().ok()?;
    Some((node, attempt))
}

/// Container waiting reasons that mean the Pod will not come up by itself.
const STUCK: [&str; 6] = [
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// Progress of a Deployment workload, with its Pods for the failures a Deployment hides.
pub fn deployment_progress(d: &Deployment, pods: &[Pod]) -> Progress {
    let (_, attempt) = node_and_attempt(&d.metadata).unwrap_or_default();
    let status = d.status.clone().unwrap_or_default();
    let conditions = status.conditions.unwrap_or_default();
    let failed_condition = conditions.iter().find(|c| {
        (c.type_ == "Progressing" && c.status == "False")
            || (c.type_ == "ReplicaFailure" && c.status == "True")
    });
    let failure = failed_condition
        .map(|c| {
            (
                c.reason.clone().unwrap_or_else(|| c.type_.clone()),
                c.message.clone().unwrap_or_default(),
            )
        })
        .or_else(|| pods.iter().find_map(pod_failure));
    Progress {
        name: d.metadata.name.clone().unwrap_or_default(),
        attempt,
        pods: status.replicas.unwrap_or(0),
        ready: status.ready_replicas.unwrap_or(0),
        succeeded: 0,
        failure,
    }
}

/// A Pod that failed or is stuck: (reason, message).
pub fn pod_failure(pod: &Pod) -> Option<(String, String)> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() == Some("Failed") {
        let reason = status.reason.clone().unwrap_or_else(|| "PodFailed".into());
        let message = status
            .message
            .clone()
            .unwrap_or_else(|| format!("Pod {name} failed"));
        return Some((reason, message));
    }
    let containers = status.container_statuses.iter().flatten();
    containers
        .filter_map(|c| c.state.as_ref()?.waiting.as_ref())
        .find_map(|w| {
            let reason = w.reason.as_deref().filter(|r| STUCK.contains(r))?;
            let detail = w.message.clone().unwrap_or_default();
            Some((
                reason.to_string(),
                format!("Pod {name}: {reason} {detail}")
                    .trim_end()
                    .to_string(),
            ))
        })
}

/// Progress of a Job workload.
pub fn job_progress(j: &Job) -> Progress {
    let (_, attempt) = node_and_attempt(&j.metadata).unwrap_or_default();
    let status = j.status.clone().unwrap_or_default();
    let failure = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Failed" && c.status == "True")
        .map(|c| {
            (
                c.reason.clone().unwrap_or_else(|| "JobFailed".into()),
                c.message.clone().unwrap_or_default(),
            )
        });
    let (active, succeeded, failed) = (
        status.active.unwrap_or(0),
        status.succeeded.unwrap_or(0),
        status.failed.unwrap_or(0),
    );
    Progress {
        name: j.metadata.name.clone().unwrap_or_default(),
        attempt,
        pods: active + succeeded + failed,
        ready: status.ready.unwrap_or(0),
        succeeded,
        failure,
    }
}

/// A Node's name, labels and readiness.
pub fn node_fact(node: &Node) -> NodeFact {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True");
    NodeFact {
        name: node.metadata.name.clone().unwrap_or_default(),
        labels: node.metadata.labels.clone().unwrap_or_default(),
        ready,
    }
}

/// Whether `image` can be deployed for `bd`: it exists, passed the controller's checks
/// (`problem`: signature or lifecycle, as (reason, message)), and has a template for the role.
pub fn app_image_fact(
    bd: &BatchDeployment,
    image: Option<&AppImage>,
    problem: Option<(&str, &str)>,
) -> AppImageFact {
    let name = &bd.spec.app_image;
    let unusable = |reason: &str, message: String| AppImageFact::Unusable {
        reason: reason.into(),
        message,
    };
    let Some(image) = image else {
        return unusable(
            "AppImageNotFound",
            format!("AppImage {name:?} does not exist; create it or fix spec.appImage, then retry"),
        );
    };
    if let Some((reason, message)) = problem {
        return unusable(reason, format!("AppImage {name:?}: {message}"));
    }
    let role = bd.spec.role.as_deref().unwrap_or_default();
    match selection::select(image, role, bd.spec.template.as_deref()) {
        Ok(_) => AppImageFact::Usable,
        Err(e) => unusable("NoDeployTemplate", e.to_string()),
    }
}

#[cfg(test)]
#[path = "workload_tests.rs"]
mod tests;
