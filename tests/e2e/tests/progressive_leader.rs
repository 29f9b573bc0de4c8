//! A progressive rollout survives its controller's leader (issue 28): the leader dies in the
//! middle of the last wave and the new one resumes from the status, with no wave repeated and
//! none skipped. A test binary of its own: its two controller processes share a Lease of their
//! own, and would act beside the other binaries' leaders on one cluster. The world's webhook
//! serves admission only (`--reconcile=false`), as the chart's admission Deployment does.

use appimage_e2e::leaders::Leaders;
use appimage_e2e::wait_until;
use appimage_e2e::waves::{Rollouts, W, event_count};
use appimage_e2e::world::{REVISIONS_CRD, ROLLOUTS_CRD, Shared, WAIT, World};
use serde_json::{Value, json};

/// A world whose webhook serves admission only.
fn world(prefix: &str) -> World {
    let shared = Shared::once(&[REVISIONS_CRD, ROLLOUTS_CRD], "waves-leader");
    World::with_webhook_args(shared, prefix, &["--reconcile=false"])
}

/// The rollout status entry of workload `x`.
fn entry(r: &Value, x: &W) -> Value {
    r["status"]["workloads"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["namespace"] == x.ns.as_str() && e["name"] == x.name.as_str())
        .cloned()
        .unwrap_or_default()
}

#[test]
fn a_new_leader_resumes_where_the_status_says() {
    let w = world("waves-leader");
    let mut leaders = Leaders::start(&w, 2);
    w.apply_image(&w.spec(false, false));
    w.revision(1);
    let canary = w.deploy_in(&w.ns, "Deployment", "canary", &["tier=canary"]);
    let rest: Vec<W> = (0..3)
        .map(|n| w.deploy_in(&w.ns, "Deployment", &format!("d{n}"), &[]))
        .collect();
    for x in std::iter::once(&canary).chain(&rest) {
        w.on(x, 1);
    }
    w.policy(json!([
        {"name": "canary", "matchLabels": {"tier": "canary"}},
        {"name": "rest", "maxInFlight": 1, "gate": {"minReadySeconds": 4}}
    ]));
    w.apply_image(&w.spec(true, false));
    w.revision(2);
    // Mid-way through the last wave (one of three moved), the leader dies.
    let ok = wait_until(WAIT, || {
        let r = w.rollout();
        r["status"]["wave"] == 1 && r["status"]["waves"][1]["updated"] == 1
    });
    assert!(ok, "never mid-way: {}", w.status());
    leaders.kill_leader(&w);
    let r = w.phase("Succeeded", None);
    assert_eq!(r["status"]["revision"], 2);
    for x in std::iter::once(&canary).chain(&rest) {
        w.on(x, 2);
    }
    // No wave repeated (one start, each wave passed once) and none skipped.
    assert_eq!(
        event_count(&w, "RolloutStarted"),
        1,
        "{}",
        w.image_events().join("\n")
    );
    assert_eq!(
        event_count(&w, "WavePassed"),
        2,
        "{}",
        w.image_events().join("\n")
    );
    assert_eq!(event_count(&w, "RolloutSucceeded"), 1);
}

/// A new leader that has not read the rollout policies yet must not take the AppImage for one
/// without a policy and move its Auto workloads all at once: the last wave, held behind a
/// paused one, is moved by the rollout after the promote, by nobody before it.
#[test]
fn a_new_leader_moves_nothing_past_a_paused_wave() {
    let w = world("waves-hold");
    let mut leaders = Leaders::start(&w, 3);
    w.apply_image(&w.spec(false, false));
    w.revision(1);
    let canary = w.deploy_in(&w.ns, "Deployment", "canary", &["tier=canary"]);
    let rest = w.deploy_in(&w.ns, "Deployment", "d0", &[]);
    for x in [&canary, &rest] {
        w.on(x, 1);
    }
    w.policy(json!([
        {"name": "canary", "matchLabels": {"tier": "canary"}, "gate": {"pause": true}},
        {"name": "rest"}
    ]));
    w.apply_image(&w.spec(true, false));
    w.revision(2);
    w.phase("WaitingForPromote", Some(0));
    // Two leaders in turn take over while the rollout waits.
    for _ in 0..2 {
        leaders.kill_leader(&w);
        w.phase("WaitingForPromote", Some(0));
    }
    w.plugin(&["rollout", "promote", &w.image]);
    let r = w.phase("Succeeded", None);
    w.on(&rest, 2);
    let e = entry(&r, &rest);
    assert_eq!(
        e["moved"], true,
        "moved by the rollout after the promote: {e}"
    );
    assert_eq!(e["from"], 1, "{e}");
}
