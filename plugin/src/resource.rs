//! Commands on the cluster: create, apply, update, delete, get, describe, render NAME.

use anyhow::Result;
use appimage::resource::AppImage;

use crate::cli::{
    Command, DeleteArgs, DescribeArgs, DryRun, GetArgs, GetOutput, Global, ObjectOutput,
    RenderArgs, WriteArgs,
};
use crate::client::{Cluster, is_not_found};
use crate::describe;
use crate::error::{Reported, report};
use crate::input;
use crate::offline;
use crate::output::{self, kind_name, object_name, print, println};
use crate::signing;

/// Run a command that needs the cluster.
pub async fn run(global: &Global, command: Command) -> Result<()> {
    match command {
        Command::Create(args) => write(global, Verb::Create, &args).await,
        Command::Apply(args) => write(global, Verb::Apply, &args).await,
        Command::Update(args) => write(global, Verb::Update, &args).await,
        Command::Delete(args) => delete(global, &args).await,
        Command::Get(args) => get(global, &args).await,
        Command::Describe(args) => describe(global, &args).await,
        Command::Render(args) => render(global, &args).await,
        Command::Payload(args) => signing::payload_cluster(global, &args).await,
        Command::Verify(args) => signing::verify_cluster(global, &args).await,
        other => anyhow::bail!("internal: {other:?} does not run against a cluster"),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Verb {
    Create,
    Apply,
    Update,
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
    if failed { Err(Reported.into()) } else { Ok(()) }
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

async fn delete(global: &Global, args: &DeleteArgs) -> Result<()> {
    let names: Vec<String> = if args.filename.is_empty() {
        args.names.clone()
    } else {
        // Only the names matter: an AppImage that no longer validates can still be deleted.
        input::load(&args.filename)?
            .iter()
            .map(|l| l.name().to_string())
            .collect()
    };
    let dry = args.dry_run.dry_run;
    let cluster = match dry {
        DryRun::Client => None,
        _ => Some(Cluster::connect(global).await?),
    };
    let mut failed = false;
    for name in &names {
        let result = match &cluster {
            None => Ok(()),
            Some(c) => c.delete(name, dry == DryRun::Server).await,
        };
        match result {
            Ok(()) => println(&format!("{} {name:?} deleted{}", kind_name(), dry.suffix()))?,
            Err(e) if args.ignore_not_found && is_not_found(&e) => {}
            Err(e) => {
                report(&e);
                failed = true;
            }
        }
    }
    if failed { Err(Reported.into()) } else { Ok(()) }
}

/// The named AppImages (reporting each missing one), or all of them.
pub(crate) async fn fetch(cluster: &Cluster, names: &[String]) -> Result<(Vec<AppImage>, bool)> {
    if names.is_empty() {
        return Ok((cluster.list().await?, false));
    }
    let mut found = Vec::new();
    let mut failed = false;
    for name in names {
        match cluster.get(name).await {
            Ok(image) => found.push(image),
            Err(e) if is_not_found(&e) => {
                report(&e);
                failed = true;
            }
            Err(e) => return Err(e),
        }
    }
    Ok((found, failed))
}

async fn get(global: &Global, args: &GetArgs) -> Result<()> {
    let cluster = Cluster::connect(global).await?;
    let (images, failed) = fetch(&cluster, &args.names).await?;
    // A single name prints the object itself; a listing is always a List, as in kubectl.
    let always_list = args.names.len() != 1;
    match args.output {
        Some(format @ (GetOutput::Yaml | GetOutput::Json)) => {
            // An empty listing is an empty List; names that all failed print nothing.
            if !images.is_empty() || args.names.is_empty() {
                let doc = output::objects(&images, always_list)?;
                print(&if format == GetOutput::Json {
                    output::to_json(&doc)?
                } else {
                    output::to_yaml(&doc)?
                })?;
            }
        }
        _ if images.is_empty() => {
            if !failed {
                crate::error::eprint_line("No resources found");
            }
        }
        Some(GetOutput::Name) => {
            for image in &images {
                println(&object_name(image.name()))?;
            }
        }
        format => print(&output::appimage_table(
            &images,
            format == Some(GetOutput::Wide),
            !args.no_headers,
            output::now(),
        ))?,
    }
    if failed { Err(Reported.into()) } else { Ok(()) }
}

async fn describe(global: &Global, args: &DescribeArgs) -> Result<()> {
    let cluster = Cluster::connect(global).await?;
    let (images, failed) = fetch(&cluster, &args.names).await?;
    if images.is_empty() && !failed {
        crate::error::eprint_line("No resources found");
    }
    let texts: Vec<String> = images.iter().map(describe::describe).collect();
    if !texts.is_empty() {
        print(&texts.join("\n"))?;
    }
    if failed { Err(Reported.into()) } else { Ok(()) }
}

/// `render NAME` without -f: the AppImage comes from the cluster.
async fn render(global: &Global, args: &RenderArgs) -> Result<()> {
    let Some(name) = args.name.as_deref() else {
        anyhow::bail!("render needs an AppImage NAME or -f FILE");
    };
    let cluster = Cluster::connect(global).await?;
    let image = cluster.get(name).await?;
    print(&offline::render(&image, args)?)
}
