//! The BatchDeployment controller on the whole test cluster (issue 18): the webhook's
//! leader-elected controller room drives jobs created with `kubectl appimage batch` over
//! simulated kwok nodes of each test's own, made to fail through kube-controlplane's hooks.
//!
//! Every test starts its own webhook (admission for its namespace), all with the same trusted
//! key and one shared Lease, so exactly one of them runs the controllers at a time.

use std::collections::BTreeMap;
use std::ops::Deref;

use appimage::resource::AppImage;
use appimage_e2e::world::{self, BATCH_CRD, Shared, WAIT};
use appimage_e2e::{Cluster, unique, wait_until};
use serde_json::{Value, json};

const HOOK_POD_FAIL: &str = "appimage.test/pod-fail";
const HOOK_POD_NEVER_READY: &str = "appimage.test/pod-never-ready";
const HOOK_NODE_NOT_READY: &str = "appimage.test/node-not-ready";
/// The label each test puts on its own nodes.
const GROUP: &str = "appimage.test/batch-group";
const BATCH_LABEL: &str = "appimage.kuscia.secretflow/batch";

/// One test's world: a webhook, a namespace it admits, a signed seed AppImage, own nodes.
struct World {
    base: world::World,
    group: String,
    nodes: Vec<String>,
}

impl Deref for World {
    type Target = world::World;
    fn deref(&self) -> &world::World {
        &self.base
    }
}

impl World {
    fn new(nodes: usize) -> World {
        let base = world::World::new(Shared::once(&[BATCH_CRD], "batch"), "batch");
        base.apply_signed_example("secretflow-image.yaml", &base.image);
        let mut w = World {
            base,
            group: unique("grp"),
            nodes: Vec::new(),
        };
        w.add_nodes(nodes);
        w
    }

    /// The seed AppImage named `name`, signed with the shared key or not.
    fn seed(&self, name: &str, signed: bool) -> AppImage {
        let mut img = self.example("secretflow-image.yaml", name);
        if signed {
            self.sign(&mut img);
        }
        img
    }

    /// `n` kwok nodes labelled with this test's group (tainted, so no other Pod lands there;
    /// the job's Pods name their node and are not scheduled).
    fn add_nodes(&mut self, n: usize) {
        let names: Vec<String> = (0..n).map(|i| format!("{}-n{i:02}", self.group)).collect();
        self.add_named_nodes(&names);
    }

    /// [`World::add_nodes`] with these names.
    fn add_named_nodes(&mut self, names: &[String]) {
        for name in names {
            let name = name.clone();
            self.apply_json(&json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "annotations": {"kwok.x-k8s.io/node": "fake"},
                             "labels": {GROUP: self.group}},
                "spec": {"taints": [{"key": "appimage.test/isolated", "effect": "NoSchedule"}]}
            }));
            self.nodes.push(name);
        }
        for node in &self.nodes {
            assert!(self.node_ready_is(node, "True"), "node {node} never Ready");
        }
    }

    fn node_ready_is(&self, node: &str, want: &str) -> bool {
        wait_until(WAIT, || {
            get(self.c, &["node", node]).is_some_and(|n| {
                n["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == want)
            })
        })
    }

    fn selector(&self) -> String {
        format!("{GROUP}={}", self.group)
    }

    fn batch(&self, args: &[&str]) -> String {
        let mut full = vec!["appimage", "batch"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["-n", &self.ns]);
        self.c.kubectl_ok(&full)
    }

    /// `batch create NAME --appimage IMAGE --node-selector GROUP` plus `extra`.
    fn create(&self, name: &str, extra: &[&str]) {
        let sel = self.selector();
        let mut args = vec![
            "create",
            name,
            "--appimage",
            &self.image,
            "--node-selector",
            &sel,
        ];
        args.extend_from_slice(extra);
        self.batch(&args);
    }

    fn job(&self, name: &str) -> Value {
        get(self.c, &["bd", name, "-n", &self.ns]).unwrap_or_default()
    }

    /// Wait for `phase`; returns the job then.
    fn wait_phase(&self, name: &str, phase: &str) -> Value {
        let mut last = Value::Null;
        let ok = wait_until(WAIT, || {
            last = self.job(name);
            last["status"]["phase"] == phase
        });
        assert!(
            ok,
            "{name} never {phase}: {}\n{}",
            serde_json::to_string_pretty(&last["status"]).unwrap(),
            self.hook
                .logs()
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .join("\n")
        );
        last
    }

    /// The job's Pods (by its batch label).
    fn pods(&self, name: &str) -> Vec<Value> {
        items(
            self.c,
            &[
                "pods",
                "-n",
                &self.ns,
                "-l",
                &format!("{BATCH_LABEL}={name}"),
            ],
        )
    }

    fn workloads(&self, kind: &str, name: &str) -> Vec<Value> {
        items(
            self.c,
            &[kind, "-n", &self.ns, "-l", &format!("{BATCH_LABEL}={name}")],
        )
    }

    /// A `--pod-template` file carrying `annotations` onto every Pod.
    fn pod_template(&self, annotations: Value) -> String {
        let path = self.work.path().join(format!("{}.yaml", unique("tpl")));
        let body = json!({"metadata": {"annotations": annotations}});
        std::fs::write(&path, body.to_string()).unwrap();
        path.to_string_lossy().into_owned()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if !self.nodes.is_empty() {
            let mut args = vec!["delete", "node", "--wait=false"];
            args.extend(self.nodes.iter().map(String::as_str));
            let _ = self.c.kubectl(&args);
        }
        let _ = self
            .c
            .kubectl(&["delete", "namespace", &self.ns, "--wait=false"]);
    }
}

fn get(c: &Cluster, args: &[&str]) -> Option<Value> {
    let mut full = vec!["get"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["-o", "json"]);
    let out = c.kubectl(&full);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).expect("kubectl JSON"))
}

fn items(c: &Cluster, args: &[&str]) -> Vec<Value> {
    get(c, args)
        .and_then(|v| v["items"].as_array().cloned())
        .unwrap_or_default()
}

/// status.nodes by node name.
fn node_results(job: &Value) -> BTreeMap<String, Value> {
    job["status"]["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            (
                n["node"].as_str().unwrap_or_default().to_string(),
                n.clone(),
            )
        })
        .collect()
}

fn uids(values: &[Value]) -> BTreeMap<String, String> {
    values
        .iter()
        .map(|v| {
            (
                v["metadata"]["annotations"]["appimage.kuscia.secretflow/batch-node"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                v["metadata"]["uid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

impl World {
    fn set_not_ready(&self, nodes: &[String], not_ready: bool) {
        let label = if not_ready {
            format!("{HOOK_NODE_NOT_READY}=true")
        } else {
            format!("{HOOK_NODE_NOT_READY}-")
        };
        for node in nodes {
            self.c.kubectl_ok(&["label", "node", node, &label]);
        }
        let want = if not_ready { "False" } else { "True" };
        for node in nodes {
            assert!(self.node_ready_is(node, want), "{node} never Ready={want}");
        }
    }

    /// Wait until `f` holds for the job; returns the job then.
    fn wait_job(&self, name: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        let ok = wait_until(WAIT, || {
            last = self.job(name);
            f(&last)
        });
        assert!(ok, "{name} never {what}: {}", last["status"]);
        last
    }
}

#[test]
fn three_nodes_not_ready_at_creation_wait_and_are_caught_up_when_back() {
    let w = World::new(20);
    let broken: Vec<String> = w.nodes[..3].to_vec();
    w.set_not_ready(&broken, true);
    w.create("catch-up", &[]);
    let job = w.wait_job("catch-up", "17 succeeded, 3 waiting", |j| {
        j["status"]["counts"]["succeeded"] == 17 && j["status"]["counts"]["waiting"] == 3
    });
    assert_eq!(job["status"]["phase"], "Running", "{job}");
    for (node, r) in node_results(&job) {
        if broken.contains(&node) {
            assert_eq!(
                (&r["phase"], &r["reason"], &r["attempts"]),
                (&json!("Waiting"), &json!("NodeNotReady"), &json!(0)),
                "{r}"
            );
        } else {
            assert_eq!(r["phase"], "Succeeded", "{r}");
        }
    }
    assert_eq!(w.workloads("deployments", "catch-up").len(), 17);

    w.set_not_ready(&broken, false);
    let job = w.wait_phase("catch-up", "Succeeded");
    assert_eq!(job["status"]["summary"], "20/20");
    // No manual retry: the job's first run caught the three up.
    assert_eq!(job["status"]["attempts"], 1);
    for (node, r) in node_results(&job) {
        assert_eq!(
            (&r["phase"], &r["attempts"]),
            (&json!("Succeeded"), &json!(1)),
            "{node}: {r}"
        );
    }
    assert_eq!(w.workloads("deployments", "catch-up").len(), 20);
}

#[test]
fn a_node_whose_pod_fails_twice_is_rerun_automatically_and_succeeds_on_the_third_attempt() {
    let w = World::new(2);
    let fail = w.pod_template(json!({HOOK_POD_FAIL: "true"}));
    w.create(
        "reruns",
        &[
            "--restart-policy",
            "Never",
            "--pod-template",
            &fail,
            "--retries",
            "3",
            "--retry-backoff",
            "8s",
        ],
    );
    // The hook reaches the Pods through the job's pod template, which each attempt's
    // workload is built from: removed after the second failure, the third attempt succeeds.
    w.wait_job("reruns", "two failed attempts on each node", |j| {
        let r = node_results(j);
        r.len() == 2
            && r.values()
                .all(|n| n["autoRetries"] == 2 && n["phase"] == "Waiting")
    });
    w.c.kubectl_ok(&[
        "patch",
        "bd",
        "reruns",
        "-n",
        &w.ns,
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/spec/podTemplate"}]"#,
    ]);
    let job = w.wait_phase("reruns", "Succeeded");
    assert_eq!(job["status"]["attempts"], 1, "no manual retry");
    for (node, r) in node_results(&job) {
        assert_eq!(
            (
                &r["phase"],
                &r["attempts"],
                &r["autoRetries"],
                &r["lastFailure"]
            ),
            (
                &json!("Succeeded"),
                &json!(3),
                &json!(2),
                &json!("BackoffLimitExceeded")
            ),
            "{node}: {r}"
        );
    }
}

#[test]
fn twenty_nodes_three_not_ready_time_out_then_a_retry_reruns_only_those() {
    let w = World::new(20);
    let broken: Vec<String> = w.nodes[..3].to_vec();
    w.set_not_ready(&broken, true);
    // NotReady nodes wait for their node; the timeout ends the wait.
    w.create("roll", &["--timeout", "60s"]);
    let job = w.wait_phase("roll", "TimedOut");
    assert_eq!(job["status"]["summary"], "17/20", "{job}");
    assert_eq!(job["status"]["counts"]["failed"], 3);
    let results = node_results(&job);
    assert_eq!(results.len(), 20);
    for (node, r) in &results {
        if broken.contains(node) {
            assert_eq!(r["phase"], "Failed", "{r}");
            assert_eq!(r["reason"], "TimedOut", "{r}");
        } else {
            assert_eq!(
                (&r["phase"], &r["attempts"], &r["pods"]),
                (&json!("Succeeded"), &json!(1), &json!(1)),
                "{r}"
            );
        }
    }
    let before = uids(&w.workloads("deployments", "roll"));
    assert_eq!(before.len(), 17, "{before:?}");
    // Every Pod is on its own node, Ready.
    let pods = w.pods("roll");
    assert_eq!(pods.len(), 17);
    let on: std::collections::BTreeSet<&str> = pods
        .iter()
        .filter_map(|p| p["spec"]["nodeName"].as_str())
        .collect();
    assert_eq!(on.len(), 17);
    assert!(on.iter().all(|n| !broken.iter().any(|b| b == n)));

    w.set_not_ready(&broken, false);
    w.batch(&["retry", "roll"]);
    let job = w.wait_phase("roll", "Succeeded");
    assert_eq!(job["status"]["summary"], "20/20");
    assert_eq!(job["status"]["attempts"], 2);
    for (node, r) in node_results(&job) {
        assert_eq!(r["phase"], "Succeeded", "{r}");
        // The 17 ran once; the 3 ran for the first time in the retry.
        assert_eq!(r["attempts"], 1, "{node}: {r}");
    }
    let after = uids(&w.workloads("deployments", "roll"));
    assert_eq!(after.len(), 20);
    for (node, uid) in &before {
        assert_eq!(after.get(node), Some(uid), "{node}'s Deployment was remade");
    }

    // Deleting the job removes what it made (owner references, the garbage collector).
    w.c.kubectl_ok(&["delete", "bd", "roll", "-n", &w.ns]);
    let gone = wait_until(WAIT, || {
        w.workloads("deployments", "roll").is_empty() && w.pods("roll").is_empty()
    });
    assert!(gone, "the job's Deployments or Pods outlived it");
}

#[test]
fn stop_halts_in_flight_nodes_and_continue_finishes_the_job() {
    let w = World::new(6);
    let hang = w.pod_template(json!({HOOK_POD_NEVER_READY: "true"}));
    w.create("sc", &["--parallelism", "2", "--pod-template", &hang]);
    let mut job = Value::Null;
    let running = wait_until(WAIT, || {
        job = w.job("sc");
        job["status"]["phase"] == "Running" && w.pods("sc").len() == 2
    });
    assert!(running, "never Running with 2 Pods: {job}");
    assert_eq!(
        job["status"]["counts"]["running"], 2,
        "parallelism 2: {job}"
    );

    w.batch(&["stop", "sc"]);
    let job = w.wait_phase("sc", "Stopped");
    let conds = job["status"]["conditions"].to_string();
    assert!(conds.contains("Suspended"), "{conds}");
    assert!(w.pods("sc").is_empty(), "Pods left after Stopped");
    assert!(w.workloads("deployments", "sc").is_empty());
    let results = node_results(&job);
    let stopped = results.values().filter(|r| r["phase"] == "Stopped").count();
    let pending = results.values().filter(|r| r["phase"] == "Pending").count();
    assert_eq!((stopped, pending), (2, 4), "{results:?}");

    // The Pods would never become Ready: drop the hook while stopped, then continue.
    w.c.kubectl_ok(&[
        "patch",
        "bd",
        "sc",
        "-n",
        &w.ns,
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/podTemplate","value":{}}]"#,
    ]);
    w.batch(&["continue", "sc"]);
    let job = w.wait_phase("sc", "Succeeded");
    assert_eq!(job["status"]["summary"], "6/6");
    for (node, r) in node_results(&job) {
        // The two halted nodes ran twice.
        assert!(r["attempts"] == 1 || r["attempts"] == 2, "{node}: {r}");
    }
    let twice = node_results(&job)
        .values()
        .filter(|r| r["attempts"] == 2)
        .count();
    assert_eq!(twice, 2);
}

#[test]
fn a_job_whose_nodes_never_become_ready_times_out() {
    let w = World::new(2);
    let hang = w.pod_template(json!({HOOK_POD_NEVER_READY: "true"}));
    w.create("slow", &["--timeout", "5s", "--pod-template", &hang]);
    let job = w.wait_phase("slow", "TimedOut");
    for (node, r) in node_results(&job) {
        assert_eq!(
            (&r["phase"], &r["reason"]),
            (&json!("Failed"), &json!("TimedOut")),
            "{node}: {r}"
        );
    }
    let conds = job["status"]["conditions"].to_string();
    assert!(
        conds.contains("TimedOut") && conds.contains("5s"),
        "{conds}"
    );
    // Their Pods are stopped.
    assert!(
        wait_until(WAIT, || w.pods("slow").is_empty()),
        "Pods left after TimedOut"
    );
}

#[test]
fn bad_appimages_fail_the_job_with_the_reason() {
    let w = World::new(1);
    // Unsigned, tampered (signed, then the tag changed), deprecated: stored without the
    // test's label, so the validating webhook lets them in; the controller must refuse them.
    let unsigned = w.seed(&unique("unsigned"), false);
    let mut tampered = w.seed(&unique("tampered"), true);
    tampered.spec.image.tag = "tampered".into();
    let mut deprecated = w.seed(&unique("old"), true);
    deprecated.metadata.labels = Some(
        [(
            "appimage.kuscia.secretflow/stage".to_string(),
            "deprecated".to_string(),
        )]
        .into(),
    );
    for img in [&unsigned, &tampered, &deprecated] {
        w.apply_image(img);
    }
    let sel = w.selector();
    let cases = [
        (
            unsigned.metadata.name.clone().unwrap(),
            "SignatureNotVerified",
            "not signed",
        ),
        (
            tampered.metadata.name.clone().unwrap(),
            "SignatureNotVerified",
            "does not verify",
        ),
        (
            deprecated.metadata.name.clone().unwrap(),
            "AppImageDeprecated",
            "deprecated",
        ),
        (unique("missing"), "AppImageNotFound", "does not exist"),
    ];
    for (i, (image, reason, words)) in cases.iter().enumerate() {
        let name = format!("bad{i}");
        let args = [
            "create",
            &name,
            "--appimage",
            image,
            "--node-selector",
            &sel,
            "--allow-deprecated",
        ];
        if *reason == "AppImageNotFound" {
            // The plugin refuses a missing AppImage before writing; plain kubectl does not,
            // and the controller's own check is what fails the job then.
            let mut full = vec!["appimage", "batch"];
            full.extend_from_slice(&args);
            full.extend_from_slice(&["-n", &w.ns]);
            let out = w.c.kubectl(&full);
            assert_eq!(out.status.code(), Some(1), "{out:?}");
            w.apply_json(&json!({
                "apiVersion": "appimage.kuscia.secretflow/v1alpha1", "kind": "BatchDeployment",
                "metadata": {"name": name, "namespace": w.ns},
                "spec": {"appImage": image, "nodeSelector": {GROUP: w.group}},
            }));
        } else {
            // --allow-deprecated gets the deprecated one past the plugin, so the controller's
            // own check is what fails it.
            w.batch(&args);
        }
        let job = w.wait_phase(&name, "Failed");
        let failed = job["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Failed")
            .cloned()
            .unwrap_or_default();
        assert_eq!(failed["reason"], *reason, "{image}: {failed}");
        assert!(
            failed["message"]
                .as_str()
                .unwrap_or_default()
                .contains(words),
            "{failed}"
        );
        assert!(w.workloads("deployments", &name).is_empty());
    }
    // No node matching the selector.
    w.batch(&[
        "create",
        "nomatch",
        "--appimage",
        &w.image,
        "--node-selector",
        "appimage.test/none=x",
    ]);
    let job = w.wait_phase("nomatch", "Failed");
    assert!(
        job["status"]["conditions"]
            .to_string()
            .contains("NoNodesMatched"),
        "{job}"
    );
}

#[test]
fn each_restart_policy_has_its_success_rule() {
    let w = World::new(2);
    // Always: a Deployment per node; a node succeeds when its Pods are Ready (they keep running).
    w.create("always", &["--restart-policy", "Always"]);
    w.wait_phase("always", "Succeeded");
    assert_eq!(w.workloads("deployments", "always").len(), 2);
    assert!(w.workloads("jobs", "always").is_empty());
    let pods = w.pods("always");
    assert_eq!(pods.len(), 2);
    assert!(
        pods.iter().all(|p| p["status"]["phase"] == "Running"),
        "{pods:?}"
    );

    // OnFailure and Never: a Job per node; a node succeeds when its Pods have succeeded.
    for policy in ["OnFailure", "Never"] {
        let name = policy.to_lowercase();
        w.create(&name, &["--restart-policy", policy]);
        w.wait_phase(&name, "Succeeded");
        assert_eq!(w.workloads("jobs", &name).len(), 2);
        assert!(w.workloads("deployments", &name).is_empty());
        let pods = w.pods(&name);
        assert!(
            !pods.is_empty() && pods.iter().all(|p| p["status"]["phase"] == "Succeeded"),
            "{pods:?}"
        );
    }

    // Never: the first failed Pod fails its node (no replacement).
    let fail = w.pod_template(json!({HOOK_POD_FAIL: "true"}));
    w.create(
        "never-fails",
        &["--restart-policy", "Never", "--pod-template", &fail],
    );
    let job = w.wait_phase("never-fails", "Failed");
    for (node, r) in node_results(&job) {
        assert_eq!(r["phase"], "Failed", "{node}: {r}");
        assert_eq!(r["reason"], "BackoffLimitExceeded", "{node}: {r}");
    }
    // A failed node's workload is deleted (its result stays in the status), so its Pod may
    // already be gone: never more than one Pod per node, none replaced.
    assert!(
        w.pods("never-fails").len() <= 2,
        "one Pod per node, none replaced"
    );

    // Always: a Pod that never becomes Ready never succeeds its node.
    let hang = w.pod_template(json!({HOOK_POD_NEVER_READY: "true"}));
    w.create(
        "always-unready",
        &[
            "--restart-policy",
            "Always",
            "--timeout",
            "8s",
            "--pod-template",
            &hang,
        ],
    );
    let job = w.wait_phase("always-unready", "TimedOut");
    assert_eq!(job["status"]["counts"]["succeeded"], 0, "{job}");
}

/// Issue 25: a workload of the job's name for a node that someone else made is never taken
/// over; that node fails, naming who made it, and the workload is left as it was.
#[test]
fn a_same_named_workload_it_does_not_own_fails_the_node_naming_the_owner() {
    let w = World::new(1);
    let job = unique("own");
    let node = w.nodes[0].clone();
    let name = format!("{job}-{node}");
    w.c.kubectl_ok(&[
        "create",
        "deployment",
        &name,
        "--image=busybox",
        "--replicas=0",
        "-n",
        &w.ns,
    ]);
    w.create(&job, &[]);
    let done = w.wait_phase(&job, "Failed");
    let result = &node_results(&done)[&node];
    assert_eq!(result["reason"], "WorkloadNameTaken", "{result}");
    let message = result["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("Deployment {name:?}")),
        "{message}"
    );
    assert!(
        message.contains("made by field manager \"kubectl-create\""),
        "{message}"
    );
    let d = get(w.c, &["deployment", &name, "-n", &w.ns]).expect("still there");
    assert!(
        d["metadata"]["ownerReferences"].is_null(),
        "taken over: {d}"
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "busybox"
    );
}

#[test]
fn one_group_gets_two_replicas_and_an_env_value_and_an_override_of_the_image_is_refused() {
    let w = World::new(4);
    let big: Vec<String> = w.nodes[..2].to_vec();
    for node in &big {
        w.c.kubectl_ok(&["label", "node", node, "appimage.test/size=big"]);
    }
    let file = w.work.path().join("overrides.yaml");
    std::fs::write(
        &file,
        "- nodeSelector: {appimage.test/size: big}\n  replicas: 2\n  env: {MODE: big}\n",
    )
    .unwrap();
    let path = file.to_string_lossy().into_owned();
    w.create("groups", &["--overrides", &path]);
    let job = w.wait_phase("groups", "Succeeded");
    assert_eq!(job["status"]["summary"], "4/4");
    let pods = w.pods("groups");
    for node in &w.nodes {
        let on: Vec<&Value> = pods
            .iter()
            .filter(|p| p["spec"]["nodeName"] == node.as_str())
            .collect();
        let want = if big.contains(node) { 2 } else { 1 };
        assert_eq!(on.len(), want, "{node}: {on:?}");
        for p in on {
            let mode = p["spec"]["containers"][0]["env"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e["name"] == "MODE")
                .map(|e| e["value"].clone());
            let want = big.contains(node).then(|| json!("big"));
            assert_eq!(mode, want, "{node}: {p}");
        }
    }

    // What the signature covers: refused by the plugin and, sent raw, by the CRD's rules.
    std::fs::write(
        &file,
        "- nodeSelector: {appimage.test/size: big}\n  image: evil:1\n",
    )
    .unwrap();
    let sel = w.selector();
    let out = w.c.kubectl(&[
        "appimage",
        "batch",
        "create",
        "evil",
        "--appimage",
        &w.image,
        "--node-selector",
        &sel,
        "--overrides",
        &path,
        "-n",
        &w.ns,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("spec.overrides[0].image: the AppImage's signature covers the image"),
        "{err}"
    );
    let raw = json!({
        "apiVersion": "appimage.kuscia.secretflow/v1alpha1", "kind": "BatchDeployment",
        "metadata": {"name": "evil-raw", "namespace": w.ns},
        "spec": {"appImage": w.image, "nodeSelector": {GROUP: w.group},
                 "overrides": [{"nodeSelector": {"appimage.test/size": "big"}, "command": ["sh"]}]}
    });
    let raw_file = w.work.path().join("raw.json");
    std::fs::write(&raw_file, raw.to_string()).unwrap();
    let out = w.c.kubectl(&["create", "-f", &raw_file.to_string_lossy()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("spec.overrides[0].command"), "{err}");
    assert!(err.contains("signature covers the command"), "{err}");
}

#[test]
fn continuous_two_more_nodes_labelled_get_the_app_and_one_unlabelled_loses_it_after_the_grace() {
    let w = World::new(4);
    let label = unique("fleet");
    let on = |node: &str| {
        w.c.kubectl_ok(&[
            "label",
            "node",
            node,
            &format!("appimage.test/fleet={label}"),
        ]);
    };
    on(&w.nodes[0]);
    on(&w.nodes[1]);
    let sel = format!("appimage.test/fleet={label}");
    w.batch(&[
        "create",
        "fleet",
        "--appimage",
        &w.image,
        "--node-selector",
        &sel,
        "--mode",
        "Continuous",
        "--leave-grace",
        "15s",
    ]);
    let summary_is = |want: &'static str| {
        move |j: &Value| j["status"]["summary"] == want && j["status"]["phase"] == "Running"
    };
    w.wait_job("fleet", "2/2 and Running", summary_is("2/2"));
    // `batch get -w` tells the joins and leaves as they happen.
    let mut watch =
        w.c.command("kubectl")
            .args(["appimage", "batch", "get", "fleet", "-w", "-n", &w.ns])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl appimage batch get -w");
    let printed = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stdout = watch.stdout.take().unwrap();
    let sink = printed.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            sink.lock().unwrap().push(line);
        }
    });

    on(&w.nodes[2]);
    on(&w.nodes[3]);
    let job = w.wait_job("fleet", "4/4 and Running", summary_is("4/4"));
    assert_eq!(node_results(&job).len(), 4);
    assert_eq!(w.workloads("deployments", "fleet").len(), 4);

    let leaver = w.nodes[0].clone();
    w.c.kubectl_ok(&["label", "node", &leaver, "appimage.test/fleet-"]);
    let job = w.wait_job("fleet", "marking the node Leaving", |j| {
        node_results(j)
            .get(&leaver)
            .is_some_and(|r| r["reason"] == "Leaving")
    });
    // Within the grace it keeps the app.
    assert_eq!(node_results(&job)[&leaver]["phase"], "Succeeded");
    let held = uids(&w.workloads("deployments", "fleet"));
    assert!(held.contains_key(&leaver), "{held:?}");
    let job = w.wait_job("fleet", "3/3 after the grace", summary_is("3/3"));
    assert!(!node_results(&job).contains_key(&leaver));
    let gone = wait_until(WAIT, || {
        !uids(&w.workloads("deployments", "fleet")).contains_key(&leaver)
            && w.pods("fleet")
                .iter()
                .all(|p| p["spec"]["nodeName"] != leaver.as_str())
    });
    assert!(gone, "{leaver} kept the app after the grace");
    assert_eq!(w.workloads("deployments", "fleet").len(), 3);
    let want: Vec<String> = [
        (&w.nodes[2], "joined"),
        (&w.nodes[3], "joined"),
        (&leaver, "no longer matches: leaving after the grace"),
        (&leaver, "left"),
    ]
    .iter()
    .map(|(node, what)| format!("fleet node {node} {what}"))
    .collect();
    let told = wait_until(WAIT, || {
        let lines = printed.lock().unwrap();
        want.iter().all(|w| lines.contains(w))
    });
    watch.kill().unwrap();
    let _ = watch.wait();
    let lines = printed.lock().unwrap().join("\n");
    assert!(told, "{want:?} not all in:\n{lines}");
}

/// The label on the pre-pull phase's pull Jobs and their Pods.
const PREPULL_LABEL: &str = "appimage.kuscia.secretflow/batch-prepull";

/// Everything of one kind that a label selector matches, from before a job starts until
/// [`Seen::stop`]: `kubectl get -w`, made sure to be watching by a sentinel object that
/// matches the selector and exists before the watch starts (its initial list shows it).
struct Seen {
    child: std::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    sentinel: String,
}

impl Seen {
    fn start(w: &World, kind: &str, selector: &str, sentinel: &str) -> Seen {
        use std::io::BufRead;
        let mut child =
            w.c.command("kubectl")
                .args([
                    "get",
                    kind,
                    "-n",
                    w.ns.as_str(),
                    "-l",
                    selector,
                    "-w",
                    "--output-watch-events",
                    "-o",
                    "name",
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("kubectl get -w");
        let stdout = child.stdout.take().expect("stdout");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                sink.lock().unwrap().push(line);
            }
        });
        let seen = Seen {
            child,
            lines,
            reader: Some(reader),
            sentinel: sentinel.to_string(),
        };
        let watching = wait_until(WAIT, || {
            seen.lines
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.ends_with(&format!("/{sentinel}")))
        });
        assert!(watching, "kubectl get {kind} -w never listed {sentinel}");
        seen
    }

    /// What was seen besides the sentinel.
    fn stop(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let sentinel = format!("/{}", self.sentinel);
        let lines = self.lines.lock().unwrap().clone();
        lines
            .into_iter()
            .filter(|l| !l.ends_with(&sentinel))
            .collect()
    }
}

impl World {
    /// `n` more nodes of this test's group whose image pulls fail (kube-controlplane's
    /// pull-fail hook: their names hold `pull-fail`).
    fn add_pull_failing_nodes(&mut self, n: usize) -> Vec<String> {
        let names: Vec<String> = (0..n)
            .map(|i| format!("{}-pull-fail-{i:02}", self.group))
            .collect();
        self.add_named_nodes(&names);
        names
    }

    /// The job's own workloads or Pods, without its pull Jobs and their Pods.
    fn app_objects(&self, kind: &str, name: &str) -> Vec<Value> {
        let selector = format!("{BATCH_LABEL}={name},!{PREPULL_LABEL}");
        items(self.c, &[kind, "-n", &self.ns, "-l", &selector])
    }

    fn pull_jobs(&self, name: &str) -> Vec<Value> {
        let selector = format!("{BATCH_LABEL}={name},{PREPULL_LABEL}=true");
        items(self.c, &["jobs", "-n", &self.ns, "-l", &selector])
    }
}

/// Issue 29, pre-pull: the pull fails on 2 of 10 nodes. With failureTolerance 2 (the
/// pre-pull's and the job's) the 8 others are deployed to, the 2 end Failed/PullFailed with no
/// Pod of the app, and the job is PartiallySucceeded.
#[test]
fn a_pull_failing_on_two_of_ten_nodes_leaves_eight_deployed_and_the_job_partially_succeeded() {
    let mut w = World::new(8);
    let failing = w.add_pull_failing_nodes(2);
    w.create(
        "prepull",
        &[
            "--pre-pull",
            "--pre-pull-failure-tolerance",
            "2",
            "--failure-tolerance",
            "2",
        ],
    );
    let job = w.wait_phase("prepull", "PartiallySucceeded");
    assert_eq!(job["status"]["summary"], "8/10", "{job}");
    assert_eq!(job["status"]["counts"]["failed"], 2, "{job}");
    assert_eq!(
        job["status"]["pulls"],
        json!({"pending": 0, "pulling": 0, "pulled": 8, "failed": 2}),
        "{job}"
    );
    let results = node_results(&job);
    assert_eq!(results.len(), 10);
    for (node, r) in &results {
        if failing.contains(node) {
            assert_eq!(
                (&r["phase"], &r["reason"], &r["attempts"]),
                (&json!("Failed"), &json!("PullFailed"), &json!(0)),
                "{node}: {r}"
            );
            assert_eq!(
                (&r["pull"]["phase"], &r["pull"]["reason"]),
                (&json!("Failed"), &json!("ErrImagePull")),
                "{node}: {r}"
            );
        } else {
            assert_eq!(
                (&r["phase"], &r["attempts"], &r["pull"]["phase"]),
                (&json!("Succeeded"), &json!(1), &json!("Pulled")),
                "{node}: {r}"
            );
        }
    }
    // The app is on the 8 and not on the 2.
    let deployed = uids(&w.app_objects("deployments", "prepull"));
    let want: Vec<&String> = w.nodes.iter().filter(|n| !failing.contains(n)).collect();
    assert_eq!(deployed.keys().collect::<Vec<_>>(), want);
    let pods = w.app_objects("pods", "prepull");
    assert_eq!(pods.len(), 8);
    assert!(
        pods.iter()
            .all(|p| !failing.iter().any(|f| p["spec"]["nodeName"] == f.as_str())),
        "an app Pod on a node whose pull failed"
    );
    // Each pull Job is deleted once its node's pull is decided.
    assert!(
        wait_until(WAIT, || w.pull_jobs("prepull").is_empty()),
        "pull Jobs left: {:?}",
        w.pull_jobs("prepull")
    );
    let text = w.batch(&["describe", "prepull"]);
    assert!(
        text.contains("Pulls:              8 of 10 pulled, 2 failed, 0 pulling, 0 pending"),
        "{text}"
    );
    for node in &failing {
        assert!(
            text.lines()
                .any(|l| l.contains(node.as_str()) && l.contains("ErrImagePull")),
            "{node} not among the failed pulls: {text}"
        );
    }
}

/// Issue 29, pre-pull: the same 2 failed pulls with prePull.failureTolerance 1 fail the job
/// before any Pod of the app exists: no Deployment, Job or Pod of the app was ever created.
#[test]
fn a_pre_pull_tolerance_of_one_fails_the_job_before_any_app_workload_is_created() {
    let mut w = World::new(8);
    let failing = w.add_pull_failing_nodes(2);
    // Sentinels that the watches list first, so that they are watching before the job starts.
    let app = format!("{BATCH_LABEL}=noapp,!{PREPULL_LABEL}");
    w.apply_json(&json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "sentinel", "namespace": w.ns, "labels": {BATCH_LABEL: "noapp"}},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"sentinel": "x"}},
                 "template": {"metadata": {"labels": {"sentinel": "x"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
    }));
    w.apply_json(&json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "sentinel", "namespace": w.ns, "labels": {BATCH_LABEL: "noapp"}},
        "spec": {"nodeName": "appimage-test-nowhere",
                 "containers": [{"name": "c", "image": "busybox"}]}
    }));
    let deployments = Seen::start(&w, "deployments", &app, "sentinel");
    let pods = Seen::start(&w, "pods", &app, "sentinel");
    w.create(
        "noapp",
        &[
            "--pre-pull",
            "--pre-pull-failure-tolerance",
            "1",
            "--failure-tolerance",
            "2",
        ],
    );
    let job = w.wait_phase("noapp", "Failed");
    // Nothing of the app ever: the watches saw no Deployment or Pod of it come (and go).
    let deployments = deployments.stop();
    let pods = pods.stop();
    assert_eq!(
        deployments,
        Vec::<String>::new(),
        "app Deployments were created"
    );
    assert_eq!(pods, Vec::<String>::new(), "app Pods were created");
    let failed = job["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Failed")
        .cloned()
        .unwrap_or_default();
    assert_eq!(failed["reason"], "PrePullFailed", "{failed}");
    let message = failed["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("the image pull failed on 2 of 10 nodes: "),
        "{message}"
    );
    for node in &failing {
        assert!(
            message.contains(&format!("{node} (ErrImagePull)")),
            "{message}"
        );
    }
    assert!(
        message
            .ends_with("more than prePull.failureTolerance (1), so no Pod of the app was created"),
        "{message}"
    );
    assert_eq!(
        job["status"]["pulls"],
        json!({"pending": 0, "pulling": 0, "pulled": 8, "failed": 2}),
        "{job}"
    );
    for (node, r) in node_results(&job) {
        let reason = if failing.contains(&node) {
            "PullFailed"
        } else {
            "PrePullFailed"
        };
        assert_eq!(
            (&r["phase"], &r["reason"], &r["attempts"]),
            (&json!("Failed"), &json!(reason), &json!(0)),
            "{node}: {r}"
        );
    }
    assert!(
        wait_until(WAIT, || w.pull_jobs("noapp").is_empty()),
        "pull Jobs left"
    );
    // Nothing of the app now either.
    let now: Vec<Value> = w
        .app_objects("deployments", "noapp")
        .into_iter()
        .chain(w.app_objects("jobs", "noapp"))
        .filter(|o| o["metadata"]["name"] != "sentinel")
        .collect();
    assert!(now.is_empty(), "{now:?}");
    // `batch get -w` ends with the job's failure.
    let out =
        w.c.kubectl(&["appimage", "batch", "get", "noapp", "-w", "-n", &w.ns]);
    let (stdout, stderr) = appimage_e2e::text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("noapp Failed 0/10 succeeded, 10 failed, 0 running, 0 pending, 0 stopped; pulled 8/10, 2 pull failed, 0 pulling"),
        "{stdout}"
    );
    assert!(
        stderr.contains("/noapp ended Failed: the image pull failed on 2 of 10 nodes: "),
        "{stderr}"
    );
}
