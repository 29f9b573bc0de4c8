//! `verify`: check `spec.image.sign` against trusted public keys, for AppImages in files
//! (`-f`, offline) or in the cluster (`NAME...`). Keys are loaded before connecting.

use anyhow::{Result, bail};
use appimage::resource::ImageInfo;
use appimage::signature::{self, TrustedKey};

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
        let named = found
            .iter()
            .map(|i| (i.name().to_string(), i.spec.image.clone()));
        (named.collect::<Vec<_>>(), failed)
    } else {
        let loaded = input::load(&args.filename)?;
        let named = loaded
            .iter()
            .map(|l| (input::display_name(l), l.image.spec.image.clone()));
        (named.collect(), false)
    };
    let ok = verify_all(images.iter().map(|(n, i)| (n.clone(), i)), &keys)?;
    if ok && !failed {
        Ok(())
    } else {
        Err(reported())
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
