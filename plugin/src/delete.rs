//! `delete NAME...` or `delete -f FILE`.

use crate::flags::DryRunArg;
use anyhow::Result;
use clap::ArgGroup;
use clap::Args;

use crate::client::{Cluster, block_on};
use crate::error::{PluginError, report, reported};
use crate::flags::{DryRun, Global};
use crate::input;
use crate::output::{kind_name, println};

#[derive(Args, Debug, Clone)]
#[command(group(ArgGroup::new("what").required(true).args(["names", "filename"])))]
pub struct DeleteArgs {
    /// AppImage names
    #[arg(value_name = "NAME", conflicts_with = "filename")]
    pub names: Vec<String>,
    /// Delete the AppImages named in these files (file, directory or -)
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub filename: Vec<String>,
    /// Treat a missing AppImage as deleted
    #[arg(long)]
    pub ignore_not_found: bool,
    #[command(flatten)]
    pub dry_run: DryRunArg,
}

pub fn run(global: &Global, args: &DeleteArgs) -> Result<()> {
    block_on(delete(global, args))
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
            Err(e) if args.ignore_not_found && PluginError::is_not_found(&e) => {}
            Err(e) => {
                report(&e);
                failed = true;
            }
        }
    }
    if failed { Err(reported()) } else { Ok(()) }
}
