//! The start controller against a mocked API server (issue 25): the exact requests for a due
//! start, none for a workload already started or not yet due, one failed apply on a conflict,
//! and a start recorded without touching the replicas of a workload started by hand.

use appimage::workload::{DeployOptions, Kind as WorkloadKind, STARTED, build};
use serde_json::json;

use super::*;
use crate::controllers::mock_api::{Seen, assert_apply, context, echo, server, status, writes};

const PATH: &str = "/apis/apps/v1/namespaces/ns/deployments/web";

/// What `deploy --start-at <at> --replicas 2` stores: 0 replicas, as stored (UID, version 5).
fn stopped(at: Timestamp) -> Deployment {
    let opts = DeployOptions {
        kind: WorkloadKind::Deployment,
        name: Some("web".into()),
        namespace: "ns".into(),
        replicas: Some(2),
        start_at: Some(at),
        ..DeployOptions::default()
    };
    let image = crate::testing::seed("app", "1");
    let Workload::Deployment(mut d) = build(&image, &opts).unwrap() else {
        unreachable!()
    };
    d.metadata.uid = Some("uid-web".into());
    d.metadata.resource_version = Some("5".into());
    *d
}

fn past() -> Timestamp {
    Timestamp::now() - jiff::SignedDuration::from_secs(60)
}

/// An API server that holds `live` and answers applies with `apply`.
fn holding(
    live: Deployment,
    apply: u16,
) -> impl Fn(&Seen) -> (u16, serde_json::Value) + Send + Sync + 'static {
    move |r| match r.method.as_str() {
        "GET" => (200, serde_json::to_value(&live).unwrap()),
        "PATCH" if apply == 200 => echo(r),
        _ => (apply, status(apply, "Conflict")),
    }
}

fn lines(seen: &crate::controllers::mock_api::Requests) -> Vec<String> {
    writes(seen).iter().map(Seen::line).collect()
}

#[tokio::test]
async fn a_due_start_reads_the_live_workload_then_applies_its_replicas_with_its_version() {
    let d = stopped(past());
    let (client, seen) = server(holding(d.clone(), 200));
    let ctx = context(client);
    let action = reconcile_workload(&d, &ctx).await.expect("started");
    assert_eq!(action, Action::await_change());
    assert_eq!(
        lines(&seen),
        [format!("GET {PATH}"), format!("PATCH {PATH}")]
    );
    let apply = &writes(&seen)[1];
    assert_apply(apply, PATH, START_MANAGER);
    assert_eq!(apply.body["spec"], json!({"replicas": 2}));
    // Written once: guarded by the UID and version read.
    assert_eq!(apply.body["metadata"]["uid"], "uid-web");
    assert_eq!(apply.body["metadata"]["resourceVersion"], "5");
    assert!(apply.body["metadata"]["annotations"][STARTED].is_string());
}

#[tokio::test]
async fn a_started_or_not_yet_due_workload_costs_no_request() {
    let (client, seen) = server(|_| (500, status(500, "unexpected")));
    let ctx = context(client);
    let mut started = stopped(past());
    started
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(STARTED.into(), past().to_string());
    let action = reconcile_workload(&started, &ctx).await.unwrap();
    assert_eq!(action, Action::await_change());
    let later = Timestamp::now() + jiff::SignedDuration::from_secs(3600);
    let action = reconcile_workload(&stopped(later), &ctx).await.unwrap();
    assert_ne!(action, Action::await_change(), "requeued at its time");
    let none = seen.lock().unwrap().is_empty();
    assert!(none, "{:?}", lines(&seen));
}

#[tokio::test]
async fn a_conflict_on_the_start_is_an_error_and_one_apply() {
    let d = stopped(past());
    let (client, seen) = server(holding(d.clone(), 409));
    let ctx = context(client);
    let err = reconcile_workload(&d, &ctx).await.expect_err("409");
    assert_eq!(err.metric_label(), "conflict");
    assert_eq!(
        lines(&seen),
        [format!("GET {PATH}"), format!("PATCH {PATH}")]
    );
}

#[tokio::test]
async fn a_workload_started_by_hand_keeps_its_replicas() {
    let d = stopped(past());
    let mut live = d.clone();
    live.spec.as_mut().unwrap().replicas = Some(3);
    let (client, seen) = server(holding(live, 200));
    let ctx = context(client);
    reconcile_workload(&d, &ctx).await.expect("recorded");
    let apply = &writes(&seen)[1];
    assert_apply(apply, PATH, START_MANAGER);
    assert!(apply.body.get("spec").is_none(), "{apply:?}");
    assert!(apply.body["metadata"]["annotations"][STARTED].is_string());
}
