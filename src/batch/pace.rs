//! How often a large job's status is written. At 5,000 nodes the status is about 340 KB, and
//! every write is a server-side apply of a 5,000-entry list plus its managed fields, sent on
//! to every watcher: written on each Pod that became Ready, it took the apiserver's time from
//! the controller-manager that makes those Pods Ready. A write that only records progress (no
//! action, the job's phase and conditions unchanged) waits until [`interval`] has passed since
//! the last one; every other write goes at once.

use std::time::Duration;

use super::machine::Step;
use super::types::BatchDeploymentStatus;

/// The longest a progress-only write waits.
const MAX_INTERVAL: Duration = Duration::from_secs(5);

/// The least time between two progress-only writes of a job of `nodes` nodes: 1 ms a node,
/// at most [`MAX_INTERVAL`] (100 nodes: 0.1 s; 5,000: 5 s).
pub fn interval(nodes: usize) -> Duration {
    (Duration::from_millis(1) * nodes as u32).min(MAX_INTERVAL)
}

/// Whether `step` changes nothing but progress since `before`: no action, the same phase and
/// conditions. Such a write may wait.
pub fn progress_only(before: &BatchDeploymentStatus, step: &Step) -> bool {
    step.actions.is_empty()
        && step.status.phase == before.phase
        && step.status.conditions == before.conditions
}

/// How long to hold `step`'s status write, given the time since the job's last write
/// (`None`: none by this process); `None`: write it now.
pub fn hold(
    before: &BatchDeploymentStatus,
    step: &Step,
    since_last: Option<Duration>,
) -> Option<Duration> {
    let wait = interval(step.status.nodes.len()).checked_sub(since_last?)?;
    (progress_only(before, step) && !wait.is_zero()).then_some(wait)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::machine::Action;
    use crate::batch::types::{NodeStatus, Phase};

    fn status(nodes: usize, phase: Phase) -> BatchDeploymentStatus {
        BatchDeploymentStatus {
            phase,
            nodes: (0..nodes)
                .map(|i| NodeStatus {
                    node: format!("n{i}"),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn step(status: BatchDeploymentStatus, actions: Vec<Action>) -> Step {
        Step {
            status,
            actions,
            requeue_after: None,
        }
    }

    #[test]
    fn the_interval_grows_with_the_nodes_up_to_five_seconds() {
        assert_eq!(interval(100), Duration::from_millis(100));
        assert_eq!(interval(1000), Duration::from_secs(1));
        assert_eq!(interval(5000), Duration::from_secs(5));
        assert_eq!(interval(50_000), Duration::from_secs(5));
    }

    #[test]
    fn progress_waits_for_the_interval_and_nothing_else_does() {
        let before = status(5000, Phase::Running);
        let mut progressed = status(5000, Phase::Running);
        progressed.nodes[0].pods = 1;
        let two = Some(Duration::from_secs(2));
        // Progress 2 s after the last write: held for the rest of the 5 s.
        let held = hold(&before, &step(progressed.clone(), vec![]), two);
        assert_eq!(held, Some(Duration::from_secs(3)));
        // Past the interval, or no write yet by this process: now.
        let late = Some(Duration::from_secs(6));
        assert_eq!(hold(&before, &step(progressed.clone(), vec![]), late), None);
        assert_eq!(hold(&before, &step(progressed.clone(), vec![]), None), None);
        // A step with actions: its status (the attempts it records) goes before them.
        let create = Action::Create {
            node: "n0".into(),
            name: "w-n0".into(),
            attempt: 1,
        };
        assert_eq!(hold(&before, &step(progressed, vec![create]), two), None);
        // A new phase (the job ends) goes at once.
        let done = status(5000, Phase::Succeeded);
        assert_eq!(hold(&before, &step(done, vec![]), two), None);
    }
}
