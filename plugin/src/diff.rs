//! `kubectl appimage diff APPIMAGE --revision A [--revision B]`: a unified diff of two revisions'
//! specs as YAML (B: the AppImage's current spec). As `kubectl diff`: exit 0 when they are
//! the same, 1 when they differ, 2 on an error.

use anyhow::{Result, bail};
use appimage::revision::AppImageRevision;
use clap::Args;
use similar::TextDiff;

use crate::client::{Cluster, block_on, server_error};
use crate::error::PluginError;
use crate::flags::{DocOutput, Global};
use crate::output::{print, to_json, to_yaml};

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// The AppImage
    pub name: String,
    /// A revision number (kubectl appimage history lists them); give it twice to compare two
    /// revisions, once to compare one with the current spec
    #[arg(long = "revision", value_name = "N", required = true, num_args = 1)]
    pub revisions: Vec<i64>,
    /// yaml or json: both sides, whether they differ and the diff, as a document
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<DocOutput>,
}

pub fn run(global: &Global, args: &DiffArgs) -> Result<()> {
    match differ(global, args) {
        Ok(false) => Ok(()),
        Ok(true) => Err(PluginError::Exit(1).into()),
        Err(e) => Err(PluginError::Code(2, e).into()),
    }
}

/// Print the diff; true when the two differ.
fn differ(global: &Global, args: &DiffArgs) -> Result<bool> {
    if args.revisions.len() > 2 {
        bail!(
            "--revision: give at most two revisions (A and B), got {}",
            args.revisions.len()
        );
    }
    block_on(async {
        let cluster = Cluster::connect(global).await?;
        let current = cluster.get(&args.name).await?;
        let (client, server, context) = cluster.parts();
        let revs = crate::history::revisions(&client, &args.name)
            .await
            .map_err(|e| server_error(e, server, context))?;
        let find = |n: i64| -> Result<&AppImageRevision> {
            revs.iter().find(|r| r.spec.revision == n).ok_or_else(|| {
                let have: Vec<String> = revs.iter().map(|r| r.spec.revision.to_string()).collect();
                anyhow::anyhow!(
                    "--revision {n}: AppImage {:?} has no revision {n} (it has: {})",
                    args.name,
                    if have.is_empty() {
                        "none".into()
                    } else {
                        have.join(", ")
                    }
                )
            })
        };
        let a = find(args.revisions[0])?;
        let (b_label, b_yaml) = match args.revisions.get(1) {
            Some(n) => (format!("revision {n}"), to_yaml(&find(*n)?.spec.template)?),
            None => ("current".to_string(), to_yaml(&current.spec)?),
        };
        let a_label = format!("revision {}", a.spec.revision);
        let a_yaml = to_yaml(&a.spec.template)?;
        let differ = a_yaml != b_yaml;
        let text = TextDiff::from_lines(&a_yaml, &b_yaml)
            .unified_diff()
            .header(
                &format!("{}/{a_label}", args.name),
                &format!("{}/{b_label}", args.name),
            )
            .to_string();
        if let Some(format) = args.output {
            let side = |label: &str, yaml: &str| -> Result<serde_json::Value> {
                let spec: serde_json::Value = serde_yaml_ng::from_str(yaml)?;
                Ok(serde_json::json!({"label": label, "spec": spec}))
            };
            let doc = serde_json::json!({
                "appImage": args.name, "differ": differ, "diff": text,
                "from": side(&a_label, &a_yaml)?, "to": side(&b_label, &b_yaml)?,
            });
            print(&match format {
                DocOutput::Yaml => to_yaml(&doc)?,
                DocOutput::Json => to_json(&doc)?,
            })?;
        } else if differ {
            print(&text)?;
        }
        Ok(differ)
    })
}
