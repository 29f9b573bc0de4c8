use std::process::ExitCode;

use appimage_webhook::{cli::Cli, logging, server};
use clap::Parser;

// Admission is allocation-heavy JSON work: glibc malloc was about a fifth of the CPU.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let _logs = logging::init(cli.log_format);
    match server::run(cli.into_config(), server::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
