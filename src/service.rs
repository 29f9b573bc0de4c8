//! Services for a Pod's `Cluster` and `Domain` ports, and the cluster define that names them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;

use crate::labels;
use crate::naming;
use crate::ports::AllocatedPort;
use crate::resource::PortScope;

/// Owner reference to the Pod (controller), once the Pod has a UID.
pub fn owner_reference(pod: &Pod) -> Option<OwnerReference> {
    let uid = pod.metadata.uid.clone().filter(|u| !u.is_empty())?;
    Some(OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        uid,
        controller: Some(true),
        block_owner_deletion: None,
    })
}

fn pod_identity(pod: &Pod) -> String {
    naming::pod_identity(pod.metadata.name.as_deref().unwrap_or_default())
}

/// Labels shared by the objects made for one Pod.
pub fn object_labels(pod: &Pod) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (labels::MANAGED_BY.to_string(), labels::MANAGER.to_string()),
        (labels::POD_IDENTITY.to_string(), pod_identity(pod)),
    ]);
    if let Some(image) = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(labels::APP_IMAGE))
    {
        labels.insert(labels::APP_IMAGE.into(), image.clone());
    }
    labels
}

/// The Service port for an allocated port: its number, reached by the container port's name.
/// Per-Pod and per-workload Services both expose a port this way.
pub fn service_port(p: &AllocatedPort) -> ServicePort {
    ServicePort {
        name: Some(p.name.clone()),
        port: p.port,
        target_port: Some(IntOrString::String(p.name.clone())),
        protocol: Some(p.protocol.transport().into()),
        ..Default::default()
    }
}

/// One headless Service per `Cluster` or `Domain` port; `Local` ports get none.
pub fn services(pod: &Pod, namespace: &str, ports: &[AllocatedPort]) -> Vec<Service> {
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    ports
        .iter()
        .filter(|p| p.scope.has_service())
        .map(|p| {
            let mut labels = object_labels(pod);
            labels.insert(labels::PORT_NAME.into(), p.name.clone());
            labels.insert(labels::PORT_SCOPE.into(), p.scope.as_str().into());
            Service {
                metadata: ObjectMeta {
                    name: Some(naming::service_name(pod_name, &p.name)),
                    namespace: Some(namespace.into()),
                    labels: Some(labels),
                    owner_references: owner_reference(pod).map(|o| vec![o]),
                    ..Default::default()
                },
                spec: Some(ServiceSpec {
                    cluster_ip: Some("None".into()),
                    publish_not_ready_addresses: Some(true),
                    selector: Some(BTreeMap::from([(
                        labels::POD_IDENTITY.to_string(),
                        pod_identity(pod),
                    )])),
                    ports: Some(vec![service_port(p)]),
                    ..Default::default()
                }),
                status: None,
            }
        })
        .collect()
}

/// How a port is reached: `<svc>.<ns>.svc` for Cluster, `<svc>.<ns>.svc:<port>` for Domain.
pub fn endpoint(namespace: &str, pod_name: &str, port: &AllocatedPort) -> Option<String> {
    endpoint_of(&naming::service_name(pod_name, &port.name), namespace, port)
}

/// [`endpoint`] through Service `service`.
fn endpoint_of(service: &str, namespace: &str, port: &AllocatedPort) -> Option<String> {
    let host = format!("{service}.{namespace}.svc");
    match port.scope {
        PortScope::Cluster => Some(host),
        PortScope::Domain => Some(format!("{host}:{}", port.port)),
        PortScope::Local => None,
    }
}

/// `TASK_CLUSTER_DEFINE` in Kuscia's JSON shape for this one party (the namespace).
pub fn cluster_define(
    namespace: &str,
    role: &str,
    pod_name: &str,
    ports: &[AllocatedPort],
) -> String {
    define(namespace, role, ports, |p| endpoint(namespace, pod_name, p))
}

/// [`cluster_define`] for a Pod of workload `workload`: endpoints name the workload's
/// Services (`<workload>-<port>`, as [`crate::naming::workload_service_name`] names them).
pub fn workload_cluster_define(
    namespace: &str,
    role: &str,
    workload: &str,
    ports: &[AllocatedPort],
) -> String {
    define(namespace, role, ports, |p| {
        endpoint_of(
            &crate::naming::workload_service_name(workload, &p.name),
            namespace,
            p,
        )
    })
}

fn define(
    namespace: &str,
    role: &str,
    ports: &[AllocatedPort],
    endpoint: impl Fn(&AllocatedPort) -> Option<String>,
) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Define<'a> {
        parties: Vec<Party<'a>>,
        self_party_idx: u32,
        self_endpoint_idx: u32,
    }
    #[derive(Serialize)]
    struct Party<'a> {
        name: &'a str,
        role: &'a str,
        services: Vec<Svc<'a>>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Svc<'a> {
        port_name: &'a str,
        endpoints: Vec<String>,
    }
    let services = ports
        .iter()
        .filter_map(|p| {
            endpoint(p).map(|e| Svc {
                port_name: &p.name,
                endpoints: vec![e],
            })
        })
        .collect();
    let define = Define {
        parties: vec![Party {
            name: namespace,
            role,
            services,
        }],
        self_party_idx: 0,
        self_endpoint_idx: 0,
    };
    serde_json::to_string(&define).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::PortProtocol;

    fn port(name: &str, scope: PortScope) -> AllocatedPort {
        AllocatedPort {
            name: name.into(),
            port: 20000,
            scope,
            protocol: PortProtocol::HTTP,
            container: 0,
        }
    }

    /// An empty selector would select nothing for a Service, but the audit of issue 16 holds
    /// every builder to the same rule: no list or selector is ever empty.
    #[test]
    fn selectors_and_ports_are_never_empty() {
        let pod: Pod =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "job-0"}})).unwrap();
        let ports = [
            port("a", PortScope::Cluster),
            port("b", PortScope::Domain),
            port("c", PortScope::Local),
        ];
        let all = services(&pod, "alice", &ports);
        assert_eq!(all.len(), 2);
        for s in &all {
            let spec = s.spec.as_ref().unwrap();
            let selector = spec.selector.as_ref().unwrap();
            assert_eq!(selector.len(), 1);
            assert_eq!(selector[labels::POD_IDENTITY], "job-0");
            assert_eq!(spec.ports.as_ref().map(Vec::len), Some(1));
        }
        // No Cluster or Domain port: no Service, not one without ports.
        assert!(services(&pod, "alice", &[port("c", PortScope::Local)]).is_empty());
        let define = cluster_define("alice", "", "job-0", &[port("c", PortScope::Local)]);
        assert_eq!(
            define,
            r#"{"parties":[{"name":"alice","role":"","services":[]}],"selfPartyIdx":0,"selfEndpointIdx":0}"#
        );
    }
}
