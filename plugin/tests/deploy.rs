//! `kubectl appimage deploy -f FILE --dry-run=client`: the built binary, offline only. The
//! kubeconfig points nowhere, so any cluster call would fail the test.

// Tests unwrap: a panic is their failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_kubectl-appimage");

fn example(name: &str) -> String {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "..", "examples", name]
        .iter()
        .collect();
    path.to_str().expect("utf-8 path").to_string()
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str]) -> Run {
    let out = Command::new(BIN)
        .args(args)
        .env(
            "KUBECONFIG",
            "/nonexistent/kubectl-appimage-test/kubeconfig",
        )
        .env_remove("HOME")
        .output()
        .expect("run kubectl-appimage");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).expect("utf-8"),
        stderr: String::from_utf8(out.stderr).expect("utf-8"),
    }
}

/// `deploy -f SEED --dry-run=client` plus `args`; must succeed.
fn deploy(args: &[&str]) -> String {
    let seed = example("secretflow-image.yaml");
    let mut full = vec!["deploy", "-f", &seed, "--dry-run=client"];
    full.extend_from_slice(args);
    let r = run(&full);
    assert_eq!(r.code, 0, "{full:?} failed:\n{}", r.stderr);
    r.stdout
}

/// `deploy ... ` that must fail; returns stderr.
fn deploy_err(args: &[&str], code: i32) -> String {
    let seed = example("secretflow-image.yaml");
    let mut full = vec!["deploy", "-f", &seed, "--dry-run=client"];
    full.extend_from_slice(args);
    let r = run(&full);
    assert_eq!(
        r.code, code,
        "{full:?}: stdout {}\nstderr {}",
        r.stdout, r.stderr
    );
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    r.stderr
}

fn yaml_docs(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML document"))
        .collect()
}

fn temp(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write");
    (dir, path)
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn yaml_is_the_workload_then_the_pod_the_webhook_makes() {
    let out = deploy(&["-o", "yaml", "-n", "alice", "--task-id", "t1"]);
    let docs = yaml_docs(&out);
    assert_eq!(docs.len(), 2, "{out}");
    let (w, pod) = (&docs[0], &docs[1]);
    assert_eq!(w["kind"], "Deployment");
    assert_eq!(w["metadata"]["name"], "secretflow-image");
    assert_eq!(w["metadata"]["namespace"], "alice");
    assert_eq!(w["spec"]["replicas"], 1);
    let t = &w["spec"]["template"];
    assert_eq!(
        t["metadata"]["labels"]["kuscia.secretflow/app-image"],
        "secretflow-image"
    );
    assert_eq!(
        t["metadata"]["annotations"]["appimage.kuscia.secretflow/task-id"],
        "t1"
    );
    assert_eq!(
        t["spec"]["containers"][0]["image"],
        "secretflow/secretflow-lite-anolis8:latest"
    );
    assert!(t["spec"]["containers"][0].get("command").is_none());

    assert_eq!(pod["kind"], "Pod");
    assert_eq!(pod["metadata"]["namespace"], "alice");
    let name = pod["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("secretflow-image-"), "{name}");
    let c = &pod["spec"]["containers"][0];
    assert_eq!(c["command"][0], "sh");
    assert_eq!(c["ports"].as_array().unwrap().len(), 3);
    let conf = pod["metadata"]["annotations"]["config.appimage.kuscia.secretflow/task-config.conf"]
        .as_str()
        .unwrap();
    assert!(conf.contains("\"task_id\": \"t1\""), "{conf}");
    // The same inputs print the same bytes.
    assert_eq!(
        deploy(&["-o", "yaml", "-n", "alice", "--task-id", "t1"]),
        out
    );
}

#[test]
fn the_pod_is_the_one_render_shows() {
    // The StatefulSet's first Pod has a fixed name, so render can be asked for the same Pod.
    let out = deploy(&["-o", "json", "--kind", "StatefulSet", "--task-id", "t1"]);
    let list: Value = serde_json::from_str(&out).unwrap();
    let pod = &list["items"][1];
    assert_eq!(pod["metadata"]["name"], "secretflow-image-0");
    let seed = example("secretflow-image.yaml");
    let r = run(&[
        "render",
        "-f",
        &seed,
        "--task-id",
        "t1",
        "--pod-name",
        "secretflow-image-0",
        "-o",
        "json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let render: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        pod["spec"]["containers"],
        render["pod"]["spec"]["containers"]
    );
    assert_eq!(pod["spec"]["volumes"], render["pod"]["spec"]["volumes"]);
    // The one intended difference: a workload's Pod names the workload's Services
    // (`<workload>-<port>`), a bare Pod its own (`<pod>-<port>`).
    let key = "config.appimage.kuscia.secretflow/task-config.conf";
    let rendered = render["pod"]["metadata"]["annotations"][key]
        .as_str()
        .expect("rendered config")
        .replace("secretflow-image-0-", "secretflow-image-");
    assert_eq!(
        pod["metadata"]["annotations"][key].as_str(),
        Some(rendered.as_str())
    );
}

#[test]
fn every_kind_offline() {
    let cases: [(&str, &[&str], &str); 5] = [
        ("Deployment", &[], "apps/v1"),
        ("StatefulSet", &[], "apps/v1"),
        ("DaemonSet", &["--node-selector", "pool=edge"], "apps/v1"),
        ("Job", &[], "batch/v1"),
        ("CronJob", &["--schedule", "*/10 * * * *"], "batch/v1"),
    ];
    for (kind, extra, api) in cases {
        let mut args = vec!["--kind", kind, "-o", "json"];
        args.extend_from_slice(extra);
        let list: Value = serde_json::from_str(&deploy(&args)).unwrap();
        assert_eq!(list["kind"], "List");
        let w = &list["items"][0];
        assert_eq!(w["kind"], kind);
        assert_eq!(w["apiVersion"], api);
        assert_eq!(list["items"][1]["kind"], "Pod");
    }
    assert_eq!(
        deploy(&["--kind", "sts", "-o", "name", "--name", "web"]),
        "statefulset.apps/web\n"
    );
    assert_eq!(
        deploy(&["--kind", "Job"]),
        "job.batch/secretflow-image created (dry run)\n"
    );
}

#[test]
fn the_example_pod_template_is_merged() {
    let fragment = example("pod-template.yaml");
    // Its init containers, mounts and securityContext need the webhook's `all`; the default
    // `env` refuses the preview's Pod, naming the field.
    let refused = deploy_err(&["-o", "yaml", "--pod-template", &fragment], 1);
    assert!(refused.contains("spec.initContainers[0]"), "{refused}");
    let out = deploy(&[
        "-o",
        "yaml",
        "--pod-template",
        &fragment,
        "--host-network",
        "--image-pull-secret",
        "mirror",
        "--pod-overrides",
        "all",
    ]);
    let docs = yaml_docs(&out);
    for doc in [&docs[0]["spec"]["template"]["spec"], &docs[1]["spec"]] {
        let init: Vec<&str> = doc["initContainers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(init, ["prepare-data", "check-tls"]);
        assert_eq!(doc["hostNetwork"], true);
        assert_eq!(doc["volumes"][0]["hostPath"]["path"], "/var/lib/secretflow");
        assert_eq!(doc["volumes"][1]["secret"]["secretName"], "secretflow-tls");
        assert_eq!(doc["imagePullSecrets"][1]["name"], "mirror");
        let c = &doc["containers"][0];
        assert_eq!(c["securityContext"]["privileged"], true);
        assert_eq!(c["resources"]["limits"]["nvidia.com/gpu"], "1");
    }
}

#[test]
fn start_at_creates_it_stopped() {
    let out = deploy(&["-o", "json", "--replicas", "3", "--start-at", "+1h"]);
    let list: Value = serde_json::from_str(&out).unwrap();
    let w = &list["items"][0];
    assert_eq!(w["spec"]["replicas"], 0);
    assert_eq!(
        w["metadata"]["annotations"]["appimage.kuscia.secretflow/start-replicas"],
        "3"
    );
    assert!(
        w["metadata"]["annotations"]["appimage.kuscia.secretflow/start-at"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    let job: Value = serde_json::from_str(&deploy(&[
        "-o",
        "json",
        "--kind",
        "Job",
        "--start-at",
        "+1h",
    ]))
    .unwrap();
    assert_eq!(job["items"][0]["spec"]["suspend"], true);
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    let e = deploy_err(&["--kind", "Pod"], 1);
    assert!(
        e.contains("use one of: Deployment, StatefulSet, DaemonSet, Job, CronJob"),
        "{e}"
    );
    // The seed's one template has no role and so serves any; app-template's serve two.
    let roles = example("app-template.yaml");
    let r = run(&[
        "deploy",
        "-f",
        &roles,
        "--dry-run=client",
        "--role",
        "guest",
    ]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stderr.starts_with("error: AppImage \"app-template\""),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("no deploy template for role \"guest\"")
            && r.stderr.contains("roles it serves: server, client"),
        "{}",
        r.stderr
    );
    assert_eq!(
        deploy(&["--role", "guest", "-o", "name"]),
        "deployment.apps/secretflow-image-guest\n"
    );
    let e = deploy_err(&["--kind", "CronJob", "--schedule", "every day"], 1);
    assert!(
        e.contains("--schedule: \"every day\" is not a cron schedule"),
        "{e}"
    );
    let e = deploy_err(&["--start-at", "2001-01-01T00:00:00Z"], 1);
    assert!(e.contains("--start-at: \"2001-01-01T00:00:00Z\""), "{e}");
    assert!(e.contains("is not in the future"), "{e}");
    let e = deploy_err(&["--start-at", "soon"], 1);
    assert!(e.contains("is not a time"), "{e}");
    let e = deploy_err(&["--node-selector", "pool"], 1);
    assert!(e.contains("is not KEY=VALUE"), "{e}");
    let e = deploy_err(&["--set", "novalue"], 1);
    assert!(e.contains("KEY=VALUE"), "{e}");

    let (_d, bad) = temp(
        "bad.yaml",
        "spec:\n  containers:\n    - name: secretflow\n      volumeMount: []\n",
    );
    let e = deploy_err(&["--pod-template", path(&bad)], 1);
    assert!(
        e.contains("unknown field \"spec.containers[0].volumeMount\""),
        "{e}"
    );
    assert!(e.contains("bad.yaml"), "{e}");
    let (_d, typed) = temp("typed.yaml", "spec:\n  hostNetwork: maybe\n");
    let e = deploy_err(&["--pod-template", path(&typed)], 1);
    assert!(e.contains("spec.hostNetwork"), "{e}");
    let e = deploy_err(&["--pod-template", "/nonexistent/fragment.yaml"], 1);
    assert!(e.contains("--pod-template: cannot read"), "{e}");
    let (_d, sidecar) = temp("s.yaml", "spec:\n  containers:\n    - name: helper\n");
    let e = deploy_err(&["--pod-template", path(&sidecar)], 1);
    assert!(
        e.contains("container \"helper\" is not a container of deploy template"),
        "{e}"
    );
}
