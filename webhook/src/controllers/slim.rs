//! What the controllers keep of a watched object (issue 25): each shared watch passes its
//! objects through one of these before they enter the store, so the leader holds what the
//! controllers read and nothing else.
//!
//! Safe because no store entry is ever the base of a write: every apply is built from the
//! desired state (`appimage::desired`, `workload::services`, the rollout's template patch),
//! the start controller reads the live object before it writes, and deletes carry only a UID.
//!
//! Kept, by reader:
//! - every kind: the metadata, without managedFields and kubectl's last-applied annotation;
//! - pod templates: their metadata (revision annotations, AppImage and workload labels, read
//!   by revisions, rollout and workloads) and each container's name and image (the rollout
//!   patches the AppImage's containers by name); the rest of the pod spec goes;
//! - Deployments, Jobs and DaemonSets: their status (batch progress, rollout gates); ReplicaSets:
//!   no status;
//! - Nodes: labels and conditions (batch reads readiness), not `status.images`;
//! - Services and NetworkPolicies: metadata only (who owns the name);
//! - Pods: whole but for the metadata: the seal covers their spec and batch reads their status.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    Container, Node, NodeStatus, Pod, PodSpec, PodTemplateSpec, Service,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use appimage::batch::BatchDeployment;
use appimage::progressive::AppImageRollout;

/// kubectl's copy of the whole object, as large as the object.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A kind as the controllers keep it.
pub trait Slim {
    fn slim(&mut self);
}

/// Metadata without managedFields and the last-applied annotation.
pub fn meta(m: &mut ObjectMeta) {
    m.managed_fields = None;
    if let Some(a) = m.annotations.as_mut() {
        a.remove(LAST_APPLIED);
    }
}

/// A pod template's metadata and its containers' names and images.
pub fn template(t: &mut PodTemplateSpec) {
    if let Some(m) = t.metadata.as_mut() {
        meta(m);
    }
    if let Some(spec) = t.spec.take() {
        let containers = spec
            .containers
            .into_iter()
            .map(|c| Container {
                name: c.name,
                image: c.image,
                ..Container::default()
            })
            .collect();
        t.spec = Some(PodSpec {
            containers,
            ..PodSpec::default()
        });
    }
}

impl Slim for Deployment {
    fn slim(&mut self) {
        meta(&mut self.metadata);
        if let Some(s) = self.spec.as_mut() {
            template(&mut s.template);
        }
    }
}

impl Slim for StatefulSet {
    fn slim(&mut self) {
        meta(&mut self.metadata);
        if let Some(s) = self.spec.as_mut() {
            template(&mut s.template);
            s.volume_claim_templates = None;
        }
        self.status = None;
    }
}

impl Slim for DaemonSet {
    fn slim(&mut self) {
        meta(&mut self.metadata);
        if let Some(s) = self.spec.as_mut() {
            template(&mut s.template);
        }
    }
}

impl Slim for ReplicaSet {
    fn slim(&mut self) {
        meta(&mut self.metadata);
        if let Some(t) = self.spec.as_mut().and_then(|s| s.template.as_mut()) {
            template(t);
        }
        self.status = None;
    }
}

impl Slim for Job {
    fn slim(&mut self) {
        meta(&mut self.metadata);
        if let Some(s) = self.spec.as_mut() {
            template(&mut s.template);
        }
    }
}

impl Slim for CronJob {
    fn slim(&mut self) {
        meta(&mut self.metadata);
        if let Some(jt) = self.spec.as_mut().map(|s| &mut s.job_template) {
            if let Some(m) = jt.metadata.as_mut() {
                meta(m);
            }
            if let Some(s) = jt.spec.as_mut() {
                template(&mut s.template);
            }
        }
        self.status = None;
    }
}

impl Slim for Node {
    fn slim(&mut self) {
        meta(&mut self.metadata);
        self.spec = None;
        self.status = self.status.take().map(|s| NodeStatus {
            conditions: s.conditions,
            ..NodeStatus::default()
        });
    }
}

impl Slim for Pod {
    fn slim(&mut self) {
        meta(&mut self.metadata);
    }
}

impl Slim for Service {
    fn slim(&mut self) {
        meta(&mut self.metadata);
        self.spec = None;
        self.status = None;
    }
}

impl Slim for NetworkPolicy {
    fn slim(&mut self) {
        meta(&mut self.metadata);
        self.spec = None;
    }
}

impl Slim for AppImageRollout {
    fn slim(&mut self) {
        meta(&mut self.metadata);
    }
}

impl Slim for BatchDeployment {
    fn slim(&mut self) {
        meta(&mut self.metadata);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_deployment_keeps_what_the_controllers_read() {
        let mut d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "web", "uid": "u", "labels": {"a": "b"},
                "annotations": {LAST_APPLIED: "{...}", "keep": "1"},
                "managedFields": [{"manager": "kubectl"}],
                "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "x", "uid": "o"}]},
            "spec": {"replicas": 2, "selector": {}, "template": {
                "metadata": {"labels": {"l": "1"}, "annotations": {"r": "2"}},
                "spec": {"containers": [{"name": "app", "image": "i:1", "env": [{"name": "E"}]}],
                    "volumes": [{"name": "v"}]}}},
            "status": {"replicas": 2, "readyReplicas": 1}
        }))
        .unwrap();
        d.slim();
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["metadata"]["annotations"], json!({"keep": "1"}));
        assert!(v["metadata"].get("managedFields").is_none());
        assert_eq!(v["metadata"]["ownerReferences"][0]["uid"], "o");
        assert_eq!(v["spec"]["replicas"], 2);
        let t = &v["spec"]["template"];
        assert_eq!(
            t["metadata"],
            json!({"labels": {"l": "1"}, "annotations": {"r": "2"}})
        );
        assert_eq!(
            t["spec"],
            json!({"containers": [{"name": "app", "image": "i:1"}]})
        );
        assert_eq!(v["status"]["readyReplicas"], 1);
    }

    #[test]
    fn a_node_keeps_its_labels_and_conditions_not_its_images() {
        let mut n: Node = serde_json::from_value(json!({
            "metadata": {"name": "n", "labels": {"zone": "a"}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                "images": [{"names": ["big"], "sizeBytes": 1}]}
        }))
        .unwrap();
        n.slim();
        let v = serde_json::to_value(&n).unwrap();
        assert_eq!(
            v["status"],
            json!({"conditions": [{"type": "Ready", "status": "True"}]})
        );
        assert_eq!(v["metadata"]["labels"]["zone"], "a");
    }
}
