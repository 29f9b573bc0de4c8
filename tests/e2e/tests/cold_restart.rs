//! A leader that starts on cold stores does no harm (issue 25, section 1: "the revisions
//! controller waits for every store it reads"; section 3: "the cold-store leader restart").
//!
//! An AppImage with four revisions and a history limit of 1 (and ballast: 1,500 revisions of
//! other AppImages and 150 labelled Deployments of 60 kB templates, so that a new leader's
//! lists of revisions, Deployments and ReplicaSets arrive well after its list of AppImages): a
//! Manual Deployment runs revision 1, a Manual Deployment of no replicas names revision 2 in its
//! template only, a BatchDeployment pins revision 3, an Auto Deployment follows to revision 4.
//! Admission runs in a process of its own (`--reconcile=false`, as the chart's admission
//! Deployment); the controllers run in another, which is SIGKILLed and started again several
//! times, each new one taking the Lease with empty stores. Afterwards: no revision in use was
//! deleted, none was written again (same uid, resourceVersion and hash: `<name>-1` was not
//! re-created), the API server received no write request for AppImageRevisions at all (its
//! request counters: a refused one counts too), and no workload rolled (same generation and
//! pod template).
//!
//! Before the fix (12f65cc), `prune` ran before the Pod, workload and ReplicaSet stores had
//! synced, saw no users and deleted revisions in use, and an empty revision store made `record`
//! write `<name>-1` again.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use appimage::resource::AppImage;
use appimage_e2e::webhook::Webhook;
use appimage_e2e::world::{BATCH_CRD, REVISIONS_CRD, Shared, WAIT};
use appimage_e2e::{text, wait_until};
use serde_json::{Value, json};

const LATEST: &str = "appimage.kuscia.secretflow/latest-revision";
const APP_IMAGE: &str = "kuscia.secretflow/app-image";
const HISTORY_LIMIT: &str = "appimage.kuscia.secretflow/revision-history-limit";
/// Leader restarts, each on cold stores.
const RESTARTS: usize = 3;
/// The revisions in use: 1 by a Manual Deployment's Pods, 2 by a Manual Deployment of no
/// replicas, 3 by a BatchDeployment, 4 by an Auto Deployment.
const IN_USE: [i64; 4] = [1, 2, 3, 4];
/// Ballast, so that a new leader's initial lists take a while (as in a large cluster) while
/// its AppImage list, small, arrives first: revisions of other AppImages, and labelled
/// Deployments (and so ReplicaSets) with big pod templates.
const BALLAST_REVISIONS: usize = 1500;
const BALLAST_DEPLOYMENTS: usize = 150;
const BALLAST_BYTES: usize = 60_000;

appimage_e2e::world_wrapper!(World);

fn shared() -> &'static Shared {
    Shared::once(&[REVISIONS_CRD, BATCH_CRD], "cold")
}

impl World {
    /// The world's AppImage, from `file`, with `edition` written into its config templates (a
    /// new spec, so a new revision) and a history limit of 1, signed.
    fn edition(&self, file: &str, edition: &str) -> AppImage {
        let mut img = self.example(file, &self.image);
        img.metadata.annotations = Some([(HISTORY_LIMIT.to_string(), "1".to_string())].into());
        if !edition.is_empty() {
            for text in img.spec.config_templates.values_mut() {
                *text = text.replacen(
                    "\"task_id\"",
                    &format!("\"edition\": \"{edition}\",\n  \"task_id\""),
                    1,
                );
            }
        }
        self.sign(&mut img);
        img
    }

    /// Every revision of the AppImage: number -> (uid, resourceVersion, hash).
    fn revisions(&self) -> BTreeMap<i64, (String, String, String)> {
        let out = self.c.kubectl_ok(&[
            "get",
            "appimagerevisions",
            "--field-selector",
            &format!("spec.appImage={}", self.image),
            "-o",
            "json",
        ]);
        let list: Value = serde_json::from_str(&out).expect("JSON");
        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                (
                    r["spec"]["revision"].as_i64().unwrap_or_default(),
                    (
                        s(&r["metadata"]["uid"]),
                        s(&r["metadata"]["resourceVersion"]),
                        s(&r["spec"]["hash"]),
                    ),
                )
            })
            .collect()
    }

    /// A Deployment's generation and pod template annotations.
    fn rolled_state(&self, name: &str) -> (i64, Value) {
        let d = self.get_json(&[&format!("deployment/{name}")]);
        (
            d["metadata"]["generation"].as_i64().unwrap_or_default(),
            d["spec"]["template"]["metadata"]["annotations"].clone(),
        )
    }

    fn acted(&self, name: &str, n: i64) {
        let want = n.to_string();
        let ok = wait_until(WAIT, || {
            self.get_json(&[&format!("deployment/{name}")])["metadata"]["labels"][LATEST]
                == want.as_str()
        });
        assert!(ok, "the controllers never acted on revision {n} for {name}");
    }
}

/// Create `items` with one `kubectl create` of a List.
fn create_all(w: &World, items: Vec<Value>) {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
    let file = appimage_e2e::write_json(w.work.path(), &list);
    let out =
        w.c.kubectl(&["create", "-f", &file.to_string_lossy(), "-o", "name"]);
    assert!(out.status.success(), "ballast: {:?}", text(&out).1);
}

/// The ballast: revisions of AppImages that do not exist (copies of `model`), and labelled
/// Deployments of 0 replicas in a namespace of their own.
fn ballast(w: &World, model: &Value) {
    let mut revisions = Vec::new();
    for i in 0..BALLAST_REVISIONS {
        let image = format!("ballast-{}-{i}", w.image);
        let mut r = model.clone();
        r["metadata"] = json!({"name": format!("{image}-1")});
        r["spec"]["appImage"] = json!(image);
        revisions.push(r);
    }
    create_all(w, revisions);
    let ns = w.c.namespace("cold-ballast");
    let text = "x".repeat(BALLAST_BYTES);
    let deployments = (0..BALLAST_DEPLOYMENTS)
        .map(|i| {
            let labels = json!({"app": format!("b{i}"), APP_IMAGE: format!("ballast-{i}")});
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": format!("b{i}"), "namespace": ns, "labels": labels},
                "spec": {
                    "replicas": 0,
                    "selector": {"matchLabels": {"app": format!("b{i}")}},
                    "template": {
                        "metadata": {"labels": labels, "annotations": {"e2e/ballast": text}},
                        "spec": {"containers": [{"name": "main", "image": "e2e.invalid/x:1"}]}
                    }
                }
            })
        })
        .collect();
    create_all(w, deployments);
}

/// Write requests for AppImageRevisions the API server has answered, whatever their outcome
/// (`apiserver_request_total`, from its /metrics): a refused write counts too.
fn revision_writes(w: &World) -> u64 {
    let metrics = w.c.kubectl_ok(&["get", "--raw", "/metrics"]);
    metrics
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
        .filter(|l| l.contains("resource=\"appimagerevisions\""))
        .filter(|l| {
            [
                "POST",
                "PUT",
                "PATCH",
                "APPLY",
                "DELETE",
                "DELETECOLLECTION",
            ]
            .iter()
            .any(|v| l.contains(&format!("verb=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The controllers' process: the shared Lease (2 s, so a successor leads soon after a kill).
fn controllers(s: &Shared) -> Webhook {
    let lease = format!("--lease-name={}", s.lease);
    Webhook::start(
        s.c,
        &s.tls,
        &s.signer.pub_dir,
        &[&lease, "--lease-duration=2s"],
    )
}

fn leads(s: &Shared, hook: &Webhook) -> bool {
    let out = Command::new("curl")
        .args([
            "-s",
            "--cacert",
            &s.tls.ca.to_string_lossy(),
            &hook.url("/readyz"),
        ])
        .output()
        .expect("curl");
    text(&out).0.contains(" leads ")
}

#[test]
fn a_leader_on_cold_stores_prunes_nothing_in_use_and_rolls_nothing() {
    let s = shared();
    // Admission only: it stays up (and registered) while the controllers restart.
    let w = World(appimage_e2e::world::World::with_webhook_args(
        s,
        "cold",
        &["--reconcile=false"],
    ));
    let mut ctl = controllers(s);
    assert!(
        wait_until(WAIT, || leads(s, &ctl)),
        "the controllers never led:\n{}",
        ctl.logs()
    );

    // Revision 1, and a Manual Deployment that stays on it.
    w.apply_image(&w.edition("secretflow-image.yaml", ""));
    w.revision(1);
    w.deploy("manual", &["--update-policy", "Manual", "--replicas", "1"]);
    w.acted("manual", 1);
    // Revision 2, and a Manual Deployment of no replicas on it: only its pod template (and
    // its ReplicaSet) names the revision, no Pod does.
    w.apply_image(&w.edition("secretflow-image-update.yaml", ""));
    w.revision(2);
    w.deploy("parked", &["--update-policy", "Manual", "--replicas", "0"]);
    w.acted("parked", 2);
    // Revision 3, and a BatchDeployment that pins it (on no node: it runs nothing).
    w.apply_image(&w.edition("secretflow-image-update.yaml", "three"));
    w.revision(3);
    w.apply_json(&json!({
        "apiVersion": "appimage.kuscia.secretflow/v1alpha1", "kind": "BatchDeployment",
        "metadata": {"name": "pinned", "namespace": w.ns},
        "spec": {"appImage": w.image, "revision": 3,
                 "nodeSelector": {"appimage.test/none": "none"}},
    }));
    // Revision 4, and an Auto Deployment on it.
    w.apply_image(&w.edition("secretflow-image-update.yaml", "four"));
    w.revision(4);
    w.deploy("auto", &["--replicas", "1"]);
    w.acted("auto", 4);
    w.acted("manual", 4);
    w.acted("parked", 4);
    // Settled. With a history limit of 1 only revision 4 is kept for its own sake; 1, 2 and 3
    // stay because they are in use.
    std::thread::sleep(Duration::from_secs(5));
    let first = w.revisions();
    for n in IN_USE {
        assert!(
            first.contains_key(&n),
            "revision {n} is in use but was deleted before any restart: {:?}\n{}",
            first.keys().collect::<Vec<_>>(),
            ctl.logs()
        );
    }
    let workloads_before = [
        w.rolled_state("manual"),
        w.rolled_state("parked"),
        w.rolled_state("auto"),
    ];
    let model = w.get_json(&["appimagerevision", &format!("{}-1", w.image)]);
    ballast(&w, &model);
    // The ballast settles (and the leader, warm, acts on none of it).
    std::thread::sleep(Duration::from_secs(5));
    let before = w.revisions();
    let writes_before = revision_writes(&w);
    assert_eq!(
        [
            w.rolled_state("manual"),
            w.rolled_state("parked"),
            w.rolled_state("auto")
        ],
        workloads_before
    );

    for i in 0..RESTARTS {
        ctl.child.kill().expect("SIGKILL the leader");
        let _ = ctl.child.wait();
        ctl = controllers(s);
        assert!(
            wait_until(WAIT, || leads(s, &ctl)),
            "restart {i}: the new process never led:\n{}",
            ctl.logs()
        );
        // Time for its stores to sync and every AppImage to be reconciled.
        std::thread::sleep(Duration::from_secs(6));
        let now = w.revisions();
        for n in IN_USE {
            assert!(
                now.contains_key(&n),
                "restart {i}: revision {n}, in use, was deleted by a leader on cold stores: {:?}\n{}",
                now.keys().collect::<Vec<_>>(),
                ctl.logs()
            );
        }
        for (n, was) in &before {
            if let Some(is) = now.get(n) {
                assert_eq!(
                    is, was,
                    "restart {i}: revision {n} was written again ({}-{n}: uid, resourceVersion, hash)",
                    w.image
                );
            }
        }
        assert!(
            now.keys().all(|n| before.contains_key(n)),
            "restart {i}: a revision was recorded anew: {:?} (was {:?})",
            now.keys().collect::<Vec<_>>(),
            before.keys().collect::<Vec<_>>()
        );
        // Not even an attempt: before the fix the API server refused a rewrite of `<name>-1`
        // (the CRD makes revisions immutable), which is what stopped the prune behind it.
        let writes = revision_writes(&w) - writes_before;
        assert_eq!(
            writes,
            0,
            "restart {i}: the new leader sent {writes} write(s) for AppImageRevisions with nothing to record or prune:\n{}",
            ctl.logs()
        );
        let workloads = [
            w.rolled_state("manual"),
            w.rolled_state("parked"),
            w.rolled_state("auto"),
        ];
        assert_eq!(
            workloads, workloads_before,
            "restart {i}: a workload rolled (generation, template annotations of manual, parked, auto)"
        );
    }
    eprintln!(
        "cold restarts: {RESTARTS} leader restarts, revisions {:?} untouched, no workload rolled",
        before.keys().collect::<Vec<_>>()
    );
}
