//! `keygen`, `payload`, `sign` and `verify` through the built binary, offline only, and
//! their interoperability with the real `openssl` command.

// Tests unwrap: a panic is their failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_kubectl-appimage");
const ALGORITHMS: [(&str, &str); 2] = [("ecdsa-p256", "ECDSA-P256-SHA256"), ("ed25519", "Ed25519")];

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("examples")
        .join("secretflow-image.yaml")
}

fn example_text() -> String {
    std::fs::read_to_string(example()).expect("example")
}

struct Run {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

impl Run {
    fn out(&self) -> String {
        String::from_utf8(self.stdout.clone()).expect("utf-8 stdout")
    }

    #[track_caller]
    fn ok(self) -> Run {
        assert_eq!(self.code, 0, "stderr: {}", self.stderr);
        self
    }

    #[track_caller]
    fn fails(self, needles: &[&str]) -> Run {
        assert_eq!(self.code, 1, "stdout: {}", self.out());
        for needle in needles {
            assert!(
                self.stderr.contains(needle),
                "{needle:?} not in stderr: {}",
                self.stderr
            );
        }
        self
    }
}

/// Run in `dir` with a kubeconfig that does not exist, so nothing can reach a cluster.
fn run(dir: &Path, args: &[&str]) -> Run {
    let out: Output = Command::new(BIN)
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
        stdout: out.stdout,
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    }
}

use appimage_e2e::pki::openssl;

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).expect("read")
}

fn keygen(dir: &Path, algorithm: &str, stem: &str) {
    run(
        dir,
        &[
            "keygen",
            "--algorithm",
            algorithm,
            "--private-key",
            &format!("{stem}.key"),
            "--public-key",
            &format!("{stem}.pub"),
        ],
    )
    .ok();
}

/// The example with `spec.image.sign` set to `sign`.
fn with_sign(sign: &str) -> String {
    let mut doc: Value = serde_yaml_ng::from_str(&example_text()).expect("example YAML");
    doc["spec"]["image"]["sign"] = Value::String(sign.into());
    serde_yaml_ng::to_string(&doc).expect("YAML")
}

/// `text` (one AppImage) with `spec.image.tag` set to `tag`.
fn with_tag(text: &str, tag: &str) -> String {
    let mut doc: Value = serde_yaml_ng::from_str(text).expect("YAML");
    doc["spec"]["image"]["tag"] = Value::String(tag.into());
    serde_yaml_ng::to_string(&doc).expect("YAML")
}

fn sign_of(text: &str) -> String {
    let doc: Value = serde_yaml_ng::from_str(text).expect("YAML");
    doc["spec"]["image"]["sign"]
        .as_str()
        .expect("spec.image.sign")
        .to_string()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn keygen_writes_both_algorithms_and_refuses_to_overwrite() {
    for (algorithm, label) in ALGORITHMS {
        let dir = tempdir();
        let d = dir.path();
        let r = run(d, &["keygen", "--algorithm", algorithm]).ok();
        assert_eq!(
            r.out(),
            format!("wrote private key appimage.key and public key appimage.pub ({label})\n")
        );
        let (private, public) = (d.join("appimage.key"), d.join("appimage.pub"));
        let private_pem = read(&private);
        assert!(private_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(read(&public).starts_with("-----BEGIN PUBLIC KEY-----\n"));
        #[cfg(unix)]
        assert_eq!(mode(&private), 0o600);
        // openssl reads both, and agrees on the public key.
        let derived = openssl(d, &["pkey", "-in", "appimage.key", "-pubout"]);
        assert_eq!(String::from_utf8_lossy(&derived), read(&public));

        run(d, &["keygen", "--algorithm", algorithm])
            .fails(&["\"appimage.key\" already exists", "--force"]);
        std::fs::remove_file(&private).expect("remove");
        run(d, &["keygen", "--algorithm", algorithm])
            .fails(&["\"appimage.pub\" already exists", "--force"]);
        assert!(!private.exists(), "nothing is written when refusing");
        std::fs::write(&private, &private_pem).expect("restore");

        run(d, &["keygen", "--algorithm", algorithm, "--force"]).ok();
        assert_ne!(read(&private), private_pem, "a new key was generated");
        #[cfg(unix)]
        assert_eq!(mode(&private), 0o600);
    }
}

#[test]
fn keygen_rejects_bad_paths() {
    let dir = tempdir();
    let d = dir.path();
    run(d, &["keygen", "--private-key", "k", "--public-key", "k"])
        .fails(&["both \"k\"", "different paths"]);
    run(d, &["keygen", "--private-key", "no/such/dir/k.key"])
        .fails(&["directory \"no/such/dir\" does not exist"]);
}

#[test]
fn sign_then_verify_round_trips_and_detects_changes() {
    for (algorithm, label) in ALGORITHMS {
        let dir = tempdir();
        let d = dir.path();
        keygen(d, algorithm, "k");
        keygen(d, algorithm, "other");
        let example = example();
        let example = example.to_str().expect("utf-8 path");

        let signed = run(d, &["sign", "-f", example, "--key", "k.key"])
            .ok()
            .out();
        assert!(!signed.contains("---"), "one document: {signed}");
        assert_ne!(sign_of(&signed), "abc13mnjh1olkkp1");
        std::fs::write(d.join("signed.yaml"), &signed).expect("write");
        // Deterministic: signing twice gives the same output.
        assert_eq!(
            run(d, &["sign", "-f", example, "--key", "k.key"])
                .ok()
                .out(),
            signed
        );

        let r = run(d, &["verify", "-f", "signed.yaml", "--key", "k.pub"]).ok();
        assert_eq!(
            r.out(),
            format!(
                "appimage \"secretflow-image\": signature verified with k.pub ({label}) (payload v2)\n"
            )
        );
        // Several keys: the one that verifies is named.
        let r = run(
            d,
            &[
                "verify",
                "-f",
                "signed.yaml",
                "--key",
                "other.pub",
                "--key",
                "k.pub",
            ],
        )
        .ok();
        assert!(r.out().contains("verified with k.pub"), "{}", r.out());

        let r = run(d, &["verify", "-f", "signed.yaml", "--key", "other.pub"])
            .fails(&["error: appimage \"secretflow-image\": spec.image.sign does not verify"]);
        assert!(r.stdout.is_empty());

        std::fs::write(d.join("retagged.yaml"), with_tag(&signed, "v2")).expect("write");
        run(d, &["verify", "-f", "retagged.yaml", "--key", "k.pub"]).fails(&["does not verify"]);

        // JSON output verifies too, from stdin.
        let json = run(d, &["sign", "-f", example, "--key", "k.key", "-o", "json"])
            .ok()
            .out();
        let doc: Value = serde_json::from_str(&json).expect("JSON");
        assert_eq!(
            doc["spec"]["image"]["sign"].as_str(),
            Some(sign_of(&signed).as_str())
        );
        std::fs::write(d.join("signed.json"), &json).expect("write");
        run(d, &["verify", "-f", "signed.json", "--key", "k.pub"]).ok();
    }
}

/// A directory with `trusted/a.pub` (ECDSA) and `trusted/b.pub` (Ed25519), their private keys
/// `a.key` and `b.key` beside it.
fn two_trusted_keys() -> tempfile::TempDir {
    let dir = tempdir();
    let d = dir.path();
    std::fs::create_dir(d.join("trusted")).expect("mkdir");
    keygen(d, "ecdsa-p256", "trusted/a");
    keygen(d, "ed25519", "trusted/b");
    for stem in ["a", "b"] {
        let from = d.join(format!("trusted/{stem}.key"));
        std::fs::rename(from, d.join(format!("{stem}.key"))).expect("move");
    }
    dir
}

#[test]
fn k_of_n_signatures_spec_changes_and_revocation() {
    let dir = two_trusted_keys();
    let d = dir.path();
    std::fs::write(d.join("app.yaml"), example_text()).expect("write");
    run(
        d,
        &["sign", "-f", "app.yaml", "--key", "a.key", "--in-place"],
    )
    .ok();
    let two = [
        "verify",
        "-f",
        "app.yaml",
        "--keys-dir",
        "trusted",
        "--min-signatures",
        "2",
    ];
    run(d, &two)
        .fails(&["has 1 valid signature(s) by distinct trusted keys (trusted/a.pub) and needs 2"]);
    run(
        d,
        &[
            "sign",
            "-f",
            "app.yaml",
            "--key",
            "b.key",
            "--add",
            "--in-place",
        ],
    )
    .ok();
    assert_eq!(sign_of(&read(&d.join("app.yaml"))).matches(',').count(), 1);
    let r = run(d, &two).ok();
    assert!(
        r.out()
            .contains("trusted/a.pub (ECDSA-P256-SHA256), trusted/b.pub (Ed25519)"),
        "{}",
        r.out()
    );
    // Adding the same key again adds nothing.
    run(
        d,
        &[
            "sign",
            "-f",
            "app.yaml",
            "--key",
            "b.key",
            "--add",
            "--in-place",
        ],
    )
    .ok();
    assert_eq!(sign_of(&read(&d.join("app.yaml"))).matches(',').count(), 1);

    // Payload v2 covers the deploy templates: a changed command does not verify.
    let mut doc: Value = serde_yaml_ng::from_str(&read(&d.join("app.yaml"))).expect("YAML");
    doc["spec"]["deployTemplates"][0]["spec"]["containers"][0]["command"] =
        serde_json::json!(["sh"]);
    let changed = serde_yaml_ng::to_string(&doc).expect("YAML");
    std::fs::write(d.join("changed.yaml"), changed).expect("write");
    run(
        d,
        &["verify", "-f", "changed.yaml", "--keys-dir", "trusted"],
    )
    .fails(&["the AppImage's name or spec changed after signing"]);

    // A revoked key refuses what it signed, named, even beside a valid one.
    std::fs::write(d.join("trusted/keys-policy.yaml"), "revoked: [a.pub]\n").expect("write");
    run(d, &["verify", "-f", "app.yaml", "--keys-dir", "trusted"])
        .fails(&["signed with key trusted/a.pub, which is revoked"]);
    std::fs::write(
        d.join("trusted/keys-policy.yaml"),
        "keys: {a.pub: {notAfter: \"2020-01-01T00:00:00Z\"}}\n",
    )
    .expect("write");
    // An expired key does not count; the other still does.
    run(d, &["verify", "-f", "app.yaml", "--keys-dir", "trusted"]).ok();
    run(d, &two).fails(&["needs 2"]);
}

#[test]
fn plan_rotation_lists_what_a_key_change_breaks() {
    let dir = two_trusted_keys();
    let d = dir.path();
    std::fs::write(d.join("one.yaml"), example_text()).expect("write");
    run(
        d,
        &["sign", "-f", "one.yaml", "--key", "a.key", "--in-place"],
    )
    .ok();
    let mut doc: Value = serde_yaml_ng::from_str(&example_text()).expect("YAML");
    doc["metadata"]["name"] = Value::String("two".into());
    std::fs::write(d.join("two.yaml"), serde_yaml_ng::to_string(&doc).unwrap()).expect("write");
    run(
        d,
        &["sign", "-f", "two.yaml", "--key", "a.key", "--in-place"],
    )
    .ok();
    run(
        d,
        &[
            "sign",
            "-f",
            "two.yaml",
            "--key",
            "b.key",
            "--add",
            "--in-place",
        ],
    )
    .ok();

    let plan = |key: &str| {
        let args = [
            "keys",
            "plan-rotation",
            "--remove",
            key,
            "--keys-dir",
            "trusted",
        ];
        let files = ["-f", "one.yaml", "-f", "two.yaml"];
        run(d, &[&args[..], &files[..]].concat())
    };
    let out = plan("a.pub").ok().out();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("SUBJECT"), "{out}");
    let cols = |l: &str| l.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
    assert_eq!(
        cols(lines[1]),
        "appimage/secretflow-image breaks breaks",
        "{out}"
    );
    // Signed by b too: removal keeps it, revocation breaks it.
    assert_eq!(cols(lines[2]), "appimage/two keeps breaks", "{out}");
    assert!(lines[2].contains("which is revoked"), "{out}");
    let out = plan("b.pub").ok().out();
    assert!(
        out.starts_with("appimage/two") || out.contains("appimage/two"),
        "{out}"
    );
    assert!(!out.contains("secretflow-image"), "{out}");
    plan("c.pub").fails(&["no trusted key is named \"c.pub\""]);
}

#[test]
fn keys_dir_and_in_place() {
    let dir = tempdir();
    let d = dir.path();
    std::fs::create_dir(d.join("trusted")).expect("mkdir");
    keygen(d, "ed25519", "trusted/ed");
    // The private key is not a *.pem/*.pub file, so the directory holds only the public key.
    std::fs::rename(d.join("trusted/ed.key"), d.join("ed.key")).expect("move");
    std::fs::write(d.join("app.yaml"), example_text()).expect("write");

    let r = run(
        d,
        &["sign", "-f", "app.yaml", "--key", "ed.key", "--in-place"],
    )
    .ok();
    assert_eq!(
        r.out(),
        "appimage \"secretflow-image\" signed in app.yaml with ed.key (Ed25519)\n"
    );
    let r = run(d, &["verify", "-f", "app.yaml", "--keys-dir", "trusted"]).ok();
    assert!(
        r.out().contains("verified with trusted/ed.pub (Ed25519)"),
        "{}",
        r.out()
    );

    run(d, &["sign", "-f", "-", "--key", "ed.key", "--in-place"])
        .fails(&["--in-place cannot rewrite stdin"]);
    run(
        d,
        &["sign", "-f", "trusted", "--key", "ed.key", "--in-place"],
    )
    .fails(&["\"trusted\" is not one"]);
    std::fs::create_dir(d.join("empty")).expect("mkdir");
    run(d, &["verify", "-f", "app.yaml", "--keys-dir", "empty"])
        .fails(&["holds no *.pem or *.pub file"]);
}

#[test]
fn several_appimages_are_signed_as_a_stream_and_picked_by_name() {
    let dir = tempdir();
    let d = dir.path();
    keygen(d, "ecdsa-p256", "k");
    let two = format!(
        "{}---\n{}",
        example_text(),
        example_text().replace("name: secretflow-image", "name: second")
    );
    std::fs::write(d.join("two.yaml"), &two).expect("write");

    let both = run(d, &["sign", "-f", "two.yaml", "--key", "k.key"])
        .ok()
        .out();
    assert_eq!(both.matches("\n---\n").count(), 1, "{both}");
    std::fs::write(d.join("both.yaml"), &both).expect("write");
    let r = run(d, &["verify", "-f", "both.yaml", "--key", "k.pub"]).ok();
    assert_eq!(r.out().lines().count(), 2);

    let one = run(d, &["sign", "-f", "two.yaml", "--key", "k.key", "second"])
        .ok()
        .out();
    assert!(
        one.contains("name: second") && !one.contains("---"),
        "{one}"
    );
    run(d, &["sign", "-f", "two.yaml", "--key", "k.key", "third"])
        .fails(&["no AppImage named \"third\"", "secretflow-image, second"]);

    // Only "second" is signed in place; the other keeps its (bad) signature.
    run(
        d,
        &[
            "sign",
            "-f",
            "two.yaml",
            "--key",
            "k.key",
            "second",
            "--in-place",
        ],
    )
    .ok();
    let r = run(d, &["verify", "-f", "two.yaml", "--key", "k.pub"])
        .fails(&["error: appimage \"secretflow-image\": spec.image.sign does not verify"]);
    assert_eq!(
        r.out(),
        "appimage \"second\": signature verified with k.pub (ECDSA-P256-SHA256) (payload v2)\n"
    );

    run(d, &["payload", "-f", "two.yaml"]).fails(&[
        "holds 2 AppImages (secretflow-image, second)",
        "payload NAME -f",
    ]);
    let p = run(d, &["payload", "-f", "two.yaml", "second"]).ok();
    assert!(
        p.out().contains("\"version\":\"v2\",\"name\":\"second\""),
        "{}",
        p.out()
    );
    let v1 = run(
        d,
        &[
            "payload",
            "-f",
            "two.yaml",
            "second",
            "--payload-version",
            "v1",
        ],
    )
    .ok();
    assert!(v1.out().contains("\"tag\":\"latest\""), "{}", v1.out());
}

#[test]
fn payload_is_the_core_payload_without_a_newline() {
    let dir = tempdir();
    let images = appimage::manifest::appimages("example", &example_text()).expect("example parses");
    let want = appimage::signature::payload(&images[0]);
    let example = example();
    let r = run(
        dir.path(),
        &["payload", "-f", example.to_str().expect("utf-8")],
    )
    .ok();
    assert_eq!(r.stdout, want);
    assert_ne!(r.stdout.last(), Some(&b'\n'));
    assert!(
        r.out()
            .starts_with("{\"apiVersion\":\"kuscia.secretflow/v1alpha1\"")
    );
}

#[test]
fn openssl_ecdsa_signatures_interoperate() {
    let dir = tempdir();
    let d = dir.path();
    openssl(
        d,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "k.pem",
        ],
    );
    openssl(d, &["pkey", "-in", "k.pem", "-pubout", "-out", "k.pub"]);
    std::fs::write(d.join("app.yaml"), example_text()).expect("write");
    let payload = run(d, &["payload", "-f", "app.yaml"]).ok().stdout;
    std::fs::write(d.join("payload.bin"), &payload).expect("write");

    // openssl signs, the plugin verifies.
    let der = openssl(d, &["dgst", "-sha256", "-sign", "k.pem", "payload.bin"]);
    std::fs::write(d.join("by-openssl.yaml"), with_sign(&STANDARD.encode(&der))).expect("write");
    let r = run(d, &["verify", "-f", "by-openssl.yaml", "--key", "k.pub"]).ok();
    assert!(
        r.out().contains("verified with k.pub (ECDSA-P256-SHA256)"),
        "{}",
        r.out()
    );

    // The plugin signs with the openssl key, openssl verifies.
    let signed = run(d, &["sign", "-f", "app.yaml", "--key", "k.pem"])
        .ok()
        .out();
    let sig = STANDARD.decode(sign_of(&signed)).expect("base64");
    std::fs::write(d.join("sig.der"), sig).expect("write");
    let out = openssl(
        d,
        &[
            "dgst",
            "-sha256",
            "-verify",
            "k.pub",
            "-signature",
            "sig.der",
            "payload.bin",
        ],
    );
    assert!(String::from_utf8_lossy(&out).contains("Verified OK"));

    // A key made by keygen signs with openssl too.
    keygen(d, "ecdsa-p256", "mine");
    let der = openssl(d, &["dgst", "-sha256", "-sign", "mine.key", "payload.bin"]);
    std::fs::write(d.join("by-mine.yaml"), with_sign(&STANDARD.encode(&der))).expect("write");
    run(d, &["verify", "-f", "by-mine.yaml", "--key", "mine.pub"]).ok();
}

#[test]
fn openssl_ed25519_signatures_interoperate() {
    let dir = tempdir();
    let d = dir.path();
    openssl(d, &["genpkey", "-algorithm", "ed25519", "-out", "ed.pem"]);
    openssl(d, &["pkey", "-in", "ed.pem", "-pubout", "-out", "ed.pub"]);
    std::fs::write(d.join("app.yaml"), example_text()).expect("write");
    let payload = run(d, &["payload", "-f", "app.yaml"]).ok().stdout;
    std::fs::write(d.join("payload.bin"), &payload).expect("write");

    let raw = openssl(
        d,
        &[
            "pkeyutl",
            "-sign",
            "-rawin",
            "-inkey",
            "ed.pem",
            "-in",
            "payload.bin",
        ],
    );
    std::fs::write(d.join("by-openssl.yaml"), with_sign(&STANDARD.encode(&raw))).expect("write");
    let r = run(d, &["verify", "-f", "by-openssl.yaml", "--key", "ed.pub"]).ok();
    assert!(
        r.out().contains("verified with ed.pub (Ed25519)"),
        "{}",
        r.out()
    );

    let signed = run(d, &["sign", "-f", "app.yaml", "--key", "ed.pem"])
        .ok()
        .out();
    let sig = STANDARD.decode(sign_of(&signed)).expect("base64");
    assert_eq!(sig, raw, "Ed25519 is deterministic");
    std::fs::write(d.join("sig.bin"), sig).expect("write");
    let out = openssl(
        d,
        &[
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            "ed.pub",
            "-rawin",
            "-in",
            "payload.bin",
            "-sigfile",
            "sig.bin",
        ],
    );
    assert!(String::from_utf8_lossy(&out).contains("Signature Verified Successfully"));

    // A key made by keygen works with openssl.
    keygen(d, "ed25519", "mine");
    let raw = openssl(
        d,
        &[
            "pkeyutl",
            "-sign",
            "-rawin",
            "-inkey",
            "mine.key",
            "-in",
            "payload.bin",
        ],
    );
    std::fs::write(d.join("by-mine.yaml"), with_sign(&STANDARD.encode(&raw))).expect("write");
    run(d, &["verify", "-f", "by-mine.yaml", "--key", "mine.pub"]).ok();
}

#[test]
fn bad_inputs_fail_with_clear_messages() {
    let dir = tempdir();
    let d = dir.path();
    keygen(d, "ecdsa-p256", "k");
    std::fs::write(d.join("app.yaml"), example_text()).expect("write");
    std::fs::write(d.join("garbage.pem"), "hello\n").expect("write");

    // Missing key files.
    run(d, &["sign", "-f", "app.yaml", "--key", "missing.key"])
        .fails(&["private key file \"missing.key\" does not exist", "keygen"]);
    run(d, &["verify", "-f", "app.yaml", "--key", "missing.pub"])
        .fails(&["public key file \"missing.pub\" does not exist"]);
    run(d, &["verify", "-f", "app.yaml", "--keys-dir", "missing"])
        .fails(&["--keys-dir \"missing\" does not exist"]);

    // Files that are not keys, or the wrong half of a pair.
    run(d, &["sign", "-f", "app.yaml", "--key", "garbage.pem"])
        .fails(&["\"garbage.pem\" cannot be used", "not a PEM private key"]);
    run(d, &["sign", "-f", "app.yaml", "--key", "k.pub"])
        .fails(&["holds a public key", "needs the private key"]);
    run(d, &["verify", "-f", "app.yaml", "--key", "garbage.pem"]).fails(&[
        "\"garbage.pem\" is not a PEM public key",
        "BEGIN PUBLIC KEY",
    ]);
    run(d, &["verify", "-f", "app.yaml", "--key", "k.key"])
        .fails(&["\"k.key\" holds a private key", "-pubout"]);
    std::fs::write(d.join("binary.pem"), [0x30u8, 0x82, 0xff, 0xfe]).expect("write");
    run(d, &["sign", "-f", "app.yaml", "--key", "binary.pem"]).fails(&["is not PEM text"]);

    // Signatures that are not base64, or missing.
    std::fs::write(d.join("garbage.yaml"), with_sign("not base64!!")).expect("write");
    run(d, &["verify", "-f", "garbage.yaml", "--key", "k.pub"])
        .fails(&["error: appimage \"secretflow-image\": spec.image.sign is not valid base64"]);
    let mut doc: Value = serde_yaml_ng::from_str(&example_text()).expect("YAML");
    doc["spec"]["image"]
        .as_object_mut()
        .expect("image")
        .remove("sign");
    std::fs::write(
        d.join("unsigned.yaml"),
        serde_yaml_ng::to_string(&doc).expect("YAML"),
    )
    .expect("write");
    run(d, &["verify", "-f", "unsigned.yaml", "--key", "k.pub"])
        .fails(&["spec.image.sign is empty", "kubectl appimage sign"]);

    // Missing manifests, and a verify without any key.
    run(d, &["sign", "-f", "nope.yaml", "--key", "k.key"])
        .fails(&["the path \"nope.yaml\" does not exist"]);
    let r = run(d, &["verify", "-f", "app.yaml"]);
    assert_eq!(r.code, 1, "usage error: {}", r.stderr);
}

/// cosign, built from the Go module proxy by scripts/tools.sh (cached).
fn cosign() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/tools.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg("cosign")
        .output()
        .expect("run scripts/tools.sh cosign");
    assert!(
        out.status.success(),
        "scripts/tools.sh cosign: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(stdout.lines().last().expect("cosign path").trim())
}

#[test]
fn cosign_sign_blob_signatures_verify() {
    let cosign = cosign();
    let dir = tempdir();
    let d = dir.path();
    let cosign_run = |args: &[&str]| {
        let out = Command::new(&cosign)
            .args(args)
            .current_dir(d)
            .env("COSIGN_PASSWORD", "test-password")
            .output()
            .expect("run cosign");
        assert!(
            out.status.success(),
            "cosign {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    // A cosign key pair (encrypted private key, PEM public key).
    cosign_run(&["generate-key-pair"]);
    std::fs::write(d.join("app.yaml"), example_text()).expect("write");
    let payload = run(d, &["payload", "-f", "app.yaml"]).ok().stdout;
    std::fs::write(d.join("payload.bin"), &payload).expect("write");
    let sig = cosign_run(&[
        "sign-blob",
        "--yes",
        "--key",
        "cosign.key",
        "--tlog-upload=false",
        "payload.bin",
    ]);
    let sig = String::from_utf8(sig).expect("base64 text");
    std::fs::write(d.join("by-cosign.yaml"), with_sign(sig.trim())).expect("write");
    let r = run(
        d,
        &["verify", "-f", "by-cosign.yaml", "--key", "cosign.pub"],
    )
    .ok();
    assert!(
        r.out()
            .contains("verified with cosign.pub (ECDSA-P256-SHA256)"),
        "{}",
        r.out()
    );
    // A tag changed after cosign signed fails.
    std::fs::write(
        d.join("changed.yaml"),
        with_tag(&with_sign(sig.trim()), "v2"),
    )
    .expect("write");
    let r = run(d, &["verify", "-f", "changed.yaml", "--key", "cosign.pub"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("does not verify"), "{}", r.stderr);
}
