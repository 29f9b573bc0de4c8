//! The revisions controller on cold and warm stores, against an API server that logs every
//! request (issue 25): nothing is recorded or pruned before every store has its initial list,
//! what Manual workloads, old ReplicaSets and BatchDeployments name is kept, and a blocked
//! revision is reported once per workload.

use std::any::Any;

use appimage::revision::{HISTORY_LIMIT, REVISION, REVISION_HASH};
use appimage::workload::UPDATE_POLICY;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::runtime::reflector;
use kube::runtime::watcher::Event;
use serde_json::json;

use super::*;
use crate::catalog::{Catalog, Revisions, appimages};
use crate::controllers::MANAGER;
use crate::controllers::mock_api::{Log, Seen, assert_apply, echo, events, mock, server, status};
use crate::metrics::Metrics;
use crate::trust::Trust;

fn spec(tag: &str) -> appimage::resource::AppImageSpec {
    serde_json::from_value(json!({"image": {"name": "x", "tag": tag}, "deployTemplates": []}))
        .unwrap()
}

fn image(tag: &str, limit: usize) -> AppImage {
    let mut image = AppImage::new("web", spec(tag));
    image.metadata.uid = Some("uid-web".into());
    image.metadata.annotations = Some([(HISTORY_LIMIT.to_string(), limit.to_string())].into());
    image
}

/// Revision `number` of "web", its spec tagged `v<number>`, as the controller writes it.
fn revision(number: i64) -> AppImageRevision {
    let template = spec(&format!("v{number}"));
    let mut rev = AppImageRevision::new(
        &revision_name("web", number),
        AppImageRevisionSpec {
            app_image: "web".into(),
            revision: number,
            hash: revision_hash(&template),
            change_cause: None,
            task_id: None,
            template,
        },
    );
    rev.metadata.uid = Some(format!("uid-web-{number}"));
    rev.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "kuscia.secretflow/v1alpha1".into(),
        kind: "AppImage".into(),
        name: "web".into(),
        uid: "uid-web".into(),
        controller: Some(true),
        block_owner_deletion: None,
    }]);
    rev
}

/// The stores' writers, kept so that a cold store stays cold (a watch still listing).
type Writers = Vec<Box<dyn Any + Send>>;

/// A store with its initial list in (`Some`), or still waiting for it (`None`).
fn store<K>(objects: Option<Vec<K>>, writers: &mut Writers) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let (store, mut writer) = reflector::store();
    if let Some(objects) = objects {
        writer.apply_watcher_event(&Event::Init);
        for o in objects {
            writer.apply_watcher_event(&Event::InitApply(o));
        }
        writer.apply_watcher_event(&Event::InitDone);
    }
    writers.push(Box::new(writer));
    store
}

/// The catalog's revisions with their initial list in (`Some`), or still waiting for it.
fn known(revisions: Option<Vec<AppImageRevision>>) -> Revisions {
    let known = Revisions::default();
    if let Some(revisions) = revisions {
        let mut writer = known.writer();
        writer.apply(Event::Init);
        for r in revisions {
            writer.apply(Event::InitApply(r));
        }
        writer.apply(Event::InitDone);
    }
    known
}

/// What the cluster holds beside the AppImage and its revisions; `warm`: whether the
/// workload, Pod and BatchDeployment stores have their initial lists.
#[derive(Default)]
struct Cluster {
    deployments: Vec<Deployment>,
    replicasets: Vec<ReplicaSet>,
    batches: Vec<BatchDeployment>,
}

fn ctx(
    client: Client,
    image: &AppImage,
    revisions: Option<Vec<AppImageRevision>>,
    cluster: Option<Cluster>,
    writers: &mut Writers,
) -> Arc<Ctx> {
    let (reader, mut writer) = appimages();
    writer.apply_watcher_event(&Event::Init);
    writer.apply_watcher_event(&Event::InitApply(image.clone()));
    writer.apply_watcher_event(&Event::InitDone);
    let catalog = Catalog::new(reader, Trust::fixed(Vec::new())).with_revisions(known(revisions));
    let base = Context::new(client, catalog, Metrics::new(), "test");
    let warm = cluster.is_some();
    let Cluster {
        deployments,
        replicasets,
        batches,
    } = cluster.unwrap_or_default();
    Arc::new(Ctx {
        base,
        pods: store(warm.then(Vec::new), writers),
        deployments: store(warm.then_some(deployments), writers),
        statefulsets: store(warm.then(Vec::new), writers),
        daemonsets: store(warm.then(Vec::new), writers),
        cronjobs: store(warm.then(Vec::new), writers),
        jobs: store(warm.then(Vec::new), writers),
        replicasets: store(warm.then_some(replicasets), writers),
        batches: store(warm.then_some(batches), writers),
        rollouts: store(warm.then(Vec::new), writers),
        told: Told::default(),
        ignored: Mutex::default(),
        written: Mutex::default(),
        backoff: Backoff::default(),
    })
}

/// The writes the API server saw (Events left out).
fn writes(log: &Log) -> Vec<String> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|l| !l.starts_with("GET") && !l.contains("/events"))
        .cloned()
        .collect()
}

#[tokio::test]
async fn an_empty_revision_store_records_nothing_until_it_is_listed() {
    let (client, log) = mock();
    let mut writers = Writers::new();
    let image = image("v1", 10);
    let ctx = ctx(client, &image, None, None, &mut writers);
    let result = reconcile(Arc::new(image), ctx).await;
    // On the code before issue 25: ["PATCH .../appimagerevisions/web-1"].
    assert_eq!(writes(&log), Vec::<String>::new());
    assert_eq!(result.expect("requeued"), Action::requeue(COLD));
}

#[tokio::test]
async fn a_leader_start_prunes_nothing_before_the_workloads_are_listed() {
    let (client, log) = mock();
    let mut writers = Writers::new();
    let image = image("v3", 1);
    let revisions = Some((1..=3).map(revision).collect());
    let ctx = ctx(client, &image, revisions, None, &mut writers);
    let result = reconcile(Arc::new(image), ctx).await;
    // On the code before issue 25: DELETE web-2 and web-1, though a workload may run them.
    assert_eq!(writes(&log), Vec::<String>::new());
    assert_eq!(result.expect("requeued"), Action::requeue(COLD));
}

fn deployment(name: &str, annotations: serde_json::Value, policy: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"),
            "labels": {labels::APP_IMAGE: "web"}, "annotations": {UPDATE_POLICY: policy}},
        "spec": {"selector": {"matchLabels": {"app": name}}, "template": {
            "metadata": {"labels": {labels::APP_IMAGE: "web", "app": name}, "annotations": annotations},
            "spec": {"containers": [{"name": "main", "image": "x:old"}]}}}
    }))
    .unwrap()
}

#[tokio::test]
async fn manual_workloads_undo_targets_and_batch_pins_are_in_use() {
    let (client, log) = mock();
    let mut writers = Writers::new();
    let image = image("v6", 1);
    let revisions: Vec<AppImageRevision> = (1..=6).map(revision).collect();
    let hash = |n: usize| revisions[n - 1].spec.hash.clone();
    // A Manual Deployment left on 1; an old ReplicaSet (what an undo goes back to) on 2 by
    // hash; a BatchDeployment pinning 3; an Auto Deployment already on 6.
    let manual = deployment(
        "manual",
        json!({REVISION: "1", REVISION_HASH: hash(1)}),
        "Manual",
    );
    let auto = deployment(
        "auto",
        json!({REVISION: "6", REVISION_HASH: hash(6)}),
        "Auto",
    );
    let old: Deployment = deployment("old", json!({REVISION_HASH: hash(2)}), "Auto");
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "auto-1", "namespace": "ns", "labels": {labels::APP_IMAGE: "web"}},
        "spec": serde_json::to_value(old.spec.unwrap()).unwrap()
    }))
    .unwrap();
    let bd: BatchDeployment = serde_json::from_value(json!({
        "apiVersion": "appimage.kuscia.secretflow/v1alpha1", "kind": "BatchDeployment",
        "metadata": {"name": "job", "namespace": "ns"},
        "spec": {"appImage": "web", "revision": 3, "nodeNames": ["n1"]}
    }))
    .unwrap();
    let cluster = Cluster {
        deployments: vec![manual, auto],
        replicasets: vec![rs],
        batches: vec![bd],
    };
    let ctx = ctx(
        client,
        &image,
        Some(revisions.clone()),
        Some(cluster),
        &mut writers,
    );
    reconcile(Arc::new(image), ctx).await.expect("reconciled");
    let deletes: Vec<String> = writes(&log)
        .into_iter()
        .filter(|l| l.starts_with("DELETE"))
        .collect();
    // Beyond the newest one only 4 and 5 are unused.
    let path = "/apis/appimage.kuscia.secretflow/v1alpha1/appimagerevisions";
    assert_eq!(
        deletes,
        [
            format!("DELETE {path}/web-5"),
            format!("DELETE {path}/web-4")
        ]
    );
}

#[tokio::test]
async fn a_blocked_revision_is_reported_once_per_workload_not_per_reconcile() {
    let (client, log) = mock();
    let mut writers = Writers::new();
    // Revision 2 is unsigned (no key is trusted): an Auto Deployment on 1 is not rolled to it.
    let image = image("v2", 10);
    let revisions: Vec<AppImageRevision> = (1..=2).map(revision).collect();
    let on_1 = json!({REVISION: "1", REVISION_HASH: revisions[0].spec.hash.clone()});
    let cluster = Cluster {
        deployments: vec![deployment("auto", on_1, "Auto")],
        ..Cluster::default()
    };
    let ctx = ctx(client, &image, Some(revisions), Some(cluster), &mut writers);
    let image = Arc::new(image);
    for _ in 0..3 {
        reconcile(image.clone(), ctx.clone())
            .await
            .expect("reconciled");
    }
    // On the code before issue 25: one RolloutBlocked Event per reconcile, 3.
    assert_eq!(events(&log).len(), 1, "{:?}", log.lock().unwrap());
    let deployments = writes(&log);
    assert!(
        !deployments.iter().any(|l| l.contains("/deployments/")),
        "a blocked revision was rolled out: {deployments:?}"
    );
}

/// The revision requests against an API server that answers with `answer`.
async fn reconcile_with(
    answer: impl Fn(&Seen) -> (u16, serde_json::Value) + Send + Sync + 'static,
    revisions: Vec<AppImageRevision>,
) -> (Result<Action, Error>, Vec<Seen>) {
    let (client, seen) = server(answer);
    let mut writers = Writers::new();
    let image = image("v1", 10);
    let ctx = ctx(
        client,
        &image,
        Some(revisions),
        Some(Cluster::default()),
        &mut writers,
    );
    let result = reconcile(Arc::new(image), ctx).await;
    let sent = crate::controllers::mock_api::writes(&seen);
    (result, sent)
}

const REVISIONS: &str = "/apis/appimage.kuscia.secretflow/v1alpha1/appimagerevisions";

#[tokio::test]
async fn a_new_spec_is_recorded_by_one_apply_owned_by_its_appimage() {
    let (result, sent) = reconcile_with(echo, Vec::new()).await;
    assert_eq!(result.expect("recorded"), Action::requeue(RESYNC));
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_apply(&sent[0], &format!("{REVISIONS}/web-1"), MANAGER);
    let body = &sent[0].body;
    assert_eq!(body["spec"]["revision"], 1);
    assert_eq!(body["spec"]["hash"], revision_hash(&spec("v1")));
    // From the type (controller_owner_ref), not written by hand.
    assert_eq!(
        body["metadata"]["ownerReferences"],
        json!([{"apiVersion": "kuscia.secretflow/v1alpha1", "kind": "AppImage",
            "name": "web", "uid": "uid-web", "controller": true}])
    );
}

#[tokio::test]
async fn a_recorded_spec_costs_no_write() {
    let (result, sent) = reconcile_with(echo, vec![revision(1)]).await;
    assert_eq!(result.expect("current"), Action::requeue(RESYNC));
    assert!(sent.is_empty(), "{sent:?}");
}

#[tokio::test]
async fn a_conflict_recording_is_an_error_labelled_conflict_after_one_apply() {
    let (result, sent) = reconcile_with(|_| (409, status(409, "Conflict")), Vec::new()).await;
    assert_eq!(result.expect_err("409").metric_label(), "conflict");
    assert_eq!(sent.len(), 1, "{sent:?}");
}

#[tokio::test]
async fn an_invalid_revision_keeps_its_name_and_a_written_one_is_waited_for() {
    let (client, seen) = server(echo);
    let mut writers = Writers::new();
    let image = image("v3", 10);
    // Revision 2 was not written by the controllers (its hash is not its template's): the
    // catalog never reads it, but knows it, so its number is not reused.
    let mut forged = revision(2);
    forged.spec.hash = "forged".into();
    let ctx = ctx(
        client,
        &image,
        Some(vec![revision(1), forged]),
        Some(Cluster::default()),
        &mut writers,
    );
    let image = Arc::new(image);
    let result = reconcile(image.clone(), ctx.clone()).await;
    assert_eq!(result.expect("recorded"), Action::requeue(RESYNC));
    // The catalog's watch has not brought web-3 yet: its number is not chosen again.
    let result = reconcile(image.clone(), ctx.clone()).await;
    assert_eq!(result.expect("waiting"), Action::requeue(COLD));
    let revisions = ctx.base.catalog.revisions();
    revisions.writer().apply(Event::Apply(revision(3)));
    let result = reconcile(image.clone(), ctx.clone()).await;
    assert_eq!(result.expect("current"), Action::requeue(RESYNC));
    let sent = crate::controllers::mock_api::writes(&seen);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_apply(&sent[0], &format!("{REVISIONS}/web-3"), MANAGER);
    let events: Vec<serde_json::Value> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.path.contains("/events"))
        .map(|r| r.body.clone())
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["reason"], "RevisionIgnored");
    assert_eq!(events[0]["related"]["name"], "web-2");
}
