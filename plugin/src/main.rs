//! `kubectl appimage`: a kubectl plugin for Kuscia AppImages.

mod cli;
mod client;
mod describe;
mod error;
mod input;
mod offline;
mod output;
mod resource;
mod signing;

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error::report(&e);
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Validate(args) => offline::validate(&args),
        Command::Crd => offline::crd(),
        Command::Completion { shell } => offline::completion(shell),
        Command::Version(args) => offline::version(&args),
        // With -f, render never builds a client.
        Command::Render(args) if !args.filename.is_empty() => offline::render_files(&args),
        Command::Keygen(args) => signing::keygen(&args),
        Command::Sign(args) => signing::sign(&args),
        // With -f, payload and verify never build a client either.
        Command::Payload(args) if !args.filename.is_empty() => signing::payload_files(&args),
        Command::Verify(args) if !args.filename.is_empty() => signing::verify_files(&args),
        command => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(resource::run(&cli.global, command))
        }
    }
}
