//! Per-group overrides (`spec.overrides`): what the nodes a selector picks get differently.
//! Resolved per node in order, the last match winning per field (env and set per name), and
//! applied to the node's built workload. What the AppImage's signature covers (image, command,
//! args, config templates) is refused: by the CRD's CEL rules, and here for the plugin and the
//! controller's spec check.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, PodTemplateSpec, ResourceRequirements, Toleration};

use super::types::{BatchDeploymentSpec, Override, SIGNED_COMMAND, SIGNED_CONFIG, SIGNED_IMAGE};

/// What one node gets on top of the job's spec.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resolved {
    pub replicas: Option<i32>,
    pub env: BTreeMap<String, String>,
    pub resources: Option<ResourceRequirements>,
    pub tolerations: Option<Vec<Toleration>>,
    pub set: BTreeMap<String, String>,
}

fn matches(o: &Override, labels: &BTreeMap<String, String>) -> bool {
    !o.node_selector.is_empty()
        && o.node_selector
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
}

/// The overrides for a node with `labels`, merged in order.
pub fn resolve(spec: &BatchDeploymentSpec, labels: &BTreeMap<String, String>) -> Resolved {
    let mut out = Resolved::default();
    for o in spec.overrides.iter().filter(|o| matches(o, labels)) {
        out.replicas = o.replicas.or(out.replicas);
        out.env.extend(o.env.clone());
        if o.resources.is_some() {
            out.resources = o.resources.clone();
        }
        if !o.tolerations.is_empty() {
            out.tolerations = Some(o.tolerations.clone());
        }
        out.set.extend(o.set.clone());
    }
    out
}

/// Pods on a node with `labels`: its overrides' replicas, else spec.instances, else 1.
pub fn replicas(spec: &BatchDeploymentSpec, labels: &BTreeMap<String, String>) -> i32 {
    resolve(spec, labels)
        .replicas
        .unwrap_or_else(|| super::nodes::instances(spec))
}

/// What is wrong with `spec.overrides`, naming the field and the fix.
pub fn overrides_error(spec: &BatchDeploymentSpec) -> Option<String> {
    spec.overrides.iter().enumerate().find_map(|(i, o)| {
        let at = format!("spec.overrides[{i}]");
        if o.image.is_some() {
            return Some(format!("{at}.image: {SIGNED_IMAGE}"));
        }
        if o.command.is_some() {
            return Some(format!("{at}.command: {SIGNED_COMMAND}"));
        }
        if o.args.is_some() {
            return Some(format!("{at}.args: {SIGNED_COMMAND}"));
        }
        if o.config_templates.is_some() {
            return Some(format!("{at}.configTemplates: {SIGNED_CONFIG}"));
        }
        if o.node_selector.is_empty() {
            return Some(format!(
                "{at}.nodeSelector is empty; choose the group's nodes by labels (an empty selector never means every node)"
            ));
        }
        o.replicas
            .filter(|r| *r < 1)
            .map(|r| format!("{at}.replicas is {r}; it must be at least 1"))
    })
}

/// Env, resources and tolerations onto every container of a built Pod template (the webhook
/// merges them over the deploy template's at admission, as for any Pod).
pub fn apply(t: &mut PodTemplateSpec, r: &Resolved) {
    let Some(pod) = t.spec.as_mut() else {
        return;
    };
    if let Some(tolerations) = &r.tolerations {
        pod.tolerations
            .get_or_insert_with(Vec::new)
            .extend(tolerations.iter().cloned());
    }
    for c in &mut pod.containers {
        if !r.env.is_empty() {
            let env = c.env.get_or_insert_with(Vec::new);
            env.retain(|e| !r.env.contains_key(&e.name));
            env.extend(r.env.iter().map(|(name, value)| EnvVar {
                name: name.clone(),
                value: Some(value.clone()),
                ..Default::default()
            }));
        }
        if let Some(res) = &r.resources {
            let out = c.resources.get_or_insert_with(Default::default);
            for (dst, src) in [
                (&mut out.limits, &res.limits),
                (&mut out.requests, &res.requests),
            ] {
                if let Some(src) = src {
                    dst.get_or_insert_with(Default::default).extend(src.clone());
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "overrides_tests.rs"]
mod tests;
