//! Services per workload (issue 17, section 2): for every Deployment, StatefulSet, DaemonSet,
//! Job and CronJob carrying the workload label and an AppImage label, the Services the core's
//! `workload::services` wants (one per Cluster or Domain port, `<workload>-<port>`, owned by the
//! workload; a StatefulSet's are headless, with its governing Service), made by server-side
//! apply as soon as the workload exists, before its Pods.
//!
//! - One kube-runtime `Controller` per kind on the shared watches (issue 25: before, a full
//!   pass over every workload per event and every 5 s). A workload is reconciled when it
//!   changes, when one of its Services changes or is deleted, and every [`RESYNC`].
//! - A Service is applied again only when it is not what the last apply made (`Written`: a
//!   digest of the body and the version answered): a Deployment's status writes cost nothing.
//! - A name held by an object this workload does not own is never touched: a Warning Event on
//!   the workload and a log line instead. One left by an earlier workload of the same name
//!   (ours, another UID) is replaced.
//! - Services of a deleted workload are the garbage collector's (owner references).

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use appimage::desired::is_managed;
use appimage::labels;
use appimage::workload::{self, Workload};
use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Service;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::kube_ops::{self, Propagation, Written};
use super::{Backoff, Context, Error, Shared, Watches};

/// This controller's name in metrics and logs.
const NAME: &str = "workloads";
/// Look at every workload again this often (an AppImage's ports changed).
const RESYNC: Duration = Duration::from_secs(60);
/// Look again this soon when a name is held by someone else, or the AppImage is not known yet.
const RETRY: Duration = Duration::from_secs(5);

struct Ctx {
    base: Context,
    services: Store<Service>,
    /// What was applied, so that what is current is not applied again.
    written: Written,
    /// Failures in a row per workload UID.
    backoff: Backoff,
}

/// A workload kind: its shared watch and its shape in the core.
trait Kind:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + super::slim::Slim
    + Clone
    + Debug
    + Send
    + Sync
    + DeserializeOwned
    + 'static
{
    fn workload(self) -> Workload;
    fn shared(watches: &Watches) -> &Shared<Self>;
}

macro_rules! kind {
    ($k:ty, $variant:ident, $field:ident) => {
        impl Kind for $k {
            fn workload(self) -> Workload {
                Workload::$variant(Box::new(self))
            }
            fn shared(watches: &Watches) -> &Shared<Self> {
                &watches.$field
            }
        }
    };
}

kind!(Deployment, Deployment, deployments);
kind!(StatefulSet, StatefulSet, statefulsets);
kind!(DaemonSet, DaemonSet, daemonsets);
kind!(Job, Job, jobs);
kind!(CronJob, CronJob, cronjobs);

/// The controller: one `Controller` per kind, on the shared watches of the workloads and of
/// our Services.
pub fn controller(ctx: Context, watches: &Watches) -> impl Future<Output = ()> + Send + 'static {
    let ctx = Arc::new(Ctx {
        base: ctx,
        services: watches.services.store.clone(),
        written: Written::default(),
        backoff: Backoff::default(),
    });
    let all = futures::future::join5(
        run::<Deployment>(ctx.clone(), watches),
        run::<StatefulSet>(ctx.clone(), watches),
        run::<DaemonSet>(ctx.clone(), watches),
        run::<Job>(ctx.clone(), watches),
        run::<CronJob>(ctx, watches),
    );
    async move {
        all.await;
    }
}

fn run<K: Kind>(ctx: Arc<Ctx>, watches: &Watches) -> impl Future<Output = ()> + Send + 'static {
    let shared = K::shared(watches);
    // A Service deleted by hand is remade: its workload is reconciled.
    let deleted = watches.services.deletions().filter_map(|svc| async move {
        let ns = svc.namespace()?;
        let owner = svc.owner_references().iter().find(|o| {
            o.controller == Some(true)
                && o.kind == K::kind(&())
                && o.api_version == K::api_version(&())
        })?;
        Some(ObjectRef::<K>::new(&owner.name).within(&ns))
    });
    let controller = Controller::for_shared_stream(shared.subscribe(), shared.store.clone())
        .with_config(super::config())
        .owns_shared_stream(watches.services.subscribe())
        .reconcile_on(deleted);
    super::drain(NAME, controller.run(reconcile::<K>, error_policy::<K>, ctx))
}

fn key<K: Kind>(obj: &K) -> String {
    obj.meta().uid.clone().unwrap_or_default()
}

async fn reconcile<K: Kind>(obj: Arc<K>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let started = Instant::now();
    let w = K::clone(&obj).workload();
    let result = reconcile_workload(&w, &ctx).await;
    super::observe(&ctx.base, NAME, &ctx.backoff, &key(&*obj), started, &result);
    result
}

fn error_policy<K: Kind>(obj: Arc<K>, error: &Error, ctx: Arc<Ctx>) -> Action {
    super::retry(&ctx.base, NAME, &ctx.backoff, key(&*obj), error)
}

/// Make `w`'s Services exist, unless they were applied as wanted and are all there.
async fn reconcile_workload(w: &Workload, ctx: &Ctx) -> Result<Action, Error> {
    let meta = w.metadata();
    let (Some(uid), Some(image_name)) = (
        meta.uid.as_deref(),
        meta.labels.as_ref().and_then(|l| l.get(labels::APP_IMAGE)),
    ) else {
        return Ok(Action::await_change());
    };
    if meta.deletion_timestamp.is_some() || !workload::is_own_workload(w) {
        return Ok(Action::await_change());
    }
    // Not known yet (or not at all): look again, the catalog's watch may bring it.
    let Some(image) = spec_of(w, image_name, &ctx.base) else {
        return Ok(Action::requeue(RETRY));
    };
    let owner = workload::owner_reference(w.kind(), w.name(), uid);
    let want = match workload::services(&image, w, Some(owner)) {
        Ok(want) => want,
        Err(e) => {
            tracing::warn!(workload = %w.name(), "no Services: {e}");
            return Ok(Action::requeue(RESYNC));
        }
    };
    let api = Api::<Service>::namespaced(ctx.base.client.clone(), w.namespace());
    let mut all = true;
    for svc in want {
        all &= ensure(&api, &svc, w, uid, ctx).await?;
    }
    Ok(Action::requeue(if all { RESYNC } else { RETRY }))
}

/// The AppImage as the revision `w`'s pod template names (issue 28: a workload moved back to
/// an older revision gets that revision's Services back, with its image and config); the
/// current spec when the template names none, or one the catalog cannot find.
fn spec_of(w: &Workload, image_name: &str, ctx: &Context) -> Option<appimage::resource::AppImage> {
    let annotations = w
        .pod_template()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref());
    let named = appimage::revision::named(annotations).ok()?;
    // The common case, a template naming no revision: the stored AppImage, looked up once.
    if named == appimage::revision::Named::Current {
        return ctx.catalog.appimage(image_name);
    }
    match ctx.catalog.lookup_named(image_name, &named) {
        Ok(Some(p)) if p.fallback.is_none() => {
            ctx.catalog
                .appimage(image_name)
                .map(|current| appimage::resource::AppImage {
                    metadata: current.metadata,
                    spec: p.image().spec,
                })
        }
        _ => ctx.catalog.appimage(image_name),
    }
}

/// Apply `svc` unless its name is held by an object `w` (UID `uid`) does not own.
async fn ensure(
    api: &Api<Service>,
    svc: &Service,
    w: &Workload,
    uid: &str,
    ctx: &Ctx,
) -> Result<bool, Error> {
    let name = svc.name_any();
    let ns = w.namespace();
    let (key, digest) = (kube_ops::key::<Service>(ns, &name), Written::digest(svc));
    let cached = ctx.services.get(&ObjectRef::new(&name).within(ns));
    let version = cached.as_ref().and_then(|c| c.resource_version());
    if ctx.written.current(&key, digest, version.as_deref()) {
        return Ok(true);
    }
    let existing = match cached {
        Some(cached) => Some(Service::clone(&cached)),
        None => api.get_opt(&name).await?,
    };
    if let Some(existing) = existing {
        let owner = existing
            .owner_references()
            .iter()
            .find(|o| o.controller == Some(true))
            .cloned();
        match owner {
            Some(o) if o.uid == uid => {}
            // Ours, left by an earlier workload of this name: replace it.
            Some(o)
                if is_managed(existing.meta())
                    && o.kind == w.kind().as_str()
                    && o.name == w.name() =>
            {
                kube_ops::delete_owned(api, &name, existing.uid(), Propagation::Default).await?;
            }
            _ => {
                report_conflict(&existing, w, &ctx.base).await;
                return Ok(false);
            }
        }
    }
    let result = kube_ops::apply(api, &name, svc).await;
    let version = result.as_ref().ok().and_then(|s| s.resource_version());
    ctx.written.record(key, digest, version);
    result.map(|_| true)
}

async fn report_conflict(existing: &Service, w: &Workload, ctx: &Context) {
    let name = existing.name_any();
    // Once per workload and conflicting Service, not once per pass (issue 25).
    let key = format!(
        "ServiceConflict/{}/{}",
        w.metadata().uid.as_deref().unwrap_or_default(),
        existing.uid().unwrap_or_default()
    );
    if !ctx.told.first(key) {
        return;
    }
    let note = format!(
        "Service {name:?} already exists and is not owned by {} {:?}; left alone. Delete or rename it to let appimage-webhook create the workload's Service.",
        w.kind().as_str(),
        w.name()
    );
    tracing::warn!(workload = %w.name(), namespace = %w.namespace(), "{note}");
    let event = Event {
        type_: EventType::Warning,
        reason: "ServiceConflict".into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: Some(existing.object_ref(&())),
    };
    if let Err(e) = ctx.recorder.publish(&event, &reference(w)).await {
        tracing::warn!("cannot record an Event: {e}");
    }
}

/// The workload as an Event's regarding object.
pub fn reference(w: &Workload) -> k8s_openapi::api::core::v1::ObjectReference {
    let meta = w.metadata();
    k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some(w.kind().api_version().into()),
        kind: Some(w.kind().as_str().into()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        field_path: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::mock_api::{context, events, mock};

    #[tokio::test]
    async fn a_service_conflict_is_reported_once_per_workload_and_service() {
        let (client, log) = mock();
        let ctx = context(client);
        let meta = |uid: &str| serde_json::json!({"metadata": {"name": "web", "namespace": "ns", "uid": uid}});
        let w = Workload::Deployment(Box::new(serde_json::from_value(meta("uid-web")).unwrap()));
        let svc = |uid: &str| -> Service { serde_json::from_value(meta(uid)).unwrap() };
        for _ in 0..3 {
            report_conflict(&svc("s1"), &w, &ctx).await;
        }
        // Before issue 25: one Event per pass, 3.
        assert_eq!(events(&log).len(), 1, "{:?}", log.lock().unwrap());
        // Another Service of that name (re-created by someone else) is reported again.
        report_conflict(&svc("s2"), &w, &ctx).await;
        assert_eq!(events(&log).len(), 2);
    }
}

#[cfg(test)]
#[path = "workloads_tests.rs"]
mod api_tests;
