//! `payload`: the exact bytes an image signature covers, from files (`-f`) or the cluster.

use anyhow::{Context, Result};
use appimage::resource::AppImage;
use appimage::signature;
use clap::ArgGroup;
use clap::Args;

use crate::client::one_appimage;
use crate::flags::Global;
use crate::output::print;

#[derive(Args, Debug, Clone)]
#[command(group(ArgGroup::new("source").required(true).args(["name", "filename"]).multiple(true)))]
pub struct PayloadArgs {
    /// The AppImage: fetched from the cluster, or picked from the -f files
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    /// Read the AppImage from files instead of the cluster (works offline)
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub filename: Vec<String>,
    /// v2 (the AppImage's name and whole spec, the default) or v1 (the image alone)
    #[arg(long, value_enum, default_value = "v2")]
    pub payload_version: PayloadVersionArg,
}

/// Which signature payload.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadVersionArg {
    V1,
    V2,
}

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
