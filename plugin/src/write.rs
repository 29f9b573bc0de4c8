//! `create`, `apply` and `update -f`: check every file first (nothing is sent if one is
//! invalid), then write each AppImage.

use crate::flags::DryRunArg;
use crate::flags::Files;
use anyhow::Result;
use appimage::resource::AppImage;
use clap::Args;

use crate::client::{Cluster, block_on};
use crate::error::{report, reported};
use crate::flags::{DryRun, Global, ObjectOutput};
use crate::input;
use crate::output::{self, object_name, print, println};

#[derive(Args, Debug, Clone)]
pub struct WriteArgs {
    #[command(flatten)]
    pub files: Files,
    #[command(flatten)]
    pub dry_run: DryRunArg,
    /// Print the resulting objects instead of a message
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<ObjectOutput>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Create,
    Apply,
    Update,
}

pub fn run(global: &Global, verb: Verb, args: &WriteArgs) -> Result<()> {
    block_on(write(global, verb, args))
}

/// Check every file first (nothing is sent if one is invalid), then write each AppImage,
/// going on after a failure as kubectl does.
async fn write(global: &Global, verb: Verb, args: &WriteArgs) -> Result<()> {
    let images = input::load_valid(&args.files.filename)?;
    let dry = args.dry_run.dry_run;
    let cluster = match dry {
        DryRun::Client => None,
        _ => Some(Cluster::connect(global).await?),
    };
    let mut failed = false;
    let mut written = Vec::new();
    for loaded in &images {
        let result = match &cluster {
            None => Ok((loaded.image.clone(), client_dry_outcome(verb))),
            Some(c) => write_one(c, verb, &loaded.image, dry == DryRun::Server).await,
        };
        match result {
            Ok((object, outcome)) => {
                if args.output.is_none() {
                    println(&format!(
                        "{} {outcome}{}",
                        object_name(loaded.name()),
                        dry.suffix()
                    ))?;
                }
                written.push(object);
            }
            Err(e) => {
                report(&e);
                failed = true;
            }
        }
    }
    if let Some(format) = args.output {
        print_objects(&written, format)?;
    }
    if failed { Err(reported()) } else { Ok(()) }
}

/// Without a server we cannot tell created from configured; say what the write would do.
fn client_dry_outcome(verb: Verb) -> &'static str {
    match verb {
        Verb::Create => "created",
        Verb::Apply => "configured",
        Verb::Update => "replaced",
    }
}

async fn write_one(
    cluster: &Cluster,
    verb: Verb,
    image: &AppImage,
    dry_run: bool,
) -> Result<(AppImage, &'static str)> {
    match verb {
        Verb::Create => Ok((cluster.create(image, dry_run).await?, "created")),
        Verb::Update => {
            let current = cluster.get(image.name()).await?;
            let mut next = image.clone();
            next.metadata.resource_version = current.metadata.resource_version;
            Ok((cluster.replace(&next, dry_run).await?, "replaced"))
        }
        Verb::Apply => {
            let before = cluster.get_opt(image.name()).await?;
            let after = cluster.apply(image, dry_run).await?;
            let outcome = match &before {
                None => "created",
                Some(b) if unchanged(b, &after) => "unchanged",
                Some(_) => "configured",
            };
            Ok((after, outcome))
        }
    }
}

/// Same resourceVersion and content: a dry run keeps the old resourceVersion even when it
/// would change something, so the content is compared too.
fn unchanged(before: &AppImage, after: &AppImage) -> bool {
    before.metadata.resource_version == after.metadata.resource_version
        && before.spec == after.spec
        && before.metadata.labels == after.metadata.labels
        && before.metadata.annotations == after.metadata.annotations
}

fn print_objects(images: &[AppImage], format: ObjectOutput) -> Result<()> {
    match format {
        ObjectOutput::Name => {
            for image in images {
                println(&object_name(image.name()))?;
            }
            Ok(())
        }
        ObjectOutput::Yaml => print(&output::to_yaml(&output::objects(images, false)?)?),
        ObjectOutput::Json => print(&output::to_json(&output::objects(images, false)?)?),
    }
}
