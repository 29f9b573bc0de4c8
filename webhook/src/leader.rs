//! Leader election through a `coordination.k8s.io/v1` Lease, held with kube-lease-manager.
//! Every replica serves admission; only the Lease's holder runs the controllers, so two
//! replicas never write the same objects. A holder that dies stops renewing, and a standby
//! takes the Lease once it expires (within the lease duration).
//!
//! A leader also keeps its own deadline, as client-go's RenewDeadline: it stops leading at its
//! last successful renewal plus [`renew_deadline`], before others may see the Lease expire,
//! even while the API server is unreachable (issue 25: kube-lease-manager keeps reporting
//! leadership while its renewals fail, so the controllers ran on after the Lease expired and a
//! standby took it). A renewal is noted when the Lease write is sent, never later, so the
//! deadline is never later than the server's.

use std::sync::Arc;
use std::time::Duration;

use hyper::{Method, Request, Response};
use k8s_openapi::api::coordination::v1::Lease;
use kube::client::Body;
use tokio::time::Instant;

use anyhow::Context as _;
use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;

/// Where the Lease lives and how long a holder keeps it without renewing.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    /// Whole seconds, at least 2 (the holder renews a third of it before expiry).
    pub duration: Duration,
    /// This replica's name in the Lease's `holderIdentity`.
    pub identity: String,
}

/// The Pod's name when running in a Pod (`POD_NAME`), else the host name and process id, so
/// two processes on one machine differ.
pub fn default_identity() -> String {
    if let Ok(pod) = std::env::var("POD_NAME")
        && !pod.is_empty()
    {
        return pod;
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{host}-{}", std::process::id())
}

/// `POD_NAMESPACE` when running in a Pod, else `default`.
pub fn default_namespace() -> String {
    std::env::var("POD_NAMESPACE")
        .ok()
        .filter(|ns| !ns.is_empty())
        .unwrap_or_else(|| "default".into())
}

/// Whether this replica leads, as it currently sees it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Leadership {
    leading: watch::Receiver<bool>,
    identity: Arc<str>,
    /// Whether an election decides; without one this replica always leads.
    elected: bool,
}

impl Leadership {
    /// A replica that leads without an election (`--leader-elect=false`).
    pub fn always(identity: &str) -> Leadership {
        let (tx, leading) = watch::channel(true);
        // The receiver keeps the value after the sender is gone.
        drop(tx);
        Leadership {
            leading,
            identity: identity.into(),
            elected: false,
        }
    }

    pub fn is_leader(&self) -> bool {
        *self.leading.borrow()
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Completes once leadership is `leading`.
    pub async fn wait_for(&mut self, leading: bool) {
        if self.leading.wait_for(|l| *l == leading).await.is_ok() {
            return;
        }
        // The channel closed. Without an election nothing changes any more; an election that
        // ended no longer renews the Lease, so this replica does not lead.
        if self.elected && !leading {
            return;
        }
        std::future::pending().await
    }
}

/// A running election; dropping every [`Leadership`] and calling [`Election::resign`] releases
/// the Lease so a standby need not wait for it to expire.
pub struct Election {
    task: JoinHandle<()>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl Election {
    /// Give the Lease up (best effort, bounded by `limit`).
    pub async fn resign(self, leadership: Leadership, limit: Duration) {
        drop(leadership);
        let _ = self.stop.send(());
        if tokio::time::timeout(limit, self.task).await.is_err() {
            tracing::warn!("the Lease was not released within {limit:?}; it will expire");
        }
    }
}

/// How long after its last successful renewal a leader stops leading: the lease duration less
/// half the margin the manager renews with (a third of the duration, at least 1s), so a
/// renewal on time lands first, and every leader stops before its Lease expires.
pub fn renew_deadline(duration: Duration) -> Duration {
    let margin = Duration::from_secs((duration.as_secs() / 3).max(1));
    duration.saturating_sub(margin / 2)
}

/// Whether a replica that the election names leader still leads by its own clock: it renewed
/// less than `deadline` ago.
pub fn within_deadline(renewed: Option<Instant>, deadline: Duration, now: Instant) -> bool {
    renewed.is_some_and(|at| now.saturating_duration_since(at) < deadline)
}

/// `client`, noting in `renewed` when each successful write to Lease `namespace`/`name` that
/// leaves `identity` its holder was sent (the server renewed it no earlier). A write that
/// leaves another holder is no renewal: the manager's renewal patch has no precondition, so it
/// succeeds on a Lease a standby has taken.
fn noting_renewals(
    client: Client,
    lease: &LeaseConfig,
    renewed: watch::Sender<Option<Instant>>,
) -> Client {
    let (namespace, name) = (&lease.namespace, &lease.name);
    let identity: Arc<str> = lease.identity.as_str().into();
    let path = format!("/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}");
    let default_namespace = client.default_namespace().to_string();
    let service = tower::service_fn(move |request: Request<Body>| {
        let write = matches!(*request.method(), Method::PATCH | Method::PUT)
            && request.uri().path() == path;
        let (client, renewed, identity) = (client.clone(), renewed.clone(), identity.clone());
        async move {
            let sent = Instant::now();
            let response = client.send(request).await?;
            if !(write && response.status().is_success()) {
                return Ok(response);
            }
            let (parts, body) = response.into_parts();
            let body = body.collect_bytes().await?;
            if holder(&body).as_deref() == Some(&*identity) {
                renewed.send_replace(Some(sent));
            }
            Ok::<_, kube::Error>(Response::from_parts(parts, Body::from(body.to_vec())))
        }
    });
    Client::new(service, default_namespace)
}

/// The holder a Lease (as JSON) names.
fn holder(lease: &[u8]) -> Option<String> {
    let lease: Lease = serde_json::from_slice(lease).ok()?;
    lease.spec?.holder_identity
}

/// Campaign for the Lease until [`Election::resign`].
pub async fn campaign(
    client: Client,
    config: &LeaseConfig,
    metrics: Metrics,
) -> anyhow::Result<(Leadership, Election)> {
    let seconds = config.duration.as_secs();
    anyhow::ensure!(
        seconds >= 2,
        "--lease-duration must be at least 2s, got {:?}",
        config.duration
    );
    let (renewed_tx, renewed) = watch::channel(None);
    let client = noting_renewals(client, config, renewed_tx);
    let manager = LeaseManagerBuilder::new(client, &config.name)
        .with_namespace(&config.namespace)
        .with_identity(&config.identity)
        .with_field_manager(format!("appimage-webhook-{}", config.identity))
        .with_duration(seconds)
        .with_grace((seconds / 3).max(1))
        .build()
        .await
        .with_context(|| {
            format!(
                "Lease {}/{}: cannot read or create it (the webhook needs get, create and patch on leases there)",
                config.namespace, config.name
            )
        })?;
    let (elected, manager_task) = manager.watch().await;
    let (effective, leading) = watch::channel(false);
    let leadership = Leadership {
        leading,
        identity: config.identity.as_str().into(),
        elected: true,
    };
    let lease = format!("{}/{}", config.namespace, config.name);
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let judge = Judge {
        elected,
        renewed,
        effective,
        deadline: renew_deadline(config.duration),
        lease: lease.clone(),
        identity: config.identity.clone(),
        metrics: metrics.clone(),
    };
    let task = tokio::spawn(async move {
        judge.run(stopped).await;
        match manager_task.await {
            Ok(Ok(_)) => tracing::info!(lease = %lease, "Lease released"),
            Ok(Err(e)) => tracing::warn!(lease = %lease, "leader election ended: {e}"),
            Err(e) => tracing::warn!(lease = %lease, "leader election task failed: {e}"),
        }
        metrics.set_leader(false);
    });
    Ok((leadership, Election { task, stop }))
}

/// Decides whether this replica leads: the election says so and the last renewal is within
/// the deadline.
struct Judge {
    elected: watch::Receiver<bool>,
    renewed: watch::Receiver<Option<Instant>>,
    effective: watch::Sender<bool>,
    deadline: Duration,
    lease: String,
    identity: String,
    metrics: Metrics,
}

impl Judge {
    /// Until `stopped` (or the election ends); then, with the election's receiver dropped, the
    /// manager releases the Lease and ends.
    async fn run(mut self, mut stopped: tokio::sync::oneshot::Receiver<()>) {
        self.metrics.set_leader(false);
        loop {
            let renewed = *self.renewed.borrow();
            let leads =
                *self.elected.borrow() && within_deadline(renewed, self.deadline, Instant::now());
            if *self.effective.borrow() != leads {
                self.effective.send_replace(leads);
                self.metrics.set_leader(leads);
                let (lease, identity) = (&self.lease, &self.identity);
                tracing::info!(lease = %lease, identity = %identity, leader = leads, "leadership changed");
            }
            let expires = renewed.filter(|_| leads).map(|at| at + self.deadline);
            let deadline = async {
                match expires {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = self.elected.changed() => if changed.is_err() { break },
                changed = self.renewed.changed() => if changed.is_err() { break },
                () = deadline => tracing::warn!(
                    lease = %self.lease,
                    identity = %self.identity,
                    "no Lease renewal for {:?}: stopping the controllers before the Lease expires",
                    self.deadline
                ),
                _ = &mut stopped => break,
            }
        }
        self.effective.send_replace(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_comes_after_the_renewal_and_before_the_expiry() {
        // The manager renews a third of the duration (at least 1s) before expiry.
        assert_eq!(
            renew_deadline(Duration::from_secs(2)),
            Duration::from_millis(1500)
        );
        assert_eq!(
            renew_deadline(Duration::from_secs(15)),
            Duration::from_millis(12500)
        );
        for seconds in 2..120 {
            let duration = Duration::from_secs(seconds);
            let renews_at = duration - Duration::from_secs((seconds / 3).max(1));
            let deadline = renew_deadline(duration);
            assert!(renews_at < deadline && deadline < duration, "{seconds}s");
        }
    }

    #[test]
    fn a_leader_leads_only_within_the_deadline_of_its_last_renewal() {
        let deadline = Duration::from_secs(10);
        let renewed = Instant::now();
        assert!(within_deadline(Some(renewed), deadline, renewed));
        assert!(within_deadline(
            Some(renewed),
            deadline,
            renewed + Duration::from_secs(9)
        ));
        assert!(!within_deadline(
            Some(renewed),
            deadline,
            renewed + deadline
        ));
        assert!(!within_deadline(None, deadline, renewed));
    }

    #[test]
    fn a_renewal_counts_only_when_the_lease_names_this_replica() {
        let lease = |holder: &str| {
            serde_json::json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": holder}})
                .to_string()
        };
        assert_eq!(holder(lease("a").as_bytes()).as_deref(), Some("a"));
        assert_eq!(holder(lease("b").as_bytes()).as_deref(), Some("b"));
        assert_eq!(holder(br#"{"metadata": {}, "spec": {}}"#), None);
        assert_eq!(holder(b"not json"), None);
    }
}
