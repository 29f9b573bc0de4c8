//! `appimage-webhook dev` on the real control plane, as the README's quick start runs it: a key
//! made and the example signed with the plugin, `dev` started with the key's directory; a
//! labelled Pod is injected; Ctrl-C (SIGINT) removes both registrations; a configuration of
//! another owner with a similar name is never touched, one with the same name is refused; a
//! stale registration left by SIGKILL is replaced by the next start.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use appimage_e2e::world::{BATCH_CRD, Crd, REVISIONS_CRD, cluster_with};
use appimage_e2e::{CRD_FILE, Cluster, text, unique, wait_until, workspace_bin, write_json};
use serde_json::json;

static CRDS: [Crd; 3] = [
    Crd {
        path: CRD_FILE,
        probe: "appimages",
    },
    REVISIONS_CRD,
    BATCH_CRD,
];

const KINDS: [&str; 2] = [
    "mutatingwebhookconfiguration",
    "validatingwebhookconfiguration",
];

/// `appimage-webhook dev --name NAME …`, its stdout and stderr in `log`; waits until it says
/// it registered.
fn start_dev(c: &Cluster, name: &str, keys: &Path, log: &Path) -> Child {
    let child = c
        .command(&workspace_bin("appimage-webhook").to_string_lossy())
        .args(["dev", "--name", name, "--kubeconfig"])
        .arg(c.kubeconfig())
        .arg("--trusted-keys-dir")
        .arg(keys)
        .stdout(Stdio::from(std::fs::File::create(log).unwrap()))
        .stderr(Stdio::from(
            std::fs::File::options().append(true).open(log).unwrap(),
        ))
        .spawn()
        .expect("start appimage-webhook dev");
    let logs = || std::fs::read_to_string(log).unwrap_or_default();
    let up = wait_until(Duration::from_secs(60), || logs().contains("registered"));
    assert!(up, "dev never registered:\n{}", logs());
    child
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

fn url_of(c: &Cluster, kind: &str, name: &str) -> String {
    let out = c.kubectl(&[
        "get",
        kind,
        name,
        "-o",
        "jsonpath={.webhooks[0].clientConfig.url}",
    ]);
    text(&out).0
}

fn exists(c: &Cluster, kind: &str, name: &str) -> bool {
    c.kubectl(&["get", kind, name]).status.success()
}

/// A configuration nobody's dev owns: an unlabelled MutatingWebhookConfiguration whose one
/// webhook matches nothing.
fn foreign(c: &Cluster, name: &str) {
    let config = json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [{"name": "foreign.example.com", "admissionReviewVersions": ["v1"],
            "sideEffects": "None", "clientConfig": {"url": "https://127.0.0.1:1/x"},
            "objectSelector": {"matchLabels": {"never": "matches"}},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                       "resources": ["configmaps"]}]}]
    });
    c.kubectl_ok(&[
        "create",
        "-f",
        &write_json(c.dir(), &config).to_string_lossy(),
    ]);
}

#[test]
fn dev_registers_injects_and_cleans_up_only_its_own() {
    let c = cluster_with(&CRDS);
    let work = tempfile::tempdir().unwrap();
    let (key, trusted) = (
        work.path().join("appimage.key"),
        work.path().join("trusted"),
    );
    std::fs::create_dir_all(&trusted).unwrap();
    let (key, public) = (key.to_string_lossy(), trusted.join("appimage.pub"));
    c.kubectl_ok(&[
        "appimage",
        "keygen",
        "--private-key",
        &key,
        "--public-key",
        &public.to_string_lossy(),
    ]);
    let signed = c.kubectl_ok(&[
        "appimage",
        "sign",
        "-f",
        "examples/secretflow-image.yaml",
        "--key",
        &key,
    ]);
    let signed_file = work.path().join("signed.yaml");
    std::fs::write(&signed_file, signed).unwrap();

    let name = unique("appimage-webhook-dev");
    let similar = format!("{name}-foreign");
    foreign(c, &similar);
    let log = work.path().join("dev.log");
    let mut dev = start_dev(c, &name, &trusted, &log);
    for kind in KINDS {
        assert!(
            url_of(c, kind, &name).starts_with("https://127.0.0.1:"),
            "{kind}"
        );
    }

    // The quick start's example, signed, is admitted; a labelled Pod is injected.
    c.kubectl_ok(&["apply", "-f", &signed_file.to_string_lossy()]);
    let unsigned = c.kubectl(&["apply", "-f", "examples/secretflow-image-update.yaml"]);
    assert!(!unsigned.status.success(), "an unsigned update is refused");
    let ns = c.namespace("dev");
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "task-0", "namespace": ns,
                     "labels": {"kuscia.secretflow/app-image": "secretflow-image"}},
        "spec": {"containers": []}});
    c.kubectl_ok(&[
        "create",
        "-f",
        &write_json(work.path(), &pod).to_string_lossy(),
    ]);
    let image = c.kubectl_ok(&[
        "get",
        "pod",
        "task-0",
        "-n",
        &ns,
        "-o",
        "jsonpath={.spec.containers[0].image}",
    ]);
    assert!(image.contains("secretflow"), "injected image: {image:?}");

    // Ctrl-C: both registrations go, the foreign one stays.
    signal(&dev, "-INT");
    let status = dev.wait().unwrap();
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "dev exited {status}:\n{logs}");
    for kind in KINDS {
        assert!(
            !exists(c, kind, &name),
            "{kind} {name} left after SIGINT:\n{logs}"
        );
    }
    assert!(
        exists(c, KINDS[0], &similar),
        "the foreign configuration was touched"
    );

    // A crash leaves them; the next start replaces them (a new port in the URL).
    let mut crashed = start_dev(c, &name, &trusted, &log);
    let stale = url_of(c, KINDS[0], &name);
    signal(&crashed, "-KILL");
    let _ = crashed.wait();
    assert_eq!(
        url_of(c, KINDS[0], &name),
        stale,
        "SIGKILL leaves the registration"
    );
    let mut next = start_dev(c, &name, &trusted, &log);
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(
        logs.contains("replacing a stale MutatingWebhookConfiguration"),
        "{logs}"
    );
    for kind in KINDS {
        assert_ne!(url_of(c, kind, &name), stale, "{kind} not replaced");
    }
    signal(&next, "-TERM");
    assert!(next.wait().unwrap().success());
    assert!(exists(c, KINDS[0], &similar));

    // A configuration of that very name that is not ours is refused, and left as it was.
    let out = c
        .command(&workspace_bin("appimage-webhook").to_string_lossy())
        .args(["dev", "--name", &similar, "--kubeconfig"])
        .arg(c.kubeconfig())
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        format!("{stdout}{stderr}").contains(&format!(
            "MutatingWebhookConfiguration {similar} exists and is not labelled app.kubernetes.io/managed-by=appimage-webhook-dev"
        )),
        "{stdout}{stderr}"
    );
    assert_eq!(url_of(c, KINDS[0], &similar), "https://127.0.0.1:1/x");
}
