//! The controller room: level-triggered loops that make the cluster match what the core's
//! pure functions want (`appimage::desired`). They run on the Lease holder only
//! ([`crate::leader`]); every replica serves admission.
//!
//! The watches are shared: one reflector per kind, whose store and event stream every
//! controller subscribes to (kube-runtime's shared streams), instead of watches per concern.
//!
//! - [`services`]: the Services and NetworkPolicies of injected Pods.
//! - [`batch`]: BatchDeployments, one AppImage deployed to many nodes as a job.
//! - [`start`]: workloads stored stopped by `deploy --start-at`, started at their time.

pub mod batch;
#[cfg(test)]
mod mock_api;
pub mod revisions;
pub mod rollout;
pub mod services;
pub mod start;
pub mod workloads;

use std::fmt::Debug;
use std::pin::Pin;

use std::future::Future;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use appimage::admitted::SealKey;
use futures::StreamExt;
use futures::channel::mpsc;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::ListParams;
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

/// The field manager of every server-side apply, and the Events' reporting controller.
pub const MANAGER: &str = labels::MANAGER;

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
        }
    }
}

/// One shared watch: its store, a subscription for each controller, and the watch itself
/// (driven by [`run`] once every controller has subscribed).
pub struct Shared<K: Resource<DynamicType = ()> + Clone + 'static> {
    pub store: Store<K>,
    writer: reflector::store::Writer<K>,
    api: Api<K>,
    config: watcher::Config,
    /// Where deleted objects go: shared subscriptions carry only objects that exist.
    deleted: Mutex<Vec<mpsc::UnboundedSender<K>>>,
}

impl<K> Shared<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Send
        + Sync
        + DeserializeOwned
        + 'static,
{
    /// A shared watch of every `K` matching `labels`.
    fn new(client: &Client, labels: &str) -> Shared<K> {
        let (store, writer) = reflector::store_shared(BUFFER);
        Shared {
            store,
            writer,
            api: Api::all(client.clone()),
            config: watcher::Config::default().labels(labels),
            deleted: Mutex::default(),
        }
    }

    /// Watch, filling the store and every subscription, until dropped.
    fn drive(self) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let events = watcher(self.api, self.config)
            .default_backoff()
            .reflect_shared(self.writer);
        let deleted = self.deleted.into_inner().unwrap_or_else(|p| p.into_inner());
        Box::pin(events.for_each(move |event| {
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
        }))
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

    /// A stream of the objects changed, for one controller.
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

/// How often an idle controller checks whether its CRD is installed.
const CRD_POLL: std::time::Duration = std::time::Duration::from_secs(10);

/// Until `api`'s kind can be listed (its CRD installed), logging once why the controller idles.
/// `events` is drained meanwhile: a shared subscriber that stops reading holds the shared watch
/// back for every other controller.
pub async fn wait_for_crd<K, E>(api: &Api<K>, install: &str, events: &mut ReflectHandle<E>)
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned,
    E: Resource<DynamicType = ()> + Clone + 'static,
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

/// The shared watches: labelled Pods, and the Services and NetworkPolicies we manage.
pub struct Watches {
    pub pods: Shared<Pod>,
    pub services: Shared<Service>,
    pub policies: Shared<NetworkPolicy>,
}

/// The label selector of every object the controllers make.
pub fn managed_selector() -> String {
    format!("{}={}", labels::MANAGED_BY, labels::MANAGER)
}

impl Watches {
    fn new(client: &Client) -> Watches {
        Watches {
            pods: Shared::new(client, labels::APP_IMAGE),
            services: Shared::new(client, &managed_selector()),
            policies: Shared::new(client, &managed_selector()),
        }
    }
}

/// Run every controller until the future is dropped.
pub async fn run(ctx: Context) {
    let watches = Watches::new(&ctx.client);
    let controllers = futures::future::join(
        services::controller(ctx.clone(), &watches),
        batch::controller(ctx.clone(), &watches),
    );
    // Revisions and rollouts (issue 17, sections 3 and 4).
    let controllers =
        futures::future::join(controllers, revisions::controller(ctx.clone(), &watches));
    // Services per workload (issue 17, section 2).
    let controllers =
        futures::future::join(controllers, workloads::controller(ctx.clone(), &watches));
    // Delayed start (issue 17, section 1).
    let controllers = futures::future::join(controllers, start::controller(ctx.clone(), &watches));
    let Watches {
        pods,
        services,
        policies,
    } = watches;
    let drivers = futures::future::join3(pods.drive(), services.drive(), policies.drive());
    futures::future::join(controllers, drivers).await;
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
