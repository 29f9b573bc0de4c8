use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentStatus};
use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateWaiting, ContainerStatus, NodeCondition,
    NodeStatus as CoreNodeStatus, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;
use crate::batch::types::BatchDeploymentSpec;
use crate::naming::dns1123_label_error;

fn image() -> AppImage {
    let yaml = r#"
apiVersion: kuscia.secretflow/v1alpha1
kind: AppImage
metadata: {name: app}
spec:
  image: {name: secretflow/app, tag: "1.0"}
  deployTemplates:
  - name: main
    role: server
    spec:
      containers:
      - name: app
      - name: sidecar
"#;
    serde_yaml_ng::from_str(yaml).unwrap()
}

fn bd(spec: BatchDeploymentSpec) -> BatchDeployment {
    BatchDeployment {
        metadata: ObjectMeta {
            name: Some("job".into()),
            namespace: Some("ns".into()),
            uid: Some("uid-1".into()),
            ..Default::default()
        },
        spec,
        status: None,
    }
}

fn spec() -> BatchDeploymentSpec {
    BatchDeploymentSpec {
        app_image: "app".into(),
        node_names: vec!["edge-1".into()],
        role: Some("server".into()),
        task_id: Some("t1".into()),
        values: BTreeMap::from([("B".into(), "2".into()), ("A".into(), "1".into())]),
        ..Default::default()
    }
}

#[test]
fn names_fit_a_label_and_stay_unique() {
    assert_eq!(workload_name("job", "edge-1"), "job-edge-1");
    let dotted = workload_name("job", "ip-10-0-0-1.ec2.internal");
    assert!(dns1123_label_error(&dotted).is_none(), "{dotted}");
    assert!(
        dotted.starts_with("job-ip-10-0-0-1-ec2-internal-"),
        "{dotted}"
    );
    // a.b and a-b must not collide once the dot is gone.
    assert_ne!(workload_name("job", "a.b"), workload_name("job", "a-b"));
    let long = "n".repeat(200);
    let name = workload_name("job", &long);
    assert_eq!(name.len(), 63);
    assert_ne!(name, workload_name("job", &format!("{long}x")));
    // Exactly 63 is kept.
    let node = "m".repeat(63 - 4);
    assert_eq!(workload_name("job", &node), format!("job-{node}"));
    // A leading digit would not do for the workload's Services.
    let digit = workload_name("7up", "n1");
    assert!(
        digit.starts_with("w-7up-n1-") && digit.len() <= 63,
        "{digit}"
    );
    assert!(prefix_error("job").is_none());
    assert!(prefix_error("Job").unwrap().contains("spec.namePrefix"));
}

#[test]
fn always_builds_a_deployment_pinned_to_its_node_and_owned_by_the_job() {
    let mut s = spec();
    s.instances = Some(3);
    s.host_network = Some(true);
    let w = build(&bd(s), &image(), "edge-1", 2).unwrap();
    let Workload::Deployment(d) = &w else {
        panic!("not a Deployment: {w:?}")
    };
    assert_eq!(w.name(), "job-edge-1");
    let meta = &d.metadata;
    assert_eq!(meta.namespace.as_deref(), Some("ns"));
    assert_eq!(node_and_attempt(meta), Some(("edge-1".into(), 2)));
    let owner = &meta.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("BatchDeployment", "uid-1", Some(true))
    );
    assert_eq!(owner.api_version, "appimage.kuscia.secretflow/v1alpha1");
    let spec = d.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(3));
    let selector = spec.selector.match_labels.as_ref().unwrap();
    let t_labels = spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .as_ref()
        .unwrap();
    for (k, v) in selector {
        assert_eq!(
            t_labels.get(k),
            Some(v),
            "the selector matches the template"
        );
    }
    assert_eq!(
        t_labels.get(labels::APP_IMAGE).map(String::as_str),
        Some("app")
    );
    let ann = spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .as_ref()
        .unwrap();
    assert_eq!(
        ann.get(labels::OPT_ROLE).map(String::as_str),
        Some("server")
    );
    assert_eq!(ann.get(labels::OPT_TASK_ID).map(String::as_str), Some("t1"));
    assert_eq!(
        ann.get(labels::OPT_VALUES).map(String::as_str),
        Some(r#"{"A":"1","B":"2"}"#)
    );
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.node_name.as_deref(), Some("edge-1"));
    assert_eq!(pod.restart_policy.as_deref(), Some("Always"));
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(pod.host_pid, None);
    let containers: Vec<(&str, Option<&str>)> = pod
        .containers
        .iter()
        .map(|c| (c.name.as_str(), c.image.as_deref()))
        .collect();
    assert_eq!(
        containers,
        [
            ("app", Some("secretflow/app:1.0")),
            ("sidecar", Some("secretflow/app:1.0"))
        ]
    );
}

#[test]
fn on_failure_and_never_build_a_job_of_instances_completions() {
    for (policy, backoff) in [
        (RestartPolicy::OnFailure, None),
        (RestartPolicy::Never, Some(0)),
    ] {
        let mut s = spec();
        s.restart_policy = Some(policy);
        s.instances = Some(2);
        s.host_pid = Some(true);
        let w = build(&bd(s), &image(), "edge-1", 1).unwrap();
        let Workload::Job(j) = &w else {
            panic!("not a Job: {w:?}")
        };
        let spec = j.spec.as_ref().unwrap();
        assert_eq!(
            (spec.completions, spec.parallelism, spec.backoff_limit),
            (Some(2), Some(2), backoff)
        );
        assert!(
            spec.selector.is_none(),
            "the Job controller makes its own selector"
        );
        let pod = spec.template.spec.as_ref().unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some(policy.as_str()));
        assert_eq!(pod.host_pid, Some(true));
        assert_eq!(pod.node_name.as_deref(), Some("edge-1"));
    }
}

#[test]
fn the_pod_template_overlay_is_the_base_and_cannot_unpin_the_node() {
    let mut s = spec();
    s.pod_template = Some(serde_json::json!({
        "metadata": {"labels": {"team": "a", labels::APP_IMAGE: "other"}},
        "spec": {
            "nodeName": "elsewhere",
            "tolerations": [{"operator": "Exists"}],
            "volumes": [{"name": "data", "hostPath": {"path": "/data"}}],
            "containers": [{"name": "app", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]
        }
    }));
    let w = build(&bd(s), &image(), "edge-1", 1).unwrap();
    let Workload::Deployment(d) = w else { panic!() };
    let t = d.spec.unwrap().template;
    let labels_ = t.metadata.unwrap().labels.unwrap();
    assert_eq!(labels_["team"], "a");
    assert_eq!(labels_[labels::APP_IMAGE], "app");
    let pod = t.spec.unwrap();
    assert_eq!(pod.node_name.as_deref(), Some("edge-1"));
    assert_eq!(pod.tolerations.unwrap().len(), 1);
    assert_eq!(pod.volumes.unwrap()[0].name, "data");
    let app = &pod.containers[0];
    assert_eq!(
        (app.name.as_str(), app.image.as_deref()),
        ("app", Some("secretflow/app:1.0"))
    );
    assert_eq!(app.volume_mounts.as_ref().unwrap()[0].mount_path, "/data");
    assert_eq!(pod.containers.len(), 2);
}

#[test]
fn bad_overlay_and_unknown_role_are_errors() {
    let mut s = spec();
    s.pod_template = Some(serde_json::json!({"spec": {"containers": "nope"}}));
    let e = build(&bd(s), &image(), "edge-1", 1).unwrap_err();
    assert!(e.contains("spec.podTemplate"), "{e}");
    let mut s = spec();
    s.role = Some("client".into());
    s.template = Some("missing".into());
    let e = build(&bd(s), &image(), "edge-1", 1).unwrap_err();
    assert!(e.contains("no deploy template named"), "{e}");
}

#[test]
fn builds_are_deterministic() {
    let a = build(&bd(spec()), &image(), "edge-1", 1).unwrap();
    let b = build(&bd(spec()), &image(), "edge-1", 1).unwrap();
    let json = |w: &Workload| serde_json::to_string(w).unwrap();
    assert_eq!(json(&a), json(&b));
}

#[test]
fn app_image_facts() {
    let job = bd(spec());
    assert_eq!(
        app_image_fact(&job, Some(&image()), None),
        AppImageFact::Usable
    );
    let AppImageFact::Unusable { reason, message } = app_image_fact(&job, None, None) else {
        panic!()
    };
    assert_eq!(reason, "AppImageNotFound");
    assert!(message.contains("\"app\" does not exist"), "{message}");
    let AppImageFact::Unusable { reason, .. } =
        app_image_fact(&job, Some(&image()), Some(("SignatureInvalid", "bad")))
    else {
        panic!()
    };
    assert_eq!(reason, "SignatureInvalid");
    let mut other = spec();
    other.role = Some("client".into());
    other.template = Some("nope".into());
    let AppImageFact::Unusable { reason, .. } = app_image_fact(&bd(other), Some(&image()), None)
    else {
        panic!()
    };
    assert_eq!(reason, "NoDeployTemplate");
}

fn annotated(name: &str, attempt: i32) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        annotations: Some(BTreeMap::from([
            (BATCH_NODE.to_string(), "edge-1".to_string()),
            (BATCH_ATTEMPT.to_string(), attempt.to_string()),
        ])),
        ..Default::default()
    }
}

#[test]
fn deployment_progress_reads_ready_replicas_and_failures() {
    let mut d = Deployment {
        metadata: annotated("job-edge-1", 2),
        status: Some(DeploymentStatus {
            replicas: Some(2),
            ready_replicas: Some(1),
            ..Default::default()
        }),
        ..Default::default()
    };
    let p = deployment_progress(&d, &[]);
    assert_eq!(
        (p.name.as_str(), p.attempt, p.pods, p.ready, p.failure),
        ("job-edge-1", 2, 2, 1, None)
    );
    // A Pod stuck pulling its image fails the node.
    let stuck = Pod {
        metadata: ObjectMeta {
            name: Some("p1".into()),
            ..Default::default()
        },
        status: Some(PodStatus {
            container_statuses: Some(vec![ContainerStatus {
                name: "app".into(),
                state: Some(ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some("ImagePullBackOff".into()),
                        message: Some("no such image".into()),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let p = deployment_progress(&d, &[stuck]);
    assert_eq!(
        p.failure,
        Some((
            "ImagePullBackOff".into(),
            "Pod p1: ImagePullBackOff no such image".into()
        ))
    );
    // The webhook denying the Pods shows as ReplicaFailure.
    d.status.as_mut().unwrap().conditions = Some(vec![DeploymentCondition {
        type_: "ReplicaFailure".into(),
        status: "True".into(),
        reason: Some("FailedCreate".into()),
        message: Some("admission webhook denied the request".into()),
        ..Default::default()
    }]);
    let p = deployment_progress(&d, &[]);
    assert_eq!(p.failure.unwrap().0, "FailedCreate");
}

#[test]
fn job_progress_reads_succeeded_and_the_failed_condition() {
    let mut j = Job {
        metadata: annotated("job-edge-1", 1),
        status: Some(JobStatus {
            active: Some(1),
            succeeded: Some(2),
            ready: Some(1),
            ..Default::default()
        }),
        ..Default::default()
    };
    let p = job_progress(&j);
    assert_eq!(
        (p.attempt, p.pods, p.ready, p.succeeded, p.failure.clone()),
        (1, 3, 1, 2, None)
    );
    j.status.as_mut().unwrap().conditions = Some(vec![JobCondition {
        type_: "Failed".into(),
        status: "True".into(),
        reason: Some("BackoffLimitExceeded".into()),
        message: Some("Job has reached the specified backoff limit".into()),
        ..Default::default()
    }]);
    assert_eq!(job_progress(&j).failure.unwrap().0, "BackoffLimitExceeded");
}

#[test]
fn node_facts() {
    let node = |status: &str| Node {
        metadata: ObjectMeta {
            name: Some("edge-1".into()),
            labels: Some(BTreeMap::from([("pool".into(), "a".into())])),
            ..Default::default()
        },
        status: Some(CoreNodeStatus {
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: status.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let f = node_fact(&node("True"));
    assert_eq!(
        (f.name.as_str(), f.ready, f.labels["pool"].as_str()),
        ("edge-1", true, "a")
    );
    assert!(!node_fact(&node("Unknown")).ready);
    assert!(!node_fact(&Node::default()).ready);
}

#[test]
fn progress_by_node_pairs_workloads_with_their_own_pods() {
    let d = Deployment {
        metadata: annotated("job-edge-1", 1),
        status: Some(DeploymentStatus {
            replicas: Some(1),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut other = Deployment::default();
    other.metadata.name = Some("not-ours".into());
    let crashing = |workload: &str| Pod {
        metadata: ObjectMeta {
            name: Some(format!("{workload}-abc")),
            labels: Some(BTreeMap::from([(
                crate::workload::WORKLOAD.to_string(),
                workload.to_string(),
            )])),
            ..Default::default()
        },
        status: Some(PodStatus {
            phase: Some("Failed".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut j = Job {
        metadata: annotated("job-edge-2", 3),
        ..Default::default()
    };
    j.metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert(BATCH_NODE.into(), "edge-2".into());
    // Another workload's failed Pod does not fail edge-1.
    let map = progress_by_node(
        &[d.clone(), other],
        std::slice::from_ref(&j),
        &[crashing("someone-else")],
    );
    assert_eq!(map.keys().collect::<Vec<_>>(), ["edge-1", "edge-2"]);
    assert_eq!(map["edge-1"].failure, None);
    assert_eq!(map["edge-2"].attempt, 3);
    let map = progress_by_node(&[d], &[], &[crashing("job-edge-1")]);
    assert_eq!(map["edge-1"].failure.as_ref().unwrap().0, "PodFailed");
}

#[test]
fn a_same_named_workload_another_owns_is_never_taken_over_and_its_owner_is_named() {
    let job = bd(spec());
    let meta = |owner: serde_json::Value, managers: serde_json::Value| -> ObjectMeta {
        serde_json::from_value(serde_json::json!({
            "name": "job-edge-1", "ownerReferences": owner, "managedFields": managers
        }))
        .unwrap()
    };
    let ref_to = |kind: &str, name: &str, uid: &str| serde_json::json!([{"apiVersion": "v1", "kind": kind, "name": name, "uid": uid, "controller": true}]);
    let ours = meta(
        ref_to("BatchDeployment", "job", "uid-1"),
        serde_json::json!([]),
    );
    assert_eq!(taken(&job, "Deployment", &ours), None);
    let other = meta(
        ref_to("BatchDeployment", "other", "uid-2"),
        serde_json::json!([]),
    );
    let (reason, message) = taken(&job, "Deployment", &other).expect("taken");
    assert_eq!(reason, "WorkloadNameTaken");
    assert!(message.contains("Deployment \"job-edge-1\""), "{message}");
    assert!(
        message.contains("owned by BatchDeployment/other"),
        "{message}"
    );
    assert!(message.contains("not taken over"), "{message}");
    let by_hand = meta(
        serde_json::json!([]),
        serde_json::json!([
            {"manager": "kube-controller-manager", "subresource": "status"},
            {"manager": "kubectl-create"}
        ]),
    );
    let (_, message) = taken(&job, "Job", &by_hand).expect("taken");
    assert!(
        message.contains("made by field manager \"kubectl-create\""),
        "{message}"
    );
}

#[test]
fn a_node_of_an_overridden_group_gets_its_replicas_env_and_values() {
    let mut s = spec();
    s.values.insert("k".into(), "base".into());
    s.overrides = vec![crate::batch::types::Override {
        node_selector: BTreeMap::from([("size".into(), "big".into())]),
        replicas: Some(2),
        env: BTreeMap::from([("MODE".into(), "big".into())]),
        set: BTreeMap::from([("k".into(), "big".into())]),
        ..Default::default()
    }];
    let job = bd(s);
    let big = BTreeMap::from([("size".to_string(), "big".to_string())]);
    let pods_of = |w: &Workload| match w {
        Workload::Deployment(d) => d.spec.clone().unwrap(),
        other => panic!("not a Deployment: {other:?}"),
    };
    let w = build_for(&job, &image(), "edge-1", &big, 1).unwrap();
    let d = pods_of(&w);
    assert_eq!(d.replicas, Some(2));
    let pod = d.template.spec.unwrap();
    let env = pod.containers[0].env.clone().unwrap_or_default();
    assert!(
        env.iter()
            .any(|e| e.name == "MODE" && e.value.as_deref() == Some("big")),
        "{env:?}"
    );
    // Other nodes get the job's spec as before.
    let plain = build_for(&job, &image(), "edge-2", &BTreeMap::new(), 1).unwrap();
    assert_eq!(pods_of(&plain).replicas, Some(1));
    assert_eq!(plain, build(&job, &image(), "edge-2", 1).unwrap());
    let env = pods_of(&plain).template.spec.unwrap().containers[0]
        .env
        .clone();
    assert!(!env.unwrap_or_default().iter().any(|e| e.name == "MODE"));
}
