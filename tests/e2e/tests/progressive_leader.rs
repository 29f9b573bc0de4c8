//! A progressive rollout survives its controller's leader (issue 28): the leader dies in the
//! middle of the last wave and the new one resumes from the status, with no wave repeated and
//! none skipped. A test binary of its own: its two controller processes share a Lease of their
//! own, and would act beside the other binaries' leaders on one cluster. The world's webhook
//! serves admission only (`--reconcile=false`), as the chart's admission Deployment does.

use appimage_e2e::wait_until;
use appimage_e2e::waves::{Rollouts, W, event_count};
use appimage_e2e::webhook::Webhook;
use appimage_e2e::world::{REVISIONS_CRD, ROLLOUTS_CRD, Shared, WAIT, World};
use serde_json::json;

#[test]
fn a_new_leader_resumes_where_the_status_says() {
    let lease = appimage_e2e::unique("waves-leader");
    let flags = [
        format!("--lease-name={lease}"),
        "--lease-duration=2s".to_string(),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let shared = Shared::once(&[REVISIONS_CRD, ROLLOUTS_CRD], "waves-leader");
    let w = World::with_webhook_args(shared, "waves-leader", &["--reconcile=false"]);
    let start = || Webhook::start(w.c, &w.s.tls, &w.s.signer.pub_dir, &flags);
    let mut controllers = [start(), start()];
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
    let holder = w.c.kubectl_ok(&[
        "get",
        "lease",
        &lease,
        "-n",
        "default",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    let leader = controllers
        .iter_mut()
        .find(|c| holder.ends_with(&format!("-{}", c.child.id())))
        .unwrap_or_else(|| panic!("the Lease names {holder:?}, neither controller process"));
    leader.child.kill().unwrap();
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
