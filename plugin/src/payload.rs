//! `payload`: the exact bytes an image signature covers, from files (`-f`) or the cluster.

use anyhow::{Context, Result};
use appimage::resource::AppImage;
use appimage::signature;

use crate::cli::{Global, PayloadArgs, PayloadVersionArg};
use crate::client::one_appimage;
use crate::output::print;

/// `payload -f` never builds a client; `payload NAME` fetches the AppImage.
pub fn run(global: &Global, args: &PayloadArgs) -> Result<()> {
    let image = one_appimage(global, args.name.as_deref(), &args.filename, "payload")?;
    print_payload(&image, args.payload_version)
}

/// The exact signed bytes, without a newline, so they can be piped into openssl.
fn print_payload(image: &AppImage, version: PayloadVersionArg) -> Result<()> {
    let bytes = match version {
        PayloadVersionArg::V2 => signature::payload(image),
        PayloadVersionArg::V1 => signature::payload_v1(&image.spec.image),
    };
    print(std::str::from_utf8(&bytes).context("internal: the signature payload is not UTF-8")?)
}
