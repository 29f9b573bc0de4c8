//! Services per workload (issue 17, section 2): for every Deployment, StatefulSet, DaemonSet,
//! Job and CronJob carrying the workload label and an AppImage label, the Services the core's
//! `workload::services` wants (one per Cluster or Domain port, `<workload>-<port>`, owned by the
//! workload; a StatefulSet's are headless, with its governing Service), made by server-side
//! apply as soon as the workload exists, before its Pods.
//!
//! - Level-triggered: every pass recomputes every workload's Services from the stores; a
//!   workload is applied again when it changed or one of its Services is missing.
//! - A name held by an object this workload does not own is never touched: a Warning Event on
//!   the workload and a log line instead. One left by an earlier workload of the same name
//!   (ours, another UID) is replaced.
//! - Services of a deleted workload are the garbage collector's (owner references).

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use appimage::desired::is_managed;
use appimage::labels;
use appimage::workload::{self, WORKLOAD, Workload};
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Service;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::{Context, MANAGER, Watches};

/// Look at every workload again this often even without events (a Service deleted by hand).
const RESYNC: Duration = Duration::from_secs(5);
/// Coalesce bursts of events into one pass.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// The stores of the five workload kinds, watched by the workload label.
struct Stores {
    deployments: Store<Deployment>,
    statefulsets: Store<StatefulSet>,
    daemonsets: Store<DaemonSet>,
    jobs: Store<Job>,
    cronjobs: Store<CronJob>,
}

impl Stores {
    /// Every workload now stored, as the core's [`Workload`] (not a Job a CronJob spawned).
    fn all(&self) -> Vec<Workload> {
        let mut out = Vec::new();
        out.extend(
            self.deployments
                .state()
                .into_iter()
                .map(|o| Workload::Deployment(wrap(o))),
        );
        out.extend(
            self.statefulsets
                .state()
                .into_iter()
                .map(|o| Workload::StatefulSet(wrap(o))),
        );
        out.extend(
            self.daemonsets
                .state()
                .into_iter()
                .map(|o| Workload::DaemonSet(wrap(o))),
        );
        out.extend(
            self.jobs
                .state()
                .into_iter()
                .map(|o| Workload::Job(wrap(o))),
        );
        out.extend(
            self.cronjobs
                .state()
                .into_iter()
                .map(|o| Workload::CronJob(wrap(o))),
        );
        // A CronJob's Jobs carry its workload label; they are its runs, not workloads.
        out.retain(workload::is_own_workload);
        out
    }
}

fn wrap<K: Clone>(o: std::sync::Arc<K>) -> Box<K> {
    Box::new(std::sync::Arc::unwrap_or_clone(o))
}

/// A shared-nothing watch of one kind by the workload label: its store and change stream.
fn watch<K>(client: &Client) -> (Store<K>, BoxStream<'static, ()>)
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let events = watcher(
        Api::<K>::all(client.clone()),
        watcher::Config::default().labels(WORKLOAD),
    )
    .default_backoff()
    .reflect(writer)
    .filter_map(|e| async move {
        if let Err(e) = &e {
            tracing::warn!("watch of {}: {e} (retrying)", K::plural(&()));
        }
        e.ok().map(|_| ())
    })
    .boxed();
    (store, events)
}

/// The controller; it reads our Services from the room's shared store.
pub fn controller(ctx: Context, watches: &Watches) -> impl Future<Output = ()> + Send + 'static {
    let services = watches.services.store.clone();
    async move {
        let client = ctx.client.clone();
        let (deployments, a) = watch::<Deployment>(&client);
        let (statefulsets, b) = watch::<StatefulSet>(&client);
        let (daemonsets, c) = watch::<DaemonSet>(&client);
        let (jobs, d) = watch::<Job>(&client);
        let (cronjobs, e) = watch::<CronJob>(&client);
        let stores = Stores {
            deployments,
            statefulsets,
            daemonsets,
            jobs,
            cronjobs,
        };
        let mut events = futures::stream::select_all([a, b, c, d, e]);
        let mut applied: HashMap<String, String> = HashMap::new();
        let mut tick = tokio::time::interval(RESYNC);
        loop {
            tokio::select! {
                next = events.next() => if next.is_none() { return },
                _ = tick.tick() => {}
            }
            tokio::time::sleep(DEBOUNCE).await;
            while let Some(Some(_)) = events.next().now_or_never() {}
            for w in stores.all() {
                if let Err(e) = reconcile(&w, &ctx, &services, &mut applied).await {
                    tracing::warn!(workload = %w.name(), namespace = %w.namespace(), "services: {e} (retrying)");
                    applied.remove(w.metadata().uid.as_deref().unwrap_or_default());
                }
            }
        }
    }
}

/// Make `w`'s Services exist, unless nothing changed since the last pass.
async fn reconcile(
    w: &Workload,
    ctx: &Context,
    services: &Store<Service>,
    applied: &mut HashMap<String, String>,
) -> Result<(), kube::Error> {
    let meta = w.metadata();
    let (Some(uid), Some(image_name)) = (
        meta.uid.as_deref(),
        meta.labels.as_ref().and_then(|l| l.get(labels::APP_IMAGE)),
    ) else {
        return Ok(());
    };
    if meta.deletion_timestamp.is_some() {
        return Ok(());
    }
    let Some(image) = ctx.catalog.appimage(image_name) else {
        return Ok(());
    };
    let owner = workload::owner_reference(w.kind(), w.name(), uid);
    let want = match workload::services(&image, w, Some(owner)) {
        Ok(want) => want,
        Err(e) => {
            tracing::warn!(workload = %w.name(), "no Services: {e}");
            return Ok(());
        }
    };
    let ns = w.namespace();
    let version = meta.resource_version.clone().unwrap_or_default();
    let present = want.iter().all(|s| {
        services
            .get(&ObjectRef::new(&s.name_any()).within(ns))
            .is_some()
    });
    if present && applied.get(uid) == Some(&version) {
        return Ok(());
    }
    let api = Api::<Service>::namespaced(ctx.client.clone(), ns);
    let mut all = true;
    for svc in want {
        all &= ensure(&api, services, &svc, w, uid, ctx).await?;
    }
    if all {
        applied.insert(uid.to_string(), version);
    }
    Ok(())
}

/// Apply `svc` unless its name is held by an object `w` (UID `uid`) does not own.
async fn ensure(
    api: &Api<Service>,
    store: &Store<Service>,
    svc: &Service,
    w: &Workload,
    uid: &str,
    ctx: &Context,
) -> Result<bool, kube::Error> {
    let name = svc.name_any();
    let existing = match store.get(&ObjectRef::new(&name).within(w.namespace())) {
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
                let dp = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: existing.uid(),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                match api.delete(&name, &dp).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                    Err(e) => return Err(e),
                }
            }
            _ => {
                report_conflict(&existing, w, ctx).await;
                return Ok(false);
            }
        }
    }
    let params = PatchParams::apply(MANAGER).force();
    api.patch(&name, &params, &Patch::Apply(svc)).await?;
    Ok(true)
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
