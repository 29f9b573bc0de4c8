//! The revisions controller (issue 17, section 3): every distinct spec of an AppImage becomes an
//! immutable, numbered AppImageRevision owned by the AppImage (so the garbage collector removes
//! them with it), at most `revisionHistoryLimit` are kept, and none that a workload's pod
//! template, a ReplicaSet (what `kubectl rollout undo` goes back to) or a live Pod names is ever
//! deleted. It then hands the current revision to [`super::rollout`].
//!
//! One queue keyed by AppImage: AppImages, their revisions, the workloads and Pods that name
//! them and the BatchDeployments that pin them all trigger the AppImage's reconcile
//! (level-triggered; a lost write is redone).
//!
//! Nothing is recorded or pruned on a cold cache: a reconcile waits until every store it reads
//! (revisions, Pods, each workload kind, ReplicaSets, BatchDeployments) has its initial list
//! (issue 25). Before, at every leader start `prune` saw no users and deleted revisions still
//! in use, and an empty revision store made `record` write `<name>-1` again.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use appimage::batch::BatchDeployment;
use appimage::labels;
use appimage::resource::AppImage;
use appimage::revision::{
    AppImageRevision, AppImageRevisionSpec, CHANGE_CAUSE, Known, check, history_limit, in_use,
    next_free, revision_name, to_prune,
};
use appimage::workload::revision_hash;
use futures::stream::BoxStream;
use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::core::GroupVersionKind;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::rollout::{self, Current, Told, Workload, follows};
use super::{Backoff, Context, MANAGER, Watches};

/// Re-check every AppImage this often (in-use sets change as Pods go).
const RESYNC: Duration = Duration::from_secs(120);
/// Look again this soon while a store is still receiving its initial list.
const COLD: Duration = Duration::from_millis(500);

struct Ctx {
    base: Context,
    revisions: Store<AppImageRevision>,
    pods: Store<Pod>,
    deployments: Store<Deployment>,
    statefulsets: Store<StatefulSet>,
    daemonsets: Store<DaemonSet>,
    cronjobs: Store<CronJob>,
    jobs: Store<Job>,
    replicasets: Store<ReplicaSet>,
    batches: Store<BatchDeployment>,
    told: Told,
    /// Ignored revisions already reported, by (UID, resourceVersion).
    ignored: Mutex<HashSet<(String, String)>>,
    /// Failures in a row per AppImage.
    backoff: Backoff,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Error(#[from] kube::Error);

/// A labelled watch of `K` and its store; the stream's objects map to their AppImage.
fn watch<K>(
    client: &Client,
) -> (
    Store<K>,
    impl Stream<Item = ObjectRef<AppImage>> + Send + use<K>,
)
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + Send
        + Sync
        + DeserializeOwned
        + 'static,
{
    let (store, writer) = reflector::store();
    let stream = watcher(
        Api::<K>::all(client.clone()),
        watcher::Config::default().labels(labels::APP_IMAGE),
    )
    .default_backoff()
    .reflect(writer)
    .touched_objects()
    .filter_map(|o| async move {
        let name = o.ok()?.labels().get(labels::APP_IMAGE)?.clone();
        Some(ObjectRef::new(&name))
    });
    (store, stream)
}

/// The controller, started once the AppImageRevision CRD is installed.
pub fn controller(ctx: Context, watches: &Watches) -> impl Future<Output = ()> + Send + 'static {
    let pods = watches.pods.store.clone();
    let mut pod_events = watches.pods.subscribe();
    async move {
        let api = Api::<AppImageRevision>::all(ctx.client.clone());
        super::wait_for_crd(&api, "install the chart's CRDs", &mut pod_events).await;
        let client = ctx.client.clone();
        let (deployments, d) = watch::<Deployment>(&client);
        let (statefulsets, s) = watch::<StatefulSet>(&client);
        let (daemonsets, ds) = watch::<DaemonSet>(&client);
        let (cronjobs, c) = watch::<CronJob>(&client);
        let (jobs, j) = watch::<Job>(&client);
        let (replicasets, r) = watch::<ReplicaSet>(&client);
        let (batches, b) = batch_pins(&client).await;
        let controller = Controller::new(
            Api::<AppImage>::all(client.clone()),
            watcher::Config::default(),
        );
        let (rev_store, rev_writer) = reflector::store();
        let rev_events = watcher(
            Api::<AppImageRevision>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(rev_writer)
        .touched_objects()
        .filter_map(|o| async move { Some(ObjectRef::new(&o.ok()?.spec.app_image)) });
        let pod_refs = pod_events.filter_map(|p| async move {
            Some(ObjectRef::new(p.labels().get(labels::APP_IMAGE)?))
        });
        let controller = controller.reconcile_on(futures::stream::select_all([
            d.boxed(),
            s.boxed(),
            ds.boxed(),
            c.boxed(),
            j.boxed(),
            r.boxed(),
            b,
            rev_events.boxed(),
            pod_refs.boxed(),
        ]));
        let ctx = Arc::new(Ctx {
            base: ctx,
            revisions: rev_store,
            pods,
            deployments,
            statefulsets,
            daemonsets,
            cronjobs,
            jobs,
            replicasets,
            batches,
            told: Told::default(),
            ignored: Mutex::default(),
            backoff: Backoff::default(),
        });
        controller
            .run(reconcile, error_policy, ctx)
            .for_each(|result| async move {
                if let Err(e) = result {
                    tracing::debug!("revisions reconcile: {e}");
                }
            })
            .await;
    }
}

/// The BatchDeployments' store, and their AppImages as they change. Without the CRD no
/// BatchDeployment can exist: the store is empty and ready, and the watch starts once the CRD
/// can be listed (its initial list then replaces the empty one).
async fn batch_pins(
    client: &Client,
) -> (
    Store<BatchDeployment>,
    BoxStream<'static, ObjectRef<AppImage>>,
) {
    let api = Api::<BatchDeployment>::all(client.clone());
    let (store, mut writer) = reflector::store();
    let listable = |api: Api<BatchDeployment>| async move {
        api.list_metadata(&ListParams::default().limit(1)).await
    };
    if let Err(e) = listable(api.clone()).await {
        tracing::info!(
            "BatchDeployments cannot be listed ({e}): none pins a revision until they can"
        );
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitDone);
    }
    let installed = async move {
        while listable(api.clone()).await.is_err() {
            tokio::time::sleep(super::CRD_POLL).await;
        }
        watcher(api, watcher::Config::default()).default_backoff()
    };
    let stream = futures::stream::once(installed)
        .flatten()
        .reflect(writer)
        .touched_objects()
        .filter_map(|o| async move { Some(ObjectRef::new(&o.ok()?.spec.app_image)) });
    (store, stream.boxed())
}

/// Whether every store a reconcile reads has its initial list (and the catalog, which the
/// rollout verifies against). Never waits: a cold reconcile is requeued instead.
fn stores_ready(ctx: &Ctx) -> bool {
    fn ready<K>(store: &Store<K>) -> bool
    where
        K: Resource<DynamicType = ()> + Clone + 'static,
    {
        matches!(store.wait_until_ready().now_or_never(), Some(Ok(())))
    }
    ready(&ctx.revisions)
        && ready(&ctx.pods)
        && ready(&ctx.deployments)
        && ready(&ctx.statefulsets)
        && ready(&ctx.daemonsets)
        && ready(&ctx.cronjobs)
        && ready(&ctx.jobs)
        && ready(&ctx.replicasets)
        && ready(&ctx.batches)
        && ctx.base.catalog.is_ready()
}

fn error_policy(image: Arc<AppImage>, error: &Error, ctx: Arc<Ctx>) -> Action {
    let wait = ctx.backoff.failed(image.name_any());
    tracing::warn!(appimage = %image.name_any(), "revisions reconcile failed: {error} (retrying in {wait:?})");
    Action::requeue(wait)
}

async fn reconcile(image: Arc<AppImage>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let result = reconcile_image(&image, &ctx).await;
    if result.is_ok() {
        ctx.backoff.succeeded(&image.name_any());
    }
    result
}

async fn reconcile_image(image: &AppImage, ctx: &Ctx) -> Result<Action, Error> {
    if image.metadata.deletion_timestamp.is_some() || image.metadata.uid.is_none() {
        return Ok(Action::await_change());
    }
    if !stores_ready(ctx) {
        return Ok(Action::requeue(COLD));
    }
    let name = image.name_any();
    let hash = revision_hash(&image.spec);
    let recorded = trusted(ctx, image).await;
    let mut known: Vec<Known> = recorded
        .iter()
        .map(|r| Known {
            number: r.spec.revision,
            hash: r.spec.hash.clone(),
        })
        .collect();
    let existing = recorded.iter().find(|r| r.spec.hash == hash).cloned();
    let (number, revision) = match existing {
        Some(r) => (r.spec.revision, Some(r)),
        None => {
            let numbers: Vec<i64> = known.iter().map(|k| k.number).collect();
            let taken = |n| {
                let key = ObjectRef::new(&revision_name(&name, n));
                ctx.revisions.get(&key).is_some()
            };
            let number = next_free(&numbers, taken);
            record(&ctx.base.client, image, number, &hash).await?;
            known.push(Known {
                number,
                hash: hash.clone(),
            });
            (number, None)
        }
    };
    let workloads = workloads(ctx, &name);
    prune(ctx, image, number, &known, &workloads).await?;
    let pods: Vec<Pod> = ctx
        .pods
        .state()
        .iter()
        .filter(|p| p.labels().get(labels::APP_IMAGE) == Some(&name))
        .map(|p| (**p).clone())
        .collect();
    let current = Current {
        image,
        number,
        hash: &hash,
        known: &known,
        revision: revision.as_deref(),
    };
    let rolled: Vec<Workload> = workloads
        .into_iter()
        .filter(|w| w.gvk.kind != "Job" && w.gvk.kind != "ReplicaSet" && follows(&w.meta, &name))
        .collect();
    rollout::roll(&ctx.base, &current, &rolled, &pods, &ctx.told).await;
    Ok(Action::requeue(RESYNC))
}

/// The revisions of `image` that pass [`check`] (hash, name, owner UID: issue 24); each one
/// that does not is ignored, with one Warning Event on the AppImage.
async fn trusted(ctx: &Ctx, image: &AppImage) -> Vec<Arc<AppImageRevision>> {
    let name = image.name_any();
    let uid = image.uid().unwrap_or_default();
    let mut out = Vec::new();
    for rev in ctx.revisions.state() {
        if rev.spec.app_image != name {
            continue;
        }
        match check(&rev, &uid) {
            Ok(()) => out.push(rev),
            Err(why) => ignored(ctx, image, &rev, why).await,
        }
    }
    out
}

/// Report an ignored revision once per version of it.
async fn ignored(ctx: &Ctx, image: &AppImage, rev: &AppImageRevision, why: String) {
    let key = (
        rev.uid().unwrap_or_default(),
        rev.resource_version().unwrap_or_default(),
    );
    let new = ctx
        .ignored
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key);
    if !new {
        return;
    }
    tracing::warn!(appimage = %image.name_any(), "{why}");
    let event = KubeEvent {
        type_: EventType::Warning,
        reason: "RevisionIgnored".into(),
        note: Some(why),
        action: "Record".into(),
        secondary: Some(rev.object_ref(&())),
    };
    if let Err(e) = ctx
        .base
        .recorder
        .publish(&event, &image.object_ref(&()))
        .await
    {
        tracing::warn!("cannot record an Event: {e}");
    }
}

/// Write revision `number` of `image` (server-side apply: a retry writes the same object).
async fn record(
    client: &Client,
    image: &AppImage,
    number: i64,
    hash: &str,
) -> Result<(), kube::Error> {
    let name = image.name_any();
    let annotations = image.metadata.annotations.as_ref();
    let task_id = annotations
        .and_then(|a| {
            a.get(labels::TASK_ID)
                .or_else(|| a.get(labels::OPT_TASK_ID))
        })
        .cloned();
    let mut rev = AppImageRevision::new(
        &revision_name(&name, number),
        AppImageRevisionSpec {
            app_image: name.clone(),
            revision: number,
            hash: hash.to_string(),
            change_cause: annotations.and_then(|a| a.get(CHANGE_CAUSE)).cloned(),
            task_id,
            template: image.spec.clone(),
        },
    );
    rev.metadata.labels =
        Some([(labels::MANAGED_BY.to_string(), labels::MANAGER.to_string())].into());
    rev.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "kuscia.secretflow/v1alpha1".into(),
        kind: "AppImage".into(),
        name: name.clone(),
        uid: image.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: None,
    }]);
    let api = Api::<AppImageRevision>::all(client.clone());
    let params = PatchParams::apply(MANAGER).force();
    api.patch(&rev.name_any(), &params, &Patch::Apply(&rev))
        .await?;
    tracing::info!(appimage = %name, revision = number, "recorded a new revision");
    Ok(())
}

/// Delete revisions beyond the history limit that nothing names.
async fn prune(
    ctx: &Ctx,
    image: &AppImage,
    current: i64,
    known: &[Known],
    workloads: &[Workload],
) -> Result<(), kube::Error> {
    let limit = match history_limit(image.metadata.annotations.as_ref()) {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(appimage = %image.name_any(), "{e}; keeping every revision");
            return Ok(());
        }
    };
    let name = image.name_any();
    let templates = workloads.iter().map(|w| {
        w.template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.as_ref())
    });
    let pods = ctx.pods.state();
    let pod_annotations = pods
        .iter()
        .filter(|p| p.labels().get(labels::APP_IMAGE) == Some(&name))
        .map(|p| p.metadata.annotations.as_ref());
    let batches = ctx.batches.state();
    let pins = batches
        .iter()
        .filter(|b| b.spec.app_image == name)
        .filter_map(|b| b.spec.revision);
    let in_use = in_use(templates.chain(pod_annotations), pins, known);
    let numbers: Vec<i64> = known.iter().map(|k| k.number).collect();
    let api = Api::<AppImageRevision>::all(ctx.base.client.clone());
    for number in to_prune(&numbers, limit, Some(current), &in_use) {
        let rev_name = revision_name(&name, number);
        let uid = ctx
            .revisions
            .get(&ObjectRef::new(&rev_name))
            .and_then(|r| r.uid());
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid,
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&rev_name, &dp).await {
            Ok(_) => tracing::info!(appimage = %name, revision = number, "pruned a revision"),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The workloads (and ReplicaSets, Jobs) whose pod template runs AppImage `name`, as one
/// shape: the rollout's own, Manual ones and a BatchDeployment's (which the rollout leaves
/// alone, see [`follows`]) all keep their revision in use.
fn workloads(ctx: &Ctx, name: &str) -> Vec<Workload> {
    let mut out = Vec::new();
    collect(
        &mut out,
        &ctx.deployments,
        name,
        &["spec", "template"],
        |d| d.spec.as_ref().map(|s| &s.template),
    );
    collect(
        &mut out,
        &ctx.statefulsets,
        name,
        &["spec", "template"],
        |d| d.spec.as_ref().map(|s| &s.template),
    );
    collect(
        &mut out,
        &ctx.daemonsets,
        name,
        &["spec", "template"],
        |d| d.spec.as_ref().map(|s| &s.template),
    );
    collect(
        &mut out,
        &ctx.cronjobs,
        name,
        &["spec", "jobTemplate", "spec", "template"],
        |c| {
            c.spec
                .as_ref()
                .and_then(|s| s.job_template.spec.as_ref())
                .map(|s| &s.template)
        },
    );
    collect(&mut out, &ctx.jobs, name, &["spec", "template"], |d| {
        d.spec.as_ref().map(|s| &s.template)
    });
    collect(
        &mut out,
        &ctx.replicasets,
        name,
        &["spec", "template"],
        |d| d.spec.as_ref().and_then(|s| s.template.as_ref()),
    );
    out
}

fn collect<K>(
    out: &mut Vec<Workload>,
    store: &Store<K>,
    name: &str,
    path: &'static [&'static str],
    template: impl Fn(&K) -> Option<&PodTemplateSpec>,
) where
    K: Resource<DynamicType = ()> + Clone,
{
    for obj in store.state() {
        let meta: &ObjectMeta = obj.meta();
        let Some(t) = template(&obj) else { continue };
        let owned_by_image = t
            .metadata
            .as_ref()
            .and_then(|m| m.labels.as_ref())
            .and_then(|l| l.get(labels::APP_IMAGE))
            .is_some_and(|v| v == name);
        if !owned_by_image {
            continue;
        }
        out.push(Workload {
            gvk: GroupVersionKind::gvk(&K::group(&()), &K::version(&()), &K::kind(&())),
            meta: meta.clone(),
            template: t.clone(),
            path,
        });
    }
}

#[cfg(test)]
#[path = "revisions_tests.rs"]
mod tests;
