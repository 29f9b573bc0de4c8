//! `set-image` through the built binary, offline only (`-f` with `--dry-run=client`): the new
//! spec.image, re-signing with `--key` (checked by `verify`), the digest as id, the recorded
//! change, and each refusal's message.

// Tests unwrap: a panic is their failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_kubectl-appimage");
const DIGEST: &str = "sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Run in `dir` with a kubeconfig that does not exist, so nothing can reach a cluster.
fn run(dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env(
            "KUBECONFIG",
            "/nonexistent/kubectl-appimage-test/kubeconfig",
        )
        .env_remove("HOME")
        .output()
        .expect("run kubectl-appimage");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    }
}

#[track_caller]
fn ok(dir: &Path, args: &[&str]) -> Run {
    let r = run(dir, args);
    assert_eq!(r.code, 0, "{args:?} failed:\n{}", r.stderr);
    r
}

#[track_caller]
fn fails(dir: &Path, args: &[&str], needles: &[&str]) -> String {
    let r = run(dir, args);
    assert_eq!(r.code, 1, "{args:?} did not fail: {}", r.stdout);
    assert_eq!(r.stdout, "", "a refused set-image prints no object");
    for needle in needles {
        assert!(r.stderr.contains(needle), "{needle:?} not in: {}", r.stderr);
    }
    r.stderr
}

/// The seed AppImage (signed, with a non-digest id), copied into `dir`, with `extra` lines
/// added under `metadata:`.
fn seed(dir: &Path, extra: &str) -> PathBuf {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/secretflow-image.yaml"),
    )
    .expect("example");
    let text = text.replacen("metadata:\n", &format!("metadata:\n{extra}"), 1);
    let file = dir.join("seed.yaml");
    std::fs::write(&file, text).expect("write seed");
    file
}

fn keygen(dir: &Path) -> (String, String) {
    ok(
        dir,
        &[
            "keygen",
            "--private-key",
            "signer.key",
            "--public-key",
            "signer.pub",
        ],
    );
    ("signer.key".into(), "signer.pub".into())
}

fn set_image_json(dir: &Path, file: &Path, args: &[&str]) -> Value {
    let mut all = vec![
        "set-image",
        "secretflow-image",
        "-f",
        file.to_str().unwrap(),
        "--dry-run=client",
        "-o",
        "json",
    ];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(dir, &all).stdout).expect("JSON")
}

#[test]
fn with_a_key_the_new_image_is_signed_and_the_image_id_becomes_the_id() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let file = seed(d, "");
    let (key, public) = keygen(d);
    let image = "registry.example.com/sf/secretflow-lite:1.11";
    // A manifest digest is not Kuscia's image ID: refused, saying how to get the ID.
    let pinned = format!("{image}@{DIGEST}");
    fails(
        d,
        &[
            "set-image",
            "secretflow-image",
            "-f",
            file.to_str().unwrap(),
            "--dry-run=client",
            &pinned,
            "--allow-unsigned",
        ],
        &[
            "names a manifest digest",
            "set-image secretflow-image registry.example.com/sf/secretflow-lite:1.11 --image-id",
        ],
    );
    let obj = set_image_json(
        d,
        &file,
        &[
            image,
            "--image-id",
            DIGEST,
            "--key",
            &key,
            "--change-cause",
            "release 1.11",
            "--task-id",
            "cfthf85s99bgu9olqr50",
        ],
    );
    let img = &obj["spec"]["image"];
    assert_eq!(img["name"], "registry.example.com/sf/secretflow-lite");
    assert_eq!(img["tag"], "1.11");
    assert_eq!(img["id"], DIGEST);
    assert_ne!(img["sign"], "abc13mnjh1olkkp1", "re-signed");
    let annotations = &obj["metadata"]["annotations"];
    assert_eq!(annotations["kubernetes.io/change-cause"], "release 1.11");
    assert_eq!(
        annotations["kuscia.secretflow/task-id"],
        "cfthf85s99bgu9olqr50"
    );
    // The rest of the spec is as it was.
    let before = set_image_json(
        d,
        &file,
        &["secretflow/secretflow-lite-anolis8:x", "--allow-unsigned"],
    );
    assert_eq!(
        obj["spec"]["deployTemplates"],
        before["spec"]["deployTemplates"]
    );

    // The signature verifies with the signer's public key, and the new spec validates.
    let signed = d.join("signed.json");
    std::fs::write(&signed, serde_json::to_vec(&obj).unwrap()).unwrap();
    let verified = ok(
        d,
        &["verify", "-f", signed.to_str().unwrap(), "--key", &public],
    );
    assert!(verified.stdout.contains("verified"), "{}", verified.stdout);
    ok(d, &["validate", "-f", signed.to_str().unwrap()]);

    // The same change again, on the signed result, changes nothing.
    let again = ok(
        d,
        &[
            "set-image",
            "secretflow-image",
            image,
            "--image-id",
            DIGEST,
            "--key",
            &key,
            "-f",
            signed.to_str().unwrap(),
            "--dry-run=client",
        ],
    );
    assert_eq!(
        again.stdout,
        format!(
            "appimage.kuscia.secretflow/secretflow-image unchanged (already registry.example.com/sf/secretflow-lite:1.11, image ID {DIGEST}) (dry run)\n"
        )
    );
}

#[test]
fn the_default_message_the_default_tag_and_the_old_id_going() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let file = seed(d, "");
    let (key, _) = keygen(d);
    let f = file.to_str().unwrap();
    let out = ok(
        d,
        &[
            "set-image",
            "secretflow-image",
            "python",
            "--key",
            &key,
            "-f",
            f,
            "--dry-run",
        ],
    );
    assert_eq!(
        out.stdout,
        "appimage.kuscia.secretflow/secretflow-image image updated (dry run)\n"
    );
    let out = ok(
        d,
        &[
            "set-image",
            "secretflow-image",
            "python",
            "--key",
            &key,
            "-f",
            f,
            "--dry-run=client",
            "-o",
            "name",
        ],
    );
    assert_eq!(out.stdout, "appimage.kuscia.secretflow/secretflow-image\n");
    let obj = set_image_json(d, &file, &["python", "--key", &key]);
    let img = &obj["spec"]["image"];
    assert_eq!(
        (&img["name"], &img["tag"]),
        (&"python".into(), &"latest".into())
    );
    assert!(
        img.get("id").is_none(),
        "the old id pinned the old image: {img}"
    );
    assert_eq!(
        obj["metadata"]["annotations"]["kubernetes.io/change-cause"],
        "kubectl appimage set-image secretflow-image python"
    );
}

#[test]
fn a_signed_appimage_without_a_key_is_refused_unless_unsigned_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let file = seed(d, "");
    let f = file.to_str().unwrap();
    let args = [
        "set-image",
        "secretflow-image",
        "python:3.12-slim",
        "-f",
        f,
        "--dry-run=client",
    ];
    fails(
        d,
        &args,
        &[
            "error: AppImage \"secretflow-image\" is signed",
            "the old signature would no longer verify",
            "--key PRIVATE_KEY",
            "--allow-unsigned",
        ],
    );
    let mut allowed = args.to_vec();
    allowed.extend(["--allow-unsigned", "-o", "json"]);
    let r = ok(d, &allowed);
    let obj: Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(obj["spec"]["image"].get("sign").is_none(), "{}", r.stdout);
    assert!(
        r.stderr
            .contains("Warning: the signature of AppImage \"secretflow-image\" is removed"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_published_appimage_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let file = seed(
        d,
        "  labels:\n    appimage.kuscia.secretflow/stage: published\n",
    );
    let (key, _) = keygen(d);
    fails(
        d,
        &[
            "set-image",
            "secretflow-image",
            "python:3.12-slim",
            "--key",
            &key,
            "-f",
            file.to_str().unwrap(),
            "--dry-run=client",
        ],
        &[
            "AppImage \"secretflow-image\" is published, so its spec can no longer change",
            "create a new AppImage",
            "kubectl appimage draft secretflow-image",
        ],
    );
}

#[test]
fn bad_input_is_named_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let file = seed(d, "");
    let f = file.to_str().unwrap();
    let base = |image: &'static str| {
        vec![
            "set-image",
            "secretflow-image",
            image,
            "-f",
            f,
            "--dry-run=client",
            "--allow-unsigned",
        ]
    };
    fails(
        d,
        &base("python@sha256:abc"),
        &[
            "image reference \"python@sha256:abc\"",
            "not 64 hex digits",
            "write NAME[:TAG][@sha256:DIGEST]",
        ],
    );
    fails(d, &base("Python:3"), &["repository names are lower case"]);
    let mut empty_task = base("python:3");
    empty_task.extend(["--task-id", " "]);
    fails(d, &empty_task, &["--task-id is empty"]);
    let mut other = base("python:3");
    other[1] = "other";
    fails(
        d,
        &other,
        &["holds no AppImage named \"other\"", "secretflow-image"],
    );
    // -f never writes, so it needs a client dry run.
    fails(
        d,
        &["set-image", "secretflow-image", "python:3", "-f", f],
        &["add --dry-run=client", "drop -f"],
    );
    fails(
        d,
        &[
            "set-image",
            "secretflow-image",
            "python:3",
            "--key",
            "missing.key",
            "-f",
            f,
            "--dry-run=client",
        ],
        &["private key file \"missing.key\" does not exist"],
    );
    // --key and --allow-unsigned contradict each other: a usage error.
    let r = run(
        d,
        &["set-image", "x", "python", "--key", "k", "--allow-unsigned"],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("cannot be used with"), "{}", r.stderr);
}
