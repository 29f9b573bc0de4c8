//! Every transition of the README's table, on a small simulated world: the step's actions are
//! carried out on a map of workloads, and the test moves the workloads' progress by hand.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::batch::types::{BatchDeployment, BatchDeploymentSpec, NodePhase, Phase, RestartPolicy};

const T0: i64 = 1_700_000_000;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(T0 + secs).unwrap()
}

fn spec() -> BatchDeploymentSpec {
    BatchDeploymentSpec {
        app_image: "app".into(),
        node_selector: BTreeMap::from([("pool".into(), "edge".into())]),
        ..Default::default()
    }
}

fn node(name: &str, pool: &str, ready: bool) -> NodeFact {
    NodeFact {
        name: name.into(),
        labels: BTreeMap::from([("pool".into(), pool.into())]),
        ready,
    }
}

struct World {
    bd: BatchDeployment,
    obs: Observed,
    last: Vec<Action>,
}

impl World {
    /// `n` Ready nodes n01.. labelled pool=edge, and one node of another pool.
    fn new(n: usize, spec: BatchDeploymentSpec) -> World {
        let mut nodes: Vec<NodeFact> = (1..=n)
            .map(|i| node(&format!("n{i:02}"), "edge", true))
            .collect();
        nodes.push(node("other", "core", true));
        let bd = BatchDeployment {
            metadata: ObjectMeta {
                name: Some("job".into()),
                namespace: Some("ns".into()),
                uid: Some("uid-1".into()),
                generation: Some(1),
                ..Default::default()
            },
            spec,
            status: None,
        };
        let obs = Observed {
            app_image: AppImageFact::Usable,
            nodes,
            workloads: BTreeMap::new(),
            pulls: BTreeMap::new(),
        };
        World {
            bd,
            obs,
            last: Vec::new(),
        }
    }

    /// One step at `secs`: the status is stored and the actions carried out.
    fn tick(&mut self, secs: i64) -> Step {
        let out = step(&self.bd, &self.obs, at(secs));
        self.bd.status = Some(out.status.clone());
        for a in &out.actions {
            match a {
                Action::Create {
                    node,
                    name,
                    attempt,
                } => {
                    let p = Progress {
                        name: name.clone(),
                        attempt: *attempt,
                        ..Default::default()
                    };
                    self.obs.workloads.insert(node.clone(), p);
                }
                Action::Delete { node, .. } => {
                    self.obs.workloads.remove(node);
                }
                Action::CreatePull { .. } | Action::DeletePull { .. } => {
                    panic!("no pre-pull in these tests: {a:?}")
                }
            }
        }
        self.last = out.actions.clone();
        out
    }

    fn phase(&self) -> Phase {
        self.bd.status.as_ref().unwrap().phase
    }

    fn node(&self, name: &str) -> NodeStatus {
        let s = self.bd.status.as_ref().unwrap();
        s.nodes.iter().find(|n| n.node == name).cloned().unwrap()
    }

    fn node_phases(&self) -> Vec<(String, NodePhase)> {
        let s = self.bd.status.as_ref().unwrap();
        s.nodes.iter().map(|n| (n.node.clone(), n.phase)).collect()
    }

    fn ready(&mut self, node: &str) {
        let p = self.obs.workloads.get_mut(node).expect("workload");
        p.pods = 1;
        p.ready = 1;
    }

    fn succeed(&mut self, node: &str) {
        let p = self.obs.workloads.get_mut(node).expect("workload");
        p.pods = 1;
        p.succeeded = 1;
    }

    fn fail(&mut self, node: &str) {
        let p = self.obs.workloads.get_mut(node).expect("workload");
        p.failure = Some(("CrashLoopBackOff".into(), "Pod x: back-off".into()));
    }

    fn all_ready(&mut self) {
        let names: Vec<String> = self.obs.workloads.keys().cloned().collect();
        names.iter().for_each(|n| self.ready(n));
    }

    fn created(&self) -> Vec<&str> {
        self.last
            .iter()
            .filter_map(|a| match a {
                Action::Create { node, .. } => Some(node.as_str()),
                _ => None,
            })
            .collect()
    }

    fn deleted(&self) -> Vec<&str> {
        self.last
            .iter()
            .filter_map(|a| match a {
                Action::Delete { node, .. } => Some(node.as_str()),
                _ => None,
            })
            .collect()
    }

    fn condition(&self, type_: &str) -> Option<(String, String, String)> {
        let s = self.bd.status.as_ref().unwrap();
        s.conditions
            .iter()
            .find(|c| c.type_ == type_)
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
    }
}

#[test]
fn start_records_the_chosen_nodes_and_creates_their_workloads() {
    let mut w = World::new(3, spec());
    let out = w.tick(0);
    assert_eq!(w.phase(), Phase::Running);
    let s = &out.status;
    assert_eq!(
        s.nodes.iter().map(|n| n.node.as_str()).collect::<Vec<_>>(),
        ["n01", "n02", "n03"]
    );
    assert_eq!(w.created(), ["n01", "n02", "n03"]);
    assert_eq!(s.attempts, 1);
    assert_eq!(s.start_time.as_ref().unwrap().0, at(0));
    assert_eq!(s.summary, "0/3");
    assert_eq!(s.counts.running, 3);
    assert_eq!(w.node("n01").attempts, 1);
    let Action::Create { name, attempt, .. } = &out.actions[0] else {
        panic!()
    };
    assert_eq!((name.as_str(), *attempt), ("job-n01", 1));
    // Nodes that appear later are not added: the choice was recorded at start.
    w.obs.nodes.push(node("n99", "edge", true));
    w.tick(1);
    assert_eq!(w.bd.status.as_ref().unwrap().counts.total, 3);
}

#[test]
fn names_and_labels_union_and_a_named_node_that_does_not_exist_fails() {
    let mut s = spec();
    s.node_names = vec!["other".into(), "ghost".into()];
    let mut w = World::new(1, s);
    w.tick(0);
    assert_eq!(
        w.node_phases(),
        [
            ("ghost".into(), NodePhase::Failed),
            ("n01".into(), NodePhase::Running),
            ("other".into(), NodePhase::Running)
        ]
    );
    assert_eq!(w.node("ghost").reason.as_deref(), Some("NodeNotFound"));
    assert_eq!(w.created(), ["n01", "other"]);
}

#[test]
fn parallelism_bounds_the_nodes_in_flight() {
    let mut s = spec();
    s.parallelism = Some(2);
    let mut w = World::new(5, s);
    w.tick(0);
    assert_eq!(w.created(), ["n01", "n02"]);
    assert_eq!(w.bd.status.as_ref().unwrap().counts.pending, 3);
    w.tick(1);
    assert!(
        w.created().is_empty(),
        "nothing new while both are in flight"
    );
    w.ready("n02");
    w.tick(2);
    assert_eq!(w.node("n02").phase, NodePhase::Succeeded);
    assert_eq!(w.created(), ["n03"]);
}

#[test]
fn success_rule_always_needs_ready_pods() {
    let mut s = spec();
    s.instances = Some(2);
    let mut w = World::new(1, s);
    w.tick(0);
    // Succeeded Pods do not count for Always; one Ready Pod of two is not enough.
    w.obs.workloads.get_mut("n01").unwrap().succeeded = 2;
    w.obs.workloads.get_mut("n01").unwrap().ready = 1;
    w.tick(1);
    assert_eq!(w.node("n01").phase, NodePhase::Running);
    assert_eq!(w.node("n01").pods, 1);
    w.obs.workloads.get_mut("n01").unwrap().ready = 2;
    w.tick(2);
    assert_eq!(w.phase(), Phase::Succeeded);
    assert_eq!(w.condition(COND_COMPLETE).unwrap().0, "True");
    assert_eq!(
        w.bd.status
            .as_ref()
            .unwrap()
            .completion_time
            .as_ref()
            .unwrap()
            .0,
        at(2)
    );
}

#[test]
fn success_rule_on_failure_and_never_need_succeeded_pods() {
    for policy in [RestartPolicy::OnFailure, RestartPolicy::Never] {
        let mut s = spec();
        s.restart_policy = Some(policy);
        let mut w = World::new(1, s);
        w.tick(0);
        w.ready("n01");
        w.tick(1);
        assert_eq!(w.phase(), Phase::Running, "{policy:?}: Ready is not done");
        w.succeed("n01");
        w.tick(2);
        assert_eq!(w.phase(), Phase::Succeeded, "{policy:?}");
    }
}

#[test]
fn verdicts_by_failure_tolerance() {
    // (nodes, failing, tolerance, phase)
    let cases = [
        (4, 0, None, Phase::Succeeded),
        (4, 1, None, Phase::PartiallySucceeded),
        (4, 3, None, Phase::PartiallySucceeded),
        (4, 4, None, Phase::Failed),
        (4, 1, Some(IntOrString::Int(1)), Phase::PartiallySucceeded),
        (4, 2, Some(IntOrString::Int(1)), Phase::Failed),
        (4, 1, Some(IntOrString::Int(0)), Phase::Failed),
        (
            20,
            3,
            Some(IntOrString::String("15%".into())),
            Phase::PartiallySucceeded,
        ),
        (
            20,
            4,
            Some(IntOrString::String("15%".into())),
            Phase::Failed,
        ),
    ];
    for (n, failing, tolerance, want) in cases {
        let mut s = spec();
        s.failure_tolerance = tolerance.clone();
        let mut w = World::new(n, s);
        w.tick(0);
        let names: Vec<String> = w.obs.workloads.keys().cloned().collect();
        for (i, name) in names.iter().enumerate() {
            if i < failing {
                w.fail(name)
            } else {
                w.ready(name)
            }
        }
        w.tick(1);
        assert_eq!(
            w.phase(),
            want,
            "{n} nodes, {failing} failing, tolerance {tolerance:?}"
        );
        let s = w.bd.status.as_ref().unwrap();
        assert_eq!(s.summary, format!("{}/{n}", n - failing));
        assert_eq!(s.counts.failed, failing as i32);
        if want == Phase::Failed {
            let reason = w.condition(COND_FAILED).unwrap().1;
            let expect = if failing == n {
                "NoNodeSucceeded"
            } else {
                "FailureToleranceExceeded"
            };
            assert_eq!(reason, expect);
        }
    }
}

#[test]
fn a_failed_workload_fails_its_node_with_the_reason_and_is_removed() {
    let mut w = World::new(2, spec());
    w.tick(0);
    w.fail("n01");
    w.tick(1);
    let n = w.node("n01");
    assert_eq!(
        (n.phase, n.reason.as_deref()),
        (NodePhase::Failed, Some("CrashLoopBackOff"))
    );
    assert_eq!(n.message.as_deref(), Some("Pod x: back-off"));
    assert_eq!(w.deleted(), ["n01"]);
    assert_eq!(w.phase(), Phase::Running);
}

#[test]
fn a_node_that_goes_away_fails_and_one_not_ready_keeps_running_with_a_reason() {
    let mut w = World::new(3, spec());
    w.tick(0);
    w.ready("n03");
    w.tick(1);
    w.obs.nodes.retain(|n| n.name != "n01");
    w.obs
        .nodes
        .iter_mut()
        .filter(|n| n.name == "n02" || n.name == "n03")
        .for_each(|n| n.ready = false);
    w.tick(2);
    assert_eq!(w.node("n01").reason.as_deref(), Some("NodeNotFound"));
    assert_eq!(w.node("n01").phase, NodePhase::Failed);
    // NotReady while its Pod runs: a reason, its workload kept, the job not failed.
    let n02 = w.node("n02");
    assert_eq!(
        (n02.phase, n02.reason.as_deref()),
        (NodePhase::Running, Some("NodeNotReady"))
    );
    assert!(n02.message.unwrap().contains("went NotReady"));
    // Finished nodes keep their results.
    assert_eq!(w.node("n03").phase, NodePhase::Succeeded);
    assert_eq!(w.deleted(), ["n01"]);
    assert_eq!(w.phase(), Phase::Running);
    // Back: the reason goes, and its Pods finish the node.
    w.obs.nodes.iter_mut().for_each(|n| n.ready = true);
    w.tick(3);
    assert_eq!(w.node("n02").reason, None);
    w.ready("n02");
    w.tick(4);
    assert_eq!(w.node("n02").phase, NodePhase::Succeeded);
    assert_eq!(w.node("n02").attempts, 1);
    assert_eq!(w.phase(), Phase::PartiallySucceeded);
}

#[test]
fn a_node_not_ready_while_running_still_times_out() {
    let mut s = spec();
    s.timeout = Some("1m".into());
    let mut w = World::new(1, s);
    w.tick(0);
    w.obs.nodes[0].ready = false;
    w.tick(30);
    assert_eq!(w.phase(), Phase::Running);
    w.tick(61);
    assert_eq!(w.phase(), Phase::TimedOut);
    assert_eq!(w.node("n01").reason.as_deref(), Some("TimedOut"));
    assert_eq!(w.deleted(), ["n01"]);
}

#[test]
fn a_node_not_ready_at_its_turn_waits_without_a_slot_and_is_caught_up() {
    let mut s = spec();
    s.parallelism = Some(1);
    let mut w = World::new(3, s);
    w.obs.nodes[0].ready = false;
    w.tick(0);
    let n = w.node("n01");
    assert_eq!(
        (n.phase, n.reason.as_deref(), n.attempts),
        (NodePhase::Waiting, Some("NodeNotReady"), 0)
    );
    assert_eq!(w.created(), ["n02"]);
    assert_eq!(w.bd.status.as_ref().unwrap().counts.waiting, 1);
    w.ready("n02");
    w.tick(1);
    assert_eq!(w.created(), ["n03"]);
    w.ready("n03");
    w.tick(2);
    // Every other node is done, but a Waiting node keeps the job Running.
    assert_eq!(w.phase(), Phase::Running);
    assert_eq!(w.node("n01").phase, NodePhase::Waiting);
    w.obs.nodes[0].ready = true;
    w.tick(3);
    let n = w.node("n01");
    assert_eq!(
        (n.phase, n.reason.as_deref(), n.attempts),
        (NodePhase::Running, None, 1)
    );
    assert_eq!(w.created(), ["n01"]);
    w.ready("n01");
    w.tick(4);
    assert_eq!(w.phase(), Phase::Succeeded);
    assert_eq!(w.bd.status.as_ref().unwrap().summary, "3/3");
}

#[test]
fn a_waiting_node_back_without_a_slot_is_pending() {
    let mut s = spec();
    s.parallelism = Some(1);
    let mut w = World::new(2, s);
    w.obs.nodes[0].ready = false;
    w.tick(0);
    w.obs.nodes[0].ready = true;
    w.tick(1);
    let n = w.node("n01");
    assert_eq!((n.phase, n.reason), (NodePhase::Pending, None));
}

#[test]
fn a_waiting_node_fails_at_the_timeout_or_when_it_goes_away() {
    let mut s = spec();
    s.timeout = Some("1m".into());
    let mut w = World::new(3, s);
    w.obs.nodes[0].ready = false;
    w.obs.nodes[1].ready = false;
    w.tick(0);
    w.ready("n03");
    w.obs.nodes.retain(|n| n.name != "n02");
    w.tick(10);
    assert_eq!(w.node("n02").reason.as_deref(), Some("NodeNotFound"));
    assert_eq!(w.node("n01").phase, NodePhase::Waiting);
    w.tick(61);
    assert_eq!(w.phase(), Phase::TimedOut);
    assert_eq!(w.node("n01").reason.as_deref(), Some("TimedOut"));
}

fn with_retries(retries: i32, backoff: &str) -> BatchDeploymentSpec {
    let mut s = spec();
    s.retries = Some(retries);
    s.retry_backoff = Some(backoff.into());
    s
}

#[test]
fn a_failed_attempt_with_retries_left_waits_out_a_doubling_backoff_then_reruns() {
    let mut w = World::new(2, with_retries(2, "10s"));
    w.tick(0);
    w.ready("n02");
    w.fail("n01");
    let out = w.tick(1);
    let n = w.node("n01");
    assert_eq!(
        (n.phase, n.reason.as_deref(), n.auto_retries),
        (NodePhase::Waiting, Some("RetryBackoff"), 1)
    );
    assert_eq!(n.last_failure.as_deref(), Some("CrashLoopBackOff"));
    assert_eq!(n.retry_at.as_ref().unwrap().0, at(11));
    // The failed attempt's workload goes; the step comes back when the backoff ends.
    assert_eq!(w.deleted(), ["n01"]);
    assert_eq!(
        out.requeue_after,
        Some(std::time::Duration::from_millis(10_001))
    );
    w.tick(10);
    assert_eq!(w.created(), Vec::<&str>::new());
    w.tick(11);
    assert_eq!(w.created(), ["n01"]);
    assert_eq!(
        (w.node("n01").phase, w.node("n01").attempts),
        (NodePhase::Running, 2)
    );
    // Second failure: twice the wait.
    w.fail("n01");
    w.tick(12);
    assert_eq!(w.node("n01").retry_at.as_ref().unwrap().0, at(32));
    w.tick(32);
    w.ready("n01");
    w.tick(33);
    let n = w.node("n01");
    assert_eq!(
        (n.phase, n.attempts, n.auto_retries, n.reason.as_deref()),
        (NodePhase::Succeeded, 3, 2, None)
    );
    assert_eq!(n.last_failure.as_deref(), Some("CrashLoopBackOff"));
    assert_eq!(w.phase(), Phase::Succeeded);
}

#[test]
fn a_node_out_of_retries_fails_with_the_last_reason() {
    let mut w = World::new(2, with_retries(1, "5s"));
    w.tick(0);
    w.ready("n02");
    w.fail("n01");
    w.tick(1);
    w.tick(6);
    w.fail("n01");
    w.tick(7);
    let n = w.node("n01");
    assert_eq!(
        (n.phase, n.reason.as_deref(), n.attempts, n.auto_retries),
        (NodePhase::Failed, Some("CrashLoopBackOff"), 2, 1)
    );
    assert_eq!(n.last_failure.as_deref(), Some("CrashLoopBackOff"));
    assert_eq!(n.retry_at, None);
    assert_eq!(w.phase(), Phase::PartiallySucceeded);
}

#[test]
fn without_retries_a_failure_fails_the_node_at_once() {
    let mut w = World::new(1, spec());
    w.tick(0);
    w.fail("n01");
    w.tick(1);
    assert_eq!(w.node("n01").phase, NodePhase::Failed);
    assert_eq!(w.phase(), Phase::Failed);
}

#[test]
fn the_backoff_is_capped() {
    let mut w = World::new(1, with_retries(20, "4m"));
    w.tick(0);
    w.fail("n01");
    w.tick(1);
    assert_eq!(w.node("n01").retry_at.as_ref().unwrap().0, at(241));
    w.tick(241);
    w.fail("n01");
    w.tick(242);
    // 8m doubled is capped at 5m.
    assert_eq!(w.node("n01").retry_at.as_ref().unwrap().0, at(542));
}

#[test]
fn a_manual_retry_after_automatic_ones_reruns_only_the_failed_nodes_with_a_fresh_count() {
    let mut w = World::new(2, with_retries(1, "5s"));
    w.tick(0);
    w.ready("n02");
    w.fail("n01");
    w.tick(1);
    w.tick(6);
    w.fail("n01");
    w.tick(7);
    assert_eq!(w.phase(), Phase::PartiallySucceeded);
    w.bd.spec.retry_generation = Some(1);
    w.tick(20);
    assert_eq!(w.created(), ["n01"]);
    let n = w.node("n01");
    assert_eq!((n.attempts, n.auto_retries), (3, 0));
    assert_eq!(w.node("n02").attempts, 1);
    // The fresh run has its own automatic rerun.
    w.fail("n01");
    w.tick(21);
    assert_eq!(w.node("n01").phase, NodePhase::Waiting);
}

#[test]
fn a_node_not_ready_during_its_backoff_reruns_once_back_and_the_wait_is_over() {
    let mut w = World::new(1, with_retries(1, "10s"));
    w.tick(0);
    w.fail("n01");
    w.tick(1);
    w.obs.nodes[0].ready = false;
    w.tick(5);
    assert_eq!(w.node("n01").reason.as_deref(), Some("NodeNotReady"));
    w.obs.nodes[0].ready = true;
    w.tick(6);
    assert_eq!(w.node("n01").reason.as_deref(), Some("RetryBackoff"));
    assert_eq!(w.created(), Vec::<&str>::new());
    w.tick(11);
    assert_eq!(w.created(), ["n01"]);
}

#[test]
fn bad_input_fails_with_a_clear_condition_and_no_workloads() {
    type Edit = fn(&mut World);
    let cases: [(&str, Edit, &str, &str); 7] = [
        (
            "no nodes",
            |w| w.bd.spec.node_selector.clear(),
            "InvalidSpec",
            "never means every node",
        ),
        (
            "no match",
            |w| w.bd.spec.node_selector = BTreeMap::from([("pool".into(), "mars".into())]),
            "NoNodesMatched",
            "pool=mars",
        ),
        (
            "unknown image",
            |w| {
                w.obs.app_image = AppImageFact::Unusable {
                    reason: "AppImageNotFound".into(),
                    message: "AppImage \"app\" does not exist".into(),
                }
            },
            "AppImageNotFound",
            "does not exist",
        ),
        (
            "bad signature",
            |w| {
                w.obs.app_image = AppImageFact::Unusable {
                    reason: "SignatureInvalid".into(),
                    message: "signature does not verify".into(),
                }
            },
            "SignatureInvalid",
            "does not verify",
        ),
        (
            "bad timeout",
            |w| w.bd.spec.timeout = Some("soon".into()),
            "InvalidSpec",
            "spec.timeout",
        ),
        (
            "bad tolerance",
            |w| w.bd.spec.failure_tolerance = Some(IntOrString::String("lots".into())),
            "InvalidSpec",
            "failureTolerance",
        ),
        (
            "zero instances",
            |w| w.bd.spec.instances = Some(0),
            "InvalidSpec",
            "spec.instances",
        ),
    ];
    for (what, edit, reason, text) in cases {
        let mut w = World::new(2, spec());
        edit(&mut w);
        let out = w.tick(0);
        assert_eq!(w.phase(), Phase::Failed, "{what}");
        assert!(out.actions.is_empty(), "{what}");
        let (status, got, message) = w.condition(COND_FAILED).unwrap();
        assert_eq!((status.as_str(), got.as_str()), ("True", reason), "{what}");
        assert!(message.contains(text), "{what}: {message}");
        // Stable: the next step changes nothing (no crash loop, no flapping).
        let again = w.tick(5);
        assert_eq!(again.status.phase, Phase::Failed);
        assert!(again.actions.is_empty());
        assert_eq!(again.requeue_after, None);
    }
}

#[test]
fn an_appimage_that_turns_bad_while_running_fails_the_nodes_not_done() {
    let mut w = World::new(2, spec());
    w.tick(0);
    w.ready("n01");
    w.tick(1);
    w.obs.app_image = AppImageFact::Unusable {
        reason: "AppImageNotFound".into(),
        message: "gone".into(),
    };
    w.tick(2);
    assert_eq!(w.phase(), Phase::Failed);
    assert_eq!(w.node("n01").phase, NodePhase::Succeeded);
    assert_eq!(w.node("n02").reason.as_deref(), Some("AppImageNotFound"));
    assert_eq!(w.deleted(), ["n02"]);
}

#[test]
fn stop_halts_in_flight_nodes_keeps_finished_ones_then_continue_resumes() {
    let mut s = spec();
    s.parallelism = Some(2);
    let mut w = World::new(4, s);
    w.tick(0);
    w.ready("n01");
    w.tick(1); // n01 done, n02 and n03 in flight
    w.bd.spec.suspend = Some(true);
    let out = w.tick(2);
    assert_eq!(out.status.phase, Phase::Stopping);
    assert_eq!(w.deleted(), ["n02", "n03"]);
    assert_eq!(w.node("n02").phase, NodePhase::Stopped);
    assert_eq!(w.node("n01").phase, NodePhase::Succeeded);
    assert_eq!(w.condition(COND_SUSPENDED).unwrap().0, "True");
    w.tick(3); // the halted workloads are gone
    assert_eq!(w.phase(), Phase::Stopped);
    assert!(
        w.obs.workloads.contains_key("n01"),
        "finished nodes keep their workload"
    );
    assert_eq!(w.obs.workloads.len(), 1);
    w.bd.spec.suspend = Some(false);
    w.tick(4);
    assert_eq!(w.phase(), Phase::Running);
    assert_eq!(w.created(), ["n02", "n03"]);
    assert_eq!(w.node("n02").attempts, 2);
    w.all_ready();
    w.tick(5);
    w.all_ready();
    w.tick(6);
    assert_eq!(w.phase(), Phase::Succeeded);
    assert_eq!(w.node("n01").attempts, 1, "n01 never ran again");
}

#[test]
fn stopping_waits_for_the_halted_workloads_to_go() {
    let mut w = World::new(1, spec());
    w.tick(0);
    w.bd.spec.suspend = Some(true);
    let out = step(&w.bd, &w.obs, at(1)); // the delete has not happened yet
    w.bd.status = Some(out.status);
    assert_eq!(w.phase(), Phase::Stopping);
    let out = step(&w.bd, &w.obs, at(2));
    assert_eq!(out.status.phase, Phase::Stopping, "workload still there");
    assert_eq!(out.actions.len(), 1, "delete again, level-triggered");
}

#[test]
fn stop_before_start_and_continue_from_stopping() {
    let mut s = spec();
    s.suspend = Some(true);
    let mut w = World::new(2, s);
    w.tick(0);
    assert_eq!(w.phase(), Phase::Stopped);
    assert!(w.created().is_empty());
    w.bd.spec.suspend = Some(false);
    w.tick(1);
    assert_eq!(w.phase(), Phase::Running);
    assert_eq!(w.created(), ["n01", "n02"]);
    // Continue while still Stopping: the halted node starts again with a new attempt.
    w.bd.spec.suspend = Some(true);
    let out = step(&w.bd, &w.obs, at(2));
    w.bd.status = Some(out.status);
    assert_eq!(w.phase(), Phase::Stopping);
    w.bd.spec.suspend = Some(false);
    w.tick(3);
    assert_eq!(w.phase(), Phase::Running);
    assert_eq!(
        w.deleted(),
        ["n01", "n02"],
        "the old attempt's workloads go first"
    );
    w.tick(4);
    assert_eq!(w.created(), ["n01", "n02"]);
    assert_eq!(w.node("n01").attempts, 2);
}

#[test]
fn timeout_counts_queued_plus_running_but_not_stopped_time() {
    let mut s = spec();
    s.timeout = Some("10s".into());
    s.parallelism = Some(1);
    let mut w = World::new(2, s);
    let out = w.tick(0);
    assert_eq!(
        out.requeue_after,
        Some(std::time::Duration::from_millis(10_001))
    );
    w.bd.spec.suspend = Some(true);
    w.tick(4); // 4 s active
    w.tick(5);
    assert_eq!(w.phase(), Phase::Stopped);
    w.bd.spec.suspend = Some(false);
    w.tick(100); // stopped time does not count
    assert_eq!(w.phase(), Phase::Running);
    w.tick(106); // 10 s active: not yet over
    assert_eq!(w.phase(), Phase::Running);
    w.ready("n01");
    let out = w.tick(107); // 11 s
    assert_eq!(out.status.phase, Phase::TimedOut);
    // n01 met its rule in time and is kept; n02 never started.
    assert_eq!(w.node("n01").phase, NodePhase::Succeeded);
    let n02 = w.node("n02");
    assert_eq!(
        (n02.phase, n02.reason.as_deref()),
        (NodePhase::Failed, Some("TimedOut"))
    );
    assert_eq!(w.condition(COND_FAILED).unwrap().1, "TimedOut");
    assert_eq!(out.requeue_after, None);
}

#[test]
fn timeout_deletes_the_workloads_of_nodes_not_done() {
    let mut s = spec();
    s.timeout = Some("5s".into());
    let mut w = World::new(2, s);
    w.tick(0);
    w.ready("n02");
    w.tick(6);
    assert_eq!(w.phase(), Phase::TimedOut);
    assert_eq!(w.deleted(), ["n01"]);
    assert_eq!(w.node("n02").phase, NodePhase::Succeeded);
}

#[test]
fn retry_reruns_only_what_did_not_succeed() {
    let mut w = World::new(4, spec());
    w.tick(0);
    w.fail("n01");
    w.fail("n02");
    w.ready("n03");
    w.ready("n04");
    w.tick(1);
    assert_eq!(w.phase(), Phase::PartiallySucceeded);
    w.bd.spec.retry_generation = Some(1);
    let out = w.tick(50);
    assert_eq!(out.status.phase, Phase::Running);
    assert_eq!(out.status.attempts, 2);
    assert_eq!(out.status.observed_retry_generation, 1);
    assert_eq!(out.status.start_time.as_ref().unwrap().0, at(50));
    assert_eq!(out.status.completion_time, None);
    assert_eq!(w.condition(COND_COMPLETE), None);
    assert_eq!(w.created(), ["n01", "n02"]);
    assert_eq!(w.node("n01").attempts, 2);
    assert_eq!(w.node("n03").attempts, 1);
    w.all_ready();
    w.tick(51);
    assert_eq!(w.phase(), Phase::Succeeded);
    assert_eq!(w.bd.status.as_ref().unwrap().summary, "4/4");
}

#[test]
fn retry_from_failed_at_selection_chooses_nodes_again() {
    let mut w = World::new(2, spec());
    w.obs.app_image = AppImageFact::Unusable {
        reason: "AppImageNotFound".into(),
        message: "x".into(),
    };
    w.tick(0);
    assert_eq!(w.phase(), Phase::Failed);
    w.obs.app_image = AppImageFact::Usable;
    w.bd.spec.retry_generation = Some(1);
    w.tick(1);
    assert_eq!(w.phase(), Phase::Running);
    assert_eq!(w.created(), ["n01", "n02"]);
}

#[test]
fn retry_from_timed_out_gets_a_fresh_clock() {
    let mut s = spec();
    s.timeout = Some("5s".into());
    let mut w = World::new(1, s);
    w.tick(0);
    w.tick(6);
    assert_eq!(w.phase(), Phase::TimedOut);
    w.bd.spec.retry_generation = Some(7);
    w.tick(600);
    assert_eq!(w.phase(), Phase::Running);
    assert_eq!(w.created(), ["n01"]);
    w.ready("n01");
    w.tick(604);
    assert_eq!(w.phase(), Phase::Succeeded);
}

#[test]
fn retry_is_rejected_outside_failed_partial_and_timed_out() {
    // Running, and Succeeded.
    let mut w = World::new(1, spec());
    w.tick(0);
    w.bd.spec.retry_generation = Some(1);
    w.tick(1);
    assert_eq!(w.phase(), Phase::Running);
    let (status, reason, message) = w.condition(COND_RETRY_REJECTED).unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("True", "NotRetryable"));
    assert!(message.contains("the job is Running"), "{message}");
    w.ready("n01");
    w.tick(2);
    assert_eq!(w.phase(), Phase::Succeeded);
    w.bd.spec.retry_generation = Some(2);
    let out = w.tick(3);
    assert_eq!(out.status.phase, Phase::Succeeded);
    assert_eq!(out.status.attempts, 1);
    assert!(out.actions.is_empty());
    // A consumed bump does not fire later when the job fails.
    assert_eq!(out.status.observed_retry_generation, 2);
}

#[test]
fn a_retry_generation_set_at_creation_is_not_a_retry() {
    let mut s = spec();
    s.retry_generation = Some(3);
    let mut w = World::new(1, s);
    let out = w.tick(0);
    assert_eq!(out.status.attempts, 1);
    assert_eq!(out.status.observed_retry_generation, 3);
    assert_eq!(w.condition(COND_RETRY_REJECTED), None);
}

#[test]
fn suspend_does_nothing_to_a_finished_job() {
    let mut w = World::new(1, spec());
    w.tick(0);
    w.ready("n01");
    w.tick(1);
    w.bd.spec.suspend = Some(true);
    let out = w.tick(2);
    assert_eq!(out.status.phase, Phase::Succeeded);
    assert!(out.actions.is_empty());
}

#[test]
fn a_stale_attempt_is_deleted_before_the_new_one_is_created() {
    let mut w = World::new(1, spec());
    w.tick(0);
    w.obs.workloads.get_mut("n01").unwrap().attempt = 0;
    w.ready("n01"); // an old attempt's Ready Pods do not count
    let out = w.tick(1);
    assert_eq!(w.deleted(), ["n01"]);
    assert!(w.created().is_empty());
    assert_eq!(out.status.nodes[0].phase, NodePhase::Running);
    w.tick(2);
    assert_eq!(w.created(), ["n01"]);
}

#[test]
fn a_lost_status_write_is_redone_without_churn() {
    let mut w = World::new(2, spec());
    let first = step(&w.bd, &w.obs, at(0));
    // The creates happened, the status write was lost.
    w.bd.status = None;
    w.tick(0);
    let again = step(&w.bd, &w.obs, at(0));
    assert_eq!(first.actions, w.last);
    assert!(
        again.actions.is_empty(),
        "the workloads exist: {:?}",
        again.actions
    );
    assert_eq!(again.status.nodes, first.status.nodes);
}

#[test]
fn workloads_of_nodes_the_job_did_not_choose_are_deleted() {
    let mut w = World::new(1, spec());
    w.obs.workloads.insert(
        "stray".into(),
        Progress {
            name: "job-stray".into(),
            attempt: 1,
            ..Default::default()
        },
    );
    w.tick(0);
    assert_eq!(w.deleted(), ["stray"]);
}

#[test]
fn the_step_is_deterministic() {
    let mut s = spec();
    s.parallelism = Some(3);
    s.failure_tolerance = Some(IntOrString::Int(2));
    let mut w = World::new(8, s);
    w.tick(0);
    w.fail("n02");
    w.ready("n01");
    let a = step(&w.bd, &w.obs, at(3));
    let b = step(&w.bd, &w.obs, at(3));
    assert_eq!(a, b);
    let json = |s: &Step| serde_json::to_string(&s.status).unwrap();
    assert_eq!(json(&a), json(&b));
    // Node order in the observed facts does not matter.
    w.obs.nodes.reverse();
    assert_eq!(step(&w.bd, &w.obs, at(3)), a);
}

#[test]
fn conditions_keep_their_transition_time_while_unchanged() {
    let mut w = World::new(1, spec());
    w.bd.spec.suspend = Some(true);
    w.tick(0);
    w.tick(9);
    let s = w.bd.status.as_ref().unwrap();
    let c = s
        .conditions
        .iter()
        .find(|c| c.type_ == COND_SUSPENDED)
        .unwrap();
    assert_eq!(c.last_transition_time.0, at(0));
    assert_eq!(c.observed_generation, Some(1));
}

#[test]
fn spec_errors_name_the_field() {
    let mut s = spec();
    assert_eq!(spec_error(&s, "job"), None);
    s.parallelism = Some(0);
    assert!(spec_error(&s, "job").unwrap().contains("spec.parallelism"));
    s.parallelism = None;
    s.node_names = vec!["Bad Name".into()];
    assert!(spec_error(&s, "job").unwrap().contains("spec.nodeNames"));
    s.node_names.clear();
    assert!(
        spec_error(&s, "Bad_Prefix")
            .unwrap()
            .contains("spec.namePrefix")
    );
    s.timeout = Some("0".into());
    assert_eq!(timeout(&s), Ok(None));
    s.failure_tolerance = Some(IntOrString::Int(-1));
    assert!(spec_error(&s, "job").unwrap().contains("negative"));
    s.failure_tolerance = Some(IntOrString::String("101%".into()));
    assert!(spec_error(&s, "job").unwrap().contains("0% to 100%"));
    s.failure_tolerance = None;
    s.retries = Some(-1);
    assert!(spec_error(&s, "job").unwrap().contains("spec.retries"));
    s.retries = Some(2);
    s.retry_backoff = Some("soon".into());
    assert!(spec_error(&s, "job").unwrap().contains("spec.retryBackoff"));
    s.retry_backoff = None;
    s.leave_grace = Some("a while".into());
    assert!(spec_error(&s, "job").unwrap().contains("spec.leaveGrace"));
}

#[test]
fn a_spec_made_invalid_while_running_fails_the_nodes_not_done() {
    let mut w = World::new(2, spec());
    w.tick(0);
    w.ready("n01");
    w.tick(1);
    w.bd.spec.timeout = Some("soon".into());
    w.tick(2);
    assert_eq!(w.phase(), Phase::Failed);
    assert_eq!(w.condition(COND_FAILED).unwrap().1, "InvalidSpec");
    assert_eq!(w.node("n01").phase, NodePhase::Succeeded);
    assert_eq!(w.node("n02").reason.as_deref(), Some("InvalidSpec"));
    assert_eq!(w.deleted(), ["n02"]);
}

#[test]
fn an_overridden_group_needs_its_own_number_of_pods() {
    let mut s = spec();
    s.overrides = vec![crate::batch::types::Override {
        node_selector: BTreeMap::from([("size".into(), "big".into())]),
        replicas: Some(2),
        ..Default::default()
    }];
    let mut w = World::new(2, s);
    w.obs.nodes[0].labels.insert("size".into(), "big".into());
    w.tick(0);
    w.all_ready();
    w.tick(1);
    // n01 has 1 of its 2 Pods Ready; n02 needs just 1.
    assert_eq!(w.node("n01").phase, NodePhase::Running);
    assert_eq!(w.node("n02").phase, NodePhase::Succeeded);
    let p = w.obs.workloads.get_mut("n01").unwrap();
    p.pods = 2;
    p.ready = 2;
    w.tick(2);
    assert_eq!(w.phase(), Phase::Succeeded);
}

fn continuous_spec(grace: &str) -> BatchDeploymentSpec {
    let mut s = spec();
    s.mode = Some(crate::batch::types::Mode::Continuous);
    s.leave_grace = Some(grace.into());
    s
}

#[test]
fn continuous_nodes_that_come_to_match_join_and_get_the_app() {
    let mut w = World::new(2, continuous_spec("30s"));
    w.tick(0);
    w.all_ready();
    w.tick(1);
    // Every node done, and yet the job stays Running: it never ends.
    assert_eq!(w.phase(), Phase::Running);
    assert_eq!(w.bd.status.as_ref().unwrap().summary, "2/2");
    w.obs.nodes.push(node("n03", "edge", true));
    w.obs.nodes[2].labels.insert("pool".into(), "edge".into()); // "other" joins too
    w.tick(2);
    assert_eq!(w.created(), ["n03", "other"]);
    w.all_ready();
    w.tick(3);
    assert_eq!(w.bd.status.as_ref().unwrap().summary, "4/4");
    assert_eq!(w.phase(), Phase::Running);
}

#[test]
fn continuous_a_node_that_stops_matching_loses_the_app_after_the_grace() {
    let mut w = World::new(3, continuous_spec("30s"));
    w.tick(0);
    w.all_ready();
    w.tick(1);
    w.obs.nodes[0].labels.insert("pool".into(), "core".into());
    let out = w.tick(10);
    let n = w.node("n01");
    assert_eq!(n.reason.as_deref(), Some("Leaving"));
    assert_eq!(n.phase, NodePhase::Succeeded, "keeps the app meanwhile");
    assert!(w.deleted().is_empty());
    assert_eq!(
        out.requeue_after,
        Some(std::time::Duration::from_millis(30_001))
    );
    w.tick(39);
    assert!(w.deleted().is_empty());
    w.tick(40);
    assert_eq!(w.deleted(), ["n01"]);
    let s = w.bd.status.as_ref().unwrap();
    assert_eq!(s.summary, "2/2");
    assert!(s.nodes.iter().all(|n| n.node != "n01"));
    assert_eq!(w.phase(), Phase::Running);
}

#[test]
fn continuous_a_node_matching_again_within_the_grace_keeps_the_app() {
    let mut w = World::new(1, continuous_spec("30s"));
    w.tick(0);
    w.all_ready();
    w.tick(1);
    w.obs.nodes[0].labels.insert("pool".into(), "core".into());
    w.tick(10);
    w.obs.nodes[0].labels.insert("pool".into(), "edge".into());
    w.tick(20);
    let n = w.node("n01");
    assert_eq!((n.reason, n.leaving_since), (None, None));
    w.tick(100);
    assert!(w.deleted().is_empty());
    assert_eq!(w.node("n01").attempts, 1);
}

#[test]
fn continuous_starts_with_no_matching_node_and_has_no_timeout() {
    let mut s = continuous_spec("30s");
    s.timeout = Some("1m".into());
    s.node_selector = BTreeMap::from([("pool".into(), "later".into())]);
    let mut w = World::new(1, s);
    let out = w.tick(0);
    assert_eq!(w.phase(), Phase::Running);
    assert_eq!(out.requeue_after, None);
    w.obs.nodes[0].labels.insert("pool".into(), "later".into());
    w.obs.nodes[0].ready = false;
    w.tick(500);
    assert_eq!(w.node("n01").phase, NodePhase::Waiting);
    w.obs.nodes[0].ready = true;
    w.tick(5000);
    assert_eq!(w.created(), ["n01"]);
    assert_eq!(w.phase(), Phase::Running);
}

#[test]
fn once_mode_still_chooses_its_nodes_once() {
    let mut w = World::new(1, spec());
    w.tick(0);
    w.obs.nodes.push(node("n02", "edge", true));
    w.all_ready();
    w.tick(1);
    assert_eq!(w.phase(), Phase::Succeeded);
    assert_eq!(w.bd.status.as_ref().unwrap().summary, "1/1");
}
