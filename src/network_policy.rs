//! NetworkPolicy from a template's `networkPolicy.ingresses`: Pods of the listed roles (of the
//! same AppImage) may reach the listed ports of this Pod.
//!
//! Granularity: one policy per Pod, owned by the Pod and selecting it by identity, so it lives
//! and dies with the Pod exactly as its Services do.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::labels;
use crate::naming;
use crate::ports::AllocatedPort;
use crate::resource::DeployTemplate;
use crate::service::{object_labels, owner_reference};

/// The policy name for a Pod: `<pod>-ingress`, shortened like Service names.
pub fn policy_name(pod: &str) -> String {
    naming::service_name(pod, "ingress")
}

pub fn network_policies(
    pod: &Pod,
    namespace: &str,
    image: &str,
    template: &DeployTemplate,
    ports: &[AllocatedPort],
) -> Vec<NetworkPolicy> {
    let Some(policy) = template
        .network_policy
        .as_ref()
        .filter(|p| !p.ingresses.is_empty())
    else {
        return vec![];
    };
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    let ingress = policy
        .ingresses
        .iter()
        .map(|rule| NetworkPolicyIngressRule {
            from: Some(
                rule.from
                    .roles
                    .iter()
                    .map(|role| NetworkPolicyPeer {
                        pod_selector: Some(LabelSelector {
                            match_labels: Some(BTreeMap::from([
                                (labels::APP_IMAGE.to_string(), image.to_string()),
                                (labels::POD_ROLE.to_string(), role.clone()),
                            ])),
                            match_expressions: None,
                        }),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ports: Some(
                rule.ports
                    .iter()
                    .filter_map(|p| ports.iter().find(|a| a.name == p.port))
                    .map(|a| NetworkPolicyPort {
                        port: Some(IntOrString::Int(a.port)),
                        protocol: Some(a.protocol.transport().into()),
                        end_port: None,
                    })
                    .collect(),
            ),
        })
        .collect();
    vec![NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(policy_name(pod_name)),
            namespace: Some(namespace.into()),
            labels: Some(object_labels(pod)),
            owner_references: owner_reference(pod).map(|o| vec![o]),
            ..Default::default()
        },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    labels::POD_IDENTITY.to_string(),
                    naming::pod_identity(pod_name),
                )])),
                match_expressions: None,
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(ingress),
            egress: None,
        }),
    }]
}
