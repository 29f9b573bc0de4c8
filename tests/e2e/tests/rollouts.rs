//! Revisions and rollouts (issue 17, sections 3 and 4) on the whole test cluster: kwok nodes,
//! the webhook admitting each test's namespace and running its controllers, the real kubectl
//! with our plugin. The seed's update (the global port becomes 8082, a config key renamed)
//! rolls Auto Deployments to Pods of the new revision, leaves Manual ones (and one whose
//! update-policy is invalid) on theirs until `kubectl appimage rollout`, a `kubectl rollout
//! undo` stays, `rollback --to-revision 1` rolls Auto workloads back, and a tampered update is
//! never rolled out.
//!
//! Every test starts its own webhook (admission for its namespace), all with the same trusted
//! key and one shared Lease, so exactly one of them runs the controllers at a time.

use appimage::resource::AppImage;
use appimage_e2e::world::{REVISIONS_CRD, Shared, WAIT, WORKLOAD};
use appimage_e2e::{unique, wait_until};
use serde_json::Value;

const REVISION: &str = "appimage.kuscia.secretflow/revision";
const REVISION_HASH: &str = "appimage.kuscia.secretflow/revision-hash";
const LATEST: &str = "appimage.kuscia.secretflow/latest-revision";
const POLICY: &str = "appimage.kuscia.secretflow/update-policy";
const CAUSE: &str = "kubernetes.io/change-cause";
const HISTORY_LIMIT: &str = "appimage.kuscia.secretflow/revision-history-limit";
const CONFIG: &str = "config.appimage.kuscia.secretflow/task-config.conf";

/// Which spec a Pod was injected from, read from what the webhook rendered into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spec {
    /// The seed: global port allocated in [20000, 32767), config key `task_cluster_def`.
    Old,
    /// The update: global port 8082 (container port, env and config), `task_input_cluster_def`.
    New,
    /// Neither, or a mix: a bug.
    Other,
}

fn spec_of(pod: &Value) -> Spec {
    let c = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == "secretflow");
    let Some(c) = c else { return Spec::Other };
    let port = c["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "global")
        .and_then(|p| p["containerPort"].as_i64());
    let env = c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == "KUSCIA_PORT_GLOBAL_NUMBER")
        .and_then(|e| e["value"].as_str())
        .and_then(|v| v.parse::<i64>().ok());
    let conf = pod["metadata"]["annotations"][CONFIG]
        .as_str()
        .unwrap_or_default();
    let Some(port) = port.filter(|p| env == Some(*p)) else {
        return Spec::Other;
    };
    let in_config = conf.contains(&format!(r#"\"name\":\"global\",\"port\":{port}"#));
    let new_key = conf.contains(r#""task_input_cluster_def":"#);
    let old_key = conf.contains(r#""task_cluster_def":"#);
    match (port, in_config, new_key, old_key) {
        (8082, true, true, false) => Spec::New,
        (20000..32767, true, false, true) => Spec::Old,
        _ => Spec::Other,
    }
}

appimage_e2e::world_wrapper!(
    /// One test's world: a webhook, a namespace it admits, a signed seed AppImage.
    World = Shared::once(&[REVISIONS_CRD], "rollout")
);

impl World {
    /// An example AppImage under this world's name, signed with the shared key, with a
    /// change cause.
    fn example_caused(&self, file: &str, cause: &str) -> AppImage {
        let mut img = self.signed_example(file, &self.image);
        img.metadata.annotations = Some([(CAUSE.to_string(), cause.to_string())].into());
        img
    }

    /// The numbers of the AppImage's recorded revisions, space-separated.
    fn numbers(&self) -> String {
        self.c.kubectl_ok(&[
            "get",
            "appimagerevisions",
            "--field-selector",
            &format!("spec.appImage={}", self.image),
            "-o",
            "jsonpath={.items[*].spec.revision}",
        ])
    }

    fn deployment(&self, name: &str) -> Value {
        self.get_json(&[&format!("deployment/{name}")])
    }

    /// The annotations of deployment `name`'s pod template.
    fn template(&self, name: &str) -> Value {
        self.deployment(name)["spec"]["template"]["metadata"]["annotations"].clone()
    }

    /// Wait until workload `name` (a Deployment, or `kind/name`) carries the label `LATEST` =
    /// `n`: the controller acted on revision n.
    fn acted(&self, name: &str, n: i64) {
        let what = if name.contains('/') {
            name.to_string()
        } else {
            format!("deployment/{name}")
        };
        let want = n.to_string();
        let ok = wait_until(WAIT, || {
            self.get_json(&[&what])["metadata"]["labels"][LATEST] == want.as_str()
        });
        assert!(
            ok,
            "the controller never acted on revision {n} for {what}:\n{}",
            self.logs()
        );
    }

    /// The live (not terminating) Pods of workload `name`.
    fn pods(&self, name: &str) -> Vec<Value> {
        self.items(&["pods", "-l", &format!("{WORKLOAD}={name}")])
            .into_iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .collect()
    }

    /// Wait until workload `name` has exactly `count` live Pods, all Running and passing
    /// `check`; whether it came to that.
    fn running(&self, name: &str, count: usize, check: impl Fn(&Value) -> bool) -> bool {
        wait_until(WAIT, || {
            let pods = self.pods(name);
            pods.len() == count
                && pods
                    .iter()
                    .all(|p| check(p) && p["status"]["phase"] == "Running")
        })
    }

    /// Wait until workload `name` has exactly `count` live Pods, all Running from `spec`.
    fn pods_become(&self, name: &str, count: usize, spec: Spec) -> Vec<Value> {
        let mut pods = Vec::new();
        let ok = wait_until(WAIT, || {
            pods = self.pods(name);
            pods.len() == count
                && pods
                    .iter()
                    .all(|p| spec_of(p) == spec && p["status"]["phase"] == "Running")
        });
        let seen: Vec<(Value, Spec, Value)> = pods
            .iter()
            .map(|p| {
                (
                    p["metadata"]["name"].clone(),
                    spec_of(p),
                    p["status"]["phase"].clone(),
                )
            })
            .collect();
        assert!(
            ok,
            "{name}: want {count} Running Pods of the {spec:?} spec, have {seen:?}\n{}",
            self.logs()
        );
        pods
    }

    /// The Events about object `name` in the namespace, as `(type, reason, message)`.
    fn events(&self, name: &str) -> Vec<(String, String, String)> {
        let selector = format!("involvedObject.name={name}");
        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
        self.items(&["events", "--field-selector", &selector])
            .iter()
            .map(|e| (s(&e["type"]), s(&e["reason"]), s(&e["message"])))
            .collect()
    }

    /// Wait for an Event on `name` of `reason` whose message holds every one of `parts`.
    fn event(&self, name: &str, reason: &str, parts: &[&str]) -> (String, String, String) {
        let mut found = None;
        let ok = wait_until(WAIT, || {
            found = self
                .events(name)
                .into_iter()
                .find(|(_, r, m)| r == reason && parts.iter().all(|p| m.contains(p)));
            found.is_some()
        });
        assert!(
            ok,
            "no {reason} Event on {name} saying {parts:?}; Events: {:?}\n{}",
            self.events(name),
            self.logs()
        );
        found.unwrap()
    }

    /// Wait until the apiserver's clock is past the second `timestamp` (RFC 3339, UTC) names:
    /// until an object created now has a later creation time.
    fn second_after(&self, timestamp: &str) {
        let ok = wait_until(WAIT, || {
            let now = self.c.kubectl_ok(&[
                "create",
                "configmap",
                &unique("tick"),
                "-n",
                &self.ns,
                "-o",
                "jsonpath={.metadata.creationTimestamp}",
            ]);
            now.as_str() > timestamp
        });
        assert!(ok, "the apiserver's clock never passed {timestamp}");
    }
}

/// The line of `history` output for revision `n`.
fn history_row(history: &str, n: i64) -> String {
    history
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&n.to_string()))
        .unwrap_or_else(|| panic!("no revision {n} in history:\n{history}"))
        .to_string()
}

#[test]
fn rollouts_follow_the_appimage_by_policy_and_revisions_roll_back() {
    let w = World::new("ro-follow");
    let ns = w.ns.clone();
    w.apply_image(&w.example_caused("secretflow-image.yaml", "seed-v1"));
    let hash1 = w.revision(1);

    // Auto (the default), Manual, and a misspelt policy that must read as Manual.
    w.deploy("auto", &["--replicas", "2"]);
    w.deploy("manual", &["--update-policy", "Manual", "--replicas", "1"]);
    w.deploy("odd", &["--replicas", "1"]);
    w.deploy("sts", &["--kind", "StatefulSet", "--replicas", "1"]);
    w.c.kubectl_ok(&[
        "annotate",
        "-n",
        &ns,
        "deployment/odd",
        &format!("{POLICY}=manual"),
        "--overwrite",
    ]);
    let (kind, _, why) = w.event(
        "odd",
        "InvalidUpdatePolicy",
        &[r#""manual""#, "Auto|Manual"],
    );
    assert_eq!(kind, "Warning", "{why}");
    for name in ["auto", "manual", "odd", "statefulset/sts"] {
        w.acted(name, 1);
    }
    w.pods_become("sts", 1, Spec::Old);
    w.pods_become("auto", 2, Spec::Old);
    w.pods_become("manual", 1, Spec::Old);
    w.pods_become("odd", 1, Spec::Old);
    // A bare Pod of the AppImage cannot change: it is told when it is outdated.
    w.apply_bare_pod("bare");
    // Creation times are whole seconds: the controller can tell the Pod is older than the next
    // revision only if that revision is recorded in a later second.
    let created = w.get_json(&["pod/bare"])["metadata"]["creationTimestamp"].clone();
    w.second_after(created.as_str().unwrap_or_default());

    // The seed's update: Auto rolls to the new port and config, with an Event old -> new.
    w.apply_image(&w.example_caused("secretflow-image-update.yaml", "global-port-8082"));
    let hash2 = w.revision(2);
    assert_ne!(hash1, hash2);
    w.pods_become("auto", 2, Spec::New);
    // A StatefulSet follows the same way, by its own rolling update.
    w.pods_become("sts", 1, Spec::New);
    w.event("sts", "RolledOut", &["revision 1 → 2"]);
    let (kind, _, _) = w.event("auto", "RolledOut", &["revision 1 → 2", &w.image]);
    assert_eq!(kind, "Normal");
    let t = w.template("auto");
    assert_eq!(t[REVISION], "2");
    assert_eq!(t[REVISION_HASH], hash2.as_str());

    // Manual, and the invalid policy, are reported outdated and stay.
    for name in ["manual", "odd"] {
        w.event(
            name,
            "DeploymentOutdated",
            &[
                "runs revision 1",
                "at revision 2",
                "kubectl appimage rollout",
            ],
        );
        w.acted(name, 2);
        let t = w.template(name);
        assert_eq!(t[REVISION_HASH], hash1.as_str(), "{name} rolled: {t}");
        assert!(t[REVISION].is_null(), "{name} rolled: {t}");
    }
    w.event("bare", "PodOutdated", &["at revision 2", "recreate it"]);
    let bare = w.get_json(&["pod/bare"]);
    assert_eq!(spec_of(&bare), Spec::Old, "a Pod cannot change");
    // Scaling the Manual one up gives Pods of its old revision.
    w.c.kubectl_ok(&["scale", "-n", &ns, "deployment/manual", "--replicas", "3"]);
    w.pods_become("manual", 3, Spec::Old);
    w.pods_become("odd", 1, Spec::Old);

    // history: change causes and who runs what; diff: the port change.
    let history = w.plugin(&["history", &w.image]);
    let row1 = history_row(&history, 1);
    let row2 = history_row(&history, 2);
    assert!(row1.contains("seed-v1"), "{history}");
    assert!(row2.contains("global-port-8082"), "{history}");
    for name in ["manual", "odd"] {
        assert!(
            row1.contains(&format!("deployment/{ns}/{name}")),
            "{history}"
        );
    }
    assert!(row2.contains(&format!("deployment/{ns}/auto")), "{history}");
    assert!(!row1.contains("/auto"), "{history}");
    // As `kubectl diff`: exit 1 when they differ, 0 when they do not.
    let out = w.c.kubectl(&[
        "appimage",
        "diff",
        &w.image,
        "--revision",
        "1",
        "--revision",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let diff = String::from_utf8(out.stdout).unwrap();
    let same =
        w.c.kubectl(&["appimage", "diff", &w.image, "--revision", "2"]);
    assert_eq!(same.status.code(), Some(0), "{same:?}");
    assert!(same.stdout.is_empty(), "{same:?}");
    let bad =
        w.c.kubectl(&["appimage", "diff", &w.image, "--revision", "99"]);
    assert_eq!(
        bad.status.code(),
        Some(2),
        "an error exits 2, as kubectl diff: {bad:?}"
    );
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.starts_with("error: --revision 99: "), "{err}");
    assert!(
        diff.lines()
            .any(|l| l.starts_with('+') && l.trim_end().ends_with("port: 8082")),
        "{diff}"
    );
    assert!(
        diff.lines()
            .any(|l| l.starts_with('-') && l.contains("task_cluster_def")),
        "{diff}"
    );
    assert!(
        !diff
            .lines()
            .any(|l| l.starts_with(['+', '-']) && l.contains("tag:")),
        "{diff}"
    );

    // `kubectl appimage rollout --workload` moves the Manual one only.
    let out = w.plugin(&["rollout", &w.image, "--workload", "manual", "-n", &ns]);
    assert_eq!(out, "deployment.apps/manual rolled out: revision 1 -> 2\n");
    w.pods_become("manual", 3, Spec::New);
    assert_eq!(w.template("odd")[REVISION_HASH], hash1.as_str());

    // `kubectl rollout undo` brings the old port back, and the controller leaves it: a
    // workload made after the undo is acted on (so the controller has seen the undo) while
    // the undone one stays on revision 1.
    w.c.kubectl_ok(&["rollout", "undo", "-n", &ns, "deployment/auto"]);
    w.pods_become("auto", 2, Spec::Old);
    w.deploy("probe", &["--replicas", "1"]);
    w.acted("probe", 2);
    // The undo copied the old ReplicaSet's annotations back; the acted-on label stays.
    let d = w.deployment("auto");
    assert_eq!(d["metadata"]["labels"][LATEST], "2", "{}", d["metadata"]);
    let t = w.template("auto");
    assert_eq!(
        t[REVISION_HASH],
        hash1.as_str(),
        "the controller undid the undo: {t}"
    );
    assert!(t[REVISION].is_null(), "{t}");
    w.pods_become("auto", 2, Spec::Old);
    w.pods_become("probe", 1, Spec::New);

    // rollback --to-revision 1: the same spec is revision 1 again, and Auto workloads follow.
    let out = w.plugin(&["rollback", &w.image, "--to-revision", "1"]);
    assert!(out.contains("rolled back to revision 1"), "{out}");
    w.pods_become("probe", 1, Spec::Old);
    w.pods_become("sts", 1, Spec::Old);
    w.event("probe", "RolledOut", &["revision 2 → 1"]);
    let t = w.template("probe");
    assert_eq!(t[REVISION], "1");
    assert_eq!(t[REVISION_HASH], hash1.as_str());
    // The Manual one now runs the newer revision: reported, not moved.
    w.event(
        "manual",
        "DeploymentOutdated",
        &["runs revision 2", "at revision 1"],
    );
    w.pods_become("manual", 3, Spec::New);
    assert_eq!(w.numbers(), "1 2", "a rollback is not a new revision");
}

#[test]
fn a_tampered_update_is_never_rolled_out() {
    let w = World::new("ro-tamper");
    let ns = w.ns.clone();
    let mut seed = w.example_caused("secretflow-image.yaml", "seed");
    // Keep one revision besides those in use, so that the unused tampered one is pruned.
    seed.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(HISTORY_LIMIT.into(), "1".into());
    w.apply_image(&seed);
    let hash1 = w.revision(1);
    w.deploy("web", &["--replicas", "2"]);
    w.acted("web", 1);
    let before: Vec<Value> = w
        .pods_become("web", 2, Spec::Old)
        .iter()
        .map(|p| p["metadata"]["uid"].clone())
        .collect();

    // The image tag and the command changed, the signature kept (payload v2 covers both; the
    // Event names what changed since revision 1).
    let mut tampered = seed.clone();
    tampered.spec.image.tag = "9.9-tampered".into();
    tampered.spec.deploy_templates[0].spec.containers[0].command =
        vec!["sh".into(), "-c".into(), "id".into()];
    w.apply_image(&tampered);
    w.revision(2);
    let (kind, _, why) = w.event(
        "web",
        "RolloutBlocked",
        &[
            "revision 2",
            "signature",
            "changed: spec.deployTemplates[0].spec.containers[0].command, spec.image.tag",
        ],
    );
    assert_eq!(kind, "Warning", "{why}");
    let d = w.deployment("web");
    let t = &d["spec"]["template"];
    assert_eq!(t["metadata"]["annotations"][REVISION_HASH], hash1.as_str());
    assert!(t["metadata"]["annotations"][REVISION].is_null(), "{t}");
    assert_eq!(
        t["spec"]["containers"][0]["image"],
        "secretflow/secretflow-lite-anolis8:latest"
    );
    assert!(
        !w.events("web").iter().any(|(_, r, _)| r == "RolledOut"),
        "{:?}",
        w.events("web")
    );
    let after: Vec<Value> = w
        .pods_become("web", 2, Spec::Old)
        .iter()
        .map(|p| p["metadata"]["uid"].clone())
        .collect();
    assert_eq!(before, after, "the Pods were replaced");

    // Signed properly, the same tag is a new revision and rolls.
    let mut signed = tampered.clone();
    w.sign(&mut signed);
    w.apply_image(&signed);
    w.revision(3);
    w.event("web", "RolledOut", &["revision 1 → 3"]);
    let ok = w.running("web", 2, |p| {
        p["spec"]["containers"][0]["image"] == "secretflow/secretflow-lite-anolis8:9.9-tampered"
    });
    assert!(ok, "web never rolled to the signed revision 3 in {ns}");

    // A change to a config template alone is a new revision and a rollout too.
    let mut config = signed.clone();
    for text in config.spec.config_templates.values_mut() {
        *text = text.replacen("\"task_id\"", "\"edition\": \"four\",\n  \"task_id\"", 1);
    }
    // Signed again: payload v2 covers the config templates.
    w.sign(&mut config);
    w.apply_image(&config);
    w.revision(4);
    w.event("web", "RolledOut", &["revision 3 → 4"]);
    let ok = w.running("web", 2, |p| {
        p["metadata"]["annotations"][CONFIG]
            .as_str()
            .is_some_and(|c| c.contains(r#""edition": "four""#))
    });
    assert!(ok, "web never rolled to the config-only revision 4 in {ns}");

    // History limit 1: the tampered revision 2, which nothing ran, is pruned; revision 1 is
    // kept because web's old ReplicaSet (what `kubectl rollout undo` goes back to) names it,
    // and so is revision 3.
    let mut numbers = String::new();
    let pruned = wait_until(WAIT, || {
        numbers = w.numbers();
        numbers == "1 3 4"
    });
    assert!(
        pruned,
        "revisions {numbers:?}, want \"1 3 4\"\n{}",
        w.logs()
    );
}

/// Issue 30 item 4: the rollout writes the image `deploy` writes (`name:tag`: the image id is
/// Kuscia's image ID, which names no manifest; the webhook pins Pods), so re-running the same
/// `deploy` after a rollout changes nothing (it would otherwise restart the Pods).
#[test]
fn deploy_after_a_rollout_is_unchanged() {
    let w = World::new("ro-pinned");
    let ns = w.ns.clone();
    let pin = |img: &mut AppImage, hex: &str| {
        img.spec.image.id = Some(format!("sha256:{}", hex.repeat(32)));
        w.sign(img);
    };
    let mut seed = w.example_caused("secretflow-image.yaml", "pinned-a");
    pin(&mut seed, "aa");
    w.apply_image(&seed);
    w.revision(1);
    let deploy = [
        "deploy",
        &w.image,
        "-n",
        &ns,
        "--name",
        "web",
        "--replicas",
        "1",
    ];
    assert_eq!(w.plugin(&deploy), "deployment.apps/web created\n");
    w.acted("web", 1);

    let mut update = seed.clone();
    pin(&mut update, "bb");
    w.apply_image(&update);
    w.revision(2);
    w.event("web", "RolledOut", &["revision 1 → 2"]);
    let pinned = format!("{}:{}", update.spec.image.name, update.spec.image.tag);
    let d = w.deployment("web");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        pinned.as_str()
    );
    assert_eq!(w.template("web")[REVISION], "2");
    assert_eq!(w.plugin(&deploy), "deployment.apps/web unchanged\n");
}

/// kubectl's output conventions (issue 30): `-o jsonpath|custom-columns|go-template` for `get`,
/// `status` and `history`, `-o yaml|json` for `history`, `diff` and `rollout`.
#[test]
fn history_diff_rollout_status_and_get_print_as_kubectl() {
    let w = World::new("ro-output");
    let ns = w.ns.clone();
    w.apply_image(&w.example_caused("secretflow-image.yaml", "seed-v1"));
    w.revision(1);
    w.deploy("manual", &["--update-policy", "Manual", "--replicas", "1"]);
    w.acted("manual", 1);
    w.apply_image(&w.example_caused("secretflow-image-update.yaml", "port-8082"));
    w.revision(2);
    w.acted("manual", 2);
    let image = w.image.clone();

    let history = |o: &str| w.plugin(&["history", &image, "-o", o]);
    assert_eq!(history("jsonpath={.items[*].revision}"), "1 2");
    assert_eq!(
        history(r#"jsonpath={range .items[*]}{.revision}={.changeCause}{"\n"}{end}"#),
        "1=seed-v1\n2=port-8082\n"
    );
    assert_eq!(
        history("custom-columns=REV:.revision,CAUSE:.changeCause,USED:.inUseBy[*]"),
        format!(
            "REV   CAUSE       USED\n1     seed-v1     deployment/{ns}/manual\n2     port-8082   <none>\n"
        )
    );
    let doc: Value = serde_json::from_str(&history("json")).unwrap();
    assert_eq!(doc["items"][1]["changeCause"], "port-8082", "{doc}");
    assert!(history("yaml").contains("changeCause: seed-v1"));
    assert_eq!(
        history("go-template={{range .items}}{{.revision}};{{end}}"),
        "1;2;\n"
    );

    // diff -o json: both sides and the verdict; the exit code still says they differ.
    let out = w.c.kubectl(&[
        "appimage",
        "diff",
        &image,
        "--revision",
        "1",
        "--revision",
        "2",
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (doc["differ"].as_bool(), doc["to"]["label"].as_str()),
        (Some(true), Some("revision 2"))
    );
    assert!(doc["diff"].as_str().unwrap().contains("+"), "{doc}");

    let status = |o: &str| w.plugin(&["status", &image, "-n", &ns, "-o", o]);
    assert_eq!(status("jsonpath={.workloads[*].name}"), "manual");
    assert_eq!(
        status("custom-columns=KIND:.kind,NAME:.name"),
        "KIND         NAME\nDeployment   manual\n"
    );

    let rolled = w.plugin(&["rollout", &image, "-n", &ns, "-o", "yaml"]);
    let doc: Value = serde_yaml_ng::from_str(&rolled).unwrap();
    assert_eq!(doc["revision"], 2, "{rolled}");
    assert_eq!(doc["workloads"][0]["outcome"], "rolled out", "{rolled}");
    assert_eq!(doc["workloads"][0]["from"], 1, "{rolled}");

    let get = |o: &str| w.plugin(&["get", &image, "-o", o]);
    assert_eq!(get("go-template={{.metadata.name}}"), format!("{image}\n"));
    assert_eq!(
        get("jsonpath={.spec.image.name}"),
        "secretflow/secretflow-lite-anolis8"
    );
    assert!(get("custom-columns=NAME:.metadata.name,TAG:.spec.image.tag").starts_with("NAME"));
}
