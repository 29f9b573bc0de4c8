//! `crd` and `version`: fixed text, no input and no cluster.

use anyhow::Result;
use clap::Args;
use clap::ValueEnum;

use crate::output::{print, println, to_json, to_yaml};

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionOutput {
    Json,
    Yaml,
}

#[derive(Args, Debug, Clone)]
pub struct VersionArgs {
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<VersionOutput>,
}

pub fn crd() -> Result<()> {
    println(&appimage::resource::crd_yaml())
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
