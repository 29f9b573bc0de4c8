//! A BatchDeployment survives its controller's leader (issue 29, proof 6): the leader dies
//! mid-job, the next one finishes it, and no node is deployed twice. A test binary of its own:
//! its controller processes share a Lease of their own (`appimage_e2e::leaders`).

use appimage_e2e::leaders::Leaders;
use appimage_e2e::world::{BATCH_CRD, Shared, WAIT, World};
use appimage_e2e::{unique, wait_until};
use serde_json::{Value, json};

const GROUP: &str = "appimage.test/batch-group";
const NOT_READY: &str = "appimage.test/node-not-ready";
const NODE: &str = "appimage.kuscia.secretflow/batch-node";

/// `n` tainted kwok nodes labelled `GROUP=group`, the last `not_ready` of them NotReady.
fn nodes(w: &World, group: &str, n: usize, not_ready: usize) -> Vec<String> {
    let names: Vec<String> = (0..n).map(|i| format!("{group}-n{i:02}")).collect();
    let items: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mut labels = json!({GROUP: group});
            if i >= n - not_ready {
                labels[NOT_READY] = json!("true");
            }
            json!({"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": labels,
                             "annotations": {"kwok.x-k8s.io/node": "fake"}},
                "spec": {"taints": [{"key": "appimage.test/isolated", "effect": "NoSchedule"}]}})
        })
        .collect();
    w.apply_json(&json!({"apiVersion": "v1", "kind": "List", "items": items}));
    names
}

fn job(w: &World, name: &str) -> Value {
    let out =
        w.c.kubectl_ok(&["get", "bd", name, "-n", &w.ns, "-o", "json"]);
    serde_json::from_str(&out).unwrap()
}

/// The job's Deployments: node → UID.
fn deployed(w: &World, name: &str) -> Vec<(String, String)> {
    let sel = format!("appimage.kuscia.secretflow/batch={name}");
    let mut out: Vec<(String, String)> = w
        .items(&["deployments", "-l", &sel])
        .iter()
        .map(|d| {
            let node = d["metadata"]["annotations"][NODE]
                .as_str()
                .unwrap_or_default();
            let uid = d["metadata"]["uid"].as_str().unwrap_or_default();
            (node.to_string(), uid.to_string())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_new_leader_finishes_the_job_and_deploys_no_node_twice() {
    let shared = Shared::once(&[BATCH_CRD], "batch-leader");
    let w = World::with_webhook_args(shared, "batch-leader", &["--reconcile=false"]);
    w.apply_signed_example("secretflow-image.yaml", &w.image);
    let group = unique("grp");
    let names = nodes(&w, &group, 8, 3);
    let _gone = Gone(&w, names.clone());
    let mut leaders = Leaders::start(&w, 2);
    let selector = format!("{GROUP}={group}");
    w.plugin(&[
        "batch",
        "create",
        "fleet",
        "--appimage",
        &w.image,
        "--node-selector",
        &selector,
        "-n",
        &w.ns,
    ]);
    // Mid-job: five nodes done, three waiting for their node.
    let mut last = Value::Null;
    let mid = wait_until(WAIT, || {
        last = job(&w, "fleet");
        let c = &last["status"]["counts"];
        c["succeeded"] == 5 && c["waiting"] == 3
    });
    assert!(mid, "never mid-way: {}", last["status"]);
    let before = deployed(&w, "fleet");
    assert_eq!(before.len(), 5, "{before:?}");

    leaders.kill_leader(&w);
    for node in &names[5..] {
        w.c.kubectl_ok(&["label", "node", node, &format!("{NOT_READY}-")]);
    }
    let done = wait_until(WAIT, || {
        last = job(&w, "fleet");
        last["status"]["phase"] == "Succeeded"
    });
    assert!(done, "the new leader never finished: {}", last["status"]);
    assert_eq!(last["status"]["summary"], "8/8");
    for n in last["status"]["nodes"].as_array().unwrap() {
        assert_eq!(
            (&n["phase"], &n["attempts"]),
            (&json!("Succeeded"), &json!(1)),
            "{n}"
        );
    }
    // The five deployed before the failover are the same objects; three more, one per node.
    let after = deployed(&w, "fleet");
    assert_eq!(after.len(), 8, "{after:?}");
    for d in &before {
        assert!(after.contains(d), "{d:?} was deployed again: {after:?}");
    }
}

/// Deletes the test's nodes when the test ends, passed or not.
struct Gone<'a>(&'a World, Vec<String>);

impl Drop for Gone<'_> {
    fn drop(&mut self) {
        let mut args = vec!["delete", "node", "--wait=false"];
        args.extend(self.1.iter().map(String::as_str));
        let _ = self.0.c.kubectl(&args);
    }
}
