use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, PodSpec, PodTemplateSpec, ResourceRequirements, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::*;
use crate::batch::types::{BatchDeploymentSpec, Override};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn group(k: &str, v: &str) -> Override {
    Override {
        node_selector: labels(&[(k, v)]),
        ..Default::default()
    }
}

fn cpu(n: &str) -> ResourceRequirements {
    ResourceRequirements {
        limits: Some(BTreeMap::from([("cpu".into(), Quantity(n.into()))])),
        ..Default::default()
    }
}

fn spec() -> BatchDeploymentSpec {
    let mut big = group("size", "big");
    big.replicas = Some(2);
    big.env = labels(&[("MODE", "big"), ("A", "1")]);
    big.set = labels(&[("k", "big")]);
    let mut gpu = group("gpu", "yes");
    gpu.env = labels(&[("MODE", "gpu")]);
    gpu.resources = Some(cpu("4"));
    gpu.tolerations = vec![Toleration {
        key: Some("gpu".into()),
        operator: Some("Exists".into()),
        ..Default::default()
    }];
    BatchDeploymentSpec {
        app_image: "app".into(),
        node_names: vec!["n".into()],
        instances: Some(1),
        overrides: vec![big, gpu],
        ..Default::default()
    }
}

#[test]
fn overrides_apply_in_order_and_the_last_match_wins_per_field() {
    let s = spec();
    let none = resolve(&s, &labels(&[("size", "small")]));
    assert_eq!(none, Resolved::default());
    assert_eq!(replicas(&s, &labels(&[("size", "small")])), 1);
    let big = resolve(&s, &labels(&[("size", "big")]));
    assert_eq!((big.replicas, big.env["MODE"].as_str()), (Some(2), "big"));
    let both = resolve(&s, &labels(&[("size", "big"), ("gpu", "yes")]));
    // gpu comes later: its MODE wins; big's replicas, A and set stay.
    assert_eq!(both.env, labels(&[("MODE", "gpu"), ("A", "1")]));
    assert_eq!(both.replicas, Some(2));
    assert_eq!(both.set, labels(&[("k", "big")]));
    assert_eq!(both.resources, Some(cpu("4")));
    assert_eq!(replicas(&s, &labels(&[("size", "big"), ("gpu", "yes")])), 2);
}

#[test]
fn apply_sets_env_resources_and_tolerations_on_every_container() {
    let r = resolve(&spec(), &labels(&[("size", "big"), ("gpu", "yes")]));
    let container = |name: &str| Container {
        name: name.into(),
        env: Some(vec![k8s_openapi::api::core::v1::EnvVar {
            name: "MODE".into(),
            value: Some("old".into()),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let mut t = PodTemplateSpec {
        spec: Some(PodSpec {
            containers: vec![container("a"), container("b")],
            ..Default::default()
        }),
        ..Default::default()
    };
    apply(&mut t, &r);
    let pod = t.spec.unwrap();
    for c in &pod.containers {
        let env: Vec<(&str, &str)> = c
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.as_str(), e.value.as_deref().unwrap_or_default()))
            .collect();
        assert_eq!(env, [("A", "1"), ("MODE", "gpu")], "{}", c.name);
        assert_eq!(c.resources, Some(cpu("4")));
    }
    assert_eq!(pod.tolerations.unwrap()[0].key.as_deref(), Some("gpu"));
}

#[test]
fn overrides_of_what_the_signature_covers_are_refused_with_the_field_path() {
    let mut s = spec();
    assert_eq!(overrides_error(&s), None);
    s.overrides[1].image = Some("evil:latest".into());
    let e = overrides_error(&s).unwrap();
    assert!(
        e.starts_with("spec.overrides[1].image: the AppImage's signature covers the image"),
        "{e}"
    );
    s.overrides[1].image = None;
    s.overrides[0].command = Some(vec!["sh".into()]);
    assert!(
        overrides_error(&s)
            .unwrap()
            .starts_with("spec.overrides[0].command:")
    );
    s.overrides[0].command = None;
    s.overrides[0].args = Some(vec!["-c".into()]);
    assert!(
        overrides_error(&s)
            .unwrap()
            .starts_with("spec.overrides[0].args:")
    );
    s.overrides[0].args = None;
    s.overrides[0].config_templates = Some(serde_json::json!({"a": "b"}));
    assert!(
        overrides_error(&s)
            .unwrap()
            .starts_with("spec.overrides[0].configTemplates:")
    );
    s.overrides[0].config_templates = None;
    s.overrides[1].node_selector.clear();
    let e = overrides_error(&s).unwrap();
    assert!(e.contains("spec.overrides[1].nodeSelector is empty"), "{e}");
    // An empty selector matches no node, never every node.
    assert_eq!(resolve(&s, &labels(&[("gpu", "yes")])).resources, None);
    s.overrides[1] = group("gpu", "yes");
    s.overrides[1].replicas = Some(0);
    assert!(
        overrides_error(&s)
            .unwrap()
            .contains("spec.overrides[1].replicas is 0")
    );
    assert!(
        crate::batch::machine::spec_error(&s, "job")
            .unwrap()
            .contains("spec.overrides[1]")
    );
}

#[test]
fn the_crd_refuses_signed_fields_in_overrides() {
    let crd = serde_json::to_value(crate::batch::crd()).unwrap();
    let item = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["overrides"]["items"]["properties"];
    for field in ["image", "command", "args", "configTemplates"] {
        let rules = &item[field]["x-kubernetes-validations"];
        assert_eq!(rules[0]["rule"], "false", "{field}: {rules}");
        assert!(
            rules[0]["message"]
                .as_str()
                .unwrap()
                .contains("signature covers"),
            "{field}"
        );
    }
}
