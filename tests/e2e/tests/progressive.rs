//! Progressive rollouts (issue 28) on the whole test cluster: kwok nodes, the webhook admitting
//! the test's namespaces and running its controllers, the real kubectl with our plugin. A
//! revision moves through waves of an AppImage's workloads across namespaces; a manual pause
//! holds until `rollout promote`; a revision whose canary Pods never become Ready (kwok's
//! `APPIMAGE_TEST_HOOK=never-ready` env hook, carried by the revision itself) aborts at the
//! wave's deadline and the canary comes back with its old config and Service port; `rollout
//! abort` after two of three waves moves those two back and nothing else.

use std::io::Read;
use std::process::{Child, Stdio};

use appimage::resource::AppImage;
use appimage_e2e::wait_until;
use appimage_e2e::world::{REVISIONS_CRD, ROLLOUTS_CRD, Shared, WAIT};
use serde_json::{Value, json};

const REVISION_HASH: &str = "appimage.kuscia.secretflow/revision-hash";
const CONFIG: &str = "config.appimage.kuscia.secretflow/task-config.conf";
const WORKLOAD: &str = "appimage.kuscia.secretflow/workload";

appimage_e2e::world_wrapper!(
    /// One test's world: a webhook, namespaces it admits, a signed seed AppImage.
    World = Shared::once(&[REVISIONS_CRD, ROLLOUTS_CRD], "waves")
);

/// A workload of the test: its namespace, kind and name.
#[derive(Clone, Debug)]
struct W {
    ns: String,
    kind: &'static str,
    name: String,
}

impl W {
    fn what(&self) -> String {
        format!("{}/{}", self.kind.to_lowercase(), self.name)
    }
}

impl World {
    /// Another namespace this world's webhook admits.
    fn admitted_namespace(&self, prefix: &str) -> String {
        let ns = self.c.namespace(prefix);
        let label = format!("appimage-e2e={}", self.tag);
        self.c.kubectl_ok(&["label", "namespace", &ns, &label]);
        ns
    }

    /// The seed, or its update (global port 8082, a config key renamed); `never_ready` adds
    /// the kwok hook that keeps the revision's Pods from becoming Ready.
    fn spec(&self, update: bool, never_ready: bool) -> AppImage {
        let file = if update {
            "secretflow-image-update.yaml"
        } else {
            "secretflow-image.yaml"
        };
        let mut img = self.example(file, &self.image);
        if never_ready {
            let mut v = serde_json::to_value(&img).unwrap();
            v["spec"]["deployTemplates"][0]["spec"]["containers"][0]["env"] =
                json!([{"name": "APPIMAGE_TEST_HOOK", "value": "never-ready"}]);
            img = serde_json::from_value(v).unwrap();
        }
        self.sign(&mut img);
        img
    }

    fn deploy_in(&self, ns: &str, kind: &'static str, name: &str, labels: &[&str]) -> W {
        let mut args = vec![
            "deploy",
            &self.image,
            "-n",
            ns,
            "--name",
            name,
            "--replicas",
            "1",
        ];
        args.extend(["--kind", kind]);
        self.plugin(&args);
        let w = W {
            ns: ns.into(),
            kind,
            name: name.into(),
        };
        for l in labels {
            self.c.kubectl_ok(&["label", "-n", ns, &w.what(), l]);
        }
        w
    }

    fn get(&self, w: &W) -> Value {
        let out = self
            .c
            .kubectl_ok(&["get", "-n", &w.ns, &w.what(), "-o", "json"]);
        serde_json::from_str(&out).unwrap()
    }

    /// The revision `w`'s pod template names: `deploy` names it by hash, a rollout by number
    /// and hash; read by hash.
    fn runs(&self, w: &W) -> Option<i64> {
        let hash =
            self.get(w)["spec"]["template"]["metadata"]["annotations"][REVISION_HASH].clone();
        (1..=3).find(|n| self.hash(*n).is_some_and(|h| hash == h.as_str()))
    }

    /// The hash of revision `n`, if recorded.
    fn hash(&self, n: i64) -> Option<String> {
        let name = format!("{}-{n}", self.image);
        let out = self.c.kubectl(&[
            "get",
            "appimagerevision",
            &name,
            "-o",
            "jsonpath={.spec.hash}",
        ]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Wait until `w`'s template names revision `n` and its one live Pod was made from it, Running.
    fn on(&self, w: &W, n: i64) -> Value {
        let mut pod = Value::Null;
        let ok = wait_until(WAIT, || {
            let out = self.c.kubectl_ok(&[
                "get",
                "pods",
                "-n",
                &w.ns,
                "-l",
                &format!("{WORKLOAD}={}", w.name),
                "-o",
                "json",
            ]);
            let pods: Vec<Value> = serde_json::from_str::<Value>(&out).unwrap()["items"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                .collect();
            let hash = self.hash(n).unwrap_or_default();
            let live_on = pods.len() == 1
                && pods[0]["metadata"]["annotations"][REVISION_HASH] == hash.as_str()
                && pods[0]["status"]["phase"] == "Running";
            pod = pods.into_iter().next().unwrap_or_default();
            self.runs(w) == Some(n) && live_on
        });
        assert!(
            ok,
            "{w:?} never ran revision {n} (template: {:?}):\n{}\n{}",
            self.runs(w),
            self.status(),
            self.logs()
        );
        pod
    }

    fn rollout(&self) -> Value {
        let out = self
            .c
            .kubectl_ok(&["get", "appimagerollout", &self.image, "-o", "json"]);
        serde_json::from_str(&out).unwrap()
    }

    fn status(&self) -> String {
        let out = self
            .c
            .kubectl(&["appimage", "rollout", "status", &self.image]);
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    /// Wait until the rollout's phase is `phase` (and, when given, its wave index `wave`).
    fn phase(&self, phase: &str, wave: Option<i64>) -> Value {
        let mut r = Value::Null;
        let ok = wait_until(WAIT, || {
            r = self.rollout();
            r["status"]["phase"] == phase && wave.is_none_or(|w| r["status"]["wave"] == w)
        });
        assert!(
            ok,
            "the rollout never reached {phase} {wave:?}: {}\n{}\n{}",
            r["status"],
            self.status(),
            self.logs()
        );
        r
    }

    /// Apply the rollout policy, and wait until the controller took it: revision 1, which
    /// every workload runs, is adopted as rolled out (a policy made while a revision rolls
    /// out takes only what was not moved yet).
    fn policy(&self, waves: Value) {
        self.apply_json(&json!({
            "apiVersion": "appimage.kuscia.secretflow/v1alpha1",
            "kind": "AppImageRollout",
            "metadata": {"name": self.image},
            "spec": {"waves": waves}
        }));
        let r = self.phase("Succeeded", None);
        assert_eq!(r["status"]["reason"], "Current", "{}", r["status"]);
    }

    /// `kubectl appimage rollout status -w`, running.
    fn watch(&self) -> Child {
        self.c
            .command("kubectl")
            .args([
                "appimage",
                "rollout",
                "status",
                &self.image,
                "-w",
                "--timeout",
                "5m",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl appimage rollout status -w")
    }

    /// The Events on the AppImage (cluster-scoped: in the default namespace), as `reason: message`.
    fn image_events(&self) -> Vec<String> {
        let selector = format!(
            "involvedObject.name={},involvedObject.kind=AppImage",
            self.image
        );
        let out = self.c.kubectl_ok(&[
            "get",
            "events",
            "-A",
            "--field-selector",
            &selector,
            "-o",
            "json",
        ]);
        let v: Value = serde_json::from_str(&out).unwrap();
        v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                format!(
                    "{}: {}",
                    e["reason"].as_str().unwrap_or(""),
                    e["message"].as_str().unwrap_or("")
                )
            })
            .collect()
    }
}

/// Output and exit of a finished `status -w`.
fn finish(mut child: Child) -> (bool, String) {
    let status = child.wait().expect("wait for rollout status -w");
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.success(), out + &err)
}

/// The config file a Pod was given, and whether it is the update's (its renamed key).
fn updated_config(pod: &Value) -> bool {
    pod["metadata"]["annotations"][CONFIG]
        .as_str()
        .unwrap_or_default()
        .contains("task_input_cluster_def")
}

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
    w.policy(three_waves(&east, &west, true));
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
