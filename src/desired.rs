//! The objects a stored, injected Pod should have: the reconciler's target state, built from
//! the Pod's status annotation (and the AppImage, for its network policy).

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;

use crate::injection::Status;
use crate::resource::AppImage;
use crate::{network_policy, selection, service};

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
    let services = service::services(pod, namespace, &ports);
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
