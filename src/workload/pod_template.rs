//! The workload's pod template: the AppImage label, the options as the documented annotations,
//! the workload label, the template's containers by name with the AppImage's image, and the
//! `--pod-template` fragment merged with the webhook's container-merge rules.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{self as core, LocalObjectReference, PodSpec, PodTemplateSpec};

use super::{DeployOptions, Kind, REVISION_HASH, WORKLOAD, WorkloadError, revision_hash};
use crate::injection::merge_container;
use crate::labels;
use crate::resource::{AppImage, Container, DeployTemplate, RestartPolicy};

/// The pod template of workload `name`, from deploy template `template` of `image`.
pub(super) fn pod_template(
    image: &AppImage,
    template: &DeployTemplate,
    name: &str,
    opts: &DeployOptions,
) -> Result<PodTemplateSpec, WorkloadError> {
    let fragment = opts.pod_template.clone().unwrap_or_default();
    let mut spec = fragment.spec.unwrap_or_default();
    spec.containers = containers(image, template, std::mem::take(&mut spec.containers))?;
    spec.restart_policy = Some(restart_policy(opts.kind, template, spec.restart_policy)?);
    if opts.host_network {
        spec.host_network = Some(true);
    }
    if spec.host_network == Some(true) && spec.dns_policy.is_none() {
        // Without it a host-network Pod cannot resolve cluster Services.
        spec.dns_policy = Some("ClusterFirstWithHostNet".into());
    }
    if !opts.node_selector.is_empty() {
        let selector = spec.node_selector.get_or_insert_with(Default::default);
        selector.extend(opts.node_selector.clone());
    }
    pull_secrets(&mut spec, &opts.image_pull_secrets);

    let mut meta = fragment.metadata.unwrap_or_default();
    let labels = meta.labels.get_or_insert_with(Default::default);
    labels.insert(labels::APP_IMAGE.into(), image.name().into());
    labels.insert(WORKLOAD.into(), name.into());
    let annotations = meta.annotations.get_or_insert_with(Default::default);
    annotations.extend(option_annotations(opts)?);
    annotations.insert(REVISION_HASH.into(), revision_hash(&image.spec));
    Ok(PodTemplateSpec {
        metadata: Some(meta),
        spec: Some(spec),
    })
}

/// The deploy options as the annotations the webhook reads (README "How a Pod asks for an
/// AppImage"); the flags win over the same keys in the fragment.
fn option_annotations(opts: &DeployOptions) -> Result<BTreeMap<String, String>, WorkloadError> {
    let mut out = BTreeMap::new();
    let mut set = |key: &str, value: &str| {
        if !value.is_empty() {
            out.insert(key.to_string(), value.to_string());
        }
    };
    set(labels::OPT_ROLE, opts.role.trim());
    set(labels::OPT_TEMPLATE, opts.template.as_deref().unwrap_or(""));
    set(labels::OPT_TASK_ID, &opts.task_id);
    set(labels::OPT_INPUT_CONFIG, &opts.input_config);
    if !opts.values.is_empty() {
        // A BTreeMap serialises sorted: the same values give the same annotation.
        let json = serde_json::to_string(&opts.values)
            .map_err(|e| WorkloadError::flag("--set", e.to_string()))?;
        out.insert(labels::OPT_VALUES.into(), json);
    }
    Ok(out)
}

/// The template's containers in its order, each the fragment's same-named container (if any)
/// merged by the webhook's rules onto just a name and the AppImage's image; then the fragment's
/// other containers (sidecars), which must bring their own image.
fn containers(
    image: &AppImage,
    template: &DeployTemplate,
    fragment: Vec<core::Container>,
) -> Result<Vec<core::Container>, WorkloadError> {
    let image_ref = image.image_ref();
    let mut out: Vec<core::Container> = template
        .spec
        .containers
        .iter()
        .map(|tc| {
            // Only the name and pull policy: the webhook fills in the rest at admission from
            // the AppImage, so that a new revision is not overridden by a copy kept here.
            let bare = Container {
                name: tc.name.clone(),
                image_pull_policy: tc.image_pull_policy,
                ..Default::default()
            };
            let user = fragment.iter().find(|c| c.name == tc.name);
            merge_container(&bare, user, &image_ref, &[])
        })
        .collect();
    for c in fragment {
        if template.spec.containers.iter().any(|tc| tc.name == c.name) {
            continue;
        }
        if c.image.as_deref().is_none_or(str::is_empty) {
            let names: Vec<&str> = template
                .spec
                .containers
                .iter()
                .map(|tc| tc.name.as_str())
                .collect();
            return Err(WorkloadError::PodTemplate {
                source_name: "fragment".into(),
                message: format!(
                    "container {:?} is not a container of deploy template {:?} (it has: {}) and has no image; use one of those names to add to it, or give the extra container an image",
                    c.name,
                    template.name,
                    names.join(", ")
                ),
            });
        }
        out.push(c);
    }
    Ok(out)
}

/// Long-running kinds restart always; batch kinds keep the template's Never or OnFailure.
fn restart_policy(
    kind: Kind,
    template: &DeployTemplate,
    fragment: Option<String>,
) -> Result<String, WorkloadError> {
    let bad = |given: &str, allowed: &str| WorkloadError::PodTemplate {
        source_name: "fragment".into(),
        message: format!(
            "spec.restartPolicy {given:?} is not allowed for a {}; use {allowed} or leave it out",
            kind.as_str()
        ),
    };
    if !kind.is_batch() {
        return match fragment.as_deref() {
            None | Some("Always") => Ok("Always".into()),
            Some(other) => Err(bad(other, "Always")),
        };
    }
    match fragment.as_deref() {
        Some(p @ ("Never" | "OnFailure")) => Ok(p.into()),
        Some(other) => Err(bad(other, "Never or OnFailure")),
        None => Ok(match template.spec.restart_policy {
            RestartPolicy::OnFailure => "OnFailure",
            // A Job cannot restart Always: the closest is to retry on failure.
            RestartPolicy::Always => "OnFailure",
            RestartPolicy::Never => "Never",
        }
        .into()),
    }
}

/// The fragment's pull secrets, then the flag's, each name once.
fn pull_secrets(spec: &mut PodSpec, names: &[String]) {
    if names.is_empty() {
        return;
    }
    let secrets = spec.image_pull_secrets.get_or_insert_with(Default::default);
    for name in names {
        if !secrets.iter().any(|s| s.name == *name) {
            secrets.push(LocalObjectReference { name: name.clone() });
        }
    }
}
