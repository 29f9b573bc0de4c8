//! NetworkPolicy from a template's `networkPolicy.ingresses`: Pods of the listed roles (of the
//! same AppImage) may reach the listed ports of this Pod.
//!
//! Granularity: one policy per Pod, owned by the Pod and selecting it by identity, so it lives
//! and dies with the Pod exactly as its Services do.
//!
//! Nothing here may widen access. Kubernetes reads an empty `from` as every Pod and an empty
//! `ports` as every port, whereas in Kuscia a rule without roles or declared ports grants
//! nothing. So a port name no container declares is left out of its rule, a rule left with
//! no role or no port is left out whole, and a template with `networkPolicy` but no rule left
//! still gets its policy, with no ingress rule: nothing may connect. [`rules`] says what was
//! left out; admission and `render` pass that on as warnings.

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
use crate::resource::{self, DeployTemplate};
use crate::service::{object_labels, owner_reference};

/// An ingress rule as it is enforced: never without a role or a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule<'a> {
    pub roles: Vec<&'a str>,
    /// Declared port names, each once, in the rule's order.
    pub ports: Vec<&'a str>,
}

/// Something of `networkPolicy` that is left out: its field path below `networkPolicy`
/// (e.g. `ingresses[0].ports[1].port`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftOut {
    pub path: String,
    pub message: String,
}

/// The rules of `policy` as enforced for a template declaring the ports `declared`, and what
/// was left out of them.
pub fn rules<'a>(
    policy: &'a resource::NetworkPolicy,
    declared: &[&str],
) -> (Vec<Rule<'a>>, Vec<LeftOut>) {
    let mut rules = Vec::new();
    let mut left_out = Vec::new();
    let mut leave = |path: String, message: String| left_out.push(LeftOut { path, message });
    for (i, ingress) in policy.ingresses.iter().enumerate() {
        let mut roles = Vec::new();
        for (ri, role) in ingress.from.roles.iter().enumerate() {
            if role.trim().is_empty() {
                leave(
                    format!("ingresses[{i}].from.roles[{ri}]"),
                    "is empty and matches no Pod; it is left out".into(),
                );
            } else if !roles.contains(&role.as_str()) {
                roles.push(role.as_str());
            }
        }
        let mut ports = Vec::new();
        for (pi, port) in ingress.ports.iter().enumerate() {
            if !declared.contains(&port.port.as_str()) {
                leave(
                    format!("ingresses[{i}].ports[{pi}].port"),
                    format!(
                        "names port {:?}, which no container of the template declares (declared: {}); it is left out of the rule",
                        port.port,
                        if declared.is_empty() {
                            "none".to_owned()
                        } else {
                            declared.join(", ")
                        }
                    ),
                );
            } else if !ports.contains(&port.port.as_str()) {
                ports.push(port.port.as_str());
            }
        }
        if roles.is_empty() {
            leave(
                format!("ingresses[{i}].from.roles"),
                "lists no role, so the rule is left out (an empty `from` would admit every Pod); list the roles that may connect".into(),
            );
        } else if ports.is_empty() {
            leave(
                format!("ingresses[{i}].ports"),
                "names no declared port, so the rule is left out (an empty `ports` would open every port); list declared port names".into(),
            );
        } else {
            rules.push(Rule { roles, ports });
        }
    }
    (rules, left_out)
}

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
    // A `networkPolicy` without rules still makes a policy: nothing may connect, as in Kuscia.
    let Some(policy) = template.network_policy.as_ref() else {
        return vec![];
    };
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    let declared: Vec<&str> = ports.iter().map(|p| p.name.as_str()).collect();
    let ingress = rules(policy, &declared)
        .0
        .into_iter()
        .map(|rule| NetworkPolicyIngressRule {
            from: Some(
                rule.roles
                    .iter()
                    .map(|role| NetworkPolicyPeer {
                        pod_selector: Some(LabelSelector {
                            match_labels: Some(BTreeMap::from([
                                (labels::APP_IMAGE.to_string(), image.to_string()),
                                (labels::POD_ROLE.to_string(), role.to_string()),
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
                    .filter_map(|name| ports.iter().find(|a| a.name == *name))
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ports::allocate;

    /// A template with ports `spu` (fixed 20001) and `fed`, and these ingress rules.
    fn template(ingresses: serde_json::Value) -> DeployTemplate {
        serde_json::from_value(json!({
            "name": "t",
            "networkPolicy": {"ingresses": ingresses},
            "spec": {"containers": [{"name": "c", "ports": [
                {"name": "spu", "port": 20001}, {"name": "fed", "port": 20002}
            ]}]}
        }))
        .unwrap()
    }

    fn pod() -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "job-0", "uid": "u1"}})).unwrap()
    }

    fn policy(ingresses: serde_json::Value) -> (NetworkPolicySpec, Vec<LeftOut>) {
        let t = template(ingresses);
        let ports = allocate(&t, "t").unwrap();
        let mut all = network_policies(&pod(), "alice", "img", &t, &ports);
        assert_eq!(all.len(), 1);
        let declared: Vec<&str> = ports.iter().map(|p| p.name.as_str()).collect();
        let left = rules(t.network_policy.as_ref().unwrap(), &declared).1;
        (all.remove(0).spec.unwrap(), left)
    }

    /// (roles, port numbers) of each rule; panics on an empty or missing list.
    fn shape(spec: &NetworkPolicySpec) -> Vec<(Vec<String>, Vec<i32>)> {
        spec.ingress
            .as_ref()
            .expect("ingress is always written")
            .iter()
            .map(|r| {
                let from = r.from.as_ref().expect("from");
                let ports = r.ports.as_ref().expect("ports");
                assert!(!from.is_empty() && !ports.is_empty(), "{r:?}");
                let roles = from
                    .iter()
                    .map(|p| {
                        let sel = p.pod_selector.as_ref().unwrap();
                        sel.match_labels.as_ref().unwrap()[labels::POD_ROLE].clone()
                    })
                    .collect();
                let numbers = ports
                    .iter()
                    .map(|p| match p.port {
                        Some(IntOrString::Int(n)) => n,
                        ref other => panic!("{other:?}"),
                    })
                    .collect();
                (roles, numbers)
            })
            .collect()
    }

    #[test]
    fn declared_ports_and_roles_make_the_rule() {
        let (spec, left) = policy(json!([
            {"from": {"roles": ["client", "client"]}, "ports": [{"port": "spu"}, {"port": "fed"}, {"port": "spu"}]}
        ]));
        assert_eq!(
            shape(&spec),
            [(vec!["client".to_string()], vec![20001, 20002])]
        );
        assert!(left.is_empty(), "{left:?}");
        assert_eq!(spec.policy_types, Some(vec!["Ingress".to_string()]));
        let sel = spec.pod_selector.unwrap().match_labels.unwrap();
        assert_eq!(sel[labels::POD_IDENTITY], "job-0");
    }

    #[test]
    fn an_undeclared_port_is_left_out_never_all_ports() {
        // The bug: a rule naming only undeclared ports became `ports: []`, i.e. every port.
        let (spec, left) = policy(json!([
            {"from": {"roles": ["client"]}, "ports": [{"port": "nope"}]},
            {"from": {"roles": ["server"]}, "ports": [{"port": "nope"}, {"port": "fed"}]}
        ]));
        assert_eq!(shape(&spec), [(vec!["server".to_string()], vec![20002])]);
        let paths: Vec<&str> = left.iter().map(|l| l.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "ingresses[0].ports[0].port",
                "ingresses[0].ports",
                "ingresses[1].ports[0].port"
            ]
        );
        assert_eq!(
            left[0].message,
            "names port \"nope\", which no container of the template declares (declared: spu, fed); it is left out of the rule"
        );
        assert!(
            left[1]
                .message
                .contains("an empty `ports` would open every port"),
            "{left:?}"
        );
    }

    #[test]
    fn a_rule_without_roles_is_left_out_never_every_pod() {
        let (spec, left) = policy(json!([
            {"from": {"roles": []}, "ports": [{"port": "spu"}]},
            {"from": {"roles": ["", " "]}, "ports": [{"port": "spu"}]},
            {"from": {"roles": ["client"]}, "ports": []}
        ]));
        // Nothing is left, and that means nothing may connect: `ingress: []`.
        assert_eq!(spec.ingress, Some(vec![]));
        let paths: Vec<&str> = left.iter().map(|l| l.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "ingresses[0].from.roles",
                "ingresses[1].from.roles[0]",
                "ingresses[1].from.roles[1]",
                "ingresses[1].from.roles",
                "ingresses[2].ports",
            ]
        );
        assert!(
            left[0]
                .message
                .contains("an empty `from` would admit every Pod")
        );
    }

    #[test]
    fn a_policy_without_rules_admits_nothing() {
        let (spec, left) = policy(json!([]));
        assert_eq!(spec.ingress, Some(vec![]));
        assert!(left.is_empty());
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["ingress"], json!([]));
        // No networkPolicy at all: no policy.
        let mut t = template(json!([]));
        t.network_policy = None;
        let ports = allocate(&t, "t").unwrap();
        assert!(network_policies(&pod(), "alice", "img", &t, &ports).is_empty());
    }
}
