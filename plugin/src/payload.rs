//! `payload`: the exact bytes an image signature covers, from files (`-f`) or the cluster.

use anyhow::{Context, Result, bail};
use appimage::resource::ImageInfo;
use appimage::signature;

use crate::cli::{Global, PayloadArgs};
use crate::client::{Cluster, block_on};
use crate::input;
use crate::output::print;

/// `payload -f` never builds a client; `payload NAME` fetches the AppImage.
pub fn run(global: &Global, args: &PayloadArgs) -> Result<()> {
    let image = if args.filename.is_empty() {
        let Some(name) = args.name.as_deref() else {
            bail!("payload needs an AppImage NAME or -f FILE");
        };
        block_on(async { Cluster::connect(global).await?.get(name).await })?
    } else {
        let images = input::load(&args.filename)?;
        input::pick_for(images, args.name.as_deref(), &args.filename, "payload")?
    };
    print_payload(&image.spec.image)
}

/// The exact signed bytes, without a newline, so they can be piped into openssl.
fn print_payload(image: &ImageInfo) -> Result<()> {
    let bytes = signature::payload(image);
    print(std::str::from_utf8(&bytes).context("internal: the signature payload is not UTF-8")?)
}
