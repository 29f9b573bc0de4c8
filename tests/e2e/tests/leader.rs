//! Two appimage-webhook processes on one Lease, on a real kube-apiserver: exactly one leads
//! (runs the controllers), both serve admission, and when the leader is killed the other takes
//! over and the objects of new Pods still converge.
//!
//! Double writes are detected by what reaches the API server (issue 25, section 3), not by the
//! processes' logs: each process talks to the API server as a user of its own (impersonation in
//! its kubeconfig), and a ValidatingAdmissionPolicy per user, in Warn mode, matches every write
//! that user sends but its Lease's. The API server counts those matches
//! (`apiserver_validating_admission_policy_check_total`, read from its /metrics): while both
//! run, the standby's count stays 0 (even a no-op apply passes admission, so an identical
//! second write is counted too), and the Services the leader wrote keep their resourceVersion.

use std::process::Command;
use std::time::{Duration, Instant};

use appimage::labels;
use appimage::manifest;
use appimage::signature::payload;
use appimage_e2e::webhook::{SigningKey, Tls, Webhook, register};
use appimage_e2e::{Cluster, cluster, repo_root, text, unique, wait_until};
use serde_json::{Value, json};

fn readyz(tls: &Tls, hook: &Webhook) -> String {
    let out = Command::new("curl")
        .args([
            "-s",
            "--cacert",
            &tls.ca.to_string_lossy(),
            &hook.url("/readyz"),
        ])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn leads(tls: &Tls, hook: &Webhook) -> bool {
    readyz(tls, hook).contains(" leads ")
}

fn apply(c: &Cluster, value: &Value) {
    let file = c.dir().join(format!("{}.json", unique("obj")));
    std::fs::write(&file, serde_json::to_vec(value).unwrap()).unwrap();
    let out = c.kubectl(&["apply", "-f", &file.to_string_lossy()]);
    assert!(out.status.success(), "{:?}", text(&out));
}

fn create_pod(c: &Cluster, ns: &str, name: &str, image: &str) {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {labels::APP_IMAGE: image},
                     "annotations": {labels::OPT_TASK_ID: "t1"}},
        "spec": {"containers": []}
    });
    let file = c.dir().join(format!("{}.json", unique("pod")));
    std::fs::write(&file, serde_json::to_vec(&pod).unwrap()).unwrap();
    let f = file.to_string_lossy().into_owned();
    // Once the webhook's cache has the AppImage.
    let admitted = wait_until(Duration::from_secs(20), || {
        c.kubectl(&["create", "--dry-run=server", "-f", &f])
            .status
            .success()
    });
    assert!(admitted, "the webhook never admitted {name}");
    c.kubectl_ok(&["create", "-f", &f]);
}

fn services(c: &Cluster, ns: &str, pod: &str) -> usize {
    let sel = format!("{}={pod}", labels::POD_IDENTITY);
    let out = c.kubectl_ok(&["get", "services", "-n", ns, "-l", &sel, "-o", "json"]);
    let list: Value = serde_json::from_str(&out).unwrap();
    list["items"].as_array().map_or(0, Vec::len)
}

/// A user the API server sees for one webhook process: `kubeconfig` impersonates it (with
/// cluster-admin rights), and the Warn policy `policy` matches its writes but Leases.
struct Writer {
    user: String,
    kubeconfig: String,
    policy: String,
}

fn writer(c: &Cluster, which: &str) -> Writer {
    let user = unique(&format!("e2e-leader-{which}"));
    c.kubectl_ok(&[
        "create",
        "clusterrolebinding",
        &user,
        "--clusterrole=cluster-admin",
        "--user",
        &user,
    ]);
    let text = std::fs::read_to_string(c.kubeconfig()).expect("kubeconfig");
    let mut config: Value = serde_yaml_ng::from_str(&text).expect("kubeconfig YAML");
    for u in config["users"].as_array_mut().expect("users") {
        u["user"]["as"] = json!(user);
    }
    let kubeconfig = c.dir().join(format!("{user}.kubeconfig"));
    std::fs::write(&kubeconfig, serde_yaml_ng::to_string(&config).unwrap()).unwrap();
    let policy = user.clone();
    apply(
        c,
        &json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": policy},
            "spec": {
                "failurePolicy": "Ignore",
                "matchConstraints": {"resourceRules": [{
                    "apiGroups": ["*"], "apiVersions": ["*"],
                    "operations": ["CREATE", "UPDATE", "DELETE"], "resources": ["*/*"]
                }]},
                "matchConditions": [{"name": "writer", "expression": format!(
                    "request.userInfo.username == '{user}' && request.resource.resource != 'leases'"
                )}],
                "validations": [{"expression": "false", "message": format!("a write by {user}")}]
            }
        }),
    );
    apply(
        c,
        &json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": policy},
            "spec": {"policyName": policy, "validationActions": ["Warn"]}
        }),
    );
    Writer {
        user,
        kubeconfig: format!("--kubeconfig={}", kubeconfig.display()),
        policy,
    }
}

/// The writes of `w` the API server has counted (its policy's matches).
fn writes(c: &Cluster, w: &Writer) -> u64 {
    let metrics = c.kubectl_ok(&["get", "--raw", "/metrics"]);
    let label = format!("policy=\"{}\"", w.policy);
    metrics
        .lines()
        .filter(|l| l.starts_with("apiserver_validating_admission_policy_check_total{"))
        .filter(|l| l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Wait until the API server counts `w`'s writes: a ConfigMap written as `w` is matched.
fn counting(c: &Cluster, w: &Writer, ns: &str) {
    let name = unique("probe");
    let counted = wait_until(Duration::from_secs(60), || {
        let before = writes(c, w);
        let out = c.kubectl(&[
            "--as",
            &w.user,
            "create",
            "configmap",
            &unique(&name),
            "-n",
            ns,
        ]);
        out.status.success() && writes(c, w) > before
    });
    assert!(
        counted,
        "the API server never counted the writes of {}",
        w.user
    );
}

/// The resourceVersions of the Services of `pod`, by name.
fn versions(c: &Cluster, ns: &str, pod: &str) -> Vec<(String, String)> {
    let sel = format!("{}={pod}", labels::POD_IDENTITY);
    let out = c.kubectl_ok(&["get", "services", "-n", ns, "-l", &sel, "-o", "json"]);
    let list: Value = serde_json::from_str(&out).unwrap();
    let mut v: Vec<(String, String)> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            (
                s["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                s["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn one_leader_runs_the_controllers_and_a_standby_takes_over() {
    let c = cluster();
    let work = tempfile::tempdir().unwrap();
    let tls = Tls::new(&work.path().join("tls"), "appimage-webhook");
    let signer = SigningKey::new(work.path());
    let lease = unique("leader");
    let (a, b) = (writer(c, "a"), writer(c, "b"));
    let probes = c.namespace("ld-probes");
    counting(c, &a, &probes);
    counting(c, &b, &probes);
    let flags = |w: &Writer| {
        [
            "--lease-name".to_string(),
            lease.clone(),
            "--lease-duration=4s".to_string(),
            w.kubeconfig.clone(),
        ]
    };
    let start = |w: &Writer| {
        let f = flags(w);
        let f: Vec<&str> = f.iter().map(String::as_str).collect();
        Webhook::start(c, &tls, &signer.pub_dir, &f)
    };
    let first = start(&a);
    let second = start(&b);

    // Exactly one leads, and the Lease names it.
    assert!(wait_until(Duration::from_secs(30), || {
        leads(&tls, &first) || leads(&tls, &second)
    }));
    let (leader, standby, leader_w, standby_w) = if leads(&tls, &first) {
        (first, second, &a, &b)
    } else {
        (second, first, &b, &a)
    };
    // Every write from here on is the controllers' (admission writes nothing).
    let (leader_before, standby_before) = (writes(c, leader_w), writes(c, standby_w));
    assert!(!leads(&tls, &standby), "{}", readyz(&tls, &standby));
    assert!(readyz(&tls, &standby).contains("stands by"));
    let holder = c.kubectl_ok(&[
        "get",
        "lease",
        &lease,
        "-n",
        "default",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert!(
        readyz(&tls, &leader).contains(&format!("ok: {holder} leads")),
        "{holder}"
    );

    // Admission goes to the standby (every replica serves it), which outlives the leader.
    let tag = unique("ld");
    let ns = c.namespace("ld");
    c.kubectl_ok(&["label", "namespace", &ns, &format!("appimage-e2e={tag}")]);
    let reg = register(c, &standby, &tls, &tag);
    let name = unique("sf");
    let text = std::fs::read_to_string(repo_root().join("examples/secretflow-image.yaml")).unwrap();
    let mut img = manifest::appimages("seed", &text).unwrap().remove(0);
    img.metadata.name = Some(name.clone());
    img.metadata.labels = Some([("appimage-e2e".to_string(), tag.clone())].into());
    img.spec.image.sign = Some(signer.sign(&payload(&img)));
    apply(c, &serde_json::to_value(&img).unwrap());

    // While both run: the leader makes the Services, and the standby sends the API server no
    // write at all, not even an identical one; nothing rewrites the Services meanwhile.
    create_pod(c, &ns, "job-0", &name);
    assert!(
        wait_until(Duration::from_secs(30), || services(c, &ns, "job-0") == 3),
        "the leader made no Services:\n{}",
        leader.logs()
    );
    let made = versions(c, &ns, "job-0");
    // Two lease durations, with the Pod changed meanwhile (both processes see the event).
    c.kubectl_ok(&[
        "label",
        "pod",
        "job-0",
        "-n",
        &ns,
        "e2e-touched=1",
        "--overwrite",
    ]);
    std::thread::sleep(Duration::from_secs(8));
    let (leader_wrote, standby_wrote) = (
        writes(c, leader_w) - leader_before,
        writes(c, standby_w) - standby_before,
    );
    eprintln!(
        "writes counted by the API server while both ran: leader {leader_wrote}, standby {standby_wrote}"
    );
    assert!(
        leader_wrote > 0,
        "the API server counted no write of the leader ({}): is the policy counting?",
        leader_w.user
    );
    assert_eq!(
        standby_wrote,
        0,
        "the standby ({}) wrote to the API server while the leader led:\n{}",
        standby_w.user,
        standby.logs()
    );
    assert_eq!(
        versions(c, &ns, "job-0"),
        made,
        "the Services were rewritten while both ran"
    );
    assert!(
        !standby.logs().contains("controllers started"),
        "the standby ran the controllers:\n{}",
        standby.logs()
    );

    // Kill the leader: the standby takes the Lease and the controllers with it.
    let mut leader = leader;
    leader.child.kill().expect("kill the leader");
    let killed = Instant::now();
    assert!(
        wait_until(Duration::from_secs(60), || leads(&tls, &standby)),
        "the standby never took over:\n{}",
        standby.logs()
    );
    let takeover = killed.elapsed();
    eprintln!("leader election: takeover {takeover:?} after the leader was killed (lease 4s)");
    let taken_over = writes(c, standby_w);

    create_pod(c, &ns, "job-1", &name);
    assert!(
        wait_until(Duration::from_secs(30), || services(c, &ns, "job-1") == 3),
        "no Services for a Pod created after the takeover:\n{}",
        standby.logs()
    );
    assert!(
        writes(c, standby_w) > taken_over,
        "the new leader's writes never reached the API server"
    );
    c.kubectl_ok(&[
        "delete",
        "mutatingwebhookconfiguration,validatingwebhookconfiguration",
        &reg,
    ]);
}
