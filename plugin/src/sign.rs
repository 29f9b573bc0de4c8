//! `sign -f`: fill `spec.image.sign` with a private key, offline; print or rewrite the file.

use crate::flags::Files;
use clap::Args;
use clap::ValueEnum;
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use appimage::resource::AppImage;
use appimage::signature;

use crate::input::{self, Loaded};
use crate::keyfile::{PRIVATE_HINT, load_private_key, quoted};
use crate::output::{self, print, println};

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SignOutput {
    #[default]
    Yaml,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct SignArgs {
    /// Sign only the AppImage with this name (others are left as they are)
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    #[command(flatten)]
    pub files: Files,
    /// The private key: PEM PKCS#8 (ECDSA P-256 or Ed25519) or SEC1 (ECDSA P-256)
    #[arg(long, value_name = "PRIVATE_KEY")]
    pub key: PathBuf,
    /// yaml (several AppImages as a multi-document stream) or json
    #[arg(short = 'o', long = "output", value_enum, conflicts_with = "in_place")]
    pub output: Option<SignOutput>,
    /// Rewrite the file instead of printing (one regular file; comments are not kept)
    #[arg(long)]
    pub in_place: bool,
    /// Keep the signatures already there and add this key's (k-of-n signing)
    #[arg(long)]
    pub add: bool,
}

/// `sign -f`: fill `spec.image.sign`, then print the AppImages or rewrite the file.
pub fn run(args: &SignArgs) -> Result<()> {
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
        let sig = signature::sign(&signature::payload(&loaded.image), &key.pem).map_err(|e| {
            anyhow!(
                "cannot sign with {}: {e}; {PRIVATE_HINT}",
                quoted(&args.key)
            )
        })?;
        let info = &mut loaded.image.spec.image;
        info.sign = Some(if args.add {
            signature::join_signatures(info.sign.as_deref(), &sig)
        } else {
            sig
        });
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
