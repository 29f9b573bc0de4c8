//! Leader election through a `coordination.k8s.io/v1` Lease, held with kube-lease-manager.
//! Every replica serves admission; only the Lease's holder runs the controllers, so two
//! replicas never write the same objects. A holder that dies stops renewing, and a standby
//! takes the Lease once it expires (within the lease duration).

use std::sync::Arc;
use std::time::Duration;

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
    let (leading, manager_task) = manager.watch().await;
    let leadership = Leadership {
        leading,
        identity: config.identity.as_str().into(),
        elected: true,
    };
    let mut observed = leadership.clone();
    let lease = format!("{}/{}", config.namespace, config.name);
    let (stop, mut stopped) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        metrics.set_leader(observed.is_leader());
        loop {
            tokio::select! {
                changed = observed.leading.changed() => if changed.is_err() { break },
                _ = &mut stopped => break,
            }
            let leader = observed.is_leader();
            metrics.set_leader(leader);
            tracing::info!(lease = %lease, identity = %observed.identity, leader, "leadership changed");
        }
        // With the last receiver gone, the manager releases the Lease and ends.
        drop(observed);
        match manager_task.await {
            Ok(Ok(_)) => tracing::info!(lease = %lease, "Lease released"),
            Ok(Err(e)) => tracing::warn!(lease = %lease, "leader election ended: {e}"),
            Err(e) => tracing::warn!(lease = %lease, "leader election task failed: {e}"),
        }
        metrics.set_leader(false);
    });
    Ok((leadership, Election { task, stop }))
}
