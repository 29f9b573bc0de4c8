use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, PodStatus, Toleration,
};

use super::*;
use crate::batch::types::{BatchDeploymentSpec, Override, PrePull};

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
        pre_pull: Some(PrePull {
            timeout: Some("90s".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn toleration(key: &str) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        ..Default::default()
    }
}

#[test]
fn the_pull_job_is_pinned_owned_labelled_and_runs_nothing_of_the_app() {
    let mut s = spec();
    s.pod_template = Some(serde_json::json!({"spec": {
        "tolerations": [{"key": "edge", "operator": "Exists"}],
        "imagePullSecrets": [{"name": "regcred"}],
        "containers": [{"name": "app", "command": ["evil"]}]
    }}));
    s.overrides = vec![Override {
        node_selector: BTreeMap::from([("size".into(), "big".into())]),
        tolerations: vec![toleration("big")],
        ..Default::default()
    }];
    let labels = BTreeMap::from([("size".to_string(), "big".to_string())]);
    let job = pull_job(&bd(s), "secretflow/app:1.0", "edge-1", &labels, 3).unwrap();
    let meta = &job.metadata;
    assert_eq!(meta.name.as_deref(), Some("pull-job-edge-1"));
    assert_eq!(meta.namespace.as_deref(), Some("ns"));
    let l = meta.labels.as_ref().unwrap();
    assert_eq!(l[BATCH], "job");
    assert_eq!(l[BATCH_PREPULL], "true");
    assert_eq!(l[labels::MANAGED_BY], labels::MANAGER);
    assert!(!l.contains_key(labels::APP_IMAGE));
    let a = meta.annotations.as_ref().unwrap();
    assert_eq!(
        (a[BATCH_NODE].as_str(), a[BATCH_ATTEMPT].as_str()),
        ("edge-1", "3")
    );
    let owner = &meta.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.uid.as_str(), owner.controller),
        ("uid-1", Some(true))
    );

    let js = job.spec.as_ref().unwrap();
    assert_eq!(
        (js.backoff_limit, js.active_deadline_seconds),
        (Some(0), Some(90))
    );
    let t = &js.template;
    let tl = t.metadata.as_ref().unwrap().labels.as_ref().unwrap();
    assert_eq!(tl[BATCH_PREPULL], "true");
    assert!(!tl.contains_key(labels::APP_IMAGE));
    let pod = t.spec.as_ref().unwrap();
    assert_eq!(pod.node_name.as_deref(), Some("edge-1"));
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    assert_eq!(pod.automount_service_account_token, Some(false));
    let keys: Vec<_> = pod
        .tolerations
        .iter()
        .flatten()
        .map(|t| t.key.clone().unwrap())
        .collect();
    assert_eq!(keys, ["edge", "big"]);
    assert_eq!(pod.image_pull_secrets.as_ref().unwrap()[0].name, "regcred");
    assert_eq!(pod.containers.len(), 1, "only the pull container");
    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some("secretflow/app:1.0"));
    assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(c.command.as_deref(), Some(&["true".to_string()][..]));
    assert_eq!(c.args.as_deref(), Some(&[][..]));
    let sc = pod.security_context.as_ref().unwrap();
    assert_eq!(
        (sc.run_as_non_root, sc.run_as_user),
        (Some(true), Some(65534))
    );

    // Another node: no override's tolerations.
    let job = pull_job(&bd(spec()), "x:1", "edge-2", &BTreeMap::new(), 1).unwrap();
    let pod = job.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.tolerations, None);
    assert_eq!(pod.image_pull_secrets, None);
}

#[test]
fn the_pull_reference_is_the_pinned_one_when_known() {
    let image: AppImage = serde_yaml_ng::from_str(
        "apiVersion: kuscia.secretflow/v1alpha1\nkind: AppImage\nmetadata: {name: app}\nspec:\n  image: {name: team/app, tag: '1'}\n  deployTemplates: []\n",
    )
    .unwrap();
    assert_eq!(pull_reference(&image, None), "team/app:1");
    let pinned = format!("team/app@sha256:{}", "a".repeat(64));
    assert_eq!(pull_reference(&image, Some(&pinned)), pinned);
}

#[test]
fn a_bad_pod_template_or_timeout_is_an_error_not_a_panic() {
    let mut s = spec();
    s.pod_template = Some(serde_json::json!({"spec": {"tolerations": "all"}}));
    let e = pull_job(&bd(s), "x:1", "n", &BTreeMap::new(), 1).unwrap_err();
    assert!(
        e.starts_with("spec.podTemplate is not a PodTemplateSpec fragment"),
        "{e}"
    );
    let mut s = spec();
    s.pre_pull.as_mut().unwrap().timeout = Some("later".into());
    let e = pull_job(&bd(s), "x:1", "n", &BTreeMap::new(), 1).unwrap_err();
    assert!(e.starts_with("spec.prePull.timeout"), "{e}");
}

fn job(conditions: &[(&str, &str)]) -> Job {
    let mut j = pull_job(&bd(spec()), "x:1", "edge-1", &BTreeMap::new(), 2).unwrap();
    j.status = Some(JobStatus {
        conditions: Some(
            conditions
                .iter()
                .map(|(t, r)| JobCondition {
                    type_: t.to_string(),
                    status: "True".into(),
                    reason: Some(r.to_string()),
                    message: Some(format!("{r} message")),
                    ..Default::default()
                })
                .collect(),
        ),
        ..Default::default()
    });
    j
}

fn pod(phase: &str, state: ContainerState, image_id: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("pull-job-edge-1-abc".into()),
            ..Default::default()
        },
        spec: None,
        status: Some(PodStatus {
            phase: Some(phase.into()),
            container_statuses: Some(vec![ContainerStatus {
                name: CONTAINER.into(),
                image: "x:1".into(),
                image_id: image_id.into(),
                state: Some(state),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

fn waiting(reason: &str) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            message: Some(format!("{reason} detail")),
        }),
        ..Default::default()
    }
}

fn terminated(code: i32, reason: &str) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: code,
            reason: Some(reason.into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn failed(reason: &str, message: &str) -> PullOutcome {
    PullOutcome::Failed {
        reason: reason.into(),
        message: message.into(),
    }
}

#[test]
fn what_a_pull_job_and_its_pods_say() {
    let none = job(&[]);
    assert_eq!(pull_outcome(&none, &[]), PullOutcome::Pulling);
    assert_eq!(
        pull_outcome(&job(&[("Complete", "Completed")]), &[]),
        PullOutcome::Pulled
    );
    let running = ContainerState {
        running: Some(ContainerStateRunning::default()),
        ..Default::default()
    };
    let cases = [
        // Still pulling.
        (
            pod("Pending", waiting("ContainerCreating"), ""),
            PullOutcome::Pulling,
        ),
        // A pull error.
        (
            pod("Pending", waiting("ErrImagePull"), ""),
            failed("ErrImagePull", "ErrImagePull detail"),
        ),
        (
            pod("Pending", waiting("ImagePullBackOff"), ""),
            failed("ImagePullBackOff", "ImagePullBackOff detail"),
        ),
        (
            pod("Pending", waiting("InvalidImageName"), ""),
            failed("InvalidImageName", "InvalidImageName detail"),
        ),
        // Started or done: the image is there.
        (pod("Running", running, ""), PullOutcome::Pulled),
        (
            pod("Succeeded", terminated(0, "Completed"), ""),
            PullOutcome::Pulled,
        ),
        // `true` is not in the image: it could not start, but only after the pull.
        (
            pod("Failed", terminated(128, "StartError"), "sha256:abc"),
            PullOutcome::Pulled,
        ),
        (
            pod("Pending", waiting("CreateContainerError"), ""),
            PullOutcome::Pulled,
        ),
        (
            pod("Pending", waiting("ContainerCreating"), "sha256:abc"),
            PullOutcome::Pulled,
        ),
        // Killed while pulling: the kubelet's stand-in status is no sign of the image.
        (
            pod("Failed", terminated(137, "ContainerStatusUnknown"), ""),
            failed("PodFailed", "pull Pod pull-job-edge-1-abc failed"),
        ),
    ];
    for (p, want) in cases {
        assert_eq!(pull_outcome(&none, std::slice::from_ref(&p)), want, "{p:?}");
    }
    // The Job's deadline, with its Pod gone.
    assert_eq!(
        pull_outcome(&job(&[("Failed", "DeadlineExceeded")]), &[]),
        failed("DeadlineExceeded", "DeadlineExceeded message")
    );
    let p = pull_progress(&none, &[]);
    assert_eq!((p.name.as_str(), p.attempt), ("pull-job-edge-1", 2));
}
