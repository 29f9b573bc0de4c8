//! The pre-pull phase through the whole machine, on a small simulated world: the step's
//! actions are carried out on maps of pull Jobs and workloads, and the test decides each pull.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::batch::prepull::{PRE_PULL_FAILED, PULL_FAILED, PULL_TIMED_OUT, PullOutcome};
use crate::batch::types::PrePull;

const T0: i64 = 1_700_000_000;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(T0 + secs).unwrap()
}

fn spec(pre: PrePull) -> BatchDeploymentSpec {
    BatchDeploymentSpec {
        app_image: "app".into(),
        node_selector: BTreeMap::from([("pool".into(), "edge".into())]),
        pre_pull: Some(pre),
        ..Default::default()
    }
}

fn tolerate(n: i32) -> PrePull {
    PrePull {
        failure_tolerance: Some(IntOrString::Int(n)),
        ..Default::default()
    }
}

struct World {
    bd: BatchDeployment,
    obs: Observed,
    last: Vec<Action>,
    /// Every app workload ever created, by node.
    ever: Vec<String>,
}

impl World {
    /// `n` Ready nodes n01.. labelled pool=edge.
    fn new(n: usize, spec: BatchDeploymentSpec) -> World {
        let nodes = (1..=n)
            .map(|i| NodeFact {
                name: format!("n{i:02}"),
                labels: BTreeMap::from([("pool".into(), "edge".into())]),
                ready: true,
            })
            .collect();
        World {
            bd: BatchDeployment {
                metadata: ObjectMeta {
                    name: Some("job".into()),
                    namespace: Some("ns".into()),
                    uid: Some("uid-1".into()),
                    generation: Some(1),
                    ..Default::default()
                },
                spec,
                status: None,
            },
            obs: Observed {
                app_image: AppImageFact::Usable,
                nodes,
                workloads: BTreeMap::new(),
                pulls: BTreeMap::new(),
            },
            last: Vec::new(),
            ever: Vec::new(),
        }
    }

    fn tick(&mut self, secs: i64) -> Step {
        let out = step(&self.bd, &self.obs, at(secs));
        self.bd.status = Some(out.status.clone());
        for a in &out.actions {
            match a.clone() {
                Action::Create {
                    node,
                    name,
                    attempt,
                } => {
                    self.ever.push(node.clone());
                    let p = Progress {
                        name,
                        attempt,
                        ..Default::default()
                    };
                    self.obs.workloads.insert(node, p);
                }
                Action::Delete { node, .. } => {
                    self.obs.workloads.remove(&node);
                }
                Action::CreatePull {
                    node,
                    name,
                    attempt,
                } => {
                    let p = PullProgress {
                        name,
                        attempt,
                        outcome: PullOutcome::Pulling,
                    };
                    self.obs.pulls.insert(node, p);
                }
                Action::DeletePull { node, .. } => {
                    self.obs.pulls.remove(&node);
                }
            }
        }
        self.last = out.actions.clone();
        out
    }

    fn status(&self) -> &crate::batch::types::BatchDeploymentStatus {
        self.bd.status.as_ref().unwrap()
    }

    fn node(&self, name: &str) -> NodeStatus {
        let s = self.status();
        s.nodes.iter().find(|n| n.node == name).cloned().unwrap()
    }

    fn pull_phase(&self, name: &str) -> PullPhase {
        self.node(name).pull.unwrap().phase
    }

    fn pulls_created(&self) -> Vec<&str> {
        self.last
            .iter()
            .filter_map(|a| match a {
                Action::CreatePull { node, .. } => Some(node.as_str()),
                _ => None,
            })
            .collect()
    }

    fn pulls_deleted(&self) -> Vec<&str> {
        self.last
            .iter()
            .filter_map(|a| match a {
                Action::DeletePull { node, .. } => Some(node.as_str()),
                _ => None,
            })
            .collect()
    }

    fn set(&mut self, node: &str, outcome: PullOutcome) {
        self.obs.pulls.get_mut(node).expect("pull Job").outcome = outcome;
    }

    fn pulled(&mut self, nodes: &[&str]) {
        for n in nodes {
            self.set(n, PullOutcome::Pulled);
        }
    }

    fn err_pull(&mut self, node: &str) {
        let outcome = PullOutcome::Failed {
            reason: "ErrImagePull".into(),
            message: "manifest unknown".into(),
        };
        self.set(node, outcome);
    }

    fn failed_condition(&self) -> Option<(String, String)> {
        self.status()
            .conditions
            .iter()
            .find(|c| c.type_ == COND_FAILED)
            .map(|c| (c.reason.clone(), c.message.clone()))
    }
}

const ALL: [&str; 4] = ["n01", "n02", "n03", "n04"];

#[test]
fn pulls_first_then_deploys_to_every_node_that_pulled() {
    let mut w = World::new(4, spec(PrePull::default()));
    w.tick(0);
    assert_eq!(w.status().phase, Phase::PrePulling);
    assert_eq!(w.pulls_created(), ALL);
    let Action::CreatePull { name, attempt, .. } = &w.last[0] else {
        panic!("{:?}", w.last)
    };
    assert_eq!((name.as_str(), *attempt), ("pull-job-n01", 1));
    assert!(w.obs.workloads.is_empty(), "no app workload while pulling");
    let pulls = w.status().pulls.clone().unwrap();
    assert_eq!((pulls.pulling, pulls.pulled), (4, 0));
    assert_eq!(w.status().counts.pending, 4);

    w.pulled(&["n01", "n02", "n03"]);
    w.tick(1);
    assert_eq!(w.status().phase, Phase::PrePulling);
    assert!(
        w.obs.workloads.is_empty(),
        "not before every pull is decided"
    );
    assert_eq!(w.pulls_deleted(), ["n01", "n02", "n03"]);
    assert_eq!(w.pull_phase("n01"), PullPhase::Pulled);

    w.pulled(&["n04"]);
    w.tick(2);
    assert_eq!(w.status().phase, Phase::Running);
    assert_eq!(w.pulls_deleted(), ["n04"]);
    assert_eq!(w.obs.workloads.len(), 4);
    let pulls = w.status().pulls.clone().unwrap();
    assert_eq!((pulls.pulled, pulls.failed, pulls.pulling), (4, 0, 0));
}

#[test]
fn a_failed_pull_is_not_deployed_to_and_counts_against_the_job_tolerance() {
    let mut s = spec(tolerate(1));
    s.failure_tolerance = Some(IntOrString::Int(1));
    let mut w = World::new(4, s);
    w.tick(0);
    w.pulled(&["n01", "n02", "n04"]);
    w.err_pull("n03");
    w.tick(1);
    assert_eq!(w.status().phase, Phase::Running);
    let n03 = w.node("n03");
    assert_eq!(n03.phase, NodePhase::Failed);
    assert_eq!(n03.reason.as_deref(), Some(PULL_FAILED));
    assert!(
        n03.message
            .as_deref()
            .unwrap()
            .contains("ErrImagePull: manifest unknown"),
        "{n03:?}"
    );
    let pull = n03.pull.unwrap();
    assert_eq!(
        (pull.phase, pull.reason.as_deref()),
        (PullPhase::Failed, Some("ErrImagePull"))
    );
    assert!(!w.obs.workloads.contains_key("n03"));
    assert_eq!(w.obs.workloads.len(), 3);
    for n in ["n01", "n02", "n04"] {
        let p = w.obs.workloads.get_mut(n).unwrap();
        p.ready = 1;
        p.pods = 1;
    }
    w.tick(2);
    assert_eq!(w.status().phase, Phase::PartiallySucceeded);
    assert_eq!(w.status().summary, "3/4");
    assert_eq!(w.status().counts.failed, 1);
    assert!(!w.ever.contains(&"n03".to_string()));
}

#[test]
fn more_failed_pulls_than_tolerated_fail_the_job_before_any_workload() {
    let mut w = World::new(4, spec(tolerate(1)));
    w.tick(0);
    w.err_pull("n02");
    w.tick(1);
    // One failed: decided for n02, the job waits for the others.
    assert_eq!(w.status().phase, Phase::PrePulling);
    assert_eq!(w.pulls_deleted(), ["n02"]);
    w.err_pull("n04");
    w.pulled(&["n01", "n03"]);
    w.tick(2);
    assert_eq!(w.status().phase, Phase::Failed);
    let (reason, message) = w.failed_condition().unwrap();
    assert_eq!(reason, PRE_PULL_FAILED);
    assert_eq!(
        message,
        "the image pull failed on 2 of 4 nodes: n02 (ErrImagePull), n04 (ErrImagePull); more than prePull.failureTolerance (1), so no Pod of the app was created"
    );
    assert!(w.ever.is_empty(), "no app workload was ever created");
    assert!(w.obs.pulls.is_empty(), "every pull Job deleted");
    for n in ["n02", "n04"] {
        assert_eq!(w.node(n).reason.as_deref(), Some(PULL_FAILED));
    }
    for n in ["n01", "n03"] {
        let node = w.node(n);
        assert_eq!(node.phase, NodePhase::Failed);
        assert_eq!(node.reason.as_deref(), Some(PRE_PULL_FAILED));
        assert_eq!(node.pull.unwrap().phase, PullPhase::Pulled);
    }
    // Nothing more happens.
    w.tick(3);
    assert!(w.last.is_empty(), "{:?}", w.last);
}

#[test]
fn the_default_tolerance_is_zero_and_a_percentage_counts_the_chosen_nodes() {
    let mut w = World::new(4, spec(PrePull::default()));
    w.tick(0);
    w.err_pull("n01");
    w.pulled(&["n02", "n03", "n04"]);
    w.tick(1);
    assert_eq!(w.status().phase, Phase::Failed);

    let pre = PrePull {
        failure_tolerance: Some(IntOrString::String("50%".into())),
        ..Default::default()
    };
    let mut w = World::new(4, spec(pre));
    w.tick(0);
    w.err_pull("n01");
    w.err_pull("n02");
    w.pulled(&["n03", "n04"]);
    w.tick(1);
    assert_eq!(w.status().phase, Phase::Running);
}

#[test]
fn concurrency_bounds_the_pulls_in_flight_in_node_order() {
    let pre = PrePull {
        concurrency: Some(2),
        ..Default::default()
    };
    let mut w = World::new(4, spec(pre));
    w.tick(0);
    assert_eq!(w.pulls_created(), ["n01", "n02"]);
    assert_eq!(w.status().pulls.clone().unwrap().pending, 2);
    w.pulled(&["n01"]);
    w.tick(1);
    assert_eq!(w.pulls_created(), ["n03"]);
    assert_eq!(w.pulls_deleted(), ["n01"]);
    w.pulled(&["n02", "n03"]);
    w.tick(2);
    assert_eq!(w.pulls_created(), ["n04"]);
    w.pulled(&["n04"]);
    w.tick(3);
    assert_eq!(w.status().phase, Phase::Running);
}

#[test]
fn a_pull_not_done_within_the_timeout_fails_and_the_step_comes_back_for_it() {
    let pre = PrePull {
        timeout: Some("30s".into()),
        failure_tolerance: Some(IntOrString::Int(1)),
        ..Default::default()
    };
    let mut w = World::new(2, spec(pre));
    let out = w.tick(0);
    assert_eq!(
        out.requeue_after,
        Some(std::time::Duration::from_millis(30_001))
    );
    w.pulled(&["n01"]);
    w.tick(10);
    assert_eq!(w.pull_phase("n02"), PullPhase::Pulling);
    w.tick(31);
    let n02 = w.node("n02");
    assert_eq!(n02.phase, NodePhase::Failed);
    assert_eq!(n02.pull.unwrap().reason.as_deref(), Some(PULL_TIMED_OUT));
    assert_eq!(w.pulls_deleted(), ["n02"]);
    assert_eq!(w.status().phase, Phase::Running);
    assert_eq!(w.obs.workloads.keys().collect::<Vec<_>>(), ["n01"]);
}

#[test]
fn a_node_not_ready_waits_for_its_pull_and_one_gone_fails() {
    let mut w = World::new(3, spec(tolerate(1)));
    w.obs.nodes[1].ready = false;
    w.tick(0);
    assert_eq!(w.pulls_created(), ["n01", "n03"]);
    let n02 = w.node("n02").pull.unwrap();
    assert_eq!(
        (n02.phase, n02.reason.as_deref()),
        (PullPhase::Pending, Some("NodeNotReady"))
    );
    w.obs.nodes[1].ready = true;
    w.obs.nodes.remove(2);
    w.tick(1);
    assert_eq!(w.pulls_created(), ["n02"]);
    // n03 is gone: its pull in flight fails at once, and its Job goes.
    let n03 = w.node("n03");
    assert_eq!(n03.reason.as_deref(), Some(PULL_FAILED));
    assert_eq!(n03.pull.unwrap().reason.as_deref(), Some("NodeNotFound"));
    assert_eq!(w.pulls_deleted(), ["n03"]);
    w.pulled(&["n01", "n02"]);
    w.tick(2);
    assert_eq!(w.status().phase, Phase::Running);
    assert_eq!(w.obs.workloads.keys().collect::<Vec<_>>(), ["n01", "n02"]);
}

#[test]
fn a_stop_deletes_the_pulls_in_flight_and_continue_pulls_again() {
    let mut w = World::new(2, spec(PrePull::default()));
    w.tick(0);
    w.pulled(&["n01"]);
    w.tick(1);
    w.bd.spec.suspend = Some(true);
    w.tick(2);
    assert_eq!(w.status().phase, Phase::Stopping);
    assert_eq!(w.pulls_deleted(), ["n02"]);
    w.tick(3);
    assert_eq!(w.status().phase, Phase::Stopped);
    assert_eq!(w.pull_phase("n02"), PullPhase::Pending);
    assert_eq!(w.pull_phase("n01"), PullPhase::Pulled);
    w.bd.spec.suspend = Some(false);
    w.tick(4);
    assert_eq!(w.status().phase, Phase::PrePulling);
    assert_eq!(w.pulls_created(), ["n02"]);
    w.pulled(&["n02"]);
    w.tick(5);
    assert_eq!(w.status().phase, Phase::Running);
}

#[test]
fn a_stale_pull_of_an_earlier_attempt_is_deleted_and_made_again() {
    let mut w = World::new(1, spec(PrePull::default()));
    w.tick(0);
    w.err_pull("n01");
    w.tick(1);
    assert_eq!(w.status().phase, Phase::Failed);
    // The failed pull Job was deleted; pretend a stale one of attempt 1 lingers.
    w.obs.pulls.insert(
        "n01".into(),
        PullProgress {
            name: "pull-job-n01".into(),
            attempt: 1,
            outcome: PullOutcome::Failed {
                reason: "ErrImagePull".into(),
                message: String::new(),
            },
        },
    );
    w.bd.spec.retry_generation = Some(1);
    w.tick(2);
    assert_eq!(w.status().phase, Phase::PrePulling);
    assert_eq!(w.status().attempts, 2);
    assert_eq!(w.pulls_deleted(), ["n01"]);
    assert_eq!(w.pull_phase("n01"), PullPhase::Pulling);
    w.tick(3);
    assert_eq!(w.pulls_created(), ["n01"]);
    w.pulled(&["n01"]);
    w.tick(4);
    assert_eq!(w.status().phase, Phase::Running);
}

#[test]
fn the_job_timeout_ends_the_pre_pull_and_its_pulls() {
    let mut s = spec(PrePull::default());
    s.timeout = Some("20s".into());
    let mut w = World::new(2, s);
    w.tick(0);
    w.pulled(&["n01"]);
    w.tick(21);
    assert_eq!(w.status().phase, Phase::TimedOut);
    let n02 = w.node("n02");
    assert_eq!(n02.reason.as_deref(), Some("TimedOut"));
    assert_eq!(n02.pull.unwrap().phase, PullPhase::Failed);
    assert!(w.obs.pulls.is_empty());
    assert!(w.ever.is_empty());
}

#[test]
fn a_job_without_pre_pull_has_no_pull_fields() {
    let mut s = spec(PrePull::default());
    s.pre_pull = None;
    let mut w = World::new(2, s);
    w.tick(0);
    assert_eq!(w.status().phase, Phase::Running);
    assert_eq!(w.status().pulls, None);
    assert!(w.status().nodes.iter().all(|n| n.pull.is_none()));
    let json = serde_json::to_string(w.status()).unwrap();
    assert!(!json.contains("pull"), "{json}");
}

#[test]
fn bad_pre_pull_settings_name_the_field() {
    let cases = [
        (
            PrePull {
                concurrency: Some(0),
                ..Default::default()
            },
            "spec.prePull.concurrency is 0; it must be at least 1",
        ),
        (
            PrePull {
                timeout: Some("soon".into()),
                ..Default::default()
            },
            "spec.prePull.timeout: invalid duration \"soon\"",
        ),
        (
            PrePull {
                timeout: Some("0".into()),
                ..Default::default()
            },
            "spec.prePull.timeout is 0; a pull needs at least 1s",
        ),
        (
            PrePull {
                failure_tolerance: Some(IntOrString::String("x".into())),
                ..Default::default()
            },
            "spec.prePull.failureTolerance: \"x\" is not a count or a percentage",
        ),
        (
            tolerate(-1),
            "spec.prePull.failureTolerance: -1 is negative",
        ),
    ];
    for (pre, want) in cases {
        let s = spec(pre);
        let e = spec_error(&s, "job").expect(want);
        assert!(e.starts_with(want), "{e}");
        // The job fails with it, pulling nothing.
        let mut w = World::new(1, s);
        w.tick(0);
        assert_eq!(w.status().phase, Phase::Failed);
        assert!(w.obs.pulls.is_empty());
    }
}

#[test]
fn the_pre_pull_step_is_deterministic() {
    let run = || {
        let mut w = World::new(5, spec(tolerate(2)));
        w.tick(0);
        w.err_pull("n04");
        w.err_pull("n02");
        w.pulled(&["n01", "n03", "n05"]);
        w.tick(1);
        (w.bd.status.clone(), w.last.clone())
    };
    assert_eq!(run(), run());
}

/// A Continuous job with pre-pull: a node that joins pulls first, and only then gets the app;
/// one whose pull fails is not deployed to, and the job, running elsewhere, does not fail.
#[test]
fn a_node_that_joins_a_continuous_job_pulls_before_it_gets_the_app() {
    let mut s = spec(PrePull::default());
    s.mode = Some(crate::batch::types::Mode::Continuous);
    let mut w = World::new(2, s);
    w.tick(0);
    w.pulled(&["n01", "n02"]);
    w.tick(1);
    assert_eq!(w.status().phase, Phase::Running);
    assert_eq!(w.obs.workloads.len(), 2);
    let joins = |w: &mut World, name: &str| {
        w.obs.nodes.push(NodeFact {
            name: name.into(),
            labels: BTreeMap::from([("pool".into(), "edge".into())]),
            ready: true,
        })
    };
    joins(&mut w, "n03");
    joins(&mut w, "n04");
    let step = w.tick(2);
    assert_eq!(w.pulls_created(), ["n03", "n04"]);
    assert!(
        !w.ever.contains(&"n03".to_string()),
        "no app before the pull"
    );
    assert_eq!(w.pull_phase("n03"), PullPhase::Pulling);
    assert_eq!(w.node("n03").phase, NodePhase::Pending);
    assert_eq!(w.status().phase, Phase::Running);
    assert!(step.requeue_after.is_some(), "back for the pull's timeout");

    w.pulled(&["n03"]);
    w.err_pull("n04");
    w.tick(3);
    assert_eq!(w.pulls_deleted(), ["n03", "n04"]);
    assert!(w.obs.workloads.contains_key("n03"), "pulled: deployed");
    let n04 = w.node("n04");
    assert_eq!(n04.phase, NodePhase::Failed);
    assert_eq!(n04.reason.as_deref(), Some(PULL_FAILED));
    assert!(!w.ever.contains(&"n04".to_string()));
    assert_eq!(
        w.status().phase,
        Phase::Running,
        "a late pull never fails the job"
    );
    assert!(w.failed_condition().is_none());
    let pulls = w.status().pulls.clone().unwrap();
    assert_eq!((pulls.pulled, pulls.failed), (3, 1));
}
