//! The batch controller's writes against a mocked API server (issue 25): the exact requests to
//! create a node's workload, to find a same-named workload someone else owns (never taken
//! over), to write the status guarded by the version read (a conflict starts over, no loop),
//! and to delete a workload by UID in the foreground.

use kube::runtime::reflector;
use serde_json::json;

use super::*;
use crate::controllers::mock_api::{Seen, context, echo, server, status, writes};

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/ns/deployments";

fn job() -> BatchDeployment {
    serde_json::from_value(json!({
        "apiVersion": "appimage.kuscia.secretflow/v1alpha1", "kind": "BatchDeployment",
        "metadata": {"name": "job", "namespace": "ns", "uid": "uid-job", "resourceVersion": "4"},
        "spec": {"appImage": "app", "nodeNames": ["n1"]}
    }))
    .unwrap()
}

fn ctx(client: kube::Client) -> Ctx {
    Ctx {
        base: context(client),
        deployments: reflector::store().0,
        jobs: reflector::store().0,
        pods: reflector::store().0,
        nodes: reflector::store().0,
        pull_jobs: reflector::store().0,
        pull_pods: reflector::store().0,
        backoff: Backoff::default(),
        taken: Default::default(),
        pulls_taken: Default::default(),
        written: Default::default(),
    }
}

/// The Deployment the job makes for node n1.
fn workload(bd: &BatchDeployment) -> Deployment {
    let image = crate::testing::seed("app", "1");
    match build(bd, &image, "n1", 1).expect("the seed builds") {
        Workload::Deployment(d) => *d,
        other => panic!("{other:?}"),
    }
}

fn lines(seen: &crate::controllers::mock_api::Requests) -> Vec<String> {
    writes(seen).iter().map(Seen::line).collect()
}

#[tokio::test]
async fn a_node_workload_is_created_owned_by_the_job() {
    let (client, seen) = server(echo);
    let bd = job();
    let api = Api::<Deployment>::namespaced(client, "ns");
    let held = create_new(&api, &workload(&bd), &bd, "Deployment").await;
    assert_eq!(held.expect("created"), None);
    assert_eq!(lines(&seen), [format!("POST {DEPLOYMENTS}")]);
    let post = &writes(&seen)[0];
    assert_eq!(post.param("fieldManager"), Some(MANAGER));
    let owner = &post.body["metadata"]["ownerReferences"][0];
    assert_eq!(
        (&owner["kind"], &owner["uid"], &owner["controller"]),
        (&json!("BatchDeployment"), &json!("uid-job"), &json!(true))
    );
}

#[tokio::test]
async fn a_same_named_workload_of_someone_else_is_read_never_taken_over() {
    let (client, seen) = server(|r| match r.method.as_str() {
        "POST" => (409, status(409, "AlreadyExists")),
        "GET" => (
            200,
            json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                "metadata": {"name": "job-n1", "namespace": "ns", "uid": "uid-theirs",
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                        "name": "mine", "uid": "uid-rs", "controller": true}]}}),
        ),
        _ => (500, status(500, "unexpected")),
    });
    let bd = job();
    let api = Api::<Deployment>::namespaced(client, "ns");
    let d = workload(&bd);
    let name = d.metadata.name.clone().unwrap();
    let held = create_new(&api, &d, &bd, "Deployment").await.expect("read");
    let (reason, message) = held.expect("held by someone else");
    assert_eq!(reason, "WorkloadNameTaken");
    assert!(message.contains("ReplicaSet/mine"), "{message}");
    // A create, then a read: no apply, no delete.
    assert_eq!(
        lines(&seen),
        [
            format!("POST {DEPLOYMENTS}"),
            format!("GET {DEPLOYMENTS}/{name}")
        ]
    );
}

#[tokio::test]
async fn a_status_conflict_starts_over_from_the_new_version() {
    let (client, seen) = server(|_| (409, status(409, "Conflict")));
    let ctx = ctx(client);
    let status = batch::BatchDeploymentStatus::default();
    let written = write_status(&job(), &status, &ctx).await.expect("no error");
    assert!(!written, "a conflict is no write");
    let path =
        "/apis/appimage.kuscia.secretflow/v1alpha1/namespaces/ns/batchdeployments/job/status";
    assert_eq!(lines(&seen), [format!("PATCH {path}")]);
    let apply = &writes(&seen)[0];
    assert_eq!(apply.param("fieldManager"), Some(MANAGER));
    assert_eq!(apply.param("force"), Some("true"));
    // Guarded by the version the step read.
    assert_eq!(apply.body["metadata"]["resourceVersion"], "4");
}

#[tokio::test]
async fn a_workload_is_deleted_by_uid_in_the_foreground_and_a_gone_one_is_fine() {
    let (client, seen) = server(|_| (404, status(404, "NotFound")));
    let ctx = ctx(client);
    remove(&job(), "job-n1", false, Some("uid-w".into()), &ctx)
        .await
        .expect("gone is fine");
    assert_eq!(lines(&seen), [format!("DELETE {DEPLOYMENTS}/job-n1")]);
    let delete = &writes(&seen)[0];
    assert_eq!(delete.body["preconditions"]["uid"], "uid-w");
    assert_eq!(delete.body["propagationPolicy"], "Foreground");
}

#[tokio::test]
async fn a_pull_job_is_created_pinned_owned_and_without_the_appimage_label() {
    let (client, seen) = server(echo);
    let ctx = ctx(client);
    let mut bd = job();
    bd.spec.pre_pull = Some(batch::PrePull::default());
    let image = crate::testing::seed("app", "1");
    create_pull(&bd, &image, "n1", 1, &ctx)
        .await
        .expect("created");
    let jobs = "/apis/batch/v1/namespaces/ns/jobs";
    assert_eq!(lines(&seen), [format!("POST {jobs}")]);
    let post = &writes(&seen)[0];
    assert_eq!(post.param("fieldManager"), Some(MANAGER));
    let body = &post.body;
    assert_eq!(body["metadata"]["name"], "pull-job-n1");
    assert_eq!(body["metadata"]["ownerReferences"][0]["uid"], "uid-job");
    let labels = &body["spec"]["template"]["metadata"]["labels"];
    assert_eq!(labels[appimage::labels::BATCH_PREPULL], "true");
    assert!(
        labels.get(appimage::labels::APP_IMAGE).is_none(),
        "{labels}"
    );
    let pod = &body["spec"]["template"]["spec"];
    assert_eq!(pod["nodeName"], "n1");
    assert_eq!(pod["containers"][0]["image"], image.image_ref());
    assert_eq!(pod["containers"][0]["imagePullPolicy"], "IfNotPresent");
    assert_eq!(body["spec"]["backoffLimit"], 0);
    assert_eq!(body["spec"]["activeDeadlineSeconds"], 300);
}
