//! `crd`, `completion` and `version`: fixed text, no input and no cluster.

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::{Cli, VersionArgs, VersionOutput};
use crate::output::{print, println, to_json, to_yaml};

pub fn crd() -> Result<()> {
    println(&appimage::resource::crd_yaml())
}

pub fn completion(shell: Shell) -> Result<()> {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "kubectl-appimage", &mut buf);
    print(&String::from_utf8(buf).context("completion script is not UTF-8")?)
}

pub fn version_text() -> String {
    format!("v{}", env!("CARGO_PKG_VERSION"))
}

pub fn version(args: &VersionArgs) -> Result<()> {
    let info = serde_json::json!({"name": "kubectl-appimage", "version": version_text()});
    match args.output {
        None => println(&format!("kubectl-appimage version {}", version_text())),
        Some(VersionOutput::Json) => print(&to_json(&info)?),
        Some(VersionOutput::Yaml) => print(&to_yaml(&info)?),
    }
}
