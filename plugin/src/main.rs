//! `kubectl appimage`: a kubectl plugin for Kuscia AppImages. One module per command; each
//! runs its file (`-f`) and cluster variants side by side.

mod batch;
mod cli;
mod client;
mod complete;
mod delete;
mod deploy;
mod describe;
mod diff;
mod error;
mod flags;
mod get;
mod history;
mod info;
mod input;
mod keyfile;
mod keygen;
mod keys;
mod output;
mod payload;
mod printer;
mod render;
mod rollback;
mod rollout;
mod set_image;
mod sign;
mod stage;
mod status;
mod validate;
mod verify;
mod waves;
mod write;

use std::process::ExitCode;

use anyhow::Result;
use appimage::stage::Stage;
use clap::Parser;

use cli::{Cli, Command};
use write::Verb;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage(&e),
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error::report(&e);
            ExitCode::from(error::exit_code(&e))
        }
    }
}

/// clap's answer for `--help`, `--version` or a usage error. kubectl exits 1 on a usage
/// error (clap's default is 2), and 0 after printing help or the version.
fn usage(e: &clap::Error) -> ExitCode {
    let _ = e.print();
    if e.use_stderr() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn run(cli: Cli) -> Result<()> {
    let global = &cli.global;
    match cli.command {
        Command::Create(args) => write::run(global, Verb::Create, &args),
        Command::Apply(args) => write::run(global, Verb::Apply, &args),
        Command::Update(args) => write::run(global, Verb::Update, &args),
        Command::Delete(args) => delete::run(global, &args),
        Command::Get(args) => get::run(global, &args),
        Command::Describe(args) => describe::run(global, &args),
        Command::Render(args) => render::run(global, &args),
        Command::Validate(args) => validate::run(&args),
        Command::Keygen(args) => keygen::run(&args),
        Command::Payload(args) => payload::run(global, &args),
        Command::Sign(args) => sign::run(&args),
        Command::Verify(args) => verify::run(global, &args),
        Command::Keys(args) => keys::run(global, &args),
        Command::Deploy(args) => deploy::run(global, *args),
        Command::History(args) => history::run(global, &args),
        Command::Diff(args) => diff::run(global, &args),
        Command::Rollback(args) => rollback::run(global, &args),
        Command::Rollout(args) => rollout::run(global, &args),
        Command::Status(args) => status::run(global, &args),
        Command::SetImage(args) => set_image::run(global, &args),
        Command::Batch(args) => batch::run(global, args),
        Command::Publish(args) => stage::run(global, Stage::Published, &args, None),
        Command::Deprecate(args) => stage::run(
            global,
            Stage::Deprecated,
            &args.stage,
            args.replaced_by.as_deref(),
        ),
        Command::Draft(args) => stage::run(global, Stage::Draft, &args, None),
        Command::Crd => info::crd(),
        Command::Completion { shell } => complete::completion(shell),
        Command::Version(args) => info::version(&args),
        Command::Complete { words } => complete::run(&words),
    }
}
