//! The controller room: level-triggered loops that make the cluster match what the core's
//! pure functions want (`appimage::desired`). They run on the Lease holder only
//! ([`crate::leader`]); every replica serves admission.
//!
//! One shape (issue 25): every controller is a kube-runtime `Controller` on the shared
//! watches ([`Watches`]: one reflector per kind, slimmed by [`slim`], whose store and event
//! stream every controller subscribes to), with one [`Error`], per-object exponential
//! backoff ([`Backoff`], [`retry`]) and one module for writes ([`kube_ops`]).
//!
//! - [`services`]: the Services and NetworkPolicies of injected Pods.
//! - [`workloads`]: the Services of each workload.
//! - [`revisions`] and [`rollout`]: AppImage revisions, and rollouts that follow them.
//! - [`progressive`]: rollouts of a new revision wave by wave, behind health gates.
//! - [`batch`]: BatchDeployments, one AppImage deployed to many nodes as a job.
//! - [`start`]: workloads stored stopped by `deploy --start-at`, started at their time.

pub mod batch;
pub mod kube_ops;
#[cfg(test)]
mod mock_api;
pub mod progressive;
pub mod revisions;
pub mod rollout;
pub mod services;
pub mod slim;
pub mod start;
pub mod workloads;

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use appimage::admitted::SealKey;
use appimage::batch::BatchDeployment;
use appimage::progressive::AppImageRollout;
use futures::channel::mpsc;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::ListParams;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ReflectHandle, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use appimage::labels;

use crate::admission::{Policy, SignaturePolicy};
use crate::catalog::Catalog;
use crate::leader::Leadership;
use crate::metrics::Metrics;
use slim::Slim;

/// What a reconcile of any controller can fail with; the error policy retries the object
/// with per-object exponential backoff ([`Backoff`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A server-side apply (or a create) was refused or lost.
    #[error("apply: {0}")]
    Apply(#[source] kube::Error),
    /// A delete of an object we own.
    #[error("delete: {0}")]
    Delete(#[source] kube::Error),
    /// Any other request (a read, a status write).
    #[error("{0}")]
    Kube(#[from] kube::Error),
}

impl Error {
    /// The `reason` label of `appimage_webhook_reconcile_errors_total`.
    pub fn metric_label(&self) -> &'static str {
        let (what, e) = match self {
            Error::Apply(e) => ("apply", e),
            Error::Delete(e) => ("delete", e),
            Error::Kube(e) => ("request", e),
        };
        match e {
            kube::Error::Api(s) if s.code == 409 => "conflict",
            kube::Error::Api(s) if s.code == 403 => "forbidden",
            kube::Error::Api(_) => what,
            _ => "transport",
        }
    }
}

/// The bookkeeping every controller does around one reconcile: the reconcile counter and
/// latency by controller, and the object's backoff reset once it reconciled.
pub fn observe(
    ctx: &Context,
    controller: &'static str,
    backoff: &Backoff,
    key: &str,
    started: Instant,
    result: &Result<Action, Error>,
) {
    let outcome = if result.is_ok() { "ok" } else { "error" };
    ctx.metrics
        .observe_reconcile(controller, outcome, started.elapsed());
    if result.is_ok() {
        backoff.succeeded(key);
    }
}

/// The error policy every controller shares: count the error, log it, and retry the object
/// after its own backoff.
pub fn retry(
    ctx: &Context,
    controller: &'static str,
    backoff: &Backoff,
    key: String,
    error: &Error,
) -> Action {
    ctx.metrics
        .reconcile_error(controller, error.metric_label());
    let wait = backoff.failed(key.clone());
    tracing::warn!(controller, object = %key, "reconcile failed: {error} (retrying in {wait:?})");
    Action::requeue(wait)
}

/// Drain a controller's result stream, logging at debug what the error policy already logged.
pub async fn drain<T, E: std::fmt::Display>(
    controller: &'static str,
    results: impl futures::Stream<Item = Result<T, E>>,
) {
    results
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(controller, "{e}");
            }
        })
        .await;
}

/// The field manager of every server-side apply, and the Events' reporting controller.
pub const MANAGER: &str = labels::MANAGER;

/// Reconciles in flight at once per controller (kube-runtime's default is unbounded: 1,000
/// workloads changing at once made 1,000 reconciles, each with its own copies and its own
/// connection to the API server). The rollout's and batch's own writes go 32 at a time.
pub const CONCURRENCY: u16 = 16;

/// The configuration of every controller: bounded concurrency.
pub fn config() -> kube::runtime::controller::Config {
    kube::runtime::controller::Config::default().concurrency(CONCURRENCY)
}

/// Whether `store` has its initial list (a controller acts on no cold store, issue 25).
pub fn synced<K>(store: &Store<K>) -> bool
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    matches!(store.wait_until_ready().now_or_never(), Some(Ok(())))
}

/// Events buffered per subscriber of a shared watch.
const BUFFER: usize = 1024;

/// What every controller is given.
#[derive(Clone)]
pub struct Context {
    pub client: Client,
    pub catalog: Catalog,
    pub recorder: Recorder,
    pub metrics: Metrics,
    /// What the webhook seals injected Pods with; the Services controller acts only on Pods
    /// sealed with it (`None`: on none).
    pub seal_key: Option<SealKey>,
    /// The Events already published, so that each is published once (issue 25).
    pub told: Arc<Once>,
    /// Admission's signature policy, shared: with `require_signature` false, a signature that
    /// does not verify is warned about (an Event and a log line) and the rollout and batch
    /// controllers go on, as admission does; `signatures` says which signatures count.
    pub policy: Policy,
    /// The registry check of signed image ids (`--verify-image-ids`); `None`: off. The batch
    /// controller pulls the manifest it pins, as admission pins the app's Pods to it.
    pub registry: Option<Arc<crate::registry::Registry>>,
}

/// Keys seen: each report (an Event naming a workload and a revision, or a conflict) is made
/// once, not once per reconcile. Forgotten all at once past [`Once::LIMIT`] keys, so a
/// long-lived leader's memory stays bounded (a report is then made once more).
#[derive(Debug, Default)]
pub struct Once(Mutex<HashSet<String>>);

impl Once {
    const LIMIT: usize = 100_000;

    /// Whether `key` is new (and now seen).
    pub fn first(&self, key: String) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= Self::LIMIT {
            seen.clear();
        }
        seen.insert(key)
    }
}

/// The wait before retrying an object whose reconcile failed `failures` times in a row:
/// doubling from [`Backoff::BASE`], up to [`Backoff::CAP`].
pub fn backoff_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    Backoff::BASE
        .saturating_mul(1 << doublings)
        .min(Backoff::CAP)
}

/// Failures in a row per object (by key), for per-object exponential backoff: a failing
/// object waits longer each time, and the others are not held back.
#[derive(Debug, Default)]
pub struct Backoff(Mutex<HashMap<String, u32>>);

impl Backoff {
    pub const BASE: Duration = Duration::from_secs(1);
    pub const CAP: Duration = Duration::from_secs(120);

    /// One more failure of `key`: how long to wait before retrying it.
    pub fn failed(&self, key: String) -> Duration {
        let mut failures = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = failures.entry(key).or_default();
        *n = n.saturating_add(1);
        backoff_delay(*n)
    }

    /// `key` reconciled: its next failure starts from [`Backoff::BASE`] again.
    pub fn succeeded(&self, key: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

impl Context {
    pub fn new(client: Client, catalog: Catalog, metrics: Metrics, identity: &str) -> Context {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance: Some(identity.into()),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            catalog,
            metrics,
            seal_key: None,
            told: Arc::default(),
            policy: Policy {
                require_signature: true,
                signatures: SignaturePolicy::DEFAULT,
            },
            registry: None,
        }
    }
}

/// One shared watch: its store, a subscription for each controller, and the watch itself
/// (driven by [`run`] once every controller has subscribed). Objects enter the store slimmed
/// ([`slim`]).
pub struct Shared<K: Resource<DynamicType = ()> + Clone + 'static> {
    pub store: Store<K>,
    writer: reflector::store::Writer<K>,
    api: Api<K>,
    config: watcher::Config,
    /// A CRD's kind: while it cannot be listed the store is empty and ready (nothing of the
    /// kind can exist), and the watch starts once it can.
    crd: bool,
    /// Where deleted objects go: shared subscriptions carry only objects that exist.
    deleted: Mutex<Vec<mpsc::UnboundedSender<K>>>,
}

impl<K> Shared<K>
where
    K: Resource<DynamicType = ()> + Slim + Clone + Debug + Send + Sync + DeserializeOwned + 'static,
{
    /// A shared watch of every `K` matching `labels` (all of them when empty).
    fn new(client: &Client, labels: &str) -> Shared<K> {
        let (store, writer) = reflector::store_shared(BUFFER);
        let config = watcher::Config::default().page_size(crate::catalog::PAGE);
        Shared {
            store,
            writer,
            api: Api::all(client.clone()),
            config: if labels.is_empty() {
                config
            } else {
                config.labels(labels)
            },
            crd: false,
            deleted: Mutex::default(),
        }
    }

    /// A shared watch of a CRD's kind, which may not be installed.
    fn crd(client: &Client) -> Shared<K> {
        Shared {
            crd: true,
            ..Shared::new(client, "")
        }
    }

    /// Watch, filling the store and every subscription, until dropped.
    fn drive(self) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let Shared {
            mut writer,
            api,
            config,
            crd,
            deleted,
            ..
        } = self;
        let deleted = deleted.into_inner().unwrap_or_else(|p| p.into_inner());
        Box::pin(async move {
            if crd {
                until_listable(&api, &mut writer).await;
            }
            let events = watcher(api, config)
                .default_backoff()
                .modify(K::slim)
                .reflect_shared(writer);
            events
                .for_each(move |event| {
                    match event {
                        Ok(watcher::Event::Delete(object)) => {
                            for tx in &deleted {
                                let _ = tx.unbounded_send(object.clone());
                            }
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!("watch of {}: {e} (retrying)", K::plural(&())),
                    }
                    futures::future::ready(())
                })
                .await;
        })
    }

    /// A stream of the objects deleted, for a controller that remakes what it owns.
    pub fn deletions(&self) -> mpsc::UnboundedReceiver<K> {
        let (tx, rx) = mpsc::unbounded();
        self.deleted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(tx);
        rx
    }

    /// A stream of the objects changed, for one controller. It must be read: a subscriber
    /// that stops reading holds the watch back for every other one.
    #[allow(
        clippy::expect_used,
        reason = "store_shared always makes a subscribable writer"
    )]
    pub fn subscribe(&self) -> ReflectHandle<K> {
        self.writer
            .subscribe()
            .expect("a shared store always has subscribers")
    }
}

/// Until `api`'s kind can be listed. If it cannot at first, the store is made ready and empty
/// meanwhile: no object of an uninstalled CRD exists (its initial list replaces the empty one).
async fn until_listable<K>(api: &Api<K>, writer: &mut reflector::store::Writer<K>)
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + 'static,
{
    let params = ListParams::default().limit(1);
    let listable = || api.list_metadata(&params);
    let mut told = false;
    loop {
        match listable().await {
            Ok(_) => return,
            // Only a kind the server does not serve has none: any other error (a busy server,
            // a missing right) leaves the store unready, or "no rollout policy" would move
            // every Auto workload at once.
            Err(kube::Error::Api(s)) if s.code == 404 => {
                tracing::info!(
                    "{} are not served: none exists until they are",
                    K::plural(&())
                );
                writer.apply_watcher_event(&watcher::Event::Init);
                writer.apply_watcher_event(&watcher::Event::InitDone);
                while listable().await.is_err() {
                    tokio::time::sleep(CRD_POLL).await;
                }
                return;
            }
            Err(e) => {
                if !std::mem::replace(&mut told, true) {
                    tracing::warn!("{} cannot be listed yet ({e}); retrying", K::plural(&()));
                }
                tokio::time::sleep(LIST_RETRY).await;
            }
        }
    }
}

/// How soon a failed first list of a CRD's kind is tried again.
const LIST_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// How often an idle controller checks whether its CRD is installed.
const CRD_POLL: std::time::Duration = std::time::Duration::from_secs(10);

/// Until `api`'s kind can be listed (its CRD installed), logging once why the controller idles.
/// `events` (the controller's subscriptions, merged) is drained meanwhile: a shared subscriber
/// that stops reading holds the shared watch back for every other controller.
pub async fn wait_for_crd<K>(
    api: &Api<K>,
    install: &str,
    events: &mut (dyn futures::Stream<Item = ()> + Send + Unpin),
) where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned,
{
    let mut logged = false;
    loop {
        match api.list_metadata(&ListParams::default().limit(1)).await {
            Ok(_) => return,
            Err(e) if !logged => {
                tracing::info!(
                    "{} controller idle until they can be listed ({e}); {install}",
                    K::plural(&())
                );
                logged = true;
            }
            Err(_) => {}
        }
        let pause = tokio::time::sleep(CRD_POLL);
        tokio::pin!(pause);
        loop {
            tokio::select! {
                () = &mut pause => break,
                next = events.next() => if next.is_none() { (&mut pause).await; break; },
            }
        }
    }
}

/// The shared watches, one per kind (issue 25: before, Deployments and Jobs were watched four
/// times each). AppImages and their revisions are the catalog's watches, not these. Workloads and ReplicaSets are watched by the AppImage label, which `deploy`
/// and the batch controller put on every workload they make.
pub struct Watches {
    pub pods: Shared<Pod>,
    pub services: Shared<Service>,
    pub policies: Shared<NetworkPolicy>,
    pub deployments: Shared<Deployment>,
    pub statefulsets: Shared<StatefulSet>,
    pub daemonsets: Shared<DaemonSet>,
    pub jobs: Shared<Job>,
    pub cronjobs: Shared<CronJob>,
    pub replicasets: Shared<ReplicaSet>,
    pub nodes: Shared<Node>,
    pub batches: Shared<BatchDeployment>,
    pub rollouts: Shared<AppImageRollout>,
    /// The batch jobs' image pull Jobs and their Pods (label `BATCH_PREPULL`): they carry no
    /// AppImage label, so the workload watches above do not see them.
    pub pull_jobs: Shared<Job>,
    pub pull_pods: Shared<Pod>,
}

/// The label selector of every object the controllers make.
pub fn managed_selector() -> String {
    format!("{}={}", labels::MANAGED_BY, labels::MANAGER)
}

impl Watches {
    fn new(client: &Client) -> Watches {
        let image = labels::APP_IMAGE;
        Watches {
            pods: Shared::new(client, image),
            services: Shared::new(client, &managed_selector()),
            policies: Shared::new(client, &managed_selector()),
            deployments: Shared::new(client, image),
            statefulsets: Shared::new(client, image),
            daemonsets: Shared::new(client, image),
            jobs: Shared::new(client, image),
            cronjobs: Shared::new(client, image),
            replicasets: Shared::new(client, image),
            nodes: Shared::new(client, ""),
            batches: Shared::crd(client),
            rollouts: Shared::crd(client),
            pull_jobs: Shared::new(client, labels::BATCH_PREPULL),
            pull_pods: Shared::new(client, labels::BATCH_PREPULL),
        }
    }

    /// Every watch, driven until dropped.
    fn drive(self) -> impl Future<Output = ()> + Send {
        let w = self;
        futures::future::join_all([
            w.pods.drive(),
            w.services.drive(),
            w.policies.drive(),
            w.deployments.drive(),
            w.statefulsets.drive(),
            w.daemonsets.drive(),
            w.jobs.drive(),
            w.cronjobs.drive(),
            w.replicasets.drive(),
            w.nodes.drive(),
            w.batches.drive(),
            w.rollouts.drive(),
            w.pull_jobs.drive(),
            w.pull_pods.drive(),
        ])
        .map(drop)
    }
}

/// Run every controller until the future is dropped.
pub async fn run(ctx: Context) {
    let watches = Watches::new(&ctx.client);
    // Each subscribes now, before the watches start, so none misses an event.
    let controllers: Vec<Pin<Box<dyn Future<Output = ()> + Send>>> = vec![
        Box::pin(services::controller(ctx.clone(), &watches)),
        Box::pin(batch::controller(ctx.clone(), &watches)),
        // Revisions and rollouts (issue 17, sections 3 and 4).
        Box::pin(revisions::controller(ctx.clone(), &watches)),
        // Progressive rollouts (issue 28).
        Box::pin(progressive::controller(ctx.clone(), &watches)),
        // Services per workload (issue 17, section 2).
        Box::pin(workloads::controller(ctx.clone(), &watches)),
        // Delayed start (issue 17, section 1).
        Box::pin(start::controller(ctx.clone(), &watches)),
    ];
    futures::future::join(futures::future::join_all(controllers), watches.drive()).await;
}

/// Run the controllers while this replica leads; stop them when it stops leading.
pub async fn run_while_leading(ctx: Context, mut leadership: Leadership) {
    loop {
        leadership.wait_for(true).await;
        tracing::info!(
            identity = leadership.identity(),
            "leading: controllers started"
        );
        let running = tokio::spawn(run(ctx.clone()));
        let abort = running.abort_handle();
        tokio::select! {
            finished = running => {
                if let Err(e) = finished {
                    tracing::error!("controllers ended: {e}");
                }
                return;
            }
            () = leadership.wait_for(false) => {
                abort.abort();
                tracing::warn!(identity = leadership.identity(), "lost the Lease: controllers stopped");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_per_failure_up_to_the_cap_and_resets() {
        let delays: Vec<u64> = (1..=9).map(|n| backoff_delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 120, 120]);
        assert_eq!(backoff_delay(u32::MAX), Backoff::CAP);
        let backoff = Backoff::default();
        assert_eq!(backoff.failed("a".into()), Duration::from_secs(1));
        assert_eq!(backoff.failed("a".into()), Duration::from_secs(2));
        // Per object: another one starts from the base.
        assert_eq!(backoff.failed("b".into()), Duration::from_secs(1));
        assert_eq!(backoff.failed("a".into()), Duration::from_secs(4));
        backoff.succeeded("a");
        assert_eq!(backoff.failed("a".into()), Duration::from_secs(1));
    }

    #[test]
    fn once_is_once_per_key() {
        let once = Once::default();
        assert!(once.first("a".into()));
        assert!(!once.first("a".into()));
        assert!(once.first("b".into()));
    }
}
