//! Helpers of the progressive-rollout tests (issue 28): workloads across namespaces, the
//! rollout policy and its status, the Events on the AppImage.

use std::io::Read;
use std::process::{Child, Stdio};

use appimage::resource::AppImage;
use serde_json::{Value, json};

use crate::wait_until;
use crate::world::{WAIT, World};

const REVISION_HASH: &str = "appimage.kuscia.secretflow/revision-hash";
const CONFIG: &str = "config.appimage.kuscia.secretflow/task-config.conf";
const WORKLOAD: &str = "appimage.kuscia.secretflow/workload";

/// A workload of the test: its namespace, kind and name.
#[derive(Clone, Debug)]
pub struct W {
    pub ns: String,
    pub kind: &'static str,
    pub name: String,
}

impl W {
    pub fn what(&self) -> String {
        format!("{}/{}", self.kind.to_lowercase(), self.name)
    }
}

/// Output and exit of a finished `status -w`.
pub fn finish(mut child: Child) -> (bool, String) {
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
pub fn updated_config(pod: &Value) -> bool {
    pod["metadata"]["annotations"][CONFIG]
        .as_str()
        .unwrap_or_default()
        .contains("task_input_cluster_def")
}

/// What the rollout tests do with a world.
pub trait Rollouts {
    /// Another namespace this world's webhook admits.
    fn admitted_namespace(&self, prefix: &str) -> String;
    /// The seed, or its update (global port 8082, a config key renamed); `never_ready` adds
    /// the kwok hook that keeps the revision's Pods from becoming Ready.
    fn spec(&self, update: bool, never_ready: bool) -> AppImage;
    fn deploy_in(&self, ns: &str, kind: &'static str, name: &str, labels: &[&str]) -> W;
    fn get(&self, w: &W) -> Value;
    /// The revision `w`'s pod template names: `deploy` names it by hash, a rollout by number
    /// and hash; read by hash.
    fn runs(&self, w: &W) -> Option<i64>;
    /// The hash of revision `n`, if recorded.
    fn hash(&self, n: i64) -> Option<String>;
    /// Wait until `w`'s template names revision `n` and its one live Pod was made from it, Running.
    fn on(&self, w: &W, n: i64) -> Value;
    fn rollout(&self) -> Value;
    fn status(&self) -> String;
    /// Wait until the rollout's phase is `phase` (and, when given, its wave index `wave`).
    fn phase(&self, phase: &str, wave: Option<i64>) -> Value;
    /// Apply the rollout policy, and wait until the controller took it: revision 1, which
    /// every workload runs, is adopted as rolled out (a policy made while a revision rolls
    /// out takes only what was not moved yet).
    fn policy(&self, waves: Value);
    /// `kubectl appimage rollout status -w`, running.
    fn watch(&self) -> Child;
    /// The Events on the AppImage (cluster-scoped: in the default namespace), as `reason: message`.
    fn image_events(&self) -> Vec<String>;
}

impl Rollouts for World {
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

/// How many times the AppImage got an Event of `reason` (a repeated Event counts its repeats).
pub fn event_count(w: &World, reason: &str) -> i64 {
    let selector = format!(
        "involvedObject.name={},involvedObject.kind=AppImage,reason={reason}",
        w.image
    );
    let out = w.c.kubectl_ok(&[
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
            e["count"]
                .as_i64()
                .unwrap_or(1)
                .max(e["series"]["count"].as_i64().unwrap_or(1))
        })
        .sum()
}
