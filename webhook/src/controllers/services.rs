//! The Services and NetworkPolicies that an injected Pod's port scopes and network policy call
//! for. Admission stays side-effect free; this controller makes the objects once the Pod is
//! stored (and so has a UID to own them).
//!
//! - The target state is the core's `desired::desired` of the stored Pod; who may write a name
//!   is the core's `desired::claim`.
//! - Writes are server-side applies under the field manager [`MANAGER`].
//! - A name held by an object we do not own is never overwritten: an Event and a log line instead.
//! - Objects whose Pod is gone are the cluster's garbage collector's: each is owned by its Pod.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use appimage::desired::{Claim, claim, desired_admitted, owner_pod};
use appimage::labels;
use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::kube_ops::{self, Propagation, Written};
use super::{Backoff, Context, Error, MANAGER, Watches};

/// This controller's name in metrics and logs.
const NAME: &str = "services";

/// Re-check a Pod whose object name is taken by someone else.
const CONFLICT_RETRY: Duration = Duration::from_secs(5);
/// Re-check every Pod this often even without events (level-triggered).
const RESYNC: Duration = Duration::from_secs(600);

struct Ctx {
    base: Context,
    services: Store<Service>,
    policies: Store<NetworkPolicy>,
    /// Failures in a row per Pod (by UID).
    backoff: Backoff,
    /// What was applied, so that what is current is not applied again.
    written: Written,
}

/// The Pod controller, on the shared watches.
pub fn controller(ctx: Context, watches: &Watches) -> impl Future<Output = ()> + Send + 'static {
    let pods = watches.pods.store.clone();
    // An object deleted by hand is remade: its Pod is reconciled.
    let deleted = futures::stream::select(
        watches.services.deletions().filter_map(owner_of),
        watches.policies.deletions().filter_map(owner_of),
    );
    let controller = Controller::for_shared_stream(watches.pods.subscribe(), pods)
        .with_config(super::config())
        .owns_shared_stream(watches.services.subscribe())
        .owns_shared_stream(watches.policies.subscribe())
        .reconcile_on(deleted);
    let ctx = Arc::new(Ctx {
        base: ctx,
        services: watches.services.store.clone(),
        policies: watches.policies.store.clone(),
        backoff: Backoff::default(),
        written: Written::default(),
    });
    super::drain(NAME, controller.run(reconcile, error_policy, ctx))
}

/// The Pod that owns `object`.
fn owner_of<K: Resource>(object: K) -> futures::future::Ready<Option<ObjectRef<Pod>>> {
    let meta = object.meta();
    let owner = owner_pod(meta).zip(meta.namespace.as_deref());
    futures::future::ready(owner.map(|((name, _), ns)| ObjectRef::new(name).within(ns)))
}

async fn reconcile(pod: Arc<Pod>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_pod(&pod, &ctx).await;
    let key = pod.uid().unwrap_or_default();
    super::observe(&ctx.base, NAME, &ctx.backoff, &key, started, &result);
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
        .and_then(|name| ctx.base.catalog.appimage(name));
    // A status the webhook did not seal (forged, copied, or written while it was bypassed)
    // builds nothing.
    let want = match &ctx.base.seal_key {
        Some(key) => desired_admitted(pod, image.as_ref(), key),
        None => Default::default(),
    };
    let client = &ctx.base.client;
    let mut applied = true;
    for svc in want.services {
        let api = Api::<Service>::namespaced(client.clone(), &ns);
        applied &= ensure(&api, &ctx.services, svc, pod, ctx).await?;
    }
    for np in want.network_policies {
        let api = Api::<NetworkPolicy>::namespaced(client.clone(), &ns);
        applied &= ensure(&api, &ctx.policies, np, pod, ctx).await?;
    }
    Ok(Action::requeue(if applied {
        RESYNC
    } else {
        CONFLICT_RETRY
    }))
}

fn error_policy(pod: Arc<Pod>, error: &Error, ctx: Arc<Ctx>) -> Action {
    let key = pod.uid().unwrap_or_default();
    super::retry(&ctx.base, NAME, &ctx.backoff, key, error)
}

/// Make `obj` exist as we want it (not applied again when current). Returns false when its
/// name is held by an object we do not own.
async fn ensure<K>(
    api: &Api<K>,
    store: &Store<K>,
    obj: K,
    pod: &Pod,
    ctx: &Ctx,
) -> Result<bool, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let name = obj.name_any();
    let ns = obj.namespace().unwrap_or_default();
    let (key, digest) = (kube_ops::key::<K>(&ns, &name), Written::digest(&obj));
    // Our own objects are in the shared store; anything else holding the name is read once.
    let cached = store.get(&ObjectRef::new(&name).within(&ns));
    let version = cached
        .as_ref()
        .and_then(|c| c.meta().resource_version.clone());
    if ctx.written.current(&key, digest, version.as_deref()) {
        return Ok(true);
    }
    let existing = match cached {
        Some(cached) => Some(K::clone(&cached)),
        None => api.get_opt(&name).await?,
    };
    match claim(existing.as_ref().map(|e| e.meta()), pod) {
        Claim::Free | Claim::Ours => {}
        Claim::Stale => {
            let existing = existing.as_ref().map(|e| e.meta());
            let uid = existing.and_then(|m| m.uid.clone());
            tracing::info!(kind = %K::kind(&()), %name, "replacing an object left by an earlier Pod");
            kube_ops::delete_owned(api, &name, uid, Propagation::Default).await?;
        }
        Claim::Foreign => {
            if let Some(existing) = &existing {
                report_conflict(existing, pod, &ctx.base).await;
            }
            return Ok(false);
        }
    }
    let result = apply(api, &name, &obj).await;
    let version = result
        .as_ref()
        .ok()
        .and_then(|o| o.meta().resource_version.clone());
    ctx.written.record(key, digest, version);
    result.map(|_| true)
}

/// Server-side apply as [`MANAGER`], forced: the fields we set are ours.
async fn apply<K>(api: &Api<K>, name: &str, obj: &K) -> Result<K, Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned,
{
    match kube_ops::apply(api, name, obj).await {
        Ok(stored) => Ok(stored),
        // A hand edit of a keyed list item (a Service port's number) leaves an item that
        // collides with ours: replace the lists whole, as they were made.
        Err(Error::Apply(kube::Error::Api(s))) if s.code == 422 => {
            tracing::info!(kind = %K::kind(&()), %name, "restoring an object edited by hand: {}", s.message);
            let params = PatchParams {
                field_manager: Some(MANAGER.into()),
                ..PatchParams::default()
            };
            api.patch(name, &params, &Patch::Merge(obj))
                .await
                .map_err(Error::Apply)
        }
        Err(e) => Err(e),
    }
}

async fn report_conflict<K>(existing: &K, pod: &Pod, ctx: &Context)
where
    K: Resource<DynamicType = ()>,
{
    let (kind, name) = (
        K::kind(&()),
        existing.meta().name.clone().unwrap_or_default(),
    );
    // Once per Pod and conflicting object, not once per reconcile (issue 25).
    let key = format!(
        "{kind}Conflict/{}/{}",
        pod.uid().unwrap_or_default(),
        existing.meta().uid.as_deref().unwrap_or_default()
    );
    if !ctx.told.first(key) {
        return;
    }
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::mock_api::{context, events, mock};

    #[tokio::test]
    async fn a_conflict_is_reported_once_per_pod_and_object() {
        let (client, log) = mock();
        let ctx = context(client);
        let meta = |name: &str, uid: &str| serde_json::json!({"metadata": {"name": name, "namespace": "ns", "uid": uid}});
        let pod: Pod = serde_json::from_value(meta("p", "uid-p")).unwrap();
        let svc: Service = serde_json::from_value(meta("p-web", "s1")).unwrap();
        let policy: NetworkPolicy = serde_json::from_value(meta("p", "n1")).unwrap();
        for _ in 0..3 {
            report_conflict(&svc, &pod, &ctx).await;
            report_conflict(&policy, &pod, &ctx).await;
        }
        // Before issue 25: one Event per reconcile, 6.
        assert_eq!(events(&log).len(), 2, "{:?}", log.lock().unwrap());
    }
}

#[cfg(test)]
#[path = "services_tests.rs"]
mod api_tests;
