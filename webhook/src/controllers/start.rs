//! Delayed start (issue 17, section 1): a workload that `deploy --start-at` stored stopped (a
//! Deployment or StatefulSet at 0 replicas, a Job or CronJob suspended) is started when its
//! time comes. The decision and the apply body are the core's `workload::start`; this only
//! watches, waits and writes.
//!
//! - Level-triggered: each workload is looked at on every change and requeued at its start
//!   time; a leader that takes over starts whatever became due meanwhile.
//! - A `Controller` per kind on the shared (slimmed) watches of the workloads (issue 25:
//!   before, four metadata watches of its own); the annotations say when. The workload is read
//!   once, when due, and the start is decided again on it.
//! - Written once: the server-side apply carries the object's UID and resourceVersion, so a
//!   change made meanwhile (or a second controller) makes it fail and be decided again, and it
//!   records `started-at`, after which the workload is never touched (a later scale stays).
//! - Never fights a user: a workload started by hand before its time keeps its replicas; only
//!   `started-at` is recorded.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use appimage::workload::{START_AT, Start, Workload, start};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::slim::Slim;
use super::{Backoff, Context, Error, Shared, Watches, kube_ops};

/// This controller's name in metrics and logs.
const NAME: &str = "start";
/// The field manager of a start: its own, so that its fields (replicas or suspend, and
/// started-at) neither drop nor are dropped by what `deploy` and the other controllers apply.
pub const START_MANAGER: &str = "appimage-webhook-start";
/// Wake a little after the start time, never before it.
const SLACK: Duration = Duration::from_millis(50);

struct Ctx {
    base: Context,
    /// Failures in a row per workload UID.
    backoff: Backoff,
}

/// A kind `deploy --start-at` can store stopped.
trait Stoppable:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Slim
    + Clone
    + Debug
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    fn workload(self) -> Workload;
    fn shared(watches: &Watches) -> &Shared<Self>;
}

macro_rules! stoppable {
    ($k:ty, $variant:ident, $field:ident) => {
        impl Stoppable for $k {
            fn workload(self) -> Workload {
                Workload::$variant(Box::new(self))
            }
            fn shared(watches: &Watches) -> &Shared<Self> {
                &watches.$field
            }
        }
    };
}

stoppable!(Deployment, Deployment, deployments);
stoppable!(StatefulSet, StatefulSet, statefulsets);
stoppable!(Job, Job, jobs);
stoppable!(CronJob, CronJob, cronjobs);

/// The controller: one `Controller` per kind, on the shared watches.
pub fn controller(ctx: Context, watches: &Watches) -> impl Future<Output = ()> + Send + 'static {
    let ctx = Arc::new(Ctx {
        base: ctx,
        backoff: Backoff::default(),
    });
    let all = futures::future::join4(
        run::<Deployment>(ctx.clone(), watches),
        run::<StatefulSet>(ctx.clone(), watches),
        run::<Job>(ctx.clone(), watches),
        run::<CronJob>(ctx, watches),
    );
    async move {
        all.await;
    }
}

fn run<K: Stoppable>(
    ctx: Arc<Ctx>,
    watches: &Watches,
) -> impl Future<Output = ()> + Send + 'static {
    let shared = K::shared(watches);
    let controller = Controller::for_shared_stream(shared.subscribe(), shared.store.clone())
        .with_config(super::config());
    super::drain(NAME, controller.run(reconcile::<K>, error_policy::<K>, ctx))
}

fn key<K: Stoppable>(obj: &K) -> String {
    obj.meta().uid.clone().unwrap_or_default()
}

fn error_policy<K: Stoppable>(obj: Arc<K>, error: &Error, ctx: Arc<Ctx>) -> Action {
    super::retry(&ctx.base, NAME, &ctx.backoff, key(&*obj), error)
}

/// How long from `now` until `at`, and a little more.
fn until(at: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(at.duration_since(now)).unwrap_or_default() + SLACK
}

async fn reconcile<K: Stoppable>(obj: Arc<K>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_workload(&*obj, &ctx.base).await;
    super::observe(&ctx.base, NAME, &ctx.backoff, &key(&*obj), started, &result);
    result
}

async fn reconcile_workload<K: Stoppable>(obj: &K, ctx: &Context) -> Result<Action, Error> {
    // The annotations say when; nothing is read while the time has not come.
    let reference = reference::<K>(obj.meta());
    if obj.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let now = Timestamp::now();
    match start(&obj.clone().workload(), now) {
        Ok(Start::Nothing) => return Ok(Action::await_change()),
        Ok(Start::At(at)) => return Ok(Action::requeue(until(at, now))),
        Err(e) => {
            let note = format!("{e}; the workload stays stopped until it is fixed");
            publish(ctx, &reference, EventType::Warning, "StartFailed", note).await;
            return Ok(Action::await_change());
        }
        Ok(Start::Apply(_) | Start::Record(_)) => {}
    }
    // Due: decide again on the workload as it is now, and write with its UID and version.
    let api = Api::<K>::namespaced(ctx.client.clone(), obj.namespace().as_deref().unwrap_or(""));
    let Some(live) = api.get_opt(&obj.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let meta = live.meta().clone();
    let at = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(START_AT))
        .cloned()
        .unwrap_or_default();
    let now = Timestamp::now();
    let (mut body, reason, note) = match start(&live.workload(), now) {
        Ok(Start::Apply(body)) => {
            let what = started(&body);
            (body, "Started", format!("{what} at start-at {at}"))
        }
        Ok(Start::Record(body)) => (
            body,
            "StartedByHand",
            format!(
                "already running before its start-at {at} (scaled or unsuspended by hand): left as it is, start recorded"
            ),
        ),
        Ok(Start::At(at)) => return Ok(Action::requeue(until(at, now))),
        Ok(Start::Nothing) | Err(_) => return Ok(Action::await_change()),
    };
    body["metadata"]["uid"] = meta.uid.clone().into();
    body["metadata"]["resourceVersion"] = meta.resource_version.clone().into();
    kube_ops::apply_as(&api, START_MANAGER, &obj.name_any(), &body).await?;
    tracing::info!(kind = %K::kind(&()), workload = %obj.name_any(), namespace = ?obj.namespace(), "{note}");
    publish(ctx, &reference, EventType::Normal, reason, note).await;
    Ok(Action::await_change())
}

/// What an apply body does, for the Event.
fn started(body: &Value) -> String {
    match body["spec"]["replicas"].as_i64() {
        Some(n) => format!("started: scaled to {n} replicas"),
        None => "started: unsuspended".into(),
    }
}

fn reference<K: Stoppable>(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::api_version(&()).into()),
        kind: Some(K::kind(&()).into()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        ..Default::default()
    }
}

async fn publish(
    ctx: &Context,
    reference: &ObjectReference,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Start".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, reference).await {
        tracing::warn!("cannot record an Event: {e}");
    }
}

#[cfg(test)]
#[path = "start_tests.rs"]
mod api_tests;
