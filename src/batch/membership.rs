//! Continuous mode (`spec.mode: Continuous`): the job's nodes kept in step with its selector.
//! A node that comes to match joins as Pending; one that stops matching is marked leaving and,
//! after `spec.leaveGrace`, dropped from the status (its workload then goes, as for any node
//! the job does not hold); one that matches again within the grace stays. With `spec.prePull`
//! a node that joins pulls the image first, as the nodes chosen at the start did.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::nodes::{NodeFact, select_nodes};
use super::types::{BatchDeploymentSpec, DEFAULT_LEAVE_GRACE, Mode, NodeStatus, PullStatus};
use crate::duration;

/// The reason on a node that no longer matches, until it is dropped.
pub const LEAVING: &str = "Leaving";

pub fn continuous(spec: &BatchDeploymentSpec) -> bool {
    spec.mode == Some(Mode::Continuous)
}

/// How long a node that stops matching keeps the app.
pub fn leave_grace(spec: &BatchDeploymentSpec) -> Result<Duration, String> {
    let text = spec.leave_grace.as_deref().unwrap_or(DEFAULT_LEAVE_GRACE);
    duration::parse(text)
        .map_err(|e| format!("spec.leaveGrace: {e}; use a duration such as 30s or 5m"))
}

/// Joins and leaves at `now` (a joiner's pull `Pending` when `pull`: the job pre-pulls); the
/// time until the next leave is due, if any.
pub fn update(
    spec: &BatchDeploymentSpec,
    facts: &[NodeFact],
    nodes: &mut Vec<NodeStatus>,
    pull: bool,
    now: Timestamp,
) -> Option<Duration> {
    let chosen: BTreeSet<String> = select_nodes(spec, facts).into_iter().collect();
    let grace = leave_grace(spec).unwrap_or(Duration::from_secs(300));
    let held: BTreeSet<String> = nodes.iter().map(|n| n.node.clone()).collect();
    for name in chosen.difference(&held) {
        nodes.push(NodeStatus {
            node: name.clone(),
            pull: pull.then(PullStatus::default),
            ..Default::default()
        });
    }
    nodes.sort_by(|a, b| a.node.cmp(&b.node));
    let mut next: Option<Duration> = None;
    nodes.retain_mut(|n| {
        if chosen.contains(&n.node) {
            if n.leaving_since.take().is_some() && n.reason.as_deref() == Some(LEAVING) {
                n.reason = None;
                n.message = None;
            }
            return true;
        }
        let since = n.leaving_since.get_or_insert(Time(now)).0;
        let left = grace.as_millis() as i64 - (now.as_millisecond() - since.as_millisecond());
        if left <= 0 {
            return false;
        }
        n.reason = Some(LEAVING.into());
        n.message = Some(format!(
            "node {} no longer matches the selector; it loses the app {}s after that (spec.leaveGrace)",
            n.node,
            grace.as_secs()
        ));
        let wait = Duration::from_millis(left as u64 + 1);
        next = Some(next.map_or(wait, |w| w.min(wait)));
        true
    });
    next
}
