//! `verify`: check `spec.image.sign` against trusted public keys, for AppImages in files
//! (`-f`, offline) or in the cluster (`NAME...`). Keys are loaded before connecting.

use anyhow::{Result, bail};
use appimage::resource::AppImage;
use appimage::signature::{self, Requirement, TrustedKey};

use crate::cli::{Global, VerifyArgs};
use crate::client::{Cluster, block_on};
use crate::error::{eprint_line, reported};
use crate::input;
use crate::keyfile::load_trusted;
use crate::output::println;

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
