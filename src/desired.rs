//! What the controllers want, as pure functions: the objects a stored, injected Pod should
//! have (built from the Pod's status annotation, and the AppImage for its network policy),
//! and who may write a name. Objects whose Pod is gone are the garbage collector's (each is
//! owned by its Pod).

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::admitted::{self, SealKey};
use crate::injection::Status;
use crate::resource::AppImage;
use crate::{labels, network_policy, selection, service, workload};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Desired {
    pub services: Vec<Service>,
    pub network_policies: Vec<NetworkPolicy>,
}

/// What `pod` should have. A Pod that was not injected (no status) should have nothing.
/// Without its AppImage the Services can still be built; the policy cannot.
pub fn desired(pod: &Pod, image: Option<&AppImage>) -> Desired {
    let Some(status) = Status::from_pod(pod) else {
        return Desired::default();
    };
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let ports = status.allocated_ports();
    // A workload's Pods share the workload's Services (the workload controller's).
    let services = match workload::workload_of(&pod.metadata) {
        Some(_) => Vec::new(),
        None => service::services(pod, namespace, &ports),
    };
    let network_policies = image
        .filter(|img| img.name() == status.app_image)
        .and_then(|img| {
            let index = selection::select(img, &status.role, Some(&status.template)).ok()?;
            let template = &img.spec.deploy_templates[index];
            Some(network_policy::network_policies(
                pod,
                namespace,
                img.name(),
                template,
                &ports,
            ))
        })
        .unwrap_or_default();
    Desired {
        services,
        network_policies,
    }
}

/// [`desired`] for a Pod the webhook sealed with `key` (see [`crate::admitted`]); any other
/// Pod, whatever its status annotation says, should have nothing. The controllers use this.
pub fn desired_admitted(pod: &Pod, image: Option<&AppImage>, key: &SealKey) -> Desired {
    if !admitted::is_sealed(key, pod) {
        return Desired::default();
    }
    desired(pod, image)
}

/// Who holds the name of an object a Pod wants, and so whether the controller may write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Nothing holds the name: create it.
    Free,
    /// This Pod's own object: keep it as wanted.
    Ours,
    /// Ours, left by an earlier Pod of the same name: replace it.
    Stale,
    /// Someone else's: never touched.
    Foreign,
}

/// The claim `pod` has on a name held by `existing` (`None`: nothing holds it).
pub fn claim(existing: Option<&ObjectMeta>, pod: &Pod) -> Claim {
    let Some(meta) = existing else {
        return Claim::Free;
    };
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    let pod_uid = pod.metadata.uid.as_deref().unwrap_or_default();
    match owner_pod(meta) {
        Some((_, uid)) if uid == pod_uid => Claim::Ours,
        Some((owner, _)) if owner == pod_name && is_managed(meta) => Claim::Stale,
        _ => Claim::Foreign,
    }
}

/// The name and UID of the Pod that controls the object `meta` describes.
pub fn owner_pod(meta: &ObjectMeta) -> Option<(&str, &str)> {
    meta.owner_references.as_ref()?.iter().find_map(|o| {
        (o.kind == "Pod" && o.controller == Some(true)).then_some((o.name.as_str(), o.uid.as_str()))
    })
}

/// Whether the object carries our managed-by label.
pub fn is_managed(meta: &ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(labels::MANAGED_BY))
        .is_some_and(|v| v == labels::MANAGER)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::*;

    fn pod(name: &str, uid: &str) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some(name.into());
        pod.metadata.uid = Some(uid.into());
        pod
    }

    fn object(owner: Option<(&str, &str)>, managed: bool) -> ObjectMeta {
        let owner_references = owner.map(|(name, uid)| {
            vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Pod".into(),
                name: name.into(),
                uid: uid.into(),
                controller: Some(true),
                ..OwnerReference::default()
            }]
        });
        let labels =
            managed.then(|| [(labels::MANAGED_BY.to_string(), labels::MANAGER.to_string())].into());
        ObjectMeta {
            name: Some("job-0-fed".into()),
            owner_references,
            labels,
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn a_name_is_free_ours_stale_or_foreign() {
        let job = pod("job-0", "u2");
        assert_eq!(claim(None, &job), Claim::Free);
        assert_eq!(
            claim(Some(&object(Some(("job-0", "u2")), true)), &job),
            Claim::Ours
        );
        // Left by an earlier job-0: ours to replace.
        assert_eq!(
            claim(Some(&object(Some(("job-0", "u1")), true)), &job),
            Claim::Stale
        );
        // The same owner name without our label, another Pod's, or no owner: not ours.
        assert_eq!(
            claim(Some(&object(Some(("job-0", "u1")), false)), &job),
            Claim::Foreign
        );
        assert_eq!(
            claim(Some(&object(Some(("job-1", "u9")), true)), &job),
            Claim::Foreign
        );
        assert_eq!(claim(Some(&object(None, false)), &job), Claim::Foreign);
    }

    /// The seed AppImage injected into Pod `job-0` (uid u1) of namespace alice.
    fn injected_seed(workload: Option<&str>, controller: bool) -> Pod {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/secretflow-image.yaml"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let image = crate::manifest::appimages(path, &text).unwrap().remove(0);
        let mut p = pod("job-0", "u1");
        p.metadata.namespace = Some("alice".into());
        if let Some(w) = workload {
            p.metadata.labels = Some([(workload::WORKLOAD.to_string(), w.to_string())].into());
        }
        if controller {
            let mut owner = object(Some(("w-abc", "rs1")), false)
                .owner_references
                .unwrap();
            owner[0].kind = "ReplicaSet".into();
            p.metadata.owner_references = Some(owner);
        }
        let req = crate::injection::Request::from_pod(&p, "alice", "job-0").unwrap();
        crate::injection::inject(&image, &p, &req).unwrap().pod
    }

    #[test]
    fn a_workloads_pod_wants_no_services_of_its_own() {
        let bare = desired(&injected_seed(None, false), None);
        assert!(!bare.services.is_empty());
        // The workload's Pod uses the workload's Services.
        let of_workload = desired(&injected_seed(Some("w"), true), None);
        assert!(of_workload.services.is_empty());
        // The label alone, on a bare Pod, or a controller without the label: per-Pod Services.
        assert_eq!(desired(&injected_seed(Some("w"), false), None), bare);
        assert_eq!(desired(&injected_seed(None, true), None), bare);
    }

    #[test]
    fn only_a_sealed_pod_wants_anything() {
        let key = SealKey::new(&[3; 32]).unwrap();
        let mut pod = injected_seed(None, false);
        let labels = pod.metadata.labels.get_or_insert_with(Default::default);
        labels.insert(labels::APP_IMAGE.into(), "secretflow-image".into());
        // A status the webhook did not seal (copied, edited, or written by hand) builds nothing.
        assert_eq!(desired_admitted(&pod, None, &key), Desired::default());
        admitted::seal(&key, "alice", &mut pod);
        assert_eq!(desired_admitted(&pod, None, &key), desired(&pod, None));
        assert!(!desired_admitted(&pod, None, &key).services.is_empty());
        let other = SealKey::new(&[4; 32]).unwrap();
        assert_eq!(desired_admitted(&pod, None, &other), Desired::default());
    }

    #[test]
    fn a_pod_without_a_status_wants_nothing() {
        assert_eq!(desired(&pod("job-0", "u1"), None), Desired::default());
    }
}
