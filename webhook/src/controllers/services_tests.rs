//! The Services controller against a mocked API server (issue 25): the exact requests it sends
//! for a Pod's object when the name is free, when the object is current, when it was left by an
//! earlier Pod of the same name, on a conflict, and when someone else holds the name.

use kube::Client;
use kube::runtime::reflector;
use kube::runtime::watcher::Event as WatchEvent;
use serde_json::json;

use super::*;
use crate::controllers::mock_api::{
    Requests, Seen, assert_apply, context, echo, events_sent, server, status, writes,
};

const PATH: &str = "/api/v1/namespaces/ns/services/p-web";

fn pod() -> Pod {
    serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "ns", "uid": "uid-p"}}))
        .unwrap()
}

/// A Service of ours named `p-web`, controlled by the Pod `p` of UID `owner`.
fn ours(owner: &str) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": "p-web", "namespace": "ns",
            "labels": {labels::MANAGED_BY: labels::MANAGER},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": owner,
                "controller": true}]},
        "spec": {"ports": [{"name": "web", "port": 80}]}
    }))
    .unwrap()
}

fn ctx(client: Client, services: Vec<Service>) -> (Ctx, reflector::store::Writer<Service>) {
    let (store, mut writer) = reflector::store();
    writer.apply_watcher_event(&WatchEvent::Init);
    for s in services {
        writer.apply_watcher_event(&WatchEvent::InitApply(s));
    }
    writer.apply_watcher_event(&WatchEvent::InitDone);
    let (policies, _) = reflector::store();
    let ctx = Ctx {
        base: context(client),
        services: store,
        policies,
        backoff: Backoff::default(),
        written: Written::default(),
    };
    (ctx, writer)
}

fn free(r: &Seen) -> (u16, serde_json::Value) {
    match r.method.as_str() {
        "GET" => (404, status(404, "NotFound")),
        _ => echo(r),
    }
}

fn lines(seen: &Requests) -> Vec<String> {
    writes(seen).iter().map(Seen::line).collect()
}

async fn ensure_one(ctx: &Ctx, svc: Service) -> Result<bool, Error> {
    let api = Api::<Service>::namespaced(ctx.base.client.clone(), "ns");
    ensure(&api, &ctx.services, svc, &pod(), ctx).await
}

#[tokio::test]
async fn a_free_name_is_read_once_then_applied_and_not_again_while_current() {
    let (client, seen) = server(free);
    let (ctx, mut store) = ctx(client, Vec::new());
    assert!(ensure_one(&ctx, ours("uid-p")).await.unwrap());
    assert_eq!(
        lines(&seen),
        [format!("GET {PATH}"), format!("PATCH {PATH}")]
    );
    let apply = &writes(&seen)[1];
    assert_apply(apply, PATH, MANAGER);
    assert_eq!(apply.body["spec"]["ports"][0]["port"], 80);
    assert_eq!(apply.body["metadata"]["ownerReferences"][0]["uid"], "uid-p");
    // The watch brings what the API server answered: nothing more is sent.
    let stored: Service = serde_json::from_value(echo(apply).1).unwrap();
    store.apply_watcher_event(&WatchEvent::Apply(stored));
    assert!(ensure_one(&ctx, ours("uid-p")).await.unwrap());
    let sent = seen.lock().unwrap().len();
    assert_eq!(sent, 2, "{:?}", lines(&seen));
}

#[tokio::test]
async fn an_object_left_by_an_earlier_pod_is_deleted_by_uid_then_applied() {
    let mut stale = ours("uid-earlier");
    stale.metadata.uid = Some("uid-stale".into());
    let (client, seen) = server(free);
    let (ctx, _store) = ctx(client, vec![stale]);
    assert!(ensure_one(&ctx, ours("uid-p")).await.unwrap());
    assert_eq!(
        lines(&seen),
        [format!("DELETE {PATH}"), format!("PATCH {PATH}")]
    );
    let delete = &writes(&seen)[0];
    assert_eq!(
        delete.body["preconditions"]["uid"], "uid-stale",
        "{delete:?}"
    );
}

#[tokio::test]
async fn a_conflict_is_an_error_labelled_conflict() {
    let (client, seen) = server(|r| match r.method.as_str() {
        "GET" => (404, status(404, "NotFound")),
        _ => (409, status(409, "Conflict")),
    });
    let (ctx, _store) = ctx(client, Vec::new());
    let err = ensure_one(&ctx, ours("uid-p")).await.expect_err("409");
    assert_eq!(err.metric_label(), "conflict");
    assert_eq!(
        lines(&seen),
        [format!("GET {PATH}"), format!("PATCH {PATH}")]
    );
    // Not remembered as written: the retry applies again.
    assert!(
        !ctx.written
            .current(&kube_ops::key::<Service>("ns", "p-web"), 0, None)
    );
}

#[tokio::test]
async fn a_name_someone_else_holds_is_read_never_written() {
    let (client, seen) = server(|r| match r.method.as_str() {
        // Not ours, so not in our store: read from the API server.
        "GET" => (
            200,
            json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "p-web", "namespace": "ns", "uid": "uid-theirs"}}),
        ),
        _ => echo(r),
    });
    let (ctx, _store) = ctx(client, Vec::new());
    assert!(!ensure_one(&ctx, ours("uid-p")).await.unwrap());
    assert_eq!(lines(&seen), [format!("GET {PATH}")]);
    assert_eq!(events_sent(&seen), 1);
}
