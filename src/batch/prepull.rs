//! The image pre-pull phase (`spec.prePull`, issue 29; KubeEdge's image pre-pull jobs, IEF's
//! advice to pre-pull big images): once the nodes are chosen the job is `PrePulling`, a pull
//! Job per node (`pull_job`) pulls the AppImage's image there, and no Pod of the app exists
//! until every pull is decided. Then:
//! - a node whose pull failed (its Pod failed, a pull error such as ErrImagePull, or
//!   `prePull.timeout`) is never deployed to: it ends Failed, reason `PullFailed`, and counts
//!   against the job's `failureTolerance` like any failed node;
//! - more failed pulls than `prePull.failureTolerance` (default 0) fail the job at once,
//!   before any Pod of the app is created (condition reason `PrePullFailed`).
//!
//! A node that joins a Continuous job later pulls too, while the job runs: it is deployed to
//! once its pull succeeds, and fails (`PullFailed`) if it does not; a late pull never fails the
//! job, whose other nodes run already.
//!
//! Pure, like the machine that calls it: the pulls observed and `now` in, node statuses out.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::types::{
    BatchDeploymentSpec, DEFAULT_PULL_TIMEOUT, NodePhase, NodeStatus, PullCounts, PullPhase,
    PullStatus,
};
use crate::duration;

/// The reason of a node whose pull failed.
pub const PULL_FAILED: &str = "PullFailed";
/// The Failed condition's reason when more pulls failed than `prePull.failureTolerance`.
pub const PRE_PULL_FAILED: &str = "PrePullFailed";
/// A pull's reason when it was not done within `prePull.timeout`.
pub const PULL_TIMED_OUT: &str = "PullTimedOut";
/// Failed nodes named in the job's message at most (the rest are counted).
const NAMED: usize = 10;

/// What one node's pull Job reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PullOutcome {
    /// Not decided yet (no Pod yet, pulling, or started).
    Pulling,
    /// The image is on the node.
    Pulled,
    /// The pull failed for good: reason (CamelCase) and message.
    Failed { reason: String, message: String },
}

/// One node's pull Job as the controller reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullProgress {
    /// The pull Job's name (the one to delete).
    pub name: String,
    /// The job attempt (`status.attempts`) it was made for (its annotation).
    pub attempt: i32,
    pub outcome: PullOutcome,
}

pub fn enabled(spec: &BatchDeploymentSpec) -> bool {
    spec.pre_pull.is_some()
}

/// The longest pull on one node.
pub fn pull_timeout(spec: &BatchDeploymentSpec) -> Result<Duration, String> {
    let text = spec
        .pre_pull
        .as_ref()
        .and_then(|p| p.timeout.as_deref())
        .unwrap_or(DEFAULT_PULL_TIMEOUT);
    let limit = duration::parse(text)
        .map_err(|e| format!("spec.prePull.timeout: {e}; use a duration such as 2m or 90s"))?;
    if limit < Duration::from_secs(1) {
        return Err(format!(
            "spec.prePull.timeout is {text}; a pull needs at least 1s: use a duration such as 2m or 90s (default {DEFAULT_PULL_TIMEOUT})"
        ));
    }
    Ok(limit)
}

/// Nodes pulling at once.
pub fn concurrency(spec: &BatchDeploymentSpec) -> usize {
    spec.pre_pull
        .as_ref()
        .and_then(|p| p.concurrency)
        .map_or(usize::MAX, |c| c.max(1) as usize)
}

/// Failed pulls that still let the job go on, of `total` chosen nodes (default 0).
pub fn pull_tolerance(spec: &BatchDeploymentSpec, total: i32) -> Result<i32, String> {
    let value = spec
        .pre_pull
        .as_ref()
        .and_then(|p| p.failure_tolerance.as_ref());
    let limit = super::tolerance::tolerance(value, total).map_err(|what| {
        format!(
            "spec.prePull.failureTolerance: {what}; use a count such as 2 or a percentage such as \"20%\""
        )
    })?;
    Ok(limit.unwrap_or(0))
}

/// What is wrong with `spec.prePull`, naming the field and the fix; `None` if fine.
pub fn spec_error(spec: &BatchDeploymentSpec) -> Option<String> {
    let pre = spec.pre_pull.as_ref()?;
    if let Some(c) = pre.concurrency.filter(|c| *c < 1) {
        return Some(format!(
            "spec.prePull.concurrency is {c}; it must be at least 1 (unset pulls on every node at once)"
        ));
    }
    pull_timeout(spec)
        .err()
        .or_else(|| pull_tolerance(spec, 0).err())
}

/// Every node's pull waits (the start of a run, or of a retry for the nodes it reruns).
pub fn begin(nodes: &mut [NodeStatus]) {
    for node in nodes.iter_mut().filter(|n| !n.phase.done()) {
        node.pull = Some(PullStatus::default());
    }
}

/// Whether no pull is left to decide.
pub fn decided(nodes: &[NodeStatus]) -> bool {
    nodes
        .iter()
        .filter_map(|n| n.pull.as_ref())
        .all(|p| p.phase.done())
}

/// Whether any node still has a pull to decide.
pub fn undecided(nodes: &[NodeStatus]) -> bool {
    !decided(nodes)
}

/// One pre-pull step at `now`: the pulls in flight are decided from `pulls` (of this job
/// `attempt`) and their deadline, a node that is gone fails its pull, then pending pulls start
/// in node order while fewer than `prePull.concurrency` are in flight (a node not Ready waits without
/// a slot). Returns the time until the earliest deadline of a pull in flight.
pub fn advance(
    spec: &BatchDeploymentSpec,
    nodes: &mut [NodeStatus],
    ready: &BTreeMap<&str, bool>,
    pulls: &BTreeMap<String, PullProgress>,
    attempt: i32,
    now: Timestamp,
) -> Option<Duration> {
    let limit = pull_timeout(spec).unwrap_or(Duration::from_secs(300));
    for node in nodes.iter_mut().filter(|n| pulling(n)) {
        if !ready.contains_key(node.node.as_str()) {
            let message = format!("node {} does not exist (any more)", node.node);
            fail_pull(node, "NodeNotFound", &message);
            continue;
        }
        let seen = pulls.get(&node.node).filter(|p| p.attempt == attempt);
        observe(node, seen.map(|p| &p.outcome), limit, now);
    }
    start(spec, nodes, ready, now);
    nodes
        .iter()
        .filter(|n| pulling(n))
        .filter_map(|n| n.pull.as_ref()?.start_time.as_ref())
        .map(|t| {
            let left = limit.as_millis() as i64 - (now.as_millisecond() - t.0.as_millisecond());
            Duration::from_millis(left.max(0) as u64 + 1)
        })
        .min()
}

fn pulling(n: &NodeStatus) -> bool {
    n.pull
        .as_ref()
        .is_some_and(|p| p.phase == PullPhase::Pulling)
}

/// A pull in flight: pulled, failed by its Job, or failed by the deadline.
fn observe(node: &mut NodeStatus, seen: Option<&PullOutcome>, limit: Duration, now: Timestamp) {
    let started = node
        .pull
        .as_ref()
        .and_then(|p| p.start_time.as_ref())
        .map_or(now, |t| t.0);
    let late = now.as_millisecond() - started.as_millisecond() > limit.as_millis() as i64;
    match seen {
        Some(PullOutcome::Pulled) => {
            if let Some(p) = node.pull.as_mut() {
                p.phase = PullPhase::Pulled;
                p.reason = None;
                p.message = None;
            }
        }
        Some(PullOutcome::Failed { reason, message }) => fail_pull(node, reason, message),
        _ if late => {
            let message = format!(
                "the image was not pulled on node {} within prePull.timeout ({}s)",
                node.node,
                limit.as_secs()
            );
            fail_pull(node, PULL_TIMED_OUT, &message);
        }
        _ => {}
    }
}

/// The pull failed: the node is never deployed to.
fn fail_pull(node: &mut NodeStatus, reason: &str, message: &str) {
    node.pull = Some(PullStatus {
        phase: PullPhase::Failed,
        reason: Some(reason.into()),
        message: Some(message.into()),
        start_time: node.pull.as_ref().and_then(|p| p.start_time.clone()),
    });
    node.phase = NodePhase::Failed;
    node.reason = Some(PULL_FAILED.into());
    node.message = Some(format!(
        "the image pull on node {} failed ({reason}: {message}); the app is not deployed there",
        node.node
    ));
    node.retry_at = None;
}

/// Pending pulls start, in node order, within the concurrency.
fn start(
    spec: &BatchDeploymentSpec,
    nodes: &mut [NodeStatus],
    ready: &BTreeMap<&str, bool>,
    now: Timestamp,
) {
    let limit = concurrency(spec);
    let mut in_flight = nodes.iter().filter(|n| pulling(n)).count();
    for node in nodes.iter_mut().filter(|n| !n.phase.done()) {
        let Some(pull) = node.pull.as_mut().filter(|p| p.phase == PullPhase::Pending) else {
            continue;
        };
        match ready.get(node.node.as_str()) {
            None => {
                let message = format!("node {} does not exist (any more)", node.node);
                fail_pull(node, "NodeNotFound", &message);
                continue;
            }
            Some(false) => {
                pull.reason = Some("NodeNotReady".into());
                pull.message = Some(format!(
                    "node {} is not Ready; its pull starts when it returns, within the job's timeout",
                    node.node
                ));
                continue;
            }
            Some(true) => {}
        }
        if in_flight >= limit {
            pull.reason = None;
            pull.message = None;
            continue;
        }
        in_flight += 1;
        *pull = PullStatus {
            phase: PullPhase::Pulling,
            start_time: Some(Time(now)),
            ..Default::default()
        };
    }
}

/// Once every pull is decided: why the job fails, when more pulls failed than
/// `prePull.failureTolerance`; `None` lets it deploy to the nodes that pulled.
pub fn verdict(spec: &BatchDeploymentSpec, nodes: &[NodeStatus]) -> Option<String> {
    let total = nodes.iter().filter(|n| n.pull.is_some()).count() as i32;
    let failed: Vec<&NodeStatus> = nodes
        .iter()
        .filter(|n| {
            n.pull
                .as_ref()
                .is_some_and(|p| p.phase == PullPhase::Failed)
        })
        .collect();
    let tolerance = pull_tolerance(spec, total).unwrap_or(0);
    if failed.len() as i32 <= tolerance {
        return None;
    }
    let mut named: Vec<String> = failed
        .iter()
        .take(NAMED)
        .map(|n| {
            let reason = n.pull.as_ref().and_then(|p| p.reason.as_deref());
            format!("{} ({})", n.node, reason.unwrap_or(PULL_FAILED))
        })
        .collect();
    if failed.len() > NAMED {
        named.push(format!("and {} more", failed.len() - NAMED));
    }
    Some(format!(
        "the image pull failed on {} of {total} nodes: {}; more than prePull.failureTolerance ({tolerance}), so no Pod of the app was created",
        failed.len(),
        named.join(", ")
    ))
}

/// The job ends while pulls are undecided (timeout, bad input): they fail with its reason.
pub fn abandon(nodes: &mut [NodeStatus], reason: &str, message: &str) {
    for pull in nodes.iter_mut().filter_map(|n| n.pull.as_mut()) {
        if !pull.phase.done() {
            pull.phase = PullPhase::Failed;
            pull.reason = Some(reason.into());
            pull.message = Some(message.into());
        }
    }
}

/// A stop: the pulls in flight are halted (their Jobs deleted) and start again on continue.
pub fn halt(nodes: &mut [NodeStatus]) {
    for pull in nodes.iter_mut().filter_map(|n| n.pull.as_mut()) {
        if pull.phase == PullPhase::Pulling {
            *pull = PullStatus::default();
        }
    }
}

/// The pulls by phase; `None` when no node has one (a job without pre-pull).
pub fn counts(nodes: &[NodeStatus]) -> Option<PullCounts> {
    let pulls: Vec<PullPhase> = nodes
        .iter()
        .filter_map(|n| n.pull.as_ref().map(|p| p.phase))
        .collect();
    if pulls.is_empty() {
        return None;
    }
    let n = |phase: PullPhase| pulls.iter().filter(|p| **p == phase).count() as i32;
    Some(PullCounts {
        pending: n(PullPhase::Pending),
        pulling: n(PullPhase::Pulling),
        pulled: n(PullPhase::Pulled),
        failed: n(PullPhase::Failed),
    })
}
