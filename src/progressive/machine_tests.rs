use super::*;
use crate::progressive::types::{AppImageRolloutSpec, Gate, Promote};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn wave(name: &str, labels: &[(&str, &str)], namespaces: &[&str]) -> Wave {
    Wave {
        name: name.into(),
        match_labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
        max_in_flight: None,
        gate: Gate {
            progress_deadline_seconds: Some(100),
            ..Gate::default()
        },
    }
}

/// canary (tier=canary), regions (namespaces east, west), rest.
fn policy() -> AppImageRollout {
    let mut r = AppImageRollout::new(
        "app",
        AppImageRolloutSpec {
            waves: vec![
                wave("canary", &[("tier", "canary")], &[]),
                wave("regions", &[], &["east", "west"]),
                wave("rest", &[], &[]),
            ],
            ..AppImageRolloutSpec::default()
        },
    );
    r.metadata.generation = Some(1);
    r
}

fn workload(ns: &str, name: &str, tier: &str, runs: i64) -> WorkloadFact {
    WorkloadFact {
        kind: "Deployment".into(),
        namespace: ns.into(),
        name: name.into(),
        labels: [("tier".to_string(), tier.to_string())].into(),
        runs: Some(runs),
        health: Health {
            desired: 1,
            ready_since: vec![t(-1000)],
            ..Health::default()
        },
    }
}

/// Five workloads on revision 1: a canary, two in east/west, two elsewhere.
fn fleet() -> Facts {
    Facts {
        revision: 2,
        workloads: vec![
            workload("a", "canary", "canary", 1),
            workload("east", "e1", "main", 1),
            workload("west", "w1", "main", 1),
            workload("south", "s1", "main", 1),
            workload("south", "s2", "main", 1),
        ],
        check: None,
    }
}

fn moves(step: &Step) -> Vec<(String, i64)> {
    step.actions
        .iter()
        .filter_map(|a| match a {
            Action::Move {
                namespace,
                name,
                to,
                ..
            } => Some((format!("{namespace}/{name}"), *to)),
            _ => None,
        })
        .collect()
}

fn reasons(step: &Step) -> Vec<String> {
    step.actions
        .iter()
        .filter_map(|a| match a {
            Action::Event { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

/// Apply `step`'s moves to `facts`: the workloads now run what they were moved to, Ready at `now`.
fn follow(facts: &mut Facts, step: &Step, ready_at: Timestamp) {
    for (id, to) in moves(step) {
        let f = facts
            .workloads
            .iter_mut()
            .find(|f| format!("{}/{}", f.namespace, f.name) == id)
            .unwrap();
        f.runs = Some(to);
        f.health.ready_since = vec![ready_at];
    }
}

/// Run the machine once at `now`, storing the status as the controller does (through JSON).
fn run(r: &mut AppImageRollout, facts: &Facts, now: Timestamp) -> Step {
    let step = step(r, facts, now);
    let json = serde_json::to_value(&step.status).unwrap();
    r.status = Some(serde_json::from_value(json).unwrap());
    step
}

#[test]
fn a_good_revision_moves_wave_by_wave() {
    let mut r = policy();
    let mut facts = fleet();
    let s = run(&mut r, &facts, t(0));
    assert_eq!(moves(&s), vec![("a/canary".to_string(), 2)]);
    assert!(reasons(&s).contains(&"RolloutStarted".to_string()));
    assert_eq!(s.status.phase, Some(Phase::Progressing));
    assert_eq!(s.status.wave_name.as_deref(), Some("canary"));
    // Not moved yet by the cluster: the move is sent again (level-triggered), nothing else.
    let again = run(&mut r, &facts, t(1));
    assert_eq!(moves(&again), vec![("a/canary".to_string(), 2)]);
    follow(&mut facts, &s, t(2));
    let s = run(&mut r, &facts, t(3));
    assert_eq!(
        s.status.wave_name.as_deref(),
        Some("regions"),
        "{:?}",
        s.status
    );
    assert_eq!(
        moves(&s),
        vec![("east/e1".to_string(), 2), ("west/w1".to_string(), 2)]
    );
    assert!(reasons(&s).contains(&"WavePassed".to_string()));
    follow(&mut facts, &s, t(4));
    let s = run(&mut r, &facts, t(5));
    assert_eq!(
        moves(&s),
        vec![("south/s1".to_string(), 2), ("south/s2".to_string(), 2)]
    );
    follow(&mut facts, &s, t(6));
    let s = run(&mut r, &facts, t(7));
    assert_eq!(s.status.phase, Some(Phase::Succeeded));
    assert!(reasons(&s).contains(&"RolloutSucceeded".to_string()));
    assert_eq!(
        s.status.waves.iter().map(|w| w.updated).collect::<Vec<_>>(),
        vec![1, 2, 2]
    );
    // Succeeded is quiet.
    let s = run(&mut r, &facts, t(8));
    assert!(s.actions.is_empty(), "{:?}", s.actions);
}

#[test]
fn a_wave_waits_for_min_ready_seconds_and_says_when_to_look_again() {
    let mut r = policy();
    r.spec.waves[0].gate.min_ready_seconds = 30;
    let mut facts = fleet();
    let s = run(&mut r, &facts, t(0));
    follow(&mut facts, &s, t(10));
    let s = run(&mut r, &facts, t(20));
    assert!(
        moves(&s).is_empty(),
        "ready for 10 s of 30: {:?}",
        s.actions
    );
    assert_eq!(s.requeue, Some(SignedDuration::from_secs(20)));
    assert_eq!(s.status.waves[0].ready, 0);
    let s = run(&mut r, &facts, t(40));
    assert_eq!(s.status.wave_name.as_deref(), Some("regions"));
}

#[test]
fn max_in_flight_moves_a_wave_a_few_at_a_time() {
    let mut r = policy();
    r.spec.waves[2].max_in_flight = Some(IntOrString::Int(1));
    let mut facts = fleet();
    for _ in 0..2 {
        let s = run(&mut r, &facts, t(0));
        follow(&mut facts, &s, t(0));
    }
    let s = run(&mut r, &facts, t(1));
    assert_eq!(moves(&s), vec![("south/s1".to_string(), 2)]);
    // s1 moved but not Ready yet: s2 waits.
    facts.workloads[3].runs = Some(2);
    facts.workloads[3].health.ready_since.clear();
    let s = run(&mut r, &facts, t(2));
    assert!(moves(&s).is_empty(), "{:?}", s.actions);
    facts.workloads[3].health.ready_since = vec![t(2)];
    let s = run(&mut r, &facts, t(3));
    assert_eq!(moves(&s), vec![("south/s2".to_string(), 2)]);
}

#[test]
fn a_manual_pause_holds_until_promote_names_this_wave() {
    let mut r = policy();
    r.spec.waves[0].gate.pause = true;
    let mut facts = fleet();
    let s = run(&mut r, &facts, t(0));
    follow(&mut facts, &s, t(0));
    let s = run(&mut r, &facts, t(1));
    assert_eq!(s.status.phase, Some(Phase::WaitingForPromote));
    assert!(moves(&s).is_empty());
    assert_eq!(reasons(&s), vec!["WaitingForPromote".to_string()]);
    // Told once; a promotion of another revision or wave does not count.
    r.spec.promote = Some(Promote {
        revision: 1,
        wave: 0,
    });
    let s = run(&mut r, &facts, t(500));
    assert_eq!(
        s.status.phase,
        Some(Phase::WaitingForPromote),
        "no deadline while waiting"
    );
    assert!(s.actions.is_empty(), "{:?}", s.actions);
    r.spec.promote = Some(Promote {
        revision: 2,
        wave: 0,
    });
    let s = run(&mut r, &facts, t(501));
    assert_eq!(s.status.wave_name.as_deref(), Some("regions"));
    assert_eq!(moves(&s).len(), 2);
}

#[test]
fn paused_moves_nothing_and_resume_restarts_the_deadline() {
    let mut r = policy();
    let mut facts = fleet();
    let s = run(&mut r, &facts, t(0));
    follow(&mut facts, &s, t(0));
    r.spec.paused = true;
    let s = run(&mut r, &facts, t(1));
    assert_eq!(s.status.phase, Some(Phase::Paused));
    assert!(moves(&s).is_empty());
    r.spec.paused = false;
    let s = run(&mut r, &facts, t(1000));
    assert_eq!(s.status.phase, Some(Phase::Progressing));
    assert_eq!(s.status.wave_name.as_deref(), Some("regions"));
}

#[test]
fn a_wave_that_misses_its_deadline_aborts_and_only_moved_workloads_go_back() {
    let mut r = policy();
    let mut facts = fleet();
    let s = run(&mut r, &facts, t(0));
    assert_eq!(s.requeue, Some(SignedDuration::from_secs(100)));
    // The canary moves but never becomes Ready.
    facts.workloads[0].runs = Some(2);
    facts.workloads[0].health.ready_since.clear();
    let s = run(&mut r, &facts, t(50));
    assert!(moves(&s).is_empty());
    let s = run(&mut r, &facts, t(101));
    assert_eq!(s.status.phase, Some(Phase::Aborting));
    assert_eq!(s.status.reason.as_deref(), Some("ProgressDeadlineExceeded"));
    let msg = s.status.message.clone().unwrap();
    assert!(msg.contains("wave \"canary\" did not pass its gate within 100s: 1 of 1 workloads not ready on revision 2 (Deployment a/canary)"), "{msg}");
    assert_eq!(
        moves(&s),
        vec![("a/canary".to_string(), 1)],
        "only the canary goes back"
    );
    follow(&mut facts, &s, t(102));
    let s = run(&mut r, &facts, t(103));
    assert_eq!(s.status.phase, Some(Phase::Aborted));
    assert_eq!(s.status.failed, vec![2]);
    assert!(reasons(&s).contains(&"RolloutAborted".to_string()));
    // Aborted holds: revision 2 is not tried again.
    let s = run(&mut r, &facts, t(104));
    assert!(s.actions.is_empty(), "{:?}", s.actions);
}

#[test]
fn restarts_over_the_limit_and_denials_fail_the_gate_at_once() {
    for (restarts, denied, reason) in [
        (3, None, "GateFailed"),
        (0, Some("admission webhook denied: signature"), "PodsDenied"),
    ] {
        let mut r = policy();
        let mut facts = fleet();
        run(&mut r, &facts, t(0));
        facts.workloads[0].runs = Some(2);
        facts.workloads[0].health.restarts = restarts;
        facts.workloads[0].health.denied = denied.map(String::from);
        let s = run(&mut r, &facts, t(1));
        assert_eq!(s.status.reason.as_deref(), Some(reason));
        let msg = s.status.message.clone().unwrap();
        assert!(
            msg.starts_with("wave \"canary\": Deployment a/canary: "),
            "{msg}"
        );
        if let Some(d) = denied {
            assert!(msg.contains(d), "{msg}");
        }
        assert_eq!(moves(&s), vec![("a/canary".to_string(), 1)]);
    }
}

#[test]
fn abort_mid_way_moves_back_the_waves_done_and_nothing_else() {
    let mut r = policy();
    // The second wave waits for a promotion: two of three waves done, the third untouched.
    r.spec.waves[1].gate.pause = true;
    let mut facts = fleet();
    for i in 0..3 {
        let s = run(&mut r, &facts, t(i));
        follow(&mut facts, &s, t(i));
    }
    let s = run(&mut r, &facts, t(3));
    assert_eq!(s.status.phase, Some(Phase::WaitingForPromote));
    r.spec.abort = Some(2);
    let s = run(&mut r, &facts, t(4));
    assert_eq!(s.status.reason.as_deref(), Some("Aborted"));
    let mut back = moves(&s);
    back.sort();
    let want =
        [("a/canary", 1), ("east/e1", 1), ("west/w1", 1)].map(|(id, to)| (id.to_string(), to));
    assert_eq!(
        back,
        want.to_vec(),
        "the third wave was never moved: never touched"
    );
    follow(&mut facts, &s, t(5));
    let s = run(&mut r, &facts, t(6));
    assert_eq!(s.status.phase, Some(Phase::Aborted));
    assert!(facts.workloads.iter().all(|f| f.runs == Some(1)));
}

#[test]
fn a_failed_revision_waits_for_retry_and_a_new_revision_starts_afresh() {
    let mut r = policy();
    let mut facts = fleet();
    run(&mut r, &facts, t(0));
    r.spec.abort = Some(2);
    let s = run(&mut r, &facts, t(1));
    follow(&mut facts, &s, t(1));
    let s = run(&mut r, &facts, t(2));
    assert_eq!(s.status.phase, Some(Phase::Aborted));
    // `rollout retry` clears the abort it answers.
    (r.spec.retry, r.spec.abort) = (Some(2), None);
    let s = run(&mut r, &facts, t(3));
    assert_eq!(s.status.phase, Some(Phase::Progressing));
    assert!(s.status.failed.is_empty());
    assert_eq!(moves(&s), vec![("a/canary".to_string(), 2)]);
    // Revision 3 arrives mid-way: a new rollout from wave 0.
    facts.revision = 3;
    let s = run(&mut r, &facts, t(4));
    assert_eq!(s.status.revision, Some(3));
    assert_eq!(s.status.wave_name.as_deref(), Some("canary"));
    assert_eq!(moves(&s), vec![("a/canary".to_string(), 3)]);
}

#[test]
fn a_revision_that_failed_before_is_held_when_it_comes_back() {
    let mut r = policy();
    r.status = Some(AppImageRolloutStatus {
        revision: Some(3),
        phase: Some(Phase::Succeeded),
        failed: vec![2],
        ..AppImageRolloutStatus::default()
    });
    let s = run(&mut r, &fleet(), t(0));
    assert_eq!(s.status.phase, Some(Phase::Aborted));
    assert_eq!(s.status.reason.as_deref(), Some("FailedBefore"));
    assert!(moves(&s).is_empty());
}

#[test]
fn a_new_leader_resumes_from_the_status_without_repeating_a_wave() {
    let mut r = policy();
    let mut facts = fleet();
    let s = run(&mut r, &facts, t(0));
    follow(&mut facts, &s, t(0));
    let s = run(&mut r, &facts, t(1));
    // The leader died after writing the status and before moving west/w1.
    facts.workloads[1].runs = Some(2);
    let resumed = run(&mut r, &facts, t(2));
    assert_eq!(s.status.wave_name.as_deref(), Some("regions"));
    assert_eq!(
        moves(&resumed),
        vec![("west/w1".to_string(), 2)],
        "only the lost move"
    );
    assert!(!reasons(&resumed).contains(&"RolloutStarted".to_string()));
}

#[test]
fn an_invalid_policy_moves_nothing_and_says_which_field() {
    let mut r = policy();
    r.spec.waves[1].name = "canary".into();
    let s = run(&mut r, &fleet(), t(0));
    assert!(moves(&s).is_empty());
    assert_eq!(s.status.reason.as_deref(), Some("InvalidSpec"));
    assert!(
        s.status
            .message
            .unwrap()
            .contains("spec.waves[1].name \"canary\" is used twice")
    );
}

#[test]
fn a_policy_made_after_its_revision_rolled_out_adopts_it_quietly() {
    let mut r = policy();
    r.spec.waves[0].gate.pause = true;
    let mut facts = fleet();
    facts.revision = 1;
    let s = run(&mut r, &facts, t(0));
    assert_eq!(s.status.phase, Some(Phase::Succeeded));
    assert_eq!(s.status.reason.as_deref(), Some("Current"));
    assert!(s.actions.is_empty(), "no moves, no Events: {:?}", s.actions);
    // The next revision is a real rollout.
    facts.revision = 2;
    let s = run(&mut r, &facts, t(1));
    assert_eq!(moves(&s), vec![("a/canary".to_string(), 2)]);
}

#[test]
fn a_check_job_runs_once_the_wave_is_ready_and_must_succeed() {
    use crate::progressive::machine::CheckState;
    use crate::progressive::types::{Check, check_name};
    let mut r = policy();
    r.spec.waves[0].gate.check = Some(Check {
        namespace: "tests".into(),
        role: "smoke".into(),
        template: None,
    });
    let mut facts = fleet();
    let s = run(&mut r, &facts, t(0));
    follow(&mut facts, &s, t(0));
    // Ready: the check is made, and the wave waits for it.
    let s = run(&mut r, &facts, t(1));
    let name = check_name("app", 2, 0);
    assert_eq!(name, "app-r2-w0-check");
    let made = s.actions.iter().any(|a| matches!(a, Action::Check { name: n, namespace, revision: 2, .. } if *n == name && namespace == "tests"));
    assert!(made, "{:?}", s.actions);
    assert_eq!(s.status.reason.as_deref(), Some("Checking"));
    facts.check = Some((name.clone(), CheckState::Running));
    let s = run(&mut r, &facts, t(2));
    assert!(s.actions.is_empty(), "made once: {:?}", s.actions);
    // Another wave's check state is not this one's.
    facts.check = Some(("app-r2-w1-check".into(), CheckState::Succeeded));
    let s = run(&mut r, &facts, t(3));
    assert_eq!(s.status.wave_name.as_deref(), Some("canary"));
    facts.check = Some((name.clone(), CheckState::Succeeded));
    let s = run(&mut r, &facts, t(4));
    assert_eq!(s.status.wave_name.as_deref(), Some("regions"));
    assert!(reasons(&s).contains(&"WavePassed".to_string()));
}

#[test]
fn a_failed_or_late_check_aborts() {
    use crate::progressive::machine::CheckState;
    use crate::progressive::types::{Check, check_name};
    for (state, at, reason) in [
        (
            Some(CheckState::Failed("BackoffLimitExceeded".into())),
            5,
            "CheckFailed",
        ),
        (Some(CheckState::Running), 101, "ProgressDeadlineExceeded"),
    ] {
        let mut r = policy();
        r.spec.waves[0].gate.check = Some(Check {
            namespace: "tests".into(),
            ..Check::default()
        });
        let mut facts = fleet();
        let s = run(&mut r, &facts, t(0));
        follow(&mut facts, &s, t(0));
        run(&mut r, &facts, t(1));
        facts.check = state.map(|s| (check_name("app", 2, 0), s));
        let s = run(&mut r, &facts, t(at));
        assert_eq!(s.status.reason.as_deref(), Some(reason), "{:?}", s.status);
        let message = s.status.message.clone().unwrap();
        assert!(message.starts_with("wave \"canary\": check Job tests/app-r2-w0-check "));
        assert_eq!(moves(&s), vec![("a/canary".to_string(), 1)]);
    }
}
