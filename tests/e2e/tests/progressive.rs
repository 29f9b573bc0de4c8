//! Progressive rollouts (issue 28) on the whole test cluster: kwok nodes, the webhook admitting
//! the test's namespaces and running its controllers, the real kubectl with our plugin. A
//! revision moves through waves of an AppImage's workloads across namespaces; a manual pause
//! holds until `rollout promote`; a revision whose canary Pods never become Ready (kwok's
//! `APPIMAGE_TEST_HOOK=never-ready` env hook, carried by the revision itself) aborts at the
//! wave's deadline and the canary comes back with its old config and Service port; `rollout
//! abort` after two of three waves moves those two back and nothing else; a Pod that admission
//! denies fails the gate with the denial's words. The leader's death: `progressive_leader.rs`.

use appimage_e2e::wait_until;
use appimage_e2e::waves::{Rollouts, W, finish, updated_config};
use appimage_e2e::world::{REVISIONS_CRD, ROLLOUTS_CRD, Shared, WAIT};
use serde_json::{Value, json};

const CONFIG: &str = "config.appimage.kuscia.secretflow/task-config.conf";

appimage_e2e::world_wrapper!(
    /// One test's world: a webhook, namespaces it admits, a signed seed AppImage.
    World = Shared::once(&[REVISIONS_CRD, ROLLOUTS_CRD], "waves")
);

/// Three waves: `tier=canary`, the namespaces `east` and `west` (a manual pause when asked),
/// then the rest.
fn three_waves(east: &str, west: &str, pause: bool) -> Value {
    json!([
        {"name": "canary", "matchLabels": {"tier": "canary"}, "gate": {"minReadySeconds": 3}},
        {"name": "regions", "namespaces": [east, west], "gate": {"pause": pause}},
        {"name": "rest"}
    ])
}

#[test]
fn a_good_revision_moves_through_the_waves_and_a_pause_holds_until_promote() {
    let w = World::new("waves-good");
    let (east, west) = (w.admitted_namespace("east"), w.admitted_namespace("west"));
    w.apply_image(&w.spec(false, false));
    w.revision(1);
    // 10 Deployments and a StatefulSet: one canary, 3 + 3 in the regions, 3 + 1 elsewhere.
    let canary = w.deploy_in(&w.ns, "Deployment", "canary", &["tier=canary"]);
    let mut regions = Vec::new();
    for (ns, n) in [
        (&east, 0),
        (&east, 1),
        (&east, 2),
        (&west, 0),
        (&west, 1),
        (&west, 2),
    ] {
        regions.push(w.deploy_in(ns, "Deployment", &format!("r{n}"), &[]));
    }
    let mut rest: Vec<W> = (0..3)
        .map(|n| w.deploy_in(&w.ns, "Deployment", &format!("d{n}"), &[]))
        .collect();
    rest.push(w.deploy_in(&w.ns, "StatefulSet", "sts", &[]));
    for x in std::iter::once(&canary).chain(&regions).chain(&rest) {
        w.on(x, 1);
    }
    let mut waves = three_waves(&east, &west, true);
    // The canary wave's check: the AppImage's role run as a Job of the new revision.
    waves[0]["gate"]["check"] = json!({"namespace": w.ns});
    w.policy(waves);
    w.apply_image(&w.spec(true, false));
    w.revision(2);
    let watching = w.watch();

    // The canary, then the regions; there the pause holds, and the rest stays on revision 1.
    let pod = w.on(&canary, 2);
    assert!(
        updated_config(&pod),
        "the canary's Pod has the new config: {}",
        pod["metadata"]["annotations"]
    );
    for x in &regions {
        w.on(x, 2);
    }
    let r = w.phase("WaitingForPromote", Some(1));
    // The check ran on revision 2 and succeeded before the regions moved.
    let job_name = format!("{}-r2-w0-check", w.image);
    let job: Value = serde_json::from_str(
        &w.c.kubectl_ok(&["get", "job", "-n", &w.ns, &job_name, "-o", "json"]),
    )
    .unwrap();
    assert_eq!(
        job["spec"]["template"]["metadata"]["annotations"]["appimage.kuscia.secretflow/revision"],
        "2"
    );
    let complete = job["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Complete" && c["status"] == "True");
    assert!(complete, "{}", job["status"]);
    assert_eq!(
        job["metadata"]["ownerReferences"][0]["kind"],
        "AppImageRollout"
    );
    assert_eq!(r["status"]["waves"][1]["ready"], 6, "{}", r["status"]);
    for x in &rest {
        assert_eq!(
            w.runs(x),
            Some(1),
            "{x:?} moved before promote:\n{}",
            w.status()
        );
    }
    let shown = w.status();
    assert!(
        shown.contains(
            "WaitingForPromote in wave 2/3 \"regions\": 6 of 6 workloads updated, 6 ready"
        ),
        "{shown}"
    );
    w.plugin(&["rollout", "promote", &w.image]);
    for x in &rest {
        w.on(x, 2);
    }
    w.phase("Succeeded", None);
    let (ok, out) = finish(watching);
    assert!(ok, "rollout status -w exits 0 on success:\n{out}");
    let at = |needle: &str| {
        out.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in:\n{out}"))
    };
    assert!(
        at("wave 1/3 \"canary\"") < at("wave 2/3 \"regions\""),
        "{out}"
    );
    assert!(
        at("wave 2/3 \"regions\"") < at("WaitingForPromote"),
        "{out}"
    );
    assert!(at("WaitingForPromote") < at("wave 3/3 \"rest\""), "{out}");
    assert!(
        at("wave 3/3 \"rest\"") < at("revision 2 Succeeded"),
        "{out}"
    );
    let events = w.image_events().join("\n");
    for reason in [
        "RolloutStarted",
        "WavePassed",
        "WaitingForPromote",
        "RolloutSucceeded",
    ] {
        assert!(
            events.contains(reason),
            "no {reason} Event on the AppImage:\n{events}"
        );
    }
}

#[test]
fn a_bad_revision_aborts_at_the_deadline_and_the_canary_comes_back_whole() {
    let w = World::new("waves-bad");
    w.apply_image(&w.spec(false, false));
    w.revision(1);
    let canary = w.deploy_in(&w.ns, "Deployment", "canary", &["tier=canary"]);
    let others: Vec<W> = (0..2)
        .map(|n| w.deploy_in(&w.ns, "Deployment", &format!("d{n}"), &[]))
        .collect();
    let old_pod = w.on(&canary, 1);
    for x in &others {
        w.on(x, 1);
    }
    let old_port = w.c.kubectl_ok(&[
        "get",
        "service",
        "-n",
        &w.ns,
        "canary-global",
        "-o",
        "jsonpath={.spec.ports[0].port}",
    ]);
    w.policy(json!([
        {"name": "canary", "matchLabels": {"tier": "canary"}, "gate": {"progressDeadlineSeconds": 20}},
        {"name": "rest"}
    ]));
    // Revision 2: the update, whose Pods never become Ready.
    w.apply_image(&w.spec(true, true));
    w.revision(2);
    let watching = w.watch();
    let ok = wait_until(WAIT, || w.runs(&canary) == Some(2));
    assert!(ok, "the canary never moved:\n{}", w.status());
    let r = w.phase("Aborted", None);
    assert_eq!(
        r["status"]["reason"], "ProgressDeadlineExceeded",
        "{}",
        r["status"]
    );
    let message = r["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("wave \"canary\" did not pass its gate within 20s: 1 of 1 workloads not ready on revision 2"), "{message}");
    assert_eq!(r["status"]["failed"], json!([2]));
    // Back whole: revision 1's template, Pod, config and Service port.
    let pod = w.on(&canary, 1);
    assert!(
        !updated_config(&pod),
        "the old config: {}",
        pod["metadata"]["annotations"]
    );
    assert_eq!(
        pod["metadata"]["annotations"][CONFIG], old_pod["metadata"]["annotations"][CONFIG],
        "the same config file as before the rollout"
    );
    let port = || {
        w.c.kubectl_ok(&[
            "get",
            "service",
            "-n",
            &w.ns,
            "canary-global",
            "-o",
            "jsonpath={.spec.ports[0].port}",
        ])
    };
    let back = wait_until(WAIT, || port() == old_port);
    assert!(
        back,
        "the canary's Service port is {} again, not {old_port}",
        port()
    );
    // No other wave was touched, and revision 2 is not tried again.
    for x in &others {
        assert_eq!(w.runs(x), Some(1), "{x:?} was moved");
    }
    let (ok, out) = finish(watching);
    assert!(!ok, "rollout status -w exits non-zero on abort:\n{out}");
    assert!(
        out.contains("ProgressDeadlineExceeded") && out.contains("rollout of revision 2 aborted"),
        "{out}"
    );
    let events = w.image_events().join("\n");
    assert!(
        events.contains("RolloutAborting: wave \"canary\" did not pass its gate"),
        "{events}"
    );
    assert!(events.contains("RolloutAborted"), "{events}");
    std::thread::sleep(std::time::Duration::from_secs(6));
    assert_eq!(
        w.runs(&canary),
        Some(1),
        "an aborted revision is not retried:\n{}",
        w.status()
    );
}

#[test]
fn abort_after_two_of_three_waves_moves_those_back_and_nothing_else() {
    let w = World::new("waves-abort");
    let (east, west) = (w.admitted_namespace("east"), w.admitted_namespace("west"));
    w.apply_image(&w.spec(false, false));
    w.revision(1);
    let canary = w.deploy_in(&w.ns, "Deployment", "canary", &["tier=canary"]);
    let regions = [
        w.deploy_in(&east, "Deployment", "r0", &[]),
        w.deploy_in(&west, "Deployment", "r1", &[]),
    ];
    let rest = w.deploy_in(&w.ns, "Deployment", "d0", &[]);
    for x in [&canary, &regions[0], &regions[1], &rest] {
        w.on(x, 1);
    }
    w.policy(three_waves(&east, &west, true));
    w.apply_image(&w.spec(true, false));
    w.revision(2);
    w.phase("WaitingForPromote", Some(1));
    for x in [&canary, &regions[0], &regions[1]] {
        w.on(x, 2);
    }
    let out = w.plugin(&["rollout", "abort", &w.image]);
    assert!(out.contains("aborted"), "{out}");
    let r = w.phase("Aborted", None);
    assert_eq!(r["status"]["reason"], "Aborted", "{}", r["status"]);
    for x in [&canary, &regions[0], &regions[1]] {
        let pod = w.on(x, 1);
        assert!(!updated_config(&pod), "{x:?}: the old config");
    }
    assert_eq!(w.runs(&rest), Some(1), "the third wave was never moved");
    let moved: Vec<&Value> = r["status"]["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["moved"] == true)
        .collect();
    assert_eq!(moved.len(), 3, "{}", r["status"]);
    // Retry rolls it out again from the first wave.
    w.plugin(&["rollout", "retry", &w.image]);
    w.on(&canary, 2);
    w.phase("WaitingForPromote", Some(1));
    assert_eq!(w.runs(&rest), Some(1));
}

#[test]
fn a_pod_denied_by_admission_fails_the_gate_with_the_denials_words() {
    let w = World::new("waves-denied");
    w.apply_image(&w.spec(false, false));
    w.revision(1);
    let canary = w.deploy_in(&w.ns, "Deployment", "canary", &["tier=canary"]);
    let rest = w.deploy_in(&w.ns, "Deployment", "d0", &[]);
    w.on(&canary, 1);
    w.on(&rest, 1);
    // A first wave of no workload that waits for promote: the revision is admitted when the
    // rollout starts, and its key is gone when the canary's Pods are made.
    w.policy(json!([
        {"name": "hold", "matchLabels": {"tier": "none"}, "gate": {"pause": true}},
        {"name": "canary", "matchLabels": {"tier": "canary"}},
        {"name": "rest"}
    ]));
    let other = tempfile::tempdir().unwrap();
    let second = appimage_e2e::webhook::SigningKey::new(other.path());
    let trusted = w.s.signer.pub_dir.join(format!("{}.pub", w.image));
    std::fs::copy(second.pub_dir.join("sign.pub"), &trusted).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let mut img = w.spec(true, false);
    img.spec.image.sign = Some(second.sign(&appimage::signature::payload(&img)));
    w.apply_image(&img);
    w.revision(2);
    w.phase("WaitingForPromote", Some(0));
    // The key that signed revision 2 is no longer trusted: its Pods are denied.
    std::fs::remove_file(&trusted).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    w.plugin(&["rollout", "promote", &w.image]);
    let r = w.phase("Aborted", None);
    assert_eq!(r["status"]["reason"], "PodsDenied", "{}", r["status"]);
    let message = r["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(&format!(
            "wave \"canary\": Deployment {}/canary: Pods not created: ",
            w.ns
        )),
        "{message}"
    );
    assert!(
        message.contains("denied the request") && message.contains("signature"),
        "{message}"
    );
    let shown = w.status();
    // And in kubectl appimage status, under the workloads.
    let status = w.plugin(&["status", &w.image, "-n", &w.ns]);
    assert!(
        status.contains("Progressive rollout: revision 2 Aborted")
            && status.contains("Pods not created"),
        "{status}"
    );
    assert!(
        shown.contains("PodsDenied") && shown.contains("Pods not created"),
        "{shown}"
    );
    // And in kubectl appimage status, under the workloads.
    let status = w.plugin(&["status", &w.image, "-n", &w.ns]);
    assert!(
        status.contains("Progressive rollout: revision 2 Aborted")
            && status.contains("Pods not created"),
        "{status}"
    );
    // The canary is back on revision 1, whose key is still trusted; the rest never moved.
    w.on(&canary, 1);
    assert_eq!(w.runs(&rest), Some(1));
}
