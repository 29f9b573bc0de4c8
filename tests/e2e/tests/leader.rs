//! Two appimage-webhook processes on one Lease, on a real kube-apiserver: exactly one leads
//! (runs the controllers), both serve admission, no conflicts are logged while both run, and
//! when the leader is killed the other takes over and the objects of new Pods still converge.

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

/// Log lines that speak of a conflict: an API error's reason `Conflict` (409), a name taken
/// (`ServiceConflict`), an object written by another at the same time.
fn conflicts(hook: &Webhook) -> Vec<String> {
    hook.logs()
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("conflict") || l.contains("concurrently")
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn one_leader_runs_the_controllers_and_a_standby_takes_over() {
    let c = cluster();
    let work = tempfile::tempdir().unwrap();
    let tls = Tls::new(&work.path().join("tls"), "appimage-webhook");
    let signer = SigningKey::new(work.path());
    let lease = unique("leader");
    let flags = ["--lease-name", lease.as_str(), "--lease-duration=4s"];
    let first = Webhook::start(c, &tls, &signer.pub_dir, &flags);
    let second = Webhook::start(c, &tls, &signer.pub_dir, &flags);

    // Exactly one leads, and the Lease names it.
    assert!(wait_until(Duration::from_secs(30), || {
        leads(&tls, &first) || leads(&tls, &second)
    }));
    let (leader, standby) = if leads(&tls, &first) {
        (first, second)
    } else {
        (second, first)
    };
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

    // While both run: the leader makes the Services, and nobody logs a conflict.
    create_pod(c, &ns, "job-0", &name);
    assert!(
        wait_until(Duration::from_secs(30), || services(c, &ns, "job-0") == 3),
        "the leader made no Services:\n{}",
        leader.logs()
    );
    let while_both = conflicts(&leader).len() + conflicts(&standby).len();
    assert_eq!(
        while_both,
        0,
        "conflicts logged while both ran: {:?} {:?}",
        conflicts(&leader),
        conflicts(&standby)
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
    eprintln!(
        "leader election: takeover {takeover:?} after the leader was killed (lease 4s); conflicts while both ran: {while_both}"
    );

    create_pod(c, &ns, "job-1", &name);
    assert!(
        wait_until(Duration::from_secs(30), || services(c, &ns, "job-1") == 3),
        "no Services for a Pod created after the takeover:\n{}",
        standby.logs()
    );
    assert!(conflicts(&standby).is_empty(), "{:?}", conflicts(&standby));
    c.kubectl_ok(&[
        "delete",
        "mutatingwebhookconfiguration,validatingwebhookconfiguration",
        &reg,
    ]);
}
