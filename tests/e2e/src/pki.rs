//! Real keys and certificates made by the `openssl` binary, for every test crate.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Run `openssl` in `dir`, failing the test with its stderr; its stdout.
#[track_caller]
pub fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl (it is needed by the tests)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A P-256 CA `NAME.crt` / `NAME.key` in `dir`.
pub fn make_ca(dir: &Path, name: &str) {
    let (key, crt, subj) = (
        format!("{name}.key"),
        format!("{name}.crt"),
        format!("/CN={name}"),
    );
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &crt,
            "-days",
            "2",
            "-subj",
            &subj,
        ],
    );
}

/// A leaf `NAME.crt` / `NAME.key` signed by CA `ca` with `serial`; `server` makes it a
/// serverAuth certificate for 127.0.0.1 and localhost, otherwise a clientAuth one.
pub fn make_leaf(dir: &Path, ca: &str, name: &str, serial: u32, server: bool) {
    let (key, csr, crt, ext) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
        format!("{name}.ext"),
    );
    let subj = format!("/CN={name}");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &subj,
        ],
    );
    let usage = if server {
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
    } else {
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n"
    };
    std::fs::write(dir.join(&ext), usage).expect("write ext");
    let (ca_crt, ca_key, serial) = (format!("{ca}.crt"), format!("{ca}.key"), serial.to_string());
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_crt,
            "-CAkey",
            &ca_key,
            "-set_serial",
            &serial,
            "-days",
            "2",
            "-out",
            &crt,
            "-extfile",
            &ext,
        ],
    );
}

/// An ECDSA P-256 signing key `NAME.key` and its public key `NAME.pub`; the public key's path.
pub fn make_signing_key(dir: &Path, name: &str) -> PathBuf {
    let (key, public) = (format!("{name}.key"), format!("{name}.pub"));
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &key,
        ],
    );
    openssl(dir, &["pkey", "-in", &key, "-pubout", "-out", &public]);
    dir.join(public)
}
