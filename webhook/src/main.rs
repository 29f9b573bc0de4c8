use std::process::ExitCode;

use appimage_webhook::cli::{Cli, Command};
use appimage_webhook::{dev, logging, server};
use clap::Parser;

// Admission is allocation-heavy JSON work: glibc malloc was about a fifth of the CPU.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let _logs = logging::init(match &cli.command {
        Some(Command::Dev(args)) => args.log_format,
        None => cli.log_format,
    });
    let result = match cli.command.clone() {
        Some(Command::Dev(args)) => {
            let result = dev::run(args, server::shutdown_signal()).await;
            // `dev` is run by a person at a terminal: the reason goes to stderr, as a CLI's.
            if let Err(e) = &result {
                eprintln!("error: {e:#}");
            }
            result
        }
        None => server::run(cli.into_config(), server::shutdown_signal()).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
