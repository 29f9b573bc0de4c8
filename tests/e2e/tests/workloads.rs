//! `kubectl appimage deploy` on a real kube-apiserver, through the real kubectl with the
//! plugin on PATH: the seed AppImage as a Deployment, StatefulSet, DaemonSet, Job and CronJob,
//! written by server-side apply and checked as the server stored them, then run by the
//! cluster's controllers on its simulated (kwok) nodes.

use std::time::Duration;

use appimage_e2e::{
    Cluster, NODE_LABEL, cluster, node_name, repo_root, temp_file, text, unique, wait_until,
};
use serde_json::Value;

/// The seed AppImage under a name of its own, applied to the cluster.
fn seed(c: &Cluster) -> String {
    let name = unique("sf");
    let text = std::fs::read_to_string(repo_root().join("examples/secretflow-image.yaml"))
        .expect("seed")
        .replacen("name: secretflow-image", &format!("name: {name}"), 1);
    let (_dir, file) = temp_file("seed.yaml", &text);
    c.kubectl_ok(&["appimage", "apply", "-f", &file.to_string_lossy()]);
    name
}

fn deploy(c: &Cluster, args: &[&str]) -> (i32, String, String) {
    let mut full = vec!["appimage", "deploy"];
    full.extend_from_slice(args);
    let out = c.kubectl(&full);
    let (o, e) = text(&out);
    (out.status.code().unwrap_or(-1), o, e)
}

fn deploy_ok(c: &Cluster, args: &[&str]) -> String {
    let (code, out, err) = deploy(c, args);
    assert_eq!(code, 0, "deploy {args:?} failed:\n{err}");
    out
}

fn get(c: &Cluster, ns: &str, what: &str) -> Value {
    serde_json::from_str(&c.kubectl_ok(&["get", "-n", ns, what, "-o", "json"])).expect("JSON")
}

/// The pod template as the server keeps it: the AppImage label, the workload label, the
/// options, and the template's container with the AppImage's image.
fn check_template(t: &Value, image: &str, workload: &str) {
    let labels = &t["metadata"]["labels"];
    assert_eq!(labels["kuscia.secretflow/app-image"], image);
    assert_eq!(labels["appimage.kuscia.secretflow/workload"], workload);
    let c = &t["spec"]["containers"][0];
    assert_eq!(c["name"], "secretflow");
    assert_eq!(c["image"], "secretflow/secretflow-lite-anolis8:latest");
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    assert!(
        t["metadata"]["annotations"]["appimage.kuscia.secretflow/revision-hash"]
            .as_str()
            .is_some_and(|h| h.len() == 64)
    );
}

fn field_managers(obj: &Value) -> Vec<String> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["manager"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn the_seed_as_a_deployment_by_server_side_apply() {
    let c = cluster();
    let image = seed(c);
    let ns = c.namespace("wl-deploy");
    let out = deploy_ok(c, &[&image, "-n", &ns, "--task-id", "t1", "--set", "A=1"]);
    assert_eq!(out, format!("deployment.apps/{image} created\n"));
    let d = get(c, &ns, &format!("deployment/{image}"));
    assert_eq!(d["spec"]["replicas"], 1, "the template's replicas");
    assert_eq!(
        d["spec"]["selector"]["matchLabels"]["appimage.kuscia.secretflow/workload"],
        image.as_str()
    );
    assert_eq!(
        d["metadata"]["annotations"]["appimage.kuscia.secretflow/update-policy"],
        "Auto"
    );
    let shown = c.kubectl_ok(&[
        "get",
        "-n",
        &ns,
        &format!("deployment/{image}"),
        "-o",
        "json",
        "--show-managed-fields",
    ]);
    let managers = field_managers(&serde_json::from_str(&shown).expect("JSON"));
    assert!(
        managers.contains(&"kubectl-appimage".to_string()),
        "{managers:?}"
    );
    let t = &d["spec"]["template"];
    check_template(t, &image, &image);
    assert_eq!(t["spec"]["restartPolicy"], "Always");
    let a = &t["metadata"]["annotations"];
    assert_eq!(a["appimage.kuscia.secretflow/task-id"], "t1");
    assert_eq!(a["appimage.kuscia.secretflow/values"], r#"{"A":"1"}"#);

    // The same deploy again changes nothing; a new replica count is applied.
    let out = deploy_ok(c, &[&image, "-n", &ns, "--task-id", "t1", "--set", "A=1"]);
    assert_eq!(out, format!("deployment.apps/{image} unchanged\n"));
    let out = deploy_ok(
        c,
        &[&image, "-n", &ns, "--replicas", "3", "--task-id", "t1"],
    );
    assert_eq!(out, format!("deployment.apps/{image} configured\n"));
    assert_eq!(
        get(c, &ns, &format!("deployment/{image}"))["spec"]["replicas"],
        3
    );

    // A server dry run is checked by the server and stores nothing.
    let out = deploy_ok(c, &[&image, "-n", &ns, "--name", "dry", "--dry-run=server"]);
    assert_eq!(out, "deployment.apps/dry created (server dry run)\n");
    assert!(
        !c.kubectl(&["get", "-n", &ns, "deployment/dry"])
            .status
            .success()
    );
    // A client dry run reads the cluster's AppImage, prints the workload and its Pod, and
    // writes nothing.
    let out = deploy_ok(
        c,
        &[
            &image,
            "-n",
            &ns,
            "--name",
            "dry",
            "--dry-run=client",
            "-o",
            "yaml",
        ],
    );
    let docs: Vec<Value> = out
        .split("\n---\n")
        .map(|d| serde_yaml_ng::from_str(d).expect("YAML"))
        .collect();
    assert_eq!(docs.len(), 2, "{out}");
    assert_eq!(docs[0]["kind"], "Deployment");
    assert_eq!(docs[1]["kind"], "Pod");
    assert_eq!(docs[1]["metadata"]["namespace"], ns.as_str());
    assert_eq!(docs[1]["spec"]["containers"][0]["command"][0], "sh");
    assert!(
        !c.kubectl(&["get", "-n", &ns, "deployment/dry"])
            .status
            .success()
    );
}

#[test]
fn statefulset_daemonset_job_and_cronjob() {
    let c = cluster();
    let image = seed(c);
    let ns = c.namespace("wl-kinds");

    deploy_ok(
        c,
        &[&image, "-n", &ns, "--kind", "StatefulSet", "--name", "sts"],
    );
    let s = get(c, &ns, "statefulset/sts");
    assert_eq!(s["spec"]["serviceName"], "sts");
    assert_eq!(s["spec"]["replicas"], 1);
    check_template(&s["spec"]["template"], &image, "sts");

    let out = deploy_ok(
        c,
        &[
            &image,
            "-n",
            &ns,
            "--kind",
            "DaemonSet",
            "--name",
            "ds",
            "--node-selector",
            "appimage.test/pool=edge",
        ],
    );
    assert_eq!(out, "daemonset.apps/ds created\n");
    let d = get(c, &ns, "daemonset/ds");
    assert_eq!(
        d["spec"]["template"]["spec"]["nodeSelector"]["appimage.test/pool"],
        "edge"
    );
    check_template(&d["spec"]["template"], &image, "ds");

    deploy_ok(
        c,
        &[
            &image,
            "-n",
            &ns,
            "--kind",
            "Job",
            "--name",
            "job",
            "--replicas",
            "2",
        ],
    );
    let j = get(c, &ns, "job/job");
    assert_eq!(j["spec"]["completions"], 2);
    assert_eq!(j["spec"]["parallelism"], 2);
    assert_eq!(j["spec"]["template"]["spec"]["restartPolicy"], "Never");
    check_template(&j["spec"]["template"], &image, "job");

    deploy_ok(
        c,
        &[
            &image,
            "-n",
            &ns,
            "--kind",
            "CronJob",
            "--name",
            "cron",
            "--schedule",
            "*/5 * * * *",
        ],
    );
    let cj = get(c, &ns, "cronjob/cron");
    assert_eq!(cj["spec"]["schedule"], "*/5 * * * *");
    assert_eq!(
        cj["spec"]["suspend"], false,
        "the server's default: running"
    );
    let jt = &cj["spec"]["jobTemplate"]["spec"];
    assert_eq!(jt["completions"], 1);
    check_template(&jt["template"], &image, "cron");
}

#[test]
fn start_at_stores_the_workload_stopped() {
    let c = cluster();
    let image = seed(c);
    let ns = c.namespace("wl-later");
    let args = ["-n", &ns, "--start-at", "+1h", "--replicas", "2"];
    deploy_ok(
        c,
        &[&[image.as_str(), "--name", "later"], &args[..]].concat(),
    );
    let d = get(c, &ns, "deployment/later");
    assert_eq!(d["spec"]["replicas"], 0);
    let a = &d["metadata"]["annotations"];
    assert_eq!(a["appimage.kuscia.secretflow/start-replicas"], "2");
    assert!(a["appimage.kuscia.secretflow/start-at"].as_str().is_some());
    deploy_ok(
        c,
        &[
            &[image.as_str(), "--name", "later-job", "--kind", "Job"],
            &args[..],
        ]
        .concat(),
    );
    assert_eq!(get(c, &ns, "job/later-job")["spec"]["suspend"], true);
}

#[test]
fn the_example_pod_template_reaches_the_stored_workload() {
    let c = cluster();
    let image = seed(c);
    let ns = c.namespace("wl-fragment");
    deploy_ok(
        c,
        &[
            &image,
            "-n",
            &ns,
            "--name",
            "frag",
            "--pod-template",
            "examples/pod-template.yaml",
            "--host-network",
        ],
    );
    let spec = &get(c, &ns, "deployment/frag")["spec"]["template"]["spec"];
    assert_eq!(spec["hostNetwork"], true);
    assert_eq!(spec["dnsPolicy"], "ClusterFirstWithHostNet");
    assert_eq!(spec["initContainers"][0]["name"], "prepare-data");
    assert_eq!(spec["initContainers"][1]["name"], "check-tls");
    assert_eq!(
        spec["volumes"][0]["hostPath"]["path"],
        "/var/lib/secretflow"
    );
    assert_eq!(spec["volumes"][1]["secret"]["secretName"], "secretflow-tls");
    let c0 = &spec["containers"][0];
    assert_eq!(c0["securityContext"]["privileged"], true);
    assert_eq!(c0["resources"]["limits"]["nvidia.com/gpu"], "1");
}

#[test]
fn a_workload_someone_else_made_is_left_alone() {
    let c = cluster();
    let image = seed(c);
    let ns = c.namespace("wl-owner");
    c.kubectl_ok(&[
        "create",
        "deployment",
        "taken",
        "-n",
        &ns,
        "--image",
        "nginx:1",
        "--replicas",
        "1",
    ]);
    let (code, out, err) = deploy(c, &[&image, "-n", &ns, "--name", "taken"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        err.starts_with(&format!(
            "error: deployment.apps/taken in namespace \"{ns}\" exists and was not made by kubectl appimage deploy"
        )),
        "{err}"
    );
    assert!(
        err.contains("choose another --name, or delete it first"),
        "{err}"
    );
    let d = get(c, &ns, "deployment/taken");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1"
    );

    // An AppImage only in a file: the webhook could not complete the Pods, so no deploy.
    let (code, _, err) = deploy(c, &["-f", "examples/app-template.yaml", "-n", &ns]);
    assert_eq!(code, 1);
    assert!(err.contains("is not in the cluster"), "{err}");
    assert!(
        err.contains("kubectl appimage apply -f examples/app-template.yaml"),
        "{err}"
    );
    // A role no template serves (app-template's serve server and client).
    let roles = unique("roles");
    let text = std::fs::read_to_string(repo_root().join("examples/app-template.yaml"))
        .expect("example")
        .replacen("name: app-template", &format!("name: {roles}"), 1);
    let (_dir, file) = temp_file("roles.yaml", &text);
    c.kubectl_ok(&["appimage", "apply", "-f", &file.to_string_lossy()]);
    let (code, _, err) = deploy(c, &[&roles, "-n", &ns, "--role", "guest"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("no deploy template for role \"guest\""),
        "{err}"
    );
    assert!(err.contains("roles it serves: server, client"), "{err}");
    // An AppImage that does not exist.
    let (code, _, err) = deploy(c, &["no-such-image", "-n", &ns]);
    assert_eq!(code, 1);
    assert!(err.contains("NotFound"), "{err}");
}

/// Pods of `workload` in `ns`, as the server has them.
fn workload_pods(c: &Cluster, ns: &str, workload: &str) -> Vec<Value> {
    let selector = format!("appimage.kuscia.secretflow/workload={workload}");
    let out = c.kubectl_ok(&["get", "pods", "-n", ns, "-l", &selector, "-o", "json"]);
    let list: Value = serde_json::from_str(&out).expect("JSON");
    list["items"].as_array().cloned().unwrap_or_default()
}

fn ready(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running"
        && pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// Wait for exactly `n` Running and Ready Pods of `workload`; returns them.
fn wait_running(c: &Cluster, ns: &str, workload: &str, n: usize) -> Vec<Value> {
    let mut last = Vec::new();
    let ok = wait_until(Duration::from_secs(90), || {
        last = workload_pods(c, ns, workload);
        last.len() == n && last.iter().all(ready)
    });
    assert!(
        ok,
        "wanted {n} Ready Pods of {workload} in {ns}, have: {last:#?}"
    );
    last
}

/// No webhook is registered in this test binary, so these Pods are not injected: what runs is
/// the workload as `deploy` built it (injection of workload Pods: tests/cluster.rs).
#[test]
fn deployed_workloads_run_on_the_simulated_nodes() {
    let c = cluster();
    let image = seed(c);
    let ns = c.namespace("wl-run");
    deploy_ok(c, &[&image, "-n", &ns, "--name", "web", "--replicas", "2"]);
    let pods = wait_running(c, &ns, "web", 2);
    for p in &pods {
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "ReplicaSet");
        assert_eq!(
            p["metadata"]["labels"]["kuscia.secretflow/app-image"],
            image.as_str()
        );
    }
    deploy_ok(
        c,
        &[&image, "-n", &ns, "--kind", "StatefulSet", "--name", "db"],
    );
    let pods = wait_running(c, &ns, "db", 1);
    assert_eq!(pods[0]["metadata"]["name"], "db-0");

    // A DaemonSet on labelled nodes only: one node of three carries the label.
    let node = node_name(1);
    deploy_ok(
        c,
        &[
            &image,
            "-n",
            &ns,
            "--kind",
            "DaemonSet",
            "--name",
            "edge",
            "--node-selector",
            &format!("{NODE_LABEL}={node}"),
        ],
    );
    let pods = wait_running(c, &ns, "edge", 1);
    assert_eq!(pods[0]["spec"]["nodeName"], node.as_str());

    // A Job of two Pods runs to completion.
    deploy_ok(
        c,
        &[
            &image,
            "-n",
            &ns,
            "--kind",
            "Job",
            "--name",
            "once",
            "--replicas",
            "2",
        ],
    );
    let complete = wait_until(Duration::from_secs(90), || {
        let j = get(c, &ns, "job/once");
        j["status"]["succeeded"] == 2
            && j["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Complete" && c["status"] == "True")
    });
    assert!(complete, "{:#}", get(c, &ns, "job/once"));
}

/// BIE's per-application settings reach the running Pods: init containers in order, hostPath
/// and secret volumes, the host network. (The example's GPU limit is left out: the simulated
/// nodes have no GPUs, so such a Pod would rightly stay Pending.)
#[test]
fn a_pod_template_fragment_reaches_the_running_pods() {
    let c = cluster();
    let image = seed(c);
    let ns = c.namespace("wl-frag-run");
    c.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "secretflow-tls",
        "-n",
        &ns,
        "--from-literal=tls.crt=x",
    ]);
    let fragment = "spec:
  volumes:
    - name: host-data
      hostPath: {path: /var/lib/secretflow, type: DirectoryOrCreate}
    - name: tls
      secret: {secretName: secretflow-tls}
  initContainers:
    - {name: first, image: busybox:1.36, command: [sh, -c, 'true']}
    - {name: second, image: busybox:1.36, command: [sh, -c, 'true']}
  containers:
    - name: secretflow
      volumeMounts:
        - {name: host-data, mountPath: /data}
        - {name: tls, mountPath: /etc/secretflow/tls, readOnly: true}
";
    let (_dir, file) = temp_file("fragment.yaml", fragment);
    let file = file.to_string_lossy().into_owned();
    deploy_ok(
        c,
        &[
            &image,
            "-n",
            &ns,
            "--name",
            "frag",
            "--pod-template",
            &file,
            "--host-network",
        ],
    );
    let pods = wait_running(c, &ns, "frag", 1);
    let spec = &pods[0]["spec"];
    assert_eq!(spec["hostNetwork"], true);
    let init: Vec<&str> = spec["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(init, ["first", "second"]);
    assert_eq!(
        spec["volumes"][0]["hostPath"]["path"],
        "/var/lib/secretflow"
    );
    assert_eq!(spec["volumes"][1]["secret"]["secretName"], "secretflow-tls");
    let mounts = &spec["containers"][0]["volumeMounts"];
    assert_eq!(mounts[0]["mountPath"], "/data");
    assert_eq!(mounts[1]["mountPath"], "/etc/secretflow/tls");
}

/// After the AppImage changes (the seed's update: the global port becomes 8082), deploying
/// again rolls the workload: its pod template names the new spec's revision hash.
#[test]
fn deploying_again_after_the_appimage_changed_rolls_the_pods() {
    let c = cluster();
    let image = seed(c);
    let ns = c.namespace("wl-roll");
    let args = [
        image.as_str(),
        "-n",
        &ns,
        "--name",
        "roll",
        "--update-policy",
        "Manual",
    ];
    deploy_ok(c, &args);
    let d = get(c, &ns, "deployment/roll");
    assert_eq!(
        d["metadata"]["annotations"]["appimage.kuscia.secretflow/update-policy"],
        "Manual"
    );
    let hash_key = "appimage.kuscia.secretflow/revision-hash";
    let old_hash = d["spec"]["template"]["metadata"]["annotations"][hash_key].clone();
    let old_pod = wait_running(c, &ns, "roll", 1)[0]["metadata"]["name"].clone();

    let update = std::fs::read_to_string(repo_root().join("examples/secretflow-image-update.yaml"))
        .expect("update")
        .replacen("name: secretflow-image", &format!("name: {image}"), 1);
    let (_dir, file) = temp_file("update.yaml", &update);
    c.kubectl_ok(&["appimage", "apply", "-f", &file.to_string_lossy()]);
    assert_eq!(deploy_ok(c, &args), "deployment.apps/roll configured\n");
    let new_hash = get(c, &ns, "deployment/roll")["spec"]["template"]["metadata"]["annotations"]
        [hash_key]
        .clone();
    assert_ne!(new_hash, old_hash);
    let rolled = wait_until(Duration::from_secs(90), || {
        let pods = workload_pods(c, &ns, "roll");
        pods.len() == 1 && ready(&pods[0]) && pods[0]["metadata"]["name"] != old_pod
    });
    assert!(rolled, "{:#?}", workload_pods(c, &ns, "roll"));

    // Unchanged now; -o yaml prints the object as kubectl does, without managedFields.
    let mut yaml_args = args.to_vec();
    yaml_args.extend(["-o", "yaml"]);
    let out = deploy_ok(c, &yaml_args);
    let doc: Value = serde_yaml_ng::from_str(&out).expect("YAML");
    assert_eq!(doc["kind"], "Deployment");
    assert!(doc["metadata"].get("managedFields").is_none(), "{out}");
    assert_eq!(
        doc["spec"]["template"]["metadata"]["annotations"][hash_key],
        new_hash
    );
}
