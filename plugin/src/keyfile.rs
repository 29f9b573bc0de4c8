//! Key files for signing and verifying: reading PEM keys with hints for the usual mistakes,
//! and the trusted keys of `--key` and `--keys-dir`.

use std::collections::BTreeSet;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use appimage::signature::{self, TrustedKey};

pub const PRIVATE_HINT: &str =
    "pass a PEM private key with --key; create a key pair with `kubectl appimage keygen`";
const PUBLIC_HINT: &str = "pass the signer's PEM public key (the .pub file `kubectl appimage keygen` wrote) with --key, or put it in --keys-dir";

pub fn quoted(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// A key file's text; a missing file, a directory or binary (DER) content get a hint.
fn read_key_file(path: &Path, what: &str, hint: &str) -> Result<String> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            bail!("{what} file {} does not exist; {hint}", quoted(path))
        }
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot read the {what} file {} ({hint})", quoted(path)));
        }
    };
    String::from_utf8(bytes).map_err(|_| {
        anyhow!(
            "{what} file {} is not PEM text (is it DER? convert it with `openssl pkey -inform DER -in KEY -out KEY.pem`); {hint}",
            quoted(path)
        )
    })
}

/// A private key that `appimage::signature::sign` accepts, and its algorithm.
pub struct PrivateKey {
    pub pem: String,
    pub algorithm: &'static str,
}

pub fn load_private_key(path: &Path) -> Result<PrivateKey> {
    let pem = read_key_file(path, "private key", PRIVATE_HINT)?;
    let unusable = |why: &str| {
        anyhow!(
            "private key file {} cannot be used: {why}; {PRIVATE_HINT}",
            quoted(path)
        )
    };
    if pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        return Err(unusable(
            "it is encrypted; decrypt it first with `openssl pkey -in KEY -out PLAIN.pem`",
        ));
    }
    if pem.contains("-----BEGIN PUBLIC KEY-----") {
        return Err(unusable(
            "it holds a public key, but signing needs the private key",
        ));
    }
    let Ok(public) = signature::public_key_pem(&pem) else {
        return Err(unusable(
            "it is not a PEM private key of type ECDSA P-256 or Ed25519 (expected -----BEGIN PRIVATE KEY----- or -----BEGIN EC PRIVATE KEY-----)",
        ));
    };
    let algorithm = TrustedKey::from_pem("private key", &public)
        .map_err(|e| unusable(&e.to_string()))?
        .algorithm();
    Ok(PrivateKey { pem, algorithm })
}

/// The keys `key` names and those in `keys_dir`, with the directory's key policy applied.
pub fn load_keys(key: &[PathBuf], keys_dir: Option<&Path>) -> Result<Vec<TrustedKey>> {
    let mut paths = key.to_vec();
    if let Some(dir) = keys_dir {
        let found = key_files(dir)?;
        if found.is_empty() && key.is_empty() {
            bail!(
                "--keys-dir {} holds no *.pem or *.pub file; put the trusted PEM public keys there or pass --key PUBLIC_KEY",
                quoted(dir)
            );
        }
        paths.extend(found);
    }
    let mut seen = BTreeSet::new();
    let mut keys = Vec::new();
    for path in paths {
        let name = path.display().to_string();
        if !seen.insert(name.clone()) {
            continue;
        }
        let pem = read_key_file(&path, "public key", PUBLIC_HINT)?;
        let key = TrustedKey::from_pem(&name, &pem).map_err(|_| {
            if pem.contains("PRIVATE KEY-----") {
                anyhow!(
                    "public key file {name:?} holds a private key; verifying needs its public key: pass the .pub file `kubectl appimage keygen` wrote, or make one with `openssl pkey -in KEY -pubout -out KEY.pub`"
                )
            } else {
                anyhow!(
                    "public key file {name:?} is not a PEM public key of type ECDSA P-256 or Ed25519 (expected -----BEGIN PUBLIC KEY-----); {PUBLIC_HINT}"
                )
            }
        })?;
        keys.push(key);
    }
    if let Some(dir) = keys_dir {
        apply_policy(dir, &mut keys)?;
    }
    Ok(keys)
}

/// The directory's `keys-policy.yaml` (windows, revocations), matched by key file name, as the
/// webhook applies it.
fn apply_policy(dir: &Path, keys: &mut [TrustedKey]) -> Result<()> {
    let found = appimage::trusted_keys::read_key_files(dir)
        .with_context(|| format!("cannot read {}", quoted(dir)))?;
    let Some(text) = found.policy else {
        return Ok(());
    };
    let policy = signature::KeyPolicy::parse(&text).map_err(|e| anyhow!("{}: {e}", quoted(dir)))?;
    for key in keys {
        let file = Path::new(&key.name)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned());
        let (window, revoked) = policy.state(file.as_deref().unwrap_or(&key.name));
        key.window = window;
        key.revoked = revoked;
    }
    Ok(())
}

/// The key files in `dir`, by the scan the webhook's `--trusted-keys-dir` shares.
fn key_files(dir: &Path) -> Result<Vec<PathBuf>> {
    match appimage::trusted_keys::key_files(dir) {
        Ok(files) => Ok(files),
        Err(e) if e.kind() == ErrorKind::NotFound => bail!(
            "--keys-dir {} does not exist; pass the directory that holds the trusted public keys",
            quoted(dir)
        ),
        Err(e) => Err(e).with_context(|| format!("cannot list --keys-dir {}", quoted(dir))),
    }
}
