//! The nodes a job may choose, and how many Pods each gets: read by the state machine, by
//! continuous membership and by the overrides (kept apart so that none imports another back).

use std::collections::{BTreeMap, BTreeSet};

use super::types::BatchDeploymentSpec;

/// A Node as the job sees it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NodeFact {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Its `Ready` condition is True.
    pub ready: bool,
}

/// The chosen nodes, sorted: those named, plus those whose labels hold the whole selector.
/// Both empty chooses none (never every node).
pub fn select_nodes(spec: &BatchDeploymentSpec, nodes: &[NodeFact]) -> Vec<String> {
    let mut chosen: BTreeSet<String> = spec.node_names.iter().cloned().collect();
    if !spec.node_selector.is_empty() {
        let matches = |n: &&NodeFact| {
            spec.node_selector
                .iter()
                .all(|(k, v)| n.labels.get(k) == Some(v))
        };
        chosen.extend(nodes.iter().filter(matches).map(|n| n.name.clone()));
    }
    chosen.into_iter().collect()
}

/// Pods per node.
pub fn instances(spec: &BatchDeploymentSpec) -> i32 {
    spec.instances.unwrap_or(1)
}
