//! The status must fit the API server's object limit (1.5 MiB) at 5,000 nodes. Each node's
//! entry is its name and a few short fields (at most about 235 bytes for a 63-character name, the
//! hostname limit nodes are named within); only the free-text messages can grow, so they are
//! cut to [`MESSAGE_BYTES`] each and [`MESSAGES_BUDGET`] in all, in node order. A node whose
//! message does not fit keeps its phase and reason: `describe` says the message was left out.
//! 5,000 failed nodes of 63-character names with every field set and the whole budget come to
//! about 1.3 MB (the test below), leaving room for the conditions and the rest.

use super::types::NodeStatus;

/// One node's message at most, in bytes.
pub const MESSAGE_BYTES: usize = 256;
/// All nodes' messages together at most, in bytes.
pub const MESSAGES_BUDGET: usize = 128 * 1024;
/// What a cut message ends with.
const CUT: &str = "…";

/// Cut the nodes' messages, their pulls' too, to the budget (deterministic: the nodes are
/// sorted by name).
pub fn fit(nodes: &mut [NodeStatus]) {
    let mut used = 0;
    for node in nodes {
        keep(&mut node.message, &mut used);
        if let Some(pull) = node.pull.as_mut() {
            keep(&mut pull.message, &mut used);
        }
    }
}

/// `message` cut, and kept while the budget lasts.
fn keep(message: &mut Option<String>, used: &mut usize) {
    let Some(text) = message.as_mut() else {
        return;
    };
    cut(text, MESSAGE_BYTES);
    if *used + text.len() > MESSAGES_BUDGET {
        *message = None;
        return;
    }
    *used += text.len();
}

/// `text` cut to at most `max` bytes on a character boundary, marked when cut.
fn cut(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let mut end = max - CUT.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(CUT);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::types::{BatchDeploymentStatus, NodePhase};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn failed(i: usize, message: &str) -> NodeStatus {
        NodeStatus {
            // 63 characters: the longest hostname label.
            node: format!("{:0>63}", format!("edge-{i}")),
            phase: NodePhase::Failed,
            reason: Some("BackoffLimitExceeded".into()),
            message: Some(message.into()),
            attempts: 3,
            auto_retries: 2,
            last_failure: Some("BackoffLimitExceeded".into()),
            retry_at: Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)),
            ..Default::default()
        }
    }

    #[test]
    fn five_thousand_failed_nodes_with_long_messages_fit_the_object_limit() {
        let long = "é".repeat(2000);
        let mut nodes: Vec<NodeStatus> = (0..5000).map(|i| failed(i, &long)).collect();
        let whole = BatchDeploymentStatus {
            nodes: nodes.clone(),
            ..Default::default()
        };
        let before = serde_json::to_vec(&whole).unwrap().len();
        assert!(
            before > 1_572_864,
            "the case must overflow without the budget: {before}"
        );
        fit(&mut nodes);
        let fitted = BatchDeploymentStatus {
            nodes: nodes.clone(),
            ..Default::default()
        };
        let size = serde_json::to_vec(&fitted).unwrap().len();
        assert!(size < 1_400_000, "{size} bytes");
        let kept: Vec<&String> = nodes.iter().filter_map(|n| n.message.as_ref()).collect();
        assert!(
            kept.iter()
                .all(|m| m.len() <= MESSAGE_BYTES && m.ends_with(CUT))
        );
        assert_eq!(
            kept.len(),
            MESSAGES_BUDGET / kept[0].len(),
            "the first ones keep theirs"
        );
        assert!(nodes[0].message.is_some() && nodes[4999].message.is_none());
        assert!(nodes.iter().all(|n| n.reason.is_some()));
    }

    #[test]
    fn five_thousand_failed_pulls_fit_the_object_limit() {
        use crate::batch::types::{PullPhase, PullStatus};
        let long = "x".repeat(2000);
        let mut nodes: Vec<NodeStatus> = (0..5000)
            .map(|i| NodeStatus {
                node: format!("{:0>63}", format!("edge-{i}")),
                phase: NodePhase::Failed,
                reason: Some("PullFailed".into()),
                message: Some(long.clone()),
                pull: Some(PullStatus {
                    phase: PullPhase::Failed,
                    reason: Some("ImagePullBackOff".into()),
                    message: Some(long.clone()),
                    start_time: Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)),
                }),
                ..Default::default()
            })
            .collect();
        fit(&mut nodes);
        let status = BatchDeploymentStatus {
            nodes,
            ..Default::default()
        };
        let size = serde_json::to_vec(&status).unwrap().len();
        assert!(size < 1_400_000, "{size} bytes");
    }

    #[test]
    fn short_messages_are_kept_as_they_are() {
        let mut nodes = vec![failed(1, "node edge-1 is not Ready")];
        fit(&mut nodes);
        assert_eq!(
            nodes[0].message.as_deref(),
            Some("node edge-1 is not Ready")
        );
    }
}
