//! `keygen`: a fresh key pair for signing images.

use clap::Args;
use clap::ValueEnum;
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::Path;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use appimage::signature::{self, TrustedKey};
use rand_core::{OsRng, RngCore};

use crate::keyfile::quoted;
use crate::output::println;

/// Signature algorithms `keygen` can generate.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// ECDSA on NIST P-256 with SHA-256 (openssl dgst -sha256 -sign, cosign sign-blob)
    #[default]
    EcdsaP256,
    /// Ed25519 (openssl pkeyutl -sign -rawin)
    Ed25519,
}

#[derive(Args, Debug, Clone)]
pub struct KeygenArgs {
    /// The key type
    #[arg(long, value_enum, default_value = "ecdsa-p256")]
    pub algorithm: Algorithm,
    /// Where to write the private key (PKCS#8 PEM, mode 0600)
    #[arg(long, value_name = "PATH", default_value = "appimage.key")]
    pub private_key: PathBuf,
    /// Where to write the public key (PEM PUBLIC KEY), to give to verifiers
    #[arg(long, value_name = "PATH", default_value = "appimage.pub")]
    pub public_key: PathBuf,
    /// Overwrite existing key files
    #[arg(long)]
    pub force: bool,
}

/// `keygen`: a fresh key pair from OS randomness; the private key is PKCS#8 PEM, mode 0600.
pub fn run(args: &KeygenArgs) -> Result<()> {
    let (private, public) = (&args.private_key, &args.public_key);
    if same_path(private, public) {
        bail!(
            "--private-key and --public-key are both {}; give them different paths",
            quoted(private)
        );
    }
    for (path, flag) in [(private, "--private-key"), (public, "--public-key")] {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.is_dir()
        {
            bail!(
                "cannot write {}: the directory {} does not exist; create it first or choose another path with {flag}",
                quoted(path),
                quoted(dir)
            );
        }
        if !args.force && path.symlink_metadata().is_ok() {
            bail!(
                "{} already exists; pass --force to overwrite it, or choose another path with {flag}",
                quoted(path)
            );
        }
    }
    let private_pem = generate(args.algorithm)?;
    let public_pem = signature::public_key_pem(&private_pem)
        .map_err(|e| anyhow!("internal: cannot derive the public key of the new key: {e}"))?;
    let algorithm = TrustedKey::from_pem("new key", &public_pem)
        .map_err(|e| anyhow!("internal: the new public key does not load: {e}"))?
        .algorithm();
    write_key(private, &private_pem, true, args.force)
        .with_context(|| format!("cannot write the private key {}", quoted(private)))?;
    if let Err(e) = write_key(public, &public_pem, false, args.force) {
        // Leave no half pair behind, so that a retry needs no --force.
        let _ = fs::remove_file(private);
        return Err(e.context(format!(
            "cannot write the public key {} (the new private key was removed again)",
            quoted(public)
        )));
    }
    println(&format!(
        "wrote private key {} and public key {} ({algorithm})",
        private.display(),
        public.display()
    ))
}

/// A new private key as PKCS#8 PEM, the form `openssl genpkey` writes.
fn generate(algorithm: Algorithm) -> Result<String> {
    use p256::pkcs8::{EncodePrivateKey, LineEnding};
    // OsRng panics when the OS has no randomness to give; ask once first to fail cleanly.
    OsRng
        .try_fill_bytes(&mut [0u8; 32])
        .map_err(|e| anyhow!("cannot get random bytes from the operating system: {e}"))?;
    let pem = match algorithm {
        Algorithm::EcdsaP256 => {
            p256::ecdsa::SigningKey::random(&mut OsRng).to_pkcs8_pem(LineEnding::LF)
        }
        Algorithm::Ed25519 => {
            let key = ed25519_dalek::SigningKey::generate(&mut OsRng);
            // PKCS#8 v1 (no embedded public key), which every openssl reads.
            ed25519_dalek::pkcs8::KeypairBytes {
                secret_key: key.to_bytes(),
                public_key: None,
            }
            .to_pkcs8_pem(LineEnding::LF)
        }
    };
    pem.map(|p| p.to_string())
        .map_err(|e| anyhow!("cannot encode the new private key as PKCS#8 PEM: {e}"))
}

/// Write a new key file; with `force` an existing file is replaced. A private key is created
/// with mode 0600 (never readable by others, not even for a moment).
fn write_key(path: &Path, text: &str, private: bool, force: bool) -> Result<()> {
    if force {
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e).context("cannot remove the existing file"),
        }
    }
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == ErrorKind::AlreadyExists {
            anyhow!("it already exists; pass --force to overwrite it")
        } else {
            anyhow!(e)
        }
    })?;
    #[cfg(unix)]
    if private {
        // The umask may have taken more away; make it exactly owner read/write.
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

fn same_path(a: &Path, b: &Path) -> bool {
    a == b
        || fs::canonicalize(a)
            .ok()
            .is_some_and(|ca| fs::canonicalize(b).ok().is_some_and(|cb| ca == cb))
}

#[cfg(test)]
mod tests {
    use super::*;
    use appimage::resource::{AppImage, AppImageSpec, ImageInfo};

    #[test]
    fn generated_keys_sign_and_verify() {
        for algorithm in [Algorithm::EcdsaP256, Algorithm::Ed25519] {
            let private = generate(algorithm).unwrap();
            assert!(private.starts_with("-----BEGIN PRIVATE KEY-----\n"));
            let public = signature::public_key_pem(&private).unwrap();
            let key = TrustedKey::from_pem("k", &public).unwrap();
            let info = ImageInfo {
                name: "n".into(),
                tag: "t".into(),
                id: None,
                sign: None,
            };
            let spec = AppImageSpec {
                config_templates: Default::default(),
                deploy_templates: Vec::new(),
                image: info,
            };
            let mut image = AppImage::new("a", spec);
            let sig = signature::sign(&signature::payload(&image), &private).unwrap();
            image.spec.image.sign = Some(sig);
            let ok = signature::verify(&image, &[key], &Default::default(), jiff::Timestamp::now());
            assert_eq!(ok.unwrap().keys, ["k"]);
        }
    }

    #[test]
    fn two_keys_differ() {
        assert_ne!(
            generate(Algorithm::Ed25519).unwrap(),
            generate(Algorithm::Ed25519).unwrap()
        );
    }
}
