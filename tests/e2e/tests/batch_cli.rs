//! `kubectl appimage batch …` on a real kube-apiserver, through the real kubectl with our
//! plugin on PATH: the BatchDeployment CRD installs, `batch create` makes a valid object,
//! stop/continue/retry patch the spec, `kubectl get batchdeployments` shows the columns, and
//! bad input gets clear errors. (No controller runs here: where a test needs a status, it
//! writes one through the status subresource, as the controller will.)

use std::sync::Once;

use appimage_e2e::world::{BATCH_CRD, Crd, REVISIONS_CRD, cluster_with};
use appimage_e2e::{Cluster, repo_root, temp_file, text, unique};
use serde_json::Value;

const CRDS: &[Crd] = &[BATCH_CRD, REVISIONS_CRD];

/// The cluster with the BatchDeployment and AppImageRevision CRDs installed and served, and
/// the AppImages the jobs name: `secretflow-image` (the seed example) and `a` (the same spec),
/// with revision 1 of `a` recorded as the controller records it. (`batch create` refuses a
/// job for an AppImage, revision or node that does not exist.)
fn batch_cluster() -> &'static Cluster {
    static SEEDED: Once = Once::new();
    let c = cluster_with(CRDS);
    SEEDED.call_once(|| seed(c));
    c
}

fn seed(c: &Cluster) {
    let text = std::fs::read_to_string(repo_root().join("examples/secretflow-image.yaml")).unwrap();
    let seed: Value = serde_yaml_ng::from_str(&text).unwrap();
    let mut a = seed.clone();
    a["metadata"] = serde_json::json!({"name": "a"});
    let rev = serde_json::json!({
        "apiVersion": "appimage.kuscia.secretflow/v1alpha1",
        "kind": "AppImageRevision",
        "metadata": {"name": "a-1"},
        "spec": {"appImage": "a", "revision": 1, "hash": "seed", "template": seed["spec"]},
    });
    for (name, object) in [("seed", &seed), ("a", &a), ("rev", &rev)] {
        let (_dir, file) = temp_file(&format!("{name}.json"), &object.to_string());
        c.kubectl_ok(&["apply", "--server-side", "-f", &file.to_string_lossy()]);
    }
}

/// A namespace of the test's own (no Pods are made, so no ServiceAccount is needed).
fn namespace(c: &Cluster) -> String {
    let ns = unique("bd");
    c.kubectl_ok(&["create", "namespace", &ns]);
    ns
}

fn plugin(c: &Cluster, args: &[&str]) -> (i32, String, String) {
    let mut full = vec!["appimage", "batch"];
    full.extend_from_slice(args);
    let out = c.kubectl(&full);
    let (o, e) = text(&out);
    (out.status.code().unwrap_or(-1), o, e)
}

fn plugin_ok(c: &Cluster, args: &[&str]) -> String {
    let (code, out, err) = plugin(c, args);
    assert_eq!(
        code, 0,
        "batch {args:?} failed:\nstdout: {out}\nstderr: {err}"
    );
    out
}

fn object(c: &Cluster, ns: &str, name: &str) -> Value {
    let out = c.kubectl_ok(&["get", "batchdeployment", name, "-n", ns, "-o", "json"]);
    serde_json::from_str(&out).unwrap()
}

/// Write a status as the controller will (merge patch on the status subresource).
fn set_status(c: &Cluster, ns: &str, name: &str, status: Value) {
    let patch = serde_json::json!({ "status": status }).to_string();
    c.kubectl_ok(&[
        "patch",
        "batchdeployment",
        name,
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch,
    ]);
}

#[test]
fn the_plugin_prints_the_committed_crd() {
    let c = batch_cluster();
    let out = c.kubectl(&["appimage", "batch", "crd"]);
    assert!(out.status.success());
    let committed = std::fs::read_to_string(repo_root().join(BATCH_CRD.path)).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), committed);
}

#[test]
fn create_makes_a_valid_object_with_every_flag() {
    let c = batch_cluster();
    let ns = namespace(c);
    let (_dir, overlay) = temp_file(
        "overlay.yaml",
        "spec:\n  tolerations:\n  - operator: Exists\n",
    );
    let overlay = overlay.to_string_lossy().into_owned();
    let out = plugin_ok(
        c,
        &[
            "create",
            "edge-rollout",
            "--appimage",
            "secretflow-image",
            "--node-selector",
            "pool=edge,zone=a",
            "--instances",
            "2",
            "--name-prefix",
            "sf",
            "--restart-policy",
            "OnFailure",
            "--timeout",
            "5m",
            "--parallelism",
            "4",
            "--failure-tolerance",
            "10%",
            "--role",
            "server",
            "--task-id",
            "t1",
            "--set",
            "LOG=debug",
            "--host-pid",
            "--host-network",
            "--pod-template",
            &overlay,
            "-n",
            &ns,
        ],
    );
    assert_eq!(
        out.trim(),
        "batchdeployment.appimage.kuscia.secretflow/edge-rollout created"
    );
    let bd = object(c, &ns, "edge-rollout");
    let spec = &bd["spec"];
    assert_eq!(spec["appImage"], "secretflow-image");
    assert_eq!(
        spec["nodeSelector"],
        serde_json::json!({"pool": "edge", "zone": "a"})
    );
    assert_eq!(spec["instances"], 2);
    assert_eq!(spec["namePrefix"], "sf");
    assert_eq!(spec["restartPolicy"], "OnFailure");
    assert_eq!(spec["timeout"], "5m");
    assert_eq!(spec["parallelism"], 4);
    assert_eq!(spec["failureTolerance"], "10%");
    assert_eq!(spec["role"], "server");
    assert_eq!(spec["taskId"], "t1");
    assert_eq!(spec["values"]["LOG"], "debug");
    assert_eq!(spec["hostPID"], true);
    assert_eq!(spec["hostNetwork"], true);
    assert_eq!(
        spec["podTemplate"]["spec"]["tolerations"][0]["operator"],
        "Exists"
    );
    let fields = c.kubectl_ok(&[
        "get",
        "bd",
        "edge-rollout",
        "-n",
        &ns,
        "--show-managed-fields",
        "-o",
        "jsonpath={.metadata.managedFields[0].manager}",
    ]);
    assert_eq!(fields, "kubectl-appimage");
    // By names instead, with the short name, and the defaults left to the CRD's readers.
    plugin_ok(
        c,
        &[
            "create",
            "by-name",
            "--appimage",
            "secretflow-image",
            "--nodes",
            "kwok-node-0,kwok-node-1",
            "-n",
            &ns,
        ],
    );
    let bd = object(c, &ns, "by-name");
    assert_eq!(
        bd["spec"]["nodeNames"],
        serde_json::json!(["kwok-node-0", "kwok-node-1"])
    );
    assert!(bd["spec"].get("restartPolicy").is_none());
    // Creating it again: kubectl's AlreadyExists.
    let (code, _, err) = plugin(
        c,
        &[
            "create",
            "by-name",
            "--appimage",
            "a",
            "--nodes",
            "kwok-node-0",
            "-n",
            &ns,
        ],
    );
    assert_eq!(code, 1);
    assert!(
        err.starts_with("Error from server (AlreadyExists)"),
        "{err}"
    );
}

#[test]
fn dry_runs_send_nothing() {
    let c = batch_cluster();
    let ns = namespace(c);
    let out = plugin_ok(
        c,
        &[
            "create",
            "dry",
            "--appimage",
            "a",
            "--nodes",
            "kwok-node-0",
            "-n",
            &ns,
            "--dry-run=client",
            "-o",
            "yaml",
        ],
    );
    let doc: Value = serde_yaml_ng::from_str(&out).unwrap();
    assert_eq!(doc["kind"], "BatchDeployment");
    assert_eq!(doc["apiVersion"], "appimage.kuscia.secretflow/v1alpha1");
    assert_eq!(doc["metadata"]["namespace"], ns.as_str());
    let out = plugin_ok(
        c,
        &[
            "create",
            "dry",
            "--appimage",
            "a",
            "--nodes",
            "kwok-node-0",
            "-n",
            &ns,
            "--dry-run=server",
        ],
    );
    assert!(out.trim().ends_with("created (server dry run)"), "{out}");
    let out = c.kubectl(&["get", "bd", "dry", "-n", &ns]);
    assert!(!out.status.success(), "a dry run stored the object");
}

#[test]
fn kubectl_get_and_batch_get_show_the_same_columns() {
    let c = batch_cluster();
    let ns = namespace(c);
    let (code, out, err) = plugin(c, &["get", "-n", &ns]);
    assert_eq!((code, out.as_str()), (0, ""));
    assert_eq!(err.trim(), format!("No resources found in {ns} namespace."));
    plugin_ok(
        c,
        &[
            "create",
            "cols",
            "--appimage",
            "a",
            "--node-selector",
            "pool=edge",
            "-n",
            &ns,
        ],
    );
    set_status(
        c,
        &ns,
        "cols",
        serde_json::json!({
            "phase": "PartiallySucceeded",
            "summary": "17/20",
            "counts": {"total": 20, "succeeded": 17, "failed": 3, "pending": 0, "running": 0, "stopped": 0},
            "attempts": 1,
            "nodes": [{"node": "edge-07", "phase": "Failed", "reason": "NodeNotReady", "message": "node edge-07 is not Ready", "pods": 0, "attempts": 1}]
        }),
    );
    let out = c.kubectl_ok(&["get", "batchdeployments", "-n", &ns]);
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["NAME", "PHASE", "SUCCEEDED", "FAILED", "AGE"]);
    assert_eq!(&lines[1][..4], ["cols", "PartiallySucceeded", "17/20", "3"]);
    let out = plugin_ok(c, &["get", "-n", &ns]);
    let mine: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(mine[0], lines[0]);
    assert_eq!(&mine[1][..4], &lines[1][..4]);
    // describe: a line per node with its reason.
    let out = plugin_ok(c, &["describe", "cols", "-n", &ns]);
    let node = out
        .lines()
        .find(|l| l.contains("edge-07"))
        .unwrap_or_default();
    let cells: Vec<&str> = node.split_whitespace().collect();
    assert_eq!(
        &cells[..5],
        ["edge-07", "Failed", "0/1", "1", "NodeNotReady"],
        "{out}"
    );
    assert!(
        out.contains("Phase:") && out.contains("PartiallySucceeded"),
        "{out}"
    );
}

#[test]
fn stop_continue_and_retry_patch_the_spec() {
    let c = batch_cluster();
    let ns = namespace(c);
    plugin_ok(
        c,
        &[
            "create",
            "levers",
            "--appimage",
            "a",
            "--nodes",
            "kwok-node-0",
            "-n",
            &ns,
        ],
    );
    let (code, _, err) = plugin(c, &["continue", "levers", "-n", &ns]);
    assert_eq!(code, 1);
    assert!(err.contains("is not stopped"), "{err}");

    let out = plugin_ok(c, &["stop", "levers", "-n", &ns]);
    assert_eq!(
        out.trim(),
        "batchdeployment.appimage.kuscia.secretflow/levers stopped"
    );
    assert_eq!(object(c, &ns, "levers")["spec"]["suspend"], true);
    plugin_ok(c, &["continue", "levers", "-n", &ns]);
    assert_eq!(object(c, &ns, "levers")["spec"]["suspend"], false);

    // No retry while the job is not Failed, PartiallySucceeded or TimedOut.
    let (code, _, err) = plugin(c, &["retry", "levers", "-n", &ns]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot retry levers: it is Queued"), "{err}");
    assert!(
        object(c, &ns, "levers")["spec"]
            .get("retryGeneration")
            .is_none()
    );

    set_status(
        c,
        &ns,
        "levers",
        serde_json::json!({"phase": "TimedOut", "observedRetryGeneration": 0}),
    );
    let out = plugin_ok(c, &["retry", "levers", "-n", &ns]);
    assert!(out.contains("retried (retryGeneration 1)"), "{out}");
    assert_eq!(object(c, &ns, "levers")["spec"]["retryGeneration"], 1);
    // The controller has not taken the first retry yet: a second one still counts up.
    plugin_ok(c, &["retry", "levers", "-n", &ns]);
    assert_eq!(object(c, &ns, "levers")["spec"]["retryGeneration"], 2);

    let out = plugin_ok(c, &["delete", "levers", "-n", &ns]);
    assert_eq!(
        out.trim(),
        "batchdeployment.appimage.kuscia.secretflow \"levers\" deleted"
    );
    let (code, _, err) = plugin(c, &["stop", "levers", "-n", &ns]);
    assert_eq!(code, 1);
    assert!(err.starts_with("Error from server (NotFound)"), "{err}");
    plugin_ok(c, &["delete", "levers", "-n", &ns, "--ignore-not-found"]);
}

#[test]
fn watch_follows_until_the_job_is_finished() {
    let c = batch_cluster();
    let ns = namespace(c);
    plugin_ok(
        c,
        &[
            "create",
            "watched",
            "--appimage",
            "a",
            "--nodes",
            "kwok-node-0,kwok-node-1",
            "-n",
            &ns,
        ],
    );
    let generation = object(c, &ns, "watched")["metadata"]["generation"].clone();
    set_status(
        c,
        &ns,
        "watched",
        serde_json::json!({
            "phase": "Succeeded", "summary": "2/2", "observedGeneration": generation,
            "counts": {"total": 2, "succeeded": 2, "failed": 0, "pending": 0, "running": 0, "stopped": 0}
        }),
    );
    let out = plugin_ok(c, &["get", "watched", "-n", &ns, "--watch"]);
    let last = out.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("watched Succeeded 2/2 succeeded, 0 failed")
            && last.ends_with("[####################] 100%"),
        "{out}"
    );
}

#[test]
fn bad_input_gets_clear_errors() {
    let c = batch_cluster();
    let ns = namespace(c);
    // No nodes: refused by the plugin (clap names both flags).
    let (code, _, err) = plugin(c, &["create", "x", "--appimage", "a", "-n", &ns]);
    assert_ne!(code, 0);
    assert!(
        err.contains("--node-selector") && err.contains("--nodes"),
        "{err}"
    );
    // An empty list is never "every node".
    let (code, _, err) = plugin(
        c,
        &["create", "x", "--appimage", "a", "--nodes", ",", "-n", &ns],
    );
    assert_eq!(code, 1);
    assert!(err.contains("never means every node"), "{err}");
    // Unknown restart policy: the values on offer are named.
    let (code, _, err) = plugin(
        c,
        &[
            "create",
            "x",
            "--appimage",
            "a",
            "--nodes",
            "kwok-node-0",
            "--restart-policy",
            "Sometimes",
            "-n",
            &ns,
        ],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("Sometimes") && err.contains("Always") && err.contains("OnFailure"),
        "{err}"
    );
    for (flag, value, says) in [
        ("--timeout", "soon", "spec.timeout"),
        ("--instances", "0", "spec.instances"),
        ("--failure-tolerance", "lots", "spec.failureTolerance"),
        ("--node-selector", "pool", "not KEY=VALUE"),
    ] {
        let (code, _, err) = plugin(
            c,
            &[
                "create",
                "x",
                "--appimage",
                "a",
                "--nodes",
                "kwok-node-0",
                flag,
                value,
                "-n",
                &ns,
            ],
        );
        assert_eq!(code, 1, "{flag} {value}");
        assert!(
            err.starts_with("error: ") && err.contains(says),
            "{flag} {value}: {err}"
        );
    }
    assert!(
        !c.kubectl(&["get", "bd", "x", "-n", &ns]).status.success(),
        "nothing was created"
    );
    // The apiserver enforces the same rule for plain kubectl, through the CRD's CEL rule.
    let (_dir, file) = temp_file(
        "no-nodes.yaml",
        "apiVersion: appimage.kuscia.secretflow/v1alpha1\nkind: BatchDeployment\nmetadata:\n  name: no-nodes\nspec:\n  appImage: a\n",
    );
    let out = c.kubectl(&["create", "-f", &file.to_string_lossy(), "-n", &ns]);
    assert!(!out.status.success());
    let err = text(&out).1;
    assert!(
        err.contains("choose nodes with spec.nodeSelector or spec.nodeNames"),
        "{err}"
    );
    let (_dir, file) = temp_file(
        "bad-policy.yaml",
        "apiVersion: appimage.kuscia.secretflow/v1alpha1\nkind: BatchDeployment\nmetadata:\n  name: bad-policy\nspec:\n  appImage: a\n  nodeNames: [n1]\n  restartPolicy: Sometimes\n",
    );
    let out = c.kubectl(&["create", "-f", &file.to_string_lossy(), "-n", &ns]);
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("spec.restartPolicy"),
        "{}",
        text(&out).1
    );
}

#[test]
fn watch_exits_1_when_the_job_failed_or_timed_out() {
    let c = batch_cluster();
    let ns = namespace(c);
    for (name, phase) in [("failed", "Failed"), ("late", "TimedOut")] {
        plugin_ok(
            c,
            &[
                "create",
                name,
                "--appimage",
                "a",
                "--nodes",
                "kwok-node-0",
                "-n",
                &ns,
            ],
        );
        let generation = object(c, &ns, name)["metadata"]["generation"].clone();
        set_status(
            c,
            &ns,
            name,
            serde_json::json!({
                "phase": phase, "summary": "0/1", "observedGeneration": generation,
                "counts": {"total": 1, "succeeded": 0, "failed": 1, "pending": 0, "running": 0, "stopped": 0}
            }),
        );
        let (code, out, err) = plugin(c, &["get", name, "-n", &ns, "-w"]);
        assert_eq!(code, 1, "{name}: {out}{err}");
        assert!(
            out.contains(&format!("{name} {phase} 0/1 succeeded")),
            "{out}"
        );
        assert_eq!(
            err.trim(),
            format!(
                "error: batchdeployment.appimage.kuscia.secretflow/{name} ended {phase}; see kubectl appimage batch describe {name} -n {ns}"
            )
        );
    }
}

/// What `deploy` refuses, `batch create` refuses before writing, naming the flag.
#[test]
fn create_refuses_a_missing_appimage_revision_or_node() {
    let c = batch_cluster();
    let ns = namespace(c);
    let refused = |args: &[&str], says: &str| {
        let mut full = vec!["create", "refused", "-n", &ns];
        full.extend_from_slice(args);
        for dry in ["--dry-run=none", "--dry-run=server"] {
            let mut with = full.clone();
            with.push(dry);
            let (code, out, err) = plugin(c, &with);
            assert_eq!(code, 1, "{with:?}: {out}{err}");
            assert!(out.is_empty(), "{with:?}: {out}");
            assert_eq!(err.trim(), format!("error: {says}"), "{with:?}");
        }
    };
    refused(
        &["--appimage", "nope", "--nodes", "kwok-node-0"],
        "--appimage nope: AppImage \"nope\" not found; kubectl appimage get lists them, kubectl appimage apply -f FILE creates one",
    );
    refused(
        &[
            "--appimage",
            "a",
            "--revision",
            "99",
            "--nodes",
            "kwok-node-0",
        ],
        "--revision 99: AppImage \"a\" has no revision 99 (it has: 1); kubectl appimage history a lists them",
    );
    refused(
        &[
            "--appimage",
            "secretflow-image",
            "--revision",
            "1",
            "--nodes",
            "kwok-node-0",
        ],
        "--revision 1: AppImage \"secretflow-image\" has no revision 1 (it has: none); kubectl appimage history secretflow-image lists them",
    );
    refused(
        &["--appimage", "a", "--nodes", "kwok-node-0,edge-9,edge-10"],
        "--nodes: no node named edge-9, edge-10; kubectl get nodes lists them",
    );
    assert!(
        !c.kubectl(&["get", "bd", "refused", "-n", &ns])
            .status
            .success(),
        "nothing was created"
    );
    // What exists is accepted: revision 1 of a, on real nodes.
    let out = plugin_ok(
        c,
        &[
            "create",
            "fine",
            "--appimage",
            "a",
            "--revision",
            "1",
            "--nodes",
            "kwok-node-0,kwok-node-2",
            "-n",
            &ns,
        ],
    );
    assert_eq!(
        out.trim(),
        "batchdeployment.appimage.kuscia.secretflow/fine created"
    );
}

/// As `get` (and kubectl): `-o yaml|json` leaves out metadata.managedFields, which the stored
/// object has.
#[test]
fn object_output_hides_managed_fields() {
    let c = batch_cluster();
    let ns = namespace(c);
    let created = plugin_ok(
        c,
        &[
            "create",
            "shown",
            "--appimage",
            "a",
            "--nodes",
            "kwok-node-0",
            "-n",
            &ns,
            "-o",
            "yaml",
        ],
    );
    let stored = c.kubectl_ok(&[
        "get",
        "bd",
        "shown",
        "-n",
        &ns,
        "--show-managed-fields",
        "-o",
        "yaml",
    ]);
    assert!(stored.contains("managedFields:"), "{stored}");
    let outputs = [
        created,
        plugin_ok(c, &["get", "shown", "-n", &ns, "-o", "yaml"]),
        plugin_ok(c, &["get", "shown", "-n", &ns, "-o", "json"]),
        plugin_ok(c, &["get", "-n", &ns, "-o", "yaml"]),
        plugin_ok(c, &["get", "-A", "-o", "json"]),
    ];
    for out in &outputs {
        assert!(!out.contains("managedFields"), "{out}");
        assert!(out.contains("shown"), "{out}");
    } // kubectl's template outputs (issue 30), over the same objects.
    let template = |o: &str, name: Option<&str>| {
        let mut args = vec!["get", "-n", &ns, "-o", o];
        args.extend(name);
        plugin_ok(c, &args)
    };
    assert_eq!(
        template("jsonpath={.metadata.name}", Some("shown")),
        "shown"
    );
    assert_eq!(template("jsonpath={.items[*].spec.appImage}", None), "a");
    assert_eq!(
        template(
            "custom-columns=NAME:.metadata.name,NODES:.spec.nodeNames[*]",
            None
        ),
        "NAME    NODES\nshown   kwok-node-0\n"
    );
    assert_eq!(
        template(
            "go-template={{range .items}}{{.metadata.name}}{{end}}",
            None
        ),
        "shown\n"
    );
}
