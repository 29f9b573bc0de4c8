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
//! (the catalog's AppImages and revisions, Pods, each workload kind, ReplicaSets,
//! BatchDeployments) has its initial list (issue 25). Before, at every leader start `prune` saw
//! no users and deleted revisions still in use, and an empty revision store made `record` write
//! `<name>-1` again.
//!
//! AppImages and their revisions are read from the catalog (no watch of their own), under its
//! freshness rule: the AppImage at the version the reconcile was triggered for, and a revision
//! this controller wrote waited for until the catalog holds it ([`Catalog::revision_seen`]).
//! The catalog's revision changes trigger the AppImage's reconcile.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use appimage::batch::BatchDeployment;
use appimage::labels;
use appimage::progressive::AppImageRollout;
use appimage::resource::AppImage;
use appimage::revision::{
    AppImageRevision, AppImageRevisionSpec, CHANGE_CAUSE, Known, check_owner, history_limit,
    in_use, next_free, revision_name, to_prune,
};
use appimage::workload::revision_hash;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::runtime::reflector::{self, ObjectRef, ReflectHandle, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::broadcast::error::RecvError;

use super::kube_ops::{self, Propagation};
use super::rollout::{self, Current, Templated, Told, Workload, follows};
use super::{Backoff, Context, Error, Watches};
use crate::catalog::{Catalog, Change, Recorded};

/// This controller's name in metrics and logs.
const NAME: &str = "revisions";
/// Re-check every AppImage this often (in-use sets change as Pods go).
const RESYNC: Duration = Duration::from_secs(120);
/// Look again this soon while a store is still receiving its initial list.
const COLD: Duration = Duration::from_millis(500);

struct Ctx {
    base: Context,
    pods: Store<Pod>,
    deployments: Store<Deployment>,
    statefulsets: Store<StatefulSet>,
    daemonsets: Store<DaemonSet>,
    cronjobs: Store<CronJob>,
    jobs: Store<Job>,
    replicasets: Store<ReplicaSet>,
    batches: Store<BatchDeployment>,
    /// AppImages whose Auto workloads a progressive rollout moves (issue 28).
    rollouts: Store<AppImageRollout>,
    told: Told,
    /// Ignored revisions already reported, by (UID, resourceVersion).
    ignored: Mutex<HashSet<(String, String)>>,
    /// The last revision written per AppImage, until the catalog holds it.
    written: Mutex<HashMap<String, (String, Instant)>>,
    /// Failures in a row per AppImage.
    backoff: Backoff,
}

impl Ctx {
    fn new(base: Context, w: &Watches) -> Ctx {
        Ctx {
            base,
            pods: w.pods.store.clone(),
            deployments: w.deployments.store.clone(),
            statefulsets: w.statefulsets.store.clone(),
            daemonsets: w.daemonsets.store.clone(),
            cronjobs: w.cronjobs.store.clone(),
            jobs: w.jobs.store.clone(),
            replicasets: w.replicasets.store.clone(),
            batches: w.batches.store.clone(),
            rollouts: w.rollouts.store.clone(),
            told: Told::default(),
            ignored: Mutex::default(),
            written: Mutex::default(),
            backoff: Backoff::default(),
        }
    }

    /// Whether the revision last written for AppImage `name` is in the catalog (or given up
    /// on): until then its number may look free.
    fn seen_written(&self, name: &str) -> bool {
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        let Some((rev, at)) = written.get(name) else {
            return true;
        };
        let seen = self.base.catalog.revision_seen(rev, *at);
        if seen {
            written.remove(name);
        }
        seen
    }
}

/// The AppImages that objects of a shared subscription name, by `name`.
fn refs<K>(
    handle: ReflectHandle<K>,
    name: fn(&K) -> Option<String>,
) -> BoxStream<'static, ObjectRef<AppImage>>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    handle
        .filter_map(move |o| futures::future::ready(name(&o).map(|n| ObjectRef::new(&n))))
        .boxed()
}

/// The AppImage label of an object.
fn labelled<K: Resource>(o: &K) -> Option<String> {
    o.meta().labels.as_ref()?.get(labels::APP_IMAGE).cloned()
}

/// The controller, started once the AppImageRevision CRD is installed.
pub fn controller(ctx: Context, w: &Watches) -> impl Future<Output = ()> + Send + 'static {
    let mut triggers = vec![
        refs(w.deployments.subscribe(), labelled),
        refs(w.statefulsets.subscribe(), labelled),
        refs(w.daemonsets.subscribe(), labelled),
        refs(w.cronjobs.subscribe(), labelled),
        refs(w.jobs.subscribe(), labelled),
        refs(w.replicasets.subscribe(), labelled),
        refs(w.pods.subscribe(), labelled),
        refs(w.batches.subscribe(), |b| Some(b.spec.app_image.clone())),
    ];
    let ctx = Arc::new(Ctx::new(ctx, w));
    async move {
        let client = ctx.base.client.clone();
        let api = Api::<AppImageRevision>::all(client.clone());
        {
            let mut drain = futures::stream::select_all(triggers.iter_mut().map(|t| t.map(drop)));
            super::wait_for_crd(&api, "install the chart's CRDs", &mut drain).await;
        }
        let (store, appimages) = appimages(ctx.base.catalog.clone());
        let controller = Controller::for_stream(appimages, store)
            .with_config(super::config())
            .reconcile_on(futures::stream::select_all(triggers));
        super::drain(NAME, controller.run(reconcile, error_policy, ctx)).await;
    }
}

/// The catalog's AppImages as the controller's objects (their kept metadata, no spec: the spec
/// is read from the catalog at reconcile), each one yielded when it or its revisions change,
/// and a store of them. The catalog owns the one AppImage watch and the one revision watch
/// (issue 25: before, a second of each here).
fn appimages(
    catalog: Catalog,
) -> (
    Store<AppImage>,
    impl Stream<Item = Result<AppImage, watcher::Error>> + Send + 'static,
) {
    let (store, writer) = reflector::store();
    let feed = Feed {
        changes: catalog.changes(),
        catalog,
        writer,
        pending: VecDeque::new(),
        started: false,
    };
    let stream = futures::stream::unfold(feed, |mut feed| async move {
        loop {
            if let Some(image) = feed.pending.pop_front() {
                return Some((Ok(image), feed));
            }
            let change = if feed.started {
                match feed.changes.recv().await {
                    Ok(change) => change,
                    Err(RecvError::Lagged(_)) => Change::All,
                    Err(RecvError::Closed) => return None,
                }
            } else {
                feed.catalog.store().wait_until_ready().await;
                feed.started = true;
                Change::All
            };
            feed.apply(change);
        }
    });
    (store, stream)
}

/// What [`appimages`] carries between changes.
struct Feed {
    catalog: Catalog,
    changes: tokio::sync::broadcast::Receiver<Change>,
    writer: reflector::store::Writer<AppImage>,
    /// AppImages changed and not yet yielded.
    pending: VecDeque<AppImage>,
    started: bool,
}

impl Feed {
    fn apply(&mut self, change: Change) {
        match change {
            Change::All => {
                self.writer.apply_watcher_event(&watcher::Event::Init);
                for name in self.catalog.names() {
                    if let Some(image) = self.catalog.controlled(&name) {
                        self.writer
                            .apply_watcher_event(&watcher::Event::InitApply(image.clone()));
                        self.pending.push_back(image);
                    }
                }
                self.writer.apply_watcher_event(&watcher::Event::InitDone);
            }
            Change::One(name) => match self.catalog.controlled(&name) {
                Some(image) => {
                    self.writer
                        .apply_watcher_event(&watcher::Event::Apply(image.clone()));
                    self.pending.push_back(image);
                }
                None => {
                    let spec = appimage::resource::AppImageSpec {
                        config_templates: Default::default(),
                        deploy_templates: Vec::new(),
                        image: Default::default(),
                    };
                    let gone = AppImage::new(&name, spec);
                    self.writer
                        .apply_watcher_event(&watcher::Event::Delete(gone));
                }
            },
        }
    }
}

/// Whether every store a reconcile reads has its initial list (and the catalog, which the
/// rollout verifies against). Never waits: a cold reconcile is requeued instead.
fn stores_ready(ctx: &Ctx) -> bool {
    use super::synced as ready;
    ready(&ctx.pods)
        && ready(&ctx.deployments)
        && ready(&ctx.statefulsets)
        && ready(&ctx.daemonsets)
        && ready(&ctx.cronjobs)
        && ready(&ctx.jobs)
        && ready(&ctx.replicasets)
        && ready(&ctx.batches)
        && ctx.base.catalog.is_ready()
        && ctx.base.catalog.revisions().is_ready()
}

fn error_policy(image: Arc<AppImage>, error: &Error, ctx: Arc<Ctx>) -> Action {
    super::retry(&ctx.base, NAME, &ctx.backoff, image.name_any(), error)
}

async fn reconcile(image: Arc<AppImage>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_image(&image, &ctx).await;
    super::observe(
        &ctx.base,
        NAME,
        &ctx.backoff,
        &image.name_any(),
        started,
        &result,
    );
    result
}

async fn reconcile_image(root: &AppImage, ctx: &Ctx) -> Result<Action, Error> {
    if root.metadata.deletion_timestamp.is_some() || root.metadata.uid.is_none() {
        return Ok(Action::await_change());
    }
    if !stores_ready(ctx) {
        return Ok(Action::requeue(COLD));
    }
    // The spec is the catalog's, at the version this reconcile was triggered for (the
    // catalog's freshness rule); gone from it, the AppImage is being deleted.
    let name = root.name_any();
    let catalog = &ctx.base.catalog;
    let Some(stored) = catalog.appimage(&name) else {
        return Ok(Action::await_change());
    };
    if !catalog.fresh(&name, root.metadata.resource_version.as_deref()) || !ctx.seen_written(&name)
    {
        return Ok(Action::requeue(COLD));
    }
    let image = &AppImage {
        metadata: root.metadata.clone(),
        spec: stored.spec,
    };
    let hash = revision_hash(&image.spec);
    let recorded = trusted(ctx, image).await;
    let mut known: Vec<Known> = recorded
        .iter()
        .map(|r| Known {
            number: r.number,
            hash: r.hash.to_string(),
        })
        .collect();
    let existing = recorded.iter().find(|r| *r.hash == hash).cloned();
    let (number, revision) = match existing {
        Some(r) => (r.number, Some(r)),
        None => {
            let numbers: Vec<i64> = known.iter().map(|k| k.number).collect();
            // Invalid revisions count: their names are taken.
            let taken = |n| {
                catalog
                    .revisions()
                    .named(&revision_name(&name, n))
                    .is_some()
            };
            let number = next_free(&numbers, taken);
            record(&ctx.base.client, image, number, &hash).await?;
            let written = (revision_name(&name, number), Instant::now());
            ctx.written
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name.clone(), written);
            known.push(Known {
                number,
                hash: hash.clone(),
            });
            (number, None)
        }
    };
    let workloads = workloads(ctx, &name);
    prune(ctx, image, number, &known, &workloads).await?;
    let pods: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.labels().get(labels::APP_IMAGE) == Some(&name))
        .collect();
    let current = Current {
        image,
        number,
        hash: &hash,
        known: &known,
        revision: revision.as_deref(),
    };
    rollout::tell_deprecated(&ctx.base, image, &workloads).await;
    // With a rollout policy, its controller moves the Auto workloads wave by wave.
    let Some(progressive) = super::progressive::has_policy(&ctx.rollouts, &name) else {
        return Ok(Action::requeue(COLD));
    };
    let rolled: Vec<Workload> = workloads
        .into_iter()
        .filter(|w| w.gvk.kind != "Job" && w.gvk.kind != "ReplicaSet" && follows(w.meta(), &name))
        .filter(|w| !(progressive && rollout::is_auto(w)))
        .collect();
    rollout::roll(&ctx.base, &current, &rolled, &pods, &ctx.told).await;
    Ok(Action::requeue(RESYNC))
}

/// The revisions of `image` that the catalog reads (hash, name, owner reference: issue 24)
/// and that its current UID owns; each one that is not is ignored, with one Warning Event on
/// the AppImage.
async fn trusted(ctx: &Ctx, image: &AppImage) -> Vec<Arc<Recorded>> {
    let uid = image.uid().unwrap_or_default();
    let mut out = Vec::new();
    for rev in ctx.base.catalog.revisions().of(&image.name_any()) {
        let owner = rev.owner.as_deref().unwrap_or_default();
        let checked = match &rev.read {
            Ok(_) => check_owner(&rev.name, &rev.appimage, owner, &uid),
            Err(why) => Err(why.to_string()),
        };
        match checked {
            Ok(()) => out.push(rev),
            Err(why) => ignored(ctx, image, &rev, why).await,
        }
    }
    out
}

/// Report an ignored revision once per version of it.
async fn ignored(ctx: &Ctx, image: &AppImage, rev: &Recorded, why: String) {
    let uid = rev.uid.as_deref().map(str::to_string);
    let key = (
        uid.clone().unwrap_or_default(),
        rev.resource_version.to_string(),
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
        secondary: Some(ObjectReference {
            api_version: Some(AppImageRevision::api_version(&()).into_owned()),
            kind: Some(AppImageRevision::kind(&()).into_owned()),
            name: Some(rev.name.to_string()),
            uid,
            resource_version: Some(rev.resource_version.to_string()),
            ..ObjectReference::default()
        }),
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
async fn record(client: &Client, image: &AppImage, number: i64, hash: &str) -> Result<(), Error> {
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
    rev.metadata.owner_references = kube_ops::owner_ref(image).map(|o| vec![o]);
    let api = Api::<AppImageRevision>::all(client.clone());
    kube_ops::apply(&api, &rev.name_any(), &rev).await?;
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
) -> Result<(), Error> {
    let limit = match history_limit(image.metadata.annotations.as_ref()) {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(appimage = %image.name_any(), "{e}; keeping every revision");
            return Ok(());
        }
    };
    let name = image.name_any();
    let templates = workloads.iter().map(|w| {
        w.template()
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
            .base
            .catalog
            .revisions()
            .named(&rev_name)
            .and_then(|r| r.uid.as_deref().map(str::to_string));
        kube_ops::delete_owned(&api, &rev_name, uid, Propagation::Default).await?;
        tracing::info!(appimage = %name, revision = number, "pruned a revision");
    }
    Ok(())
}

/// The workloads (and ReplicaSets, Jobs) whose pod template runs AppImage `name`, as one
/// shape: the rollout's own, Manual ones and a BatchDeployment's (which the rollout leaves
/// alone, see [`follows`]) all keep their revision in use. The stores' objects, shared.
fn workloads(ctx: &Ctx, name: &str) -> Vec<Workload> {
    let mut out = Vec::new();
    collect(&mut out, &ctx.deployments, name);
    collect(&mut out, &ctx.statefulsets, name);
    collect(&mut out, &ctx.daemonsets, name);
    collect(&mut out, &ctx.cronjobs, name);
    collect(&mut out, &ctx.jobs, name);
    collect(&mut out, &ctx.replicasets, name);
    out
}

fn collect<K: Templated + Clone>(out: &mut Vec<Workload>, store: &Store<K>, name: &str) {
    for obj in store.state() {
        let runs = obj
            .pod_template()
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.labels.as_ref())
            .and_then(|l| l.get(labels::APP_IMAGE))
            .is_some_and(|v| v == name);
        if runs {
            out.extend(Workload::new(obj));
        }
    }
}

#[cfg(test)]
#[path = "revisions_tests.rs"]
mod tests;
