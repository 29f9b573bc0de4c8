//! `kubectl appimage set-image NAME IMAGE`: change an AppImage's image (issue 19, section 2),
//! re-signing it in the same write with `--key`. What the new AppImage is, and when it is
//! refused, is the core's `appimage::set_image`; this file reads flags, the AppImage and the key,
//! writes, and prints. Auto workloads then roll through the revisions controller.

use std::path::PathBuf;

use anyhow::{Result, bail};
use appimage::image_ref::{self, ImageRef};
use appimage::resource::AppImage;
use appimage::set_image::{Outcome, Request, set_image};
use clap::Args;

use crate::client::{Cluster, block_on};
use crate::error::eprint_line;
use crate::flags::{DryRun, DryRunArg, Global, ObjectOutput};
use crate::input::{self, pick_for};
use crate::keyfile::load_private_key;
use crate::output::{for_display, object_name, println, to_json, to_yaml};

#[derive(Args, Debug, Clone)]
pub struct SetImageArgs {
    /// The AppImage
    #[arg(value_name = "NAME")]
    pub name: String,
    /// The new image: NAME[:TAG]; no tag means latest. A manifest digest (@sha256:…) is
    /// refused: give the image ID with --image-id
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// The image's ID as Kuscia means it, the config digest (`crictl inspecti`, or
    /// `skopeo inspect --raw docker://IMAGE | jq -r .config.digest`), written as spec.image.id;
    /// the webhook pins Pods to the manifest that has it. Without it the old id goes
    #[arg(long, value_name = "sha256:…")]
    pub image_id: Option<String>,
    /// Re-sign the new image with this PEM private key (ECDSA P-256 or Ed25519), in the same write
    #[arg(long, value_name = "PRIVATE_KEY", conflicts_with = "allow_unsigned")]
    pub key: Option<PathBuf>,
    /// Change a signed AppImage's image without a key: its signature is removed
    #[arg(long)]
    pub allow_unsigned: bool,
    /// Recorded as kubernetes.io/change-cause, which `history` shows [default: the command]
    #[arg(long, value_name = "TEXT")]
    pub change_cause: Option<String>,
    /// Recorded as the annotation kuscia.secretflow/task-id (an earlier change's is removed)
    #[arg(long, value_name = "ID")]
    pub task_id: Option<String>,
    /// Read the AppImage from files instead of the cluster: an offline preview, with
    /// --dry-run=client only
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub filename: Vec<String>,
    #[command(flatten)]
    pub dry_run: DryRunArg,
    /// Print the AppImage as it is after the change instead of a message
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<ObjectOutput>,
}

/// Run `set-image`; with `-f` nothing contacts a cluster.
pub fn run(global: &Global, args: &SetImageArgs) -> Result<()> {
    let reference = image_ref::parse(&args.image)?;
    check_flags(args)?;
    let key = args.key.as_deref().map(load_private_key).transpose()?;
    let key = key.as_ref().map(|k| k.pem.as_str());
    let dry = args.dry_run.dry_run;
    if !args.filename.is_empty() {
        let image = pick_for(
            input::load(&args.filename)?,
            Some(&args.name),
            &args.filename,
            "set-image",
        )?;
        return match decide(&image, &reference, key, args)? {
            Outcome::Unchanged => show(&image, false, args),
            Outcome::Updated(new) => show(&new, true, args),
        };
    }
    block_on(async {
        let cluster = Cluster::connect(global).await?;
        let image = cluster.get(&args.name).await?;
        let mut new = match decide(&image, &reference, key, args)? {
            Outcome::Unchanged => return show(&image, false, args),
            Outcome::Updated(new) => *new,
        };
        if dry != DryRun::Client {
            // The read resourceVersion stays, so a change made meanwhile is a Conflict, not
            // overwritten.
            new.metadata.managed_fields = None;
            new = cluster.replace(&new, dry == DryRun::Server).await?;
        }
        show(&new, true, args)
    })
}

/// Refuse flag values that would record nothing useful, and `-f` outside a client dry run.
fn check_flags(args: &SetImageArgs) -> Result<()> {
    if !args.filename.is_empty() && args.dry_run.dry_run != DryRun::Client {
        bail!(
            "set-image -f reads the AppImage from files for an offline preview, which writes nothing: add --dry-run=client (and -o yaml to see it), or drop -f to set the image of the AppImage {:?} in the cluster",
            args.name
        );
    }
    for (flag, value) in [
        ("--change-cause", &args.change_cause),
        ("--task-id", &args.task_id),
    ] {
        if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
            bail!("{flag} is empty; give a value, or leave the flag out");
        }
    }
    Ok(())
}

/// The core's decision, with a warning when a signature is dropped.
fn decide(
    image: &AppImage,
    reference: &ImageRef,
    key: Option<&str>,
    args: &SetImageArgs,
) -> Result<Outcome> {
    let request = Request {
        image: reference,
        image_id: args.image_id.as_deref().map(str::trim),
        signing_key: key,
        allow_unsigned: args.allow_unsigned,
        change_cause: args.change_cause.as_deref().map(str::trim),
        task_id: args.task_id.as_deref().map(str::trim),
    };
    let outcome = set_image(image, &request)?;
    if let Outcome::Updated(new) = &outcome
        && image.spec.image.sign.is_some()
        && new.spec.image.sign.is_none()
    {
        eprint_line(&format!(
            "Warning: the signature of AppImage {:?} is removed (--allow-unsigned); where the webhook requires signatures its Pods are denied until it is signed again (kubectl appimage set-image {} {} --key PRIVATE_KEY)",
            args.name, args.name, reference
        ));
    }
    Ok(outcome)
}

/// The message, or the object as `-o` asks.
fn show(image: &AppImage, updated: bool, args: &SetImageArgs) -> Result<()> {
    let name = object_name(&args.name);
    let suffix = args.dry_run.dry_run.suffix();
    match args.output {
        Some(ObjectOutput::Name) => println(&name),
        Some(ObjectOutput::Yaml) => println(&to_yaml(&for_display(image)?)?),
        Some(ObjectOutput::Json) => println(&to_json(&for_display(image)?)?),
        None if updated => println(&format!("{name} image updated{suffix}")),
        None => {
            let id = image.spec.image.id.as_deref().filter(|id| !id.is_empty());
            let id = id.map(|id| format!(", image ID {id}")).unwrap_or_default();
            let already = image.image_ref();
            println(&format!("{name} unchanged (already {already}{id}){suffix}"))
        }
    }
}
