//! Image signatures: `keygen`, `payload`, `sign` and `verify`. The cryptography lives in
//! `appimage::signature`; this module reads and writes key files and manifests, and reports.

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use appimage::resource::{AppImage, ImageInfo};
use appimage::signature::{self, TrustedKey};
use rand_core::{OsRng, RngCore};

use crate::cli::{Algorithm, Global, KeygenArgs, PayloadArgs, SignArgs, SignOutput, VerifyArgs};
use crate::client::Cluster;
use crate::error::{Reported, eprint_line};
use crate::input::{self, Loaded};
use crate::offline;
use crate::output::{self, print, println};
use crate::resource;

const PRIVATE_HINT: &str =
    "pass a PEM private key with --key; create a key pair with `kubectl appimage keygen`";
const PUBLIC_HINT: &str = "pass the signer's PEM public key (the .pub file `kubectl appimage keygen` wrote) with --key, or put it in --keys-dir";

// ---- keygen ----

/// `keygen`: a fresh key pair from OS randomness; the private key is PKCS#8 PEM, mode 0600.
pub fn keygen(args: &KeygenArgs) -> Result<()> {
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

fn quoted(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

// ---- reading keys ----

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
struct PrivateKey {
    pem: String,
    algorithm: &'static str,
}

fn load_private_key(path: &Path) -> Result<PrivateKey> {
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

/// The trusted keys: every `--key`, then the `*.pem` and `*.pub` files in `--keys-dir`.
fn load_trusted(args: &VerifyArgs) -> Result<Vec<TrustedKey>> {
    let mut paths = args.key.clone();
    if let Some(dir) = &args.keys_dir {
        let found = key_files(dir)?;
        if found.is_empty() && args.key.is_empty() {
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
    Ok(keys)
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

// ---- payload ----

/// `payload -f`: the payload of the AppImage picked from the files.
pub fn payload_files(args: &PayloadArgs) -> Result<()> {
    let images = input::load(&args.filename)?;
    let image = offline::pick_for(images, args.name.as_deref(), &args.filename, "payload")?;
    print_payload(&image.spec.image)
}

/// `payload NAME`: the payload of the AppImage in the cluster.
pub async fn payload_cluster(global: &Global, args: &PayloadArgs) -> Result<()> {
    let Some(name) = args.name.as_deref() else {
        bail!("payload needs an AppImage NAME or -f FILE");
    };
    let cluster = Cluster::connect(global).await?;
    let image = cluster.get(name).await?;
    print_payload(&image.spec.image)
}

/// The exact signed bytes, without a newline, so they can be piped into openssl.
fn print_payload(image: &ImageInfo) -> Result<()> {
    let bytes = signature::payload(image);
    print(std::str::from_utf8(&bytes).context("internal: the signature payload is not UTF-8")?)
}

// ---- sign ----

/// `sign -f`: fill `spec.image.sign`, then print the AppImages or rewrite the file.
pub fn sign(args: &SignArgs) -> Result<()> {
    let files = &args.files.filename;
    let target = if args.in_place {
        Some(in_place_target(files)?)
    } else {
        None
    };
    let key = load_private_key(&args.key)?;
    let sources = input::read_sources(files)?;
    let mut images = input::load_sources(&sources, files)?;
    if let Some(name) = &args.name
        && !images.iter().any(|l| l.name() == name)
    {
        let names: Vec<&str> = images.iter().map(Loaded::name).collect();
        bail!(
            "{} holds no AppImage named {name:?} (it has: {}); pass one of those names, or none to sign them all",
            files.join(", "),
            names.join(", ")
        );
    }
    let mut signed = Vec::new();
    for loaded in &mut images {
        if args.name.as_deref().is_some_and(|n| n != loaded.name()) {
            continue;
        }
        let info = &mut loaded.image.spec.image;
        let sig = signature::sign(&signature::payload(info), &key.pem).map_err(|e| {
            anyhow!(
                "cannot sign with {}: {e}; {PRIVATE_HINT}",
                quoted(&args.key)
            )
        })?;
        info.sign = Some(sig);
        signed.push(input::display_name(loaded));
    }
    match target {
        Some(path) => {
            let all: Vec<AppImage> = images.into_iter().map(|l| l.image).collect();
            let is_json = sources
                .first()
                .is_some_and(|s| s.text.trim_start().starts_with(['{', '[']));
            replace_file(&path, &encode(&all, is_json)?)?;
            for name in &signed {
                println(&format!(
                    "appimage {name:?} signed in {} with {} ({})",
                    path.display(),
                    args.key.display(),
                    key.algorithm
                ))?;
            }
            Ok(())
        }
        None => {
            let chosen: Vec<AppImage> = images
                .into_iter()
                .filter(|l| args.name.as_deref().is_none_or(|n| n == l.name()))
                .map(|l| l.image)
                .collect();
            print(&encode(&chosen, args.output == Some(SignOutput::Json))?)
        }
    }
}

/// YAML (one document each, separated by `---`) or JSON (one object, or a List).
fn encode(images: &[AppImage], json: bool) -> Result<String> {
    if json {
        return output::to_json(&output::objects(images, false)?);
    }
    let docs = images
        .iter()
        .map(|image| output::to_yaml(&output::for_display(image)?))
        .collect::<Result<Vec<_>>>()?;
    Ok(docs.join("---\n"))
}

/// The one regular file `--in-place` may rewrite.
fn in_place_target(files: &[String]) -> Result<PathBuf> {
    let [file] = files else {
        bail!(
            "--in-place rewrites one file, but {} -f arguments were given; sign them one at a time, or drop --in-place to print the signed AppImages",
            files.len()
        );
    };
    if file == "-" {
        bail!("--in-place cannot rewrite stdin; drop --in-place to print the signed AppImages");
    }
    match fs::metadata(file) {
        Ok(m) if m.is_file() => Ok(PathBuf::from(file)),
        Ok(_) => bail!(
            "--in-place rewrites a regular file, but {file:?} is not one; pass the file itself, or drop --in-place to print the signed AppImages"
        ),
        Err(e) if e.kind() == ErrorKind::NotFound => bail!("the path {file:?} does not exist"),
        Err(e) => Err(e).with_context(|| format!("cannot read {file:?}")),
    }
}

/// Replace `path` (the file a symlink points to) atomically, keeping its permissions.
fn replace_file(path: &Path, text: &str) -> Result<()> {
    let context = || format!("cannot rewrite {}", quoted(path));
    let real = fs::canonicalize(path).with_context(context)?;
    let (Some(dir), Some(file_name)) = (real.parent(), real.file_name()) else {
        bail!("{}: not a file path", context());
    };
    let tmp = dir.join(format!(
        ".{}.sign-{}.tmp",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let permissions = fs::metadata(&real).with_context(context)?.permissions();
    let result = (|| -> std::io::Result<()> {
        let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::set_permissions(&tmp, permissions)?;
        fs::rename(&tmp, &real)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(context)
}

// ---- verify ----

/// `verify -f`: check every AppImage in the files, offline.
pub fn verify_files(args: &VerifyArgs) -> Result<()> {
    let keys = load_trusted(args)?;
    let images = input::load(&args.filename)?;
    let ok = verify_all(
        images
            .iter()
            .map(|l| (input::display_name(l), &l.image.spec.image)),
        &keys,
    )?;
    if ok { Ok(()) } else { Err(Reported.into()) }
}

/// `verify NAME...`: check AppImages from the cluster. Keys are loaded before connecting.
pub async fn verify_cluster(global: &Global, args: &VerifyArgs) -> Result<()> {
    if args.names.is_empty() {
        bail!("verify needs AppImage NAMEs or -f FILE");
    }
    let keys = load_trusted(args)?;
    let cluster = Cluster::connect(global).await?;
    let (images, failed) = resource::fetch(&cluster, &args.names).await?;
    let ok = verify_all(
        images.iter().map(|i| (i.name().to_string(), &i.spec.image)),
        &keys,
    )?;
    if ok && !failed {
        Ok(())
    } else {
        Err(Reported.into())
    }
}

/// One line per AppImage: verified on stdout, the reason on stderr. True when all verify.
fn verify_all<'a>(
    images: impl Iterator<Item = (String, &'a ImageInfo)>,
    keys: &[TrustedKey],
) -> Result<bool> {
    let mut ok = true;
    for (name, info) in images {
        match signature::verify(info, keys) {
            Ok(key) => {
                let algorithm = keys
                    .iter()
                    .find(|k| k.name == key)
                    .map_or("unknown algorithm", TrustedKey::algorithm);
                println(&format!(
                    "appimage {name:?}: signature verified with {key} ({algorithm})"
                ))?;
            }
            Err(e) => {
                eprint_line(&format!("error: appimage {name:?}: {e}"));
                ok = false;
            }
        }
    }
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_sign_and_verify() {
        for algorithm in [Algorithm::EcdsaP256, Algorithm::Ed25519] {
            let private = generate(algorithm).unwrap();
            assert!(private.starts_with("-----BEGIN PRIVATE KEY-----\n"));
            let public = signature::public_key_pem(&private).unwrap();
            let key = TrustedKey::from_pem("k", &public).unwrap();
            let mut image = ImageInfo {
                name: "n".into(),
                tag: "t".into(),
                id: None,
                sign: None,
            };
            image.sign = Some(signature::sign(&signature::payload(&image), &private).unwrap());
            assert_eq!(signature::verify(&image, &[key]), Ok("k"));
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
