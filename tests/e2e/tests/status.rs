//! Delayed start and `kubectl appimage status` (issue 17, sections 1 and 5; issue 19's stage in
//! `status`) on the whole test cluster: kwok nodes, the webhook admitting each test's namespace
//! and running its controllers (the start controller, the revisions controller), the real
//! kubectl with our plugin.
//!
//! Every test starts its own webhook, all with the same trusted key and one shared Lease, so
//! exactly one of them runs the controllers at a time.

use appimage_e2e::world::{REVISIONS_CRD, Shared, WAIT};
use appimage_e2e::{text, unique, wait_until};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

const START_AT: &str = "appimage.kuscia.secretflow/start-at";
const STARTED: &str = "appimage.kuscia.secretflow/started-at";

appimage_e2e::world_wrapper!(
    /// One test's world: a webhook, a namespace it admits, the signed seed AppImage.
    World
);

impl World {
    fn new(prefix: &str) -> World {
        let w = World(Shared::once(&[REVISIONS_CRD], "status").world(prefix));
        w.apply_example("secretflow-image.yaml");
        w
    }

    /// An example AppImage under this world's name, signed with the shared key, applied.
    fn apply_example(&self, file: &str) {
        self.apply_signed_example(file, &self.image);
    }

    /// `status -o json`, parsed.
    fn status(&self) -> Value {
        let out = self.plugin(&["status", &self.image, "-n", &self.ns, "-o", "json"]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("status -o json: {e}:\n{out}"))
    }

    /// The row of `kind`/`name` in a status report.
    fn row(report: &Value, kind: &str, name: &str) -> Value {
        report["workloads"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["kind"] == kind && r["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {kind} {name} in {report:#}"))
    }

    /// The Events of reason `reason` about object `name`.
    fn events(&self, name: &str, reason: &str) -> Vec<Value> {
        let selector = format!("involvedObject.name={name},reason={reason}");
        self.items(&["events", "--field-selector", &selector])
    }
}

fn time(v: &Value) -> Timestamp {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an RFC 3339 time: {v}"))
}

/// An RFC 3339 time as `status` prints it: whole seconds, UTC.
fn whole_seconds(v: &Value) -> String {
    let at = v.as_str().unwrap_or_default();
    format!("{}Z", at.split(['.', 'Z']).next().unwrap_or_default())
}

/// `deploy --start-at` a few seconds ahead: stored stopped and flagged so by `status`; the
/// controller starts it then (not before), its Pods run, and an Event says so. A workload due
/// in an hour stays stopped and flagged.
#[test]
fn a_delayed_workload_is_stopped_flagged_then_started() {
    let w = World::new("st-later");
    let ns = w.ns.as_str();
    w.deploy("hour", &["--replicas", "2", "--start-at", "+1h"]);

    // Due in an hour: stopped for the whole test, and `status` says until when.
    let hour = w.get_json(&["deployment/hour"]);
    assert_eq!(hour["spec"]["replicas"], 0);
    let report = w.status();
    let row = World::row(&report, "Deployment", "hour");
    assert_eq!(row["stopped"], true, "{row:#}");
    // Shown as kubectl shows times: whole seconds (the annotation may carry a fraction).
    assert_eq!(
        row["startAt"],
        whole_seconds(&hour["metadata"]["annotations"][START_AT])
    );
    assert_eq!(row["desired"], 0);
    let table = w.plugin(&["status", &w.image, "-n", ns]);
    let line = table
        .lines()
        .find(|l| l.starts_with("Deployment") && l.split_whitespace().nth(2) == Some("hour"))
        .unwrap_or_else(|| panic!("no row for hour:\n{table}"));
    let at = row["startAt"].as_str().unwrap();
    assert!(line.ends_with(&format!("Stopped until {at}")), "{line}");

    // Started by hand before its time: running, so not flagged stopped.
    w.deploy("hand", &["--replicas", "2", "--start-at", "+1h"]);
    w.c.kubectl_ok(&["scale", "-n", ns, "deployment/hand", "--replicas", "1"]);
    let row = World::row(&w.status(), "Deployment", "hand");
    assert_eq!(
        (&row["stopped"], &row["desired"]),
        (&json!(false), &json!(1))
    );

    // Due in seconds: stored stopped until started, and whatever `status` read before the
    // controller started it says stopped, with the stored time.
    w.deploy("later", &["--replicas", "2", "--start-at", "+15s"]);
    w.deploy("job", &["--kind", "Job", "--start-at", "+15s"]);
    let later = w.get_json(&["deployment/later"]);
    let job = w.get_json(&["job/job"]);
    let report = w.status();
    for (obj, kind, name) in [(&later, "Deployment", "later"), (&job, "Job", "job")] {
        let annotations = &obj["metadata"]["annotations"];
        if annotations.get(STARTED).is_some() {
            continue;
        }
        match kind {
            "Job" => assert_eq!(obj["spec"]["suspend"], true, "stored suspended"),
            _ => assert_eq!(obj["spec"]["replicas"], 0, "stored stopped"),
        }
        let row = World::row(&report, kind, name);
        let now_started =
            !w.get_json(&[&format!("{kind}/{name}")])["metadata"]["annotations"][STARTED].is_null();
        assert!(
            row["stopped"] == true || now_started,
            "{kind} {name} not flagged stopped before its start: {row:#}"
        );
        if row["stopped"] == true {
            assert_eq!(row["startAt"], whole_seconds(&annotations[START_AT]));
        }
    }

    // The hand-started one's time moved near: the user's replicas will stay.
    let soon = Timestamp::now() + SignedDuration::from_secs(3);
    let moved = format!("{START_AT}={soon}");
    w.c.kubectl_ok(&[
        "annotate",
        "--overwrite",
        "-n",
        ns,
        "deployment/hand",
        &moved,
    ]);

    // Then it starts: the intended replicas, Ready Pods, started-at no earlier than start-at.
    let mut d = Value::Null;
    let running = wait_until(WAIT, || {
        d = w.get_json(&["deployment/later"]);
        d["spec"]["replicas"] == 2 && d["status"]["readyReplicas"] == 2
    });
    assert!(running, "never started:\n{d:#}\n{}", w.hook.logs());
    let a = &d["metadata"]["annotations"];
    assert!(
        time(&a[STARTED]) >= time(&a[START_AT]),
        "started before its time: {a:#}"
    );
    let mut j = Value::Null;
    let done = wait_until(WAIT, || {
        j = w.get_json(&["job/job"]);
        j["spec"]["suspend"] == false && j["status"]["succeeded"] == 1
    });
    assert!(done, "the Job never ran:\n{j:#}\n{}", w.hook.logs());
    let ja = &j["metadata"]["annotations"];
    assert!(time(&ja[STARTED]) >= time(&ja[START_AT]), "{ja:#}");

    // The Event, naming what was done.
    for (name, what) in [("later", "scaled to 2 replicas"), ("job", "unsuspended")] {
        let mut events = Vec::new();
        let recorded = wait_until(WAIT, || {
            events = w.events(name, "Started");
            !events.is_empty()
        });
        assert!(recorded, "no Started Event for {name}");
        let note = events[0]["message"].as_str().unwrap_or_default();
        assert!(note.contains(what), "{note}");
    }

    let recorded = wait_until(WAIT, || !w.events("hand", "StartedByHand").is_empty());
    assert!(recorded, "no StartedByHand Event:\n{}", w.hook.logs());
    let hand = w.get_json(&["deployment/hand"]);
    assert_eq!(hand["spec"]["replicas"], 1, "the user's replicas stay");
    assert!(time(&hand["metadata"]["annotations"][STARTED]) >= soon);
    assert!(w.events("hand", "Started").is_empty(), "it was not scaled");

    // Started, it is no longer flagged; the one due in an hour still is.
    let report = w.status();
    let row = World::row(&report, "Deployment", "later");
    assert_eq!(row["stopped"], false, "{row:#}");
    assert_eq!((&row["desired"], &row["ready"]), (&json!(2), &json!(2)));
    assert_eq!(World::row(&report, "Deployment", "hour")["stopped"], true);
    assert_eq!(w.get_json(&["deployment/hour"])["spec"]["replicas"], 0);
}

/// `status` lists a Deployment and a bare Pod with the revision they run, their counts and the
/// AppImage's stage; `-o json` and `-o yaml` parse. After an update, a Manual Deployment and
/// the bare Pod are flagged outdated against the new revision.
#[test]
fn status_shows_workloads_and_bare_pods_with_revision_counts_and_stage() {
    let w = World::new("st-where");
    let first = w.revision(1);
    w.deploy("web", &["--replicas", "2"]);
    w.deploy("pinned", &["--replicas", "1", "--update-policy", "Manual"]);
    let pod = unique("bare");
    w.apply_bare_pod(&pod);
    w.plugin(&["publish", &w.image]);
    let ready = wait_until(WAIT, || {
        w.get_json(&["deployment/web"])["status"]["readyReplicas"] == 2
            && w.get_json(&["deployment/pinned"])["status"]["readyReplicas"] == 1
            && w.get_json(&[&format!("pod/{pod}")])["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
    });
    assert!(
        ready,
        "the workloads never became Ready:\n{}",
        w.hook.logs()
    );

    // -A: every namespace, as kubectl's (the default is the context's, `default` here).
    let table = w.plugin(&["status", &w.image, "-A"]);
    let mut lines = table.lines();
    assert_eq!(
        lines.next(),
        Some(format!("AppImage:  {}", w.image).as_str())
    );
    assert_eq!(lines.next(), Some("Stage:     published"));
    assert_eq!(
        lines.next(),
        Some(format!("Revision:  1 (hash {})", &first[..12]).as_str())
    );
    let rows: Vec<Vec<&str>> = lines
        .skip(2)
        .map(|l| l.split_whitespace().collect())
        .collect();
    let ns = w.ns.as_str();
    assert_eq!(
        rows,
        [
            vec!["Deployment", ns, "pinned", "1", "1", "1", "1", "Current"],
            vec!["Deployment", ns, "web", "1", "2", "2", "2", "Current"],
            vec!["Pod", ns, &pod, "1", "1", "1", "1", "Current"],
        ],
        "{table}"
    );
    let report = w.status();
    assert_eq!(report["stage"], "published");
    assert_eq!(report["revision"], 1);
    assert_eq!(report["hash"], first.as_str());
    let web = World::row(&report, "Deployment", "web");
    assert_eq!(web["hash"], first.as_str());
    assert_eq!(web["updatePolicy"], "Auto");
    let yaml = w.plugin(&["status", &w.image, "-A", "-o", "yaml"]);
    let parsed: Value = serde_yaml_ng::from_str(&yaml).expect("status -o yaml parses");
    assert_eq!(parsed["workloads"], report["workloads"]);

    // The seed's update: revision 2. The Manual Deployment stays on 1, and the bare Pod,
    // admitted with revision 1, cannot change: both flagged outdated. A bare Pod names no
    // revision; status orders it and the revisions by creationTimestamp, whose resolution is
    // one second: revision 2 must be recorded in a later second than the Pod was made (all of
    // the above can take less than one; CI once saw it).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    w.plugin(&["draft", &w.image]);
    w.apply_example("secretflow-image-update.yaml");
    let second = w.revision(2);
    assert_ne!(first, second);
    let mut report = Value::Null;
    let flagged = wait_until(WAIT, || {
        report = w.status();
        report["revision"] == 2
    });
    assert!(flagged, "{report:#}");
    assert_eq!(report["stage"], "draft");
    let pinned = World::row(&report, "Deployment", "pinned");
    assert_eq!(
        (&pinned["revision"], &pinned["outdated"]),
        (&json!(1), &json!(true)),
        "{pinned:#}"
    );
    let bare = World::row(&report, "Pod", &pod);
    assert_eq!(bare["outdated"], true, "{bare:#}");
    assert_eq!(bare["updated"], 0);
    let table = w.plugin(&["status", &w.image, "-n", ns]);
    assert!(
        table.lines().any(|l| l.starts_with("Deployment")
            && l.contains(" pinned ")
            && l.ends_with("Outdated (Manual)")),
        "{table}"
    );

    // A missing AppImage is kubectl's NotFound.
    let out = w.c.kubectl(&["appimage", "status", "no-such-appimage"]);
    assert!(!out.status.success());
    assert!(text(&out).1.contains("NotFound"), "{:?}", text(&out));
}

/// Issue 30 item 1: a workload whose Pods admission denies is not shown as healthy: `status`
/// says its Pods are not created, with the denial's own words.
#[test]
fn a_workload_whose_pods_are_denied_shows_the_denial() {
    let w = World::new("st-denied");
    // A container command of its own: the default pod-overrides policy (env) refuses it.
    w.apply_json(&json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "bad", "namespace": w.ns},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "bad"}},
            "template": {
                "metadata": {"labels": {"app": "bad", "kuscia.secretflow/app-image": w.image}},
                "spec": {"containers": [{"name": "secretflow", "image": "x", "command": ["sh"]}]}
            }
        }
    }));
    let mut last = Value::Null;
    let shown = wait_until(WAIT, || {
        last = World::row(&w.status(), "Deployment", "bad");
        last["notes"].as_array().into_iter().flatten().any(|n| {
            n.as_str().is_some_and(|n| {
                n.starts_with("Pods not created:")
                    && n.contains("denied the request")
                    && n.contains("pod-overrides")
            })
        })
    });
    assert!(shown, "status does not show the denial: {last:#}");
    let table = w.plugin(&["status", &w.image, "-n", &w.ns]);
    let line = table
        .lines()
        .find(|l| l.contains(" bad "))
        .unwrap_or_default();
    assert!(line.contains("Pods not created:"), "{table}");
}

/// Issue 30 item 1, `deploy`'s side: what admission would deny is refused before anything is
/// written (a server dry run of one Pod of the template), with admission's words; offline, an
/// unsigned AppImage gets a loud warning.
#[test]
fn deploy_refuses_a_workload_whose_pods_admission_denies() {
    let w = World::new("st-refused");
    // Unsigned, and not labelled for this world's validating registration: it gets in.
    w.apply_image(&w.example("secretflow-image.yaml", &w.image));
    let out =
        w.c.kubectl(&["appimage", "deploy", &w.image, "-n", &w.ns, "--name", "web"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.starts_with("error: deployment.apps/web not written: admission denies its Pods (checked with a server dry run of one): ")
            && stderr.contains("failed signature verification"),
        "{stderr}"
    );
    assert!(
        !w.c.kubectl(&["get", "deployment", "web", "-n", &w.ns])
            .status
            .success()
    );

    // Signed, the same command writes it.
    w.apply_image(&w.signed_example("secretflow-image.yaml", &w.image));
    let written = wait_until(WAIT, || {
        w.c.kubectl(&["appimage", "deploy", &w.image, "-n", &w.ns, "--name", "web"])
            .status
            .success()
    });
    assert!(written, "{}", w.logs());

    // Offline (-f with --dry-run=client): no cluster to ask, so a loud warning.
    let unsigned = appimage_e2e::write_json(
        w.work.path(),
        &serde_json::to_value(w.example("secretflow-image.yaml", "offline")).unwrap(),
    );
    let out = w.c.kubectl(&[
        "appimage",
        "deploy",
        "-f",
        &unsigned.to_string_lossy(),
        "--dry-run=client",
    ]);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(r#"Warning: AppImage "offline" is not signed (spec.image.sign): the webhook denies its Pods unless it runs with --require-signature=false"#),
        "{stderr}"
    );
}

/// Issue 30 item 1 for the kinds without a condition for it: a StatefulSet's and a DaemonSet's
/// denied Pods are only `FailedCreate` Events on them; `status` shows the newest one's words.
#[test]
fn a_statefulset_or_daemonset_whose_pods_are_denied_shows_the_denial() {
    let w = World::new("st-denied-sets");
    // A container command of its own: the default pod-overrides policy (env) refuses it.
    let template = |app: &str| {
        json!({
            "metadata": {"labels": {"app": app, "kuscia.secretflow/app-image": w.image}},
            "spec": {"containers": [{"name": "secretflow", "image": "x", "command": ["sh"]}]}
        })
    };
    w.apply_json(&json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "bad-sts", "namespace": w.ns},
        "spec": {"replicas": 1, "serviceName": "bad-sts",
                 "selector": {"matchLabels": {"app": "bad-sts"}}, "template": template("bad-sts")}
    }));
    w.apply_json(&json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "bad-ds", "namespace": w.ns},
        "spec": {"selector": {"matchLabels": {"app": "bad-ds"}}, "template": template("bad-ds")}
    }));
    for (kind, name) in [("StatefulSet", "bad-sts"), ("DaemonSet", "bad-ds")] {
        let mut last = Value::Null;
        let shown = wait_until(WAIT, || {
            last = World::row(&w.status(), kind, name);
            last["notes"].as_array().into_iter().flatten().any(|n| {
                n.as_str().is_some_and(|n| {
                    n.starts_with("Pods not created:")
                        && n.contains("denied the request")
                        && n.contains("pod-overrides")
                })
            })
        });
        assert!(
            shown,
            "status does not show the denial of {kind} {name}: {last:#}"
        );
    }
    let table = w.plugin(&["status", &w.image, "-n", &w.ns]);
    for name in [" bad-sts ", " bad-ds "] {
        let line = table.lines().find(|l| l.contains(name)).unwrap_or_default();
        assert!(line.contains("Pods not created:"), "{table}");
    }
}
