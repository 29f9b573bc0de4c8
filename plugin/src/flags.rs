//! What every command shares with kubectl: the connection flags, `--dry-run`, `-f` and the
//! object output formats. Command modules and the command line both read it; it reads neither.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

/// kubectl's connection flags; accepted before or after the subcommand.
#[derive(Args, Debug, Clone, Default)]
pub struct Global {
    /// Path to the kubeconfig file (else $KUBECONFIG, else ~/.kube/config)
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (else its current-context)
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// How long to wait for a server request, e.g. 30s, 1m, 500ms; 0 waits forever
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_timeout)]
    pub request_timeout: Option<Duration>,
    /// Log level, as kubectl's -v: 6 or more prints each API request (method, URL, status
    /// and time) on stderr
    #[arg(
        short = 'v',
        long = "v",
        global = true,
        value_name = "LEVEL",
        default_value_t = 0
    )]
    pub verbosity: u8,
}

/// kubectl's `--dry-run` values.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DryRun {
    #[default]
    None,
    /// Check and print, contacting no server
    Client,
    /// Send with dryRun=All: the server checks and persists nothing
    Server,
}

impl DryRun {
    /// The suffix kubectl prints after a write's outcome.
    pub fn suffix(self) -> &'static str {
        match self {
            DryRun::None => "",
            DryRun::Client => " (dry run)",
            DryRun::Server => " (server dry run)",
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectOutput {
    Name,
    Yaml,
    Json,
}

/// `-o` of commands whose answer is a report, not objects: the report as a document.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocOutput {
    Yaml,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct Files {
    /// A file, a directory (its *.yaml, *.yml and *.json files) or - for stdin; repeatable
    #[arg(short = 'f', long = "filename", value_name = "FILE", required = true)]
    pub filename: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct DryRunArg {
    /// none, client (check only, no server) or server (the server checks, persists nothing)
    #[arg(
        long = "dry-run",
        value_enum,
        default_value = "none",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "client",
        value_name = "MODE"
    )]
    pub dry_run: DryRun,
}

/// kubectl's `--request-timeout`: bare seconds, or Go duration syntax (`1m30s`, `500ms`).
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    appimage::duration::parse(text).map_err(|e| format!("{e}, or 0 to wait forever"))
}
