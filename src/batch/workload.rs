//! The per-node workload of a BatchDeployment and what the controller reads back from it:
//! names, the builder (a Deployment for `restartPolicy: Always`, else a Job), the workload's
//! progress, and the Node and AppImage facts the state machine takes.
//!
//! The workload only *asks* for the AppImage (its label and the option annotations) and names
//! the deploy template's containers with the AppImage's image so that it validates; the webhook
//! completes every Pod at admission, as for any Pod.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;

use super::machine::{AppImageFact, NodeFact, Progress, instances};
pub use super::naming::{prefix_error, workload_name};
use super::overrides;
use super::types::{BatchDeployment, RestartPolicy};
use crate::labels;
pub use crate::labels::{BATCH, BATCH_ATTEMPT, BATCH_NODE, REVISION};
use crate::naming::pod_identity;
use crate::resource::AppImage;
use crate::selection;
use crate::workload::{self, DeployOptions, Kind, Workload};

/// The failure (reason, message) of a node whose workload name is held by a stored `kind`
/// object that `bd` does not control: it is never taken over (issue 25), and the message names
/// its owner (its controller, else the first field manager that wrote more than its status). `None` when `bd`
/// controls it (a create the store had not seen yet).
pub fn taken(bd: &BatchDeployment, kind: &str, stored: &ObjectMeta) -> Option<(String, String)> {
    let controller = stored
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true));
    if controller.is_some_and(|o| Some(o.uid.as_str()) == bd.metadata.uid.as_deref()) {
        return None;
    }
    let manager = stored
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| m.subresource.as_deref().unwrap_or_default().is_empty())
        .find_map(|m| m.manager.as_deref());
    let owner = match (controller, manager) {
        (Some(o), _) => format!("is owned by {}/{}", o.kind, o.name),
        (None, Some(m)) => format!("has no owner (made by field manager {m:?})"),
        (None, None) => "has no owner".to_string(),
    };
    let name = stored.name.as_deref().unwrap_or_default();
    let bd_name = bd.metadata.name.as_deref().unwrap_or_default();
    Some((
        "WorkloadNameTaken".into(),
        format!(
            "{kind} {name:?} already exists and {owner}, not BatchDeployment {bd_name:?}: it is not taken over; delete or rename it, or give the job another spec.namePrefix"
        ),
    ))
}

/// The workload of `bd` for `node`'s `attempt`, running `image`: what `deploy` builds (one
/// code path: `workload::build`, a Deployment for Always, else a Job), pinned to the node by
/// `nodeName` (the webhook keeps it; affinity it may replace), owned by `bd`.
pub fn build(
    bd: &BatchDeployment,
    image: &AppImage,
    node: &str,
    attempt: i32,
) -> Result<Workload, String> {
    build_for(bd, image, node, &BTreeMap::new(), attempt)
}

/// [`build`] for a node with `labels`, with the job's overrides that match them.
pub fn build_for(
    bd: &BatchDeployment,
    image: &AppImage,
    node: &str,
    labels: &BTreeMap<String, String>,
    attempt: i32,
) -> Result<Workload, String> {
    let spec = &bd.spec;
    let tweaks = overrides::resolve(spec, labels);
    let mut values = spec.values.clone();
    values.extend(tweaks.set.clone());
    let bd_name = bd.metadata.name.clone().unwrap_or_default();
    let prefix = spec.name_prefix.clone().unwrap_or_else(|| bd_name.clone());
    let policy = spec.restart_policy.unwrap_or(RestartPolicy::Always);
    let opts = DeployOptions {
        kind: if policy == RestartPolicy::Always {
            Kind::Deployment
        } else {
            Kind::Job
        },
        name: Some(workload_name(&prefix, node)),
        namespace: bd.metadata.namespace.clone().unwrap_or_default(),
        role: spec.role.clone().unwrap_or_default(),
        template: spec.template.clone(),
        replicas: Some(tweaks.replicas.unwrap_or_else(|| instances(spec))),
        task_id: spec.task_id.clone().unwrap_or_default(),
        input_config: spec.input_config.clone().unwrap_or_default(),
        values,
        pod_template: Some(fragment(bd, node, policy)?),
        host_network: spec.host_network == Some(true),
        ..Default::default()
    };
    let mut w = workload::build(image, &opts).map_err(|e| e.to_string())?;
    let meta = metadata_mut(&mut w);
    let own = [(BATCH.to_string(), pod_identity(&bd_name))];
    let labels_ = meta.labels.get_or_insert_with(Default::default);
    labels_.extend(own.clone());
    labels_.insert(labels::MANAGED_BY.into(), labels::MANAGER.into());
    meta.annotations
        .get_or_insert_with(Default::default)
        .extend([
            (BATCH_NODE.to_string(), node.to_string()),
            (BATCH_ATTEMPT.to_string(), attempt.to_string()),
        ]);
    meta.owner_references = bd.controller_owner_ref(&()).map(|o| vec![o]);
    if let Workload::Job(job) = &mut w
        && let Some(job_spec) = job.spec.as_mut()
    {
        // Never (IEF's 不重启): a failed Pod fails the node, no replacement Pod.
        job_spec.backoff_limit = (policy == RestartPolicy::Never).then_some(0);
    }
    let Some(template) = pod_template_mut(&mut w) else {
        return Err("internal: the workload has no pod template".into());
    };
    overrides::apply(template, &tweaks);
    let Some(t_meta) = template.metadata.as_mut() else {
        return Err("internal: the workload has no pod template".into());
    };
    t_meta
        .labels
        .get_or_insert_with(Default::default)
        .extend(own);
    t_meta
        .annotations
        .get_or_insert_with(Default::default)
        .extend(extra_annotations(bd));
    Ok(w)
}

/// `spec.podTemplate` with what the job decides on top: the node, the restart policy, hostPID.
fn fragment(
    bd: &BatchDeployment,
    node: &str,
    policy: RestartPolicy,
) -> Result<PodTemplateSpec, String> {
    let mut t: PodTemplateSpec = match &bd.spec.pod_template {
        None => PodTemplateSpec::default(),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| format!("spec.podTemplate is not a PodTemplateSpec fragment: {e}"))?,
    };
    let pod = t.spec.get_or_insert_with(PodSpec::default);
    pod.node_name = Some(node.into());
    pod.restart_policy = Some(policy.as_str().into());
    if let Some(v) = bd.spec.host_pid {
        pod.host_pid = Some(v);
    }
    Ok(t)
}

fn metadata_mut(w: &mut Workload) -> &mut ObjectMeta {
    match w {
        Workload::Deployment(o) => &mut o.metadata,
        Workload::StatefulSet(o) => &mut o.metadata,
        Workload::DaemonSet(o) => &mut o.metadata,
        Workload::Job(o) => &mut o.metadata,
        Workload::CronJob(o) => &mut o.metadata,
    }
}

fn pod_template_mut(w: &mut Workload) -> Option<&mut PodTemplateSpec> {
    match w {
        Workload::Deployment(o) => o.spec.as_mut().map(|s| &mut s.template),
        Workload::Job(o) => o.spec.as_mut().map(|s| &mut s.template),
        _ => None,
    }
}

/// The options `deploy` has no flag for: SERVING_ID and the pinned revision.
fn extra_annotations(bd: &BatchDeployment) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(id) = &bd.spec.serving_id {
        out.insert(labels::OPT_SERVING_ID.to_string(), id.clone());
    }
    if let Some(r) = bd.spec.revision {
        out.insert(REVISION.to_string(), r.to_string());
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

/// This job's workloads by the node they are pinned to, for [`Observed::workloads`]: each
/// Deployment with its own Pods (by the workload label), each Job. Objects without the batch
/// annotations are not this job's and are left out.
///
/// [`Observed::workloads`]: super::machine::Observed::workloads
pub fn progress_by_node(
    deployments: &[Deployment],
    jobs: &[Job],
    pods: &[Pod],
) -> BTreeMap<String, Progress> {
    let mut out = BTreeMap::new();
    for d in deployments {
        let Some((node, _)) = node_and_attempt(&d.metadata) else {
            continue;
        };
        let name = d.metadata.name.as_deref().unwrap_or_default();
        let own: Vec<Pod> = pods
            .iter()
            .filter(|p| {
                p.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(workload::WORKLOAD))
                    .is_some_and(|w| w == name)
            })
            .cloned()
            .collect();
        out.insert(node, deployment_progress(d, &own));
    }
    for j in jobs {
        if let Some((node, _)) = node_and_attempt(&j.metadata) {
            out.insert(node, job_progress(j));
        }
    }
    out
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
