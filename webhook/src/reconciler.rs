//! The reconciler: the Services and NetworkPolicies that an injected Pod's port scopes and
//! network policy call for. Admission stays side-effect free; this controller, in the same
//! process, makes the objects once the Pod is stored (and so has a UID to own them).
//!
//! - The target state is the core's `desired::desired` of the stored Pod.
//! - A name held by an object we do not own is never overwritten: an Event and a log line instead.
//! - Objects whose Pod is gone are deleted by a sweep (test apiservers have no garbage collector,
//!   and real ones can lag).

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use appimage::desired::desired;
use appimage::labels;
use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cache::AppImages;
use crate::metrics::Metrics;

/// How often orphans are looked for (in memory; an API call only when one is found).
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Re-check a Pod whose object name is taken by someone else.
const CONFLICT_RETRY: Duration = Duration::from_secs(5);

struct Ctx {
    client: Client,
    appimages: AppImages,
    recorder: Recorder,
    metrics: Metrics,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Error(#[from] kube::Error);

fn managed_selector() -> String {
    format!("{}={}", labels::MANAGED_BY, labels::MANAGER)
}

/// Run until `shutdown`: the Pod controller and the orphan sweep.
pub async fn run(
    client: Client,
    appimages: AppImages,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let pods = Api::<Pod>::all(client.clone());
    let owned = watcher::Config::default().labels(&managed_selector());
    let controller = Controller::new(pods, watcher::Config::default().labels(labels::APP_IMAGE))
        .owns(Api::<Service>::all(client.clone()), owned.clone())
        .owns(Api::<NetworkPolicy>::all(client.clone()), owned)
        .graceful_shutdown_on(shutdown);
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        appimages,
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: labels::MANAGER.into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        ),
        metrics,
    });
    let sweeper = tokio::spawn(sweep(client));
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!("reconcile: {e}");
            }
        })
        .await;
    sweeper.abort();
}

async fn reconcile(pod: Arc<Pod>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_pod(&pod, &ctx).await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(_) => "error",
    };
    ctx.metrics.observe_reconcile(outcome, started.elapsed());
    result
}

async fn reconcile_pod(pod: &Pod, ctx: &Ctx) -> Result<Action, Error> {
    if pod.metadata.deletion_timestamp.is_some() || pod.metadata.uid.is_none() {
        return Ok(Action::await_change());
    }
    let ns = pod.namespace().unwrap_or_else(|| "default".into());
    let image = pod
        .labels()
        .get(labels::APP_IMAGE)
        .and_then(|name| ctx.appimages.get(name))
        .map(|stored| stored.appimage());
    let want = desired(pod, image.as_ref());
    let mut conflict = false;
    for svc in want.services {
        conflict |= !ensure(
            &Api::<Service>::namespaced(ctx.client.clone(), &ns),
            svc,
            pod,
            ctx,
        )
        .await?;
    }
    for np in want.network_policies {
        conflict |= !ensure(
            &Api::<NetworkPolicy>::namespaced(ctx.client.clone(), &ns),
            np,
            pod,
            ctx,
        )
        .await?;
    }
    Ok(if conflict {
        Action::requeue(CONFLICT_RETRY)
    } else {
        Action::requeue(Duration::from_secs(600))
    })
}

fn error_policy(pod: Arc<Pod>, error: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::warn!(pod = %pod.name_any(), namespace = ?pod.namespace(), "reconcile failed: {error} (retrying)");
    Action::requeue(Duration::from_secs(2))
}

/// The Pod's controller owner reference UID on `meta`, if it is a Pod.
fn owner_pod(meta: &kube::api::ObjectMeta) -> Option<(&str, &str)> {
    meta.owner_references.as_ref()?.iter().find_map(|o| {
        (o.kind == "Pod" && o.controller == Some(true)).then_some((o.name.as_str(), o.uid.as_str()))
    })
}

/// Make `obj` exist as we want it. Returns false when its name is held by an object we do not own.
async fn ensure<K>(api: &Api<K>, obj: K, pod: &Pod, ctx: &Ctx) -> Result<bool, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let name = obj.name_any();
    let pod_uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let kind = K::kind(&());
    if let Some(existing) = api.get_opt(&name).await? {
        match owner_pod(existing.meta()) {
            Some((_, uid)) if uid == pod_uid => {}
            // Left by an earlier Pod of the same name: ours, and stale.
            Some((owner, uid)) if owner == pod.name_any() && is_managed(existing.meta()) => {
                let dp = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: existing.meta().uid.clone(),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                tracing::info!(%kind, %name, stale_owner = uid, "replacing an object left by an earlier Pod");
                api.delete(&name, &dp).await?;
                api.create(&PostParams::default(), &obj).await?;
                return Ok(true);
            }
            _ => {
                let note = format!(
                    "{kind} {name:?} already exists and is not owned by this Pod; left alone. Delete or rename it to let appimage-webhook create its own."
                );
                tracing::warn!(pod = %pod.name_any(), namespace = ?pod.namespace(), "{note}");
                let event = Event {
                    type_: EventType::Warning,
                    reason: format!("{kind}Conflict"),
                    note: Some(note),
                    action: "Reconcile".into(),
                    secondary: Some(existing.object_ref(&())),
                };
                if let Err(e) = ctx.recorder.publish(&event, &pod.object_ref(&())).await {
                    tracing::warn!("cannot record an Event: {e}");
                }
                return Ok(false);
            }
        }
        // Ours: a merge patch restores what was edited by hand (lists such as Service ports
        // are replaced whole, where server-side apply would merge them by key), and the
        // apiserver makes it a no-op when nothing differs.
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&obj))
            .await?;
    } else {
        match api.create(&PostParams::default(), &obj).await {
            Ok(_) => {}
            // Another replica made it first: the next pass checks it.
            Err(kube::Error::Api(s)) if s.code == 409 => {
                tracing::debug!(%kind, %name, "created concurrently elsewhere");
                return Ok(false);
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(pod = %pod.name_any(), namespace = ?pod.namespace(), %kind, %name, "created");
    }
    Ok(true)
}

fn is_managed(meta: &kube::api::ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(labels::MANAGED_BY))
        .is_some_and(|v| v == labels::MANAGER)
}

/// Delete our Services and NetworkPolicies whose owning Pod is gone.
async fn sweep(client: Client) {
    let (pods, _p) = watch_store::<Pod>(&client, labels::APP_IMAGE);
    let (services, _s) = watch_store::<Service>(&client, &managed_selector());
    let (policies, _n) = watch_store::<NetworkPolicy>(&client, &managed_selector());
    // Until every cache is complete, a missing Pod proves nothing.
    if pods.wait_until_ready().await.is_err()
        || services.wait_until_ready().await.is_err()
        || policies.wait_until_ready().await.is_err()
    {
        return;
    }
    tracing::info!("orphan sweep running");
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        tick.tick().await;
        sweep_kind(&client, &pods, &services).await;
        sweep_kind(&client, &pods, &policies).await;
    }
}

/// A cache of the objects matching `labels`, and the task keeping it (aborted on drop).
fn watch_store<K>(client: &Client, labels: &str) -> (Store<K>, AbortOnDrop)
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Send
        + Sync
        + DeserializeOwned
        + 'static,
{
    let (reader, writer) = reflector::store::<K>();
    let stream = watcher(
        Api::<K>::all(client.clone()),
        watcher::Config::default().labels(labels),
    )
    .default_backoff()
    .reflect(writer);
    let task = tokio::spawn(async move {
        stream
            .for_each(|e| async move {
                if let Err(e) = e {
                    tracing::warn!("watch of {}: {e} (retrying)", K::plural(&()));
                }
            })
            .await;
    });
    (reader, AbortOnDrop(task))
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn sweep_kind<K>(client: &Client, pods: &Store<Pod>, objects: &Store<K>)
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned,
{
    for obj in objects.state() {
        let Some(ns) = obj.namespace() else { continue };
        let Some((owner, uid)) = owner_pod(obj.meta()) else {
            continue;
        };
        let alive = pods
            .get(&ObjectRef::new(owner).within(&ns))
            .is_some_and(|p| p.metadata.uid.as_deref() == Some(uid));
        if alive {
            continue;
        }
        // Re-check with the server: the Pod cache may lag a fresh Pod.
        let api = Api::<Pod>::namespaced(client.clone(), &ns);
        match api.get_opt(owner).await {
            Ok(Some(p)) if p.metadata.uid.as_deref() == Some(uid) => continue,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("sweep: cannot read Pod {ns}/{owner}: {e}");
                continue;
            }
        }
        let name = obj.name_any();
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: obj.meta().uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match Api::<K>::namespaced(client.clone(), &ns)
            .delete(&name, &dp)
            .await
        {
            Ok(_) => {
                tracing::info!(kind = %K::kind(&()), %name, namespace = %ns, "deleted: its Pod is gone")
            }
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => tracing::warn!(kind = %K::kind(&()), %name, "sweep delete failed: {e}"),
        }
    }
}
