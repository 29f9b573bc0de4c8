//! The workloads controller against a mocked API server (issue 25): the exact requests it
//! sends to create a workload's Services, none when they are current, one failed apply on a
//! conflict (an error with backoff, no retry loop), and none to a name someone else holds.

use appimage::workload::{DeployOptions, Kind as WorkloadKind, build};
use kube::Client;
use kube::runtime::reflector;
use kube::runtime::watcher::Event as WatchEvent;
use serde_json::json;

use super::*;
use crate::catalog::{Catalog, appimages};
use crate::controllers::mock_api::{
    Requests, Seen, assert_apply, echo, events_sent, server, status, writes,
};
use crate::metrics::Metrics;
use crate::trust::Trust;

const PATH: &str = "/api/v1/namespaces/ns/services";
/// The seed's Cluster and Domain ports, as Services of workload "web".
const NAMES: [&str; 3] = ["web-spu", "web-fed", "web-global"];

/// The Deployment `deploy` makes of the seed, as stored (UID "uid-web").
fn web() -> Workload {
    let image = crate::testing::seed("app", "1");
    let opts = DeployOptions {
        kind: WorkloadKind::Deployment,
        name: Some("web".into()),
        namespace: "ns".into(),
        ..DeployOptions::default()
    };
    let mut w = build(&image, &opts).expect("the seed deploys");
    if let Workload::Deployment(d) = &mut w {
        d.metadata.uid = Some("uid-web".into());
    }
    w
}

/// A context on `client` whose catalog holds the seed as "app", and whose Service store holds
/// `services`; the store's writer is returned so that a test can add what was applied.
fn ctx(client: Client, services: Vec<Service>) -> (Ctx, reflector::store::Writer<Service>) {
    let (reader, mut writer) = appimages();
    writer.apply_watcher_event(&WatchEvent::Init);
    writer.apply_watcher_event(&WatchEvent::InitApply(crate::testing::seed("app", "1")));
    writer.apply_watcher_event(&WatchEvent::InitDone);
    let catalog = Catalog::new(reader, Trust::fixed(Vec::new()));
    let (store, mut svc_writer) = reflector::store();
    svc_writer.apply_watcher_event(&WatchEvent::Init);
    for s in services {
        svc_writer.apply_watcher_event(&WatchEvent::InitApply(s));
    }
    svc_writer.apply_watcher_event(&WatchEvent::InitDone);
    let ctx = Ctx {
        base: Context::new(client, catalog, Metrics::new(), "test"),
        services: store,
        written: Written::default(),
        backoff: Backoff::default(),
    };
    (ctx, svc_writer)
}

/// An API server where nothing exists yet and every apply succeeds.
fn empty_cluster(r: &Seen) -> (u16, serde_json::Value) {
    match r.method.as_str() {
        "GET" => (404, status(404, "NotFound")),
        _ => echo(r),
    }
}

fn paths(seen: &Requests) -> Vec<String> {
    writes(seen).iter().map(Seen::line).collect()
}

#[tokio::test]
async fn create_reads_each_free_name_then_applies_it_owned_by_the_workload() {
    let (client, seen) = server(empty_cluster);
    let (ctx, _writer) = ctx(client, Vec::new());
    let action = reconcile_workload(&web(), &ctx).await.expect("reconciled");
    assert_eq!(action, Action::requeue(RESYNC));
    let sent = writes(&seen);
    let want: Vec<String> = NAMES
        .iter()
        .flat_map(|n| [format!("GET {PATH}/{n}"), format!("PATCH {PATH}/{n}")])
        .collect();
    assert_eq!(paths(&seen), want);
    for (i, n) in NAMES.iter().enumerate() {
        let apply = &sent[2 * i + 1];
        assert_apply(apply, &format!("{PATH}/{n}"), super::super::MANAGER);
        assert_eq!(apply.body["kind"], "Service");
        assert_eq!(apply.body["metadata"]["name"], *n);
        let owner = &apply.body["metadata"]["ownerReferences"][0];
        assert_eq!(
            (
                &owner["kind"],
                &owner["name"],
                &owner["uid"],
                &owner["controller"]
            ),
            (
                &json!("Deployment"),
                &json!("web"),
                &json!("uid-web"),
                &json!(true)
            )
        );
    }
    assert_eq!(events_sent(&seen), 0);
}

#[tokio::test]
async fn services_already_as_applied_are_not_applied_again() {
    let (client, seen) = server(empty_cluster);
    let (ctx, mut store) = ctx(client, Vec::new());
    reconcile_workload(&web(), &ctx).await.expect("created");
    // The watch brings what the API server answered.
    for r in writes(&seen).iter().filter(|r| r.method == "PATCH") {
        let stored: Service = serde_json::from_value(echo(r).1).unwrap();
        store.apply_watcher_event(&WatchEvent::Apply(stored));
    }
    let before = seen.lock().unwrap().len();
    let action = reconcile_workload(&web(), &ctx).await.expect("reconciled");
    assert_eq!(action, Action::requeue(RESYNC));
    // Before issue 25: three more applies whenever the Deployment's status changed.
    let sent = seen.lock().unwrap().len();
    assert_eq!(sent, before, "{:?}", paths(&seen));
    // A hand edit makes a new version: applied again.
    let mut edited: Service = serde_json::from_value(echo(&writes(&seen)[1]).1).unwrap();
    edited.metadata.resource_version = Some("3".into());
    store.apply_watcher_event(&WatchEvent::Apply(edited));
    reconcile_workload(&web(), &ctx).await.expect("reconciled");
    let again = &writes(&seen)[before..];
    assert_eq!(again.len(), 1, "{again:?}");
    assert_apply(&again[0], &format!("{PATH}/web-spu"), super::super::MANAGER);
}

#[tokio::test]
async fn a_conflict_on_apply_is_an_error_with_backoff_not_a_loop() {
    let (client, seen) = server(|r| match r.method.as_str() {
        "GET" => (404, status(404, "NotFound")),
        _ => (409, status(409, "Conflict")),
    });
    let (ctx, _writer) = ctx(client, Vec::new());
    let err = reconcile_workload(&web(), &ctx)
        .await
        .expect_err("a conflict");
    assert_eq!(err.metric_label(), "conflict");
    // One read and one apply: the first failure ends the reconcile.
    assert_eq!(
        paths(&seen),
        [
            format!("GET {PATH}/web-spu"),
            format!("PATCH {PATH}/web-spu")
        ]
    );
    let ctx = Arc::new(ctx);
    let obj = match web() {
        Workload::Deployment(d) => Arc::new(*d),
        _ => unreachable!(),
    };
    let waits: Vec<Action> = (0..3)
        .map(|_| error_policy(obj.clone(), &err, ctx.clone()))
        .collect();
    let secs = |s| Action::requeue(Duration::from_secs(s));
    assert_eq!(waits, [secs(1), secs(2), secs(4)]);
    let metrics = ctx.base.metrics.encode();
    assert!(
        metrics.contains(
            r#"appimage_webhook_reconcile_errors_total{controller="workloads",reason="conflict"} 3"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_name_someone_else_holds_is_never_written() {
    let foreign: Service = serde_json::from_value(json!({
        "metadata": {"name": "web-spu", "namespace": "ns", "uid": "uid-theirs",
            "resourceVersion": "7",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "other",
                "uid": "uid-other", "controller": true}]}
    }))
    .unwrap();
    let (client, seen) = server(empty_cluster);
    let (ctx, _writer) = ctx(client, vec![foreign]);
    let action = reconcile_workload(&web(), &ctx).await.expect("reconciled");
    assert_eq!(action, Action::requeue(RETRY));
    let sent = paths(&seen);
    assert!(
        !sent.iter().any(|l| l.ends_with("/web-spu")),
        "the held name was touched: {sent:?}"
    );
    // The other two are made; one Warning Event says why the first is not.
    assert_eq!(sent.iter().filter(|l| l.starts_with("PATCH")).count(), 2);
    assert_eq!(events_sent(&seen), 1);
}
