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

/// Every CRD the plugin and the webhook use, as one YAML stream for `kubectl apply -f -`:
/// AppImages, their revisions, BatchDeployments and rollout policies.
pub fn crd() -> Result<()> {
    let docs = [
        appimage::resource::crd_yaml(),
        appimage::revision::crd_yaml(),
        appimage::batch::crd_yaml(),
        appimage::progressive::crd_yaml(),
    ];
    let text: Vec<&str> = docs.iter().map(|d| d.trim_end()).collect();
    println(&text.join("\n---\n"))
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
