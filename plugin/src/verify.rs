//! `verify`: check `spec.image.sign` against trusted public keys, for AppImages in files
//! (`-f`, offline) or in the cluster (`NAME...`). Keys are loaded before connecting.

use anyhow::{Result, bail};
use appimage::resource::AppImage;
use appimage::signature::{self, Requirement, TrustedKey};
use clap::ArgGroup;
use clap::Args;
use std::path::PathBuf;

use crate::client::{Cluster, block_on};
use crate::error::{eprint_line, reported};
use crate::flags::Global;
use crate::input;
use crate::keyfile::load_keys;
use crate::output::println;

#[derive(Args, Debug, Clone)]
#[command(group(ArgGroup::new("source").required(true).args(["names", "filename"])))]
#[command(group(ArgGroup::new("trusted").required(true).args(["key", "keys_dir"]).multiple(true)))]
pub struct VerifyArgs {
    /// AppImage names, fetched from the cluster
    #[arg(value_name = "NAME", conflicts_with = "filename")]
    pub names: Vec<String>,
    /// Verify the AppImages in these files instead (works offline)
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub filename: Vec<String>,
    /// A trusted PEM public key; repeatable
    #[arg(long, value_name = "PUBLIC_KEY")]
    pub key: Vec<PathBuf>,
    /// Also trust every *.pem and *.pub public key in this directory (and apply its
    /// keys-policy.yaml: validity windows and revocations)
    #[arg(long, value_name = "DIR")]
    pub keys_dir: Option<PathBuf>,
    /// Also accept signatures over payload v1 (the image alone), as the webhook's flag does
    #[arg(long)]
    pub accept_payload_v1: bool,
    /// Distinct trusted keys that must have signed (as the webhook's --publish-signatures)
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub min_signatures: u16,
}

pub fn run(global: &Global, args: &VerifyArgs) -> Result<()> {
    if args.filename.is_empty() && args.names.is_empty() {
        bail!("verify needs AppImage NAMEs or -f FILE");
    }
    let keys = load_trusted(args)?;
    let (images, failed) = if args.filename.is_empty() {
        let (found, failed) =
            block_on(async { Cluster::connect(global).await?.fetch(&args.names).await })?;
        let named = found.into_iter().map(|i| (i.name().to_string(), i));
        (named.collect::<Vec<_>>(), failed)
    } else {
        let loaded = input::load(&args.filename)?;
        let named = loaded
            .into_iter()
            .map(|l| (input::display_name(&l), l.image));
        (named.collect(), false)
    };
    let requirement = Requirement {
        accept_v1: args.accept_payload_v1,
        min_signers: usize::from(args.min_signatures),
    };
    let ok = verify_all(&images, &keys, &requirement)?;
    if ok && !failed {
        Ok(())
    } else {
        Err(reported())
    }
}

/// One line per AppImage: verified on stdout, the reason on stderr. True when all verify.
fn verify_all(
    images: &[(String, AppImage)],
    keys: &[TrustedKey],
    requirement: &Requirement,
) -> Result<bool> {
    let mut ok = true;
    let now = jiff::Timestamp::now();
    for (name, image) in images {
        match signature::verify(image, keys, requirement, now) {
            Ok(accepted) => {
                let with: Vec<String> = accepted
                    .keys
                    .iter()
                    .map(|k| {
                        let algorithm = keys
                            .iter()
                            .find(|t| &t.name == k)
                            .map_or("unknown algorithm", TrustedKey::algorithm);
                        format!("{k} ({algorithm})")
                    })
                    .collect();
                let payload = if accepted.weaker.is_some() {
                    "v1"
                } else {
                    "v2"
                };
                println(&format!(
                    "appimage {name:?}: signature verified with {} (payload {payload})",
                    with.join(", ")
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

/// The trusted keys: every `--key`, then the `*.pem` and `*.pub` files in `--keys-dir`.
pub fn load_trusted(args: &VerifyArgs) -> Result<Vec<TrustedKey>> {
    load_keys(&args.key, args.keys_dir.as_deref())
}
