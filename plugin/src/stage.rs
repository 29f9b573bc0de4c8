//! `publish`, `deprecate` and `draft NAME...`: set an AppImage's lifecycle stage, the label
//! `appimage.kuscia.secretflow/stage`. The webhook enforces what each stage means.

use crate::flags::DryRunArg;
use anyhow::Result;
use appimage::labels;
use appimage::resource::AppImage;
use appimage::stage::Stage;
use clap::Args;
use serde_json::{Value, json};

use crate::client::{Cluster, block_on};
use crate::error::{report, reported};
use crate::flags::{DryRun, Global};
use crate::output::{object_name, println};

#[derive(Args, Debug, Clone)]
pub struct StageArgs {
    /// AppImage names
    #[arg(value_name = "NAME", required = true)]
    pub names: Vec<String>,
    #[command(flatten)]
    pub dry_run: DryRunArg,
}

#[derive(Args, Debug, Clone)]
pub struct DeprecateArgs {
    #[command(flatten)]
    pub stage: StageArgs,
    /// The AppImage to use instead; admission warnings for Pods of this one name it
    #[arg(long, value_name = "NAME")]
    pub replaced_by: Option<String>,
}

/// Move each AppImage to `stage`, going on after a failure as kubectl does.
pub fn run(
    global: &Global,
    stage: Stage,
    args: &StageArgs,
    replaced_by: Option<&str>,
) -> Result<()> {
    let replaced_by = replaced_by.map(str::trim).filter(|r| !r.is_empty());
    let dry = args.dry_run.dry_run;
    if dry == DryRun::Client {
        for name in &args.names {
            println(&format!("{} {stage}{}", object_name(name), dry.suffix()))?;
        }
        return Ok(());
    }
    block_on(async {
        let cluster = Cluster::connect(global).await?;
        if let Some(replacement) = replaced_by {
            check_replacement(&cluster, replacement).await?;
        }
        let mut failed = false;
        for name in &args.names {
            let result = move_one(&cluster, name, stage, replaced_by, dry == DryRun::Server);
            match result.await {
                Ok(outcome) => {
                    println(&format!("{} {outcome}{}", object_name(name), dry.suffix()))?
                }
                Err(e) => {
                    report(&e);
                    failed = true;
                }
            }
        }
        if failed { Err(reported()) } else { Ok(()) }
    })
}

/// A replacement must exist: users are sent to it by every deprecation warning.
async fn check_replacement(cluster: &Cluster, replacement: &str) -> Result<()> {
    if cluster.get_opt(replacement).await?.is_none() {
        anyhow::bail!(
            "--replaced-by {replacement:?}: no AppImage of that name exists; create it first (kubectl appimage apply -f FILE) or name one that does (kubectl appimage get)"
        );
    }
    Ok(())
}

/// Patch the label (and the replacement) unless they are already so; the outcome to print.
async fn move_one(
    cluster: &Cluster,
    name: &str,
    stage: Stage,
    replaced_by: Option<&str>,
    dry_run: bool,
) -> Result<String> {
    let current = cluster.get(name).await?;
    let Some(patch) = metadata_patch(&current, stage, replaced_by) else {
        return Ok(format!("unchanged ({stage})"));
    };
    cluster.patch_metadata(name, patch, dry_run).await?;
    Ok(stage.to_string())
}

/// The metadata merge patch that moves `image` to `stage`, or `None` when it is there already.
/// The replacement belongs to a deprecated AppImage only: other stages remove it.
fn metadata_patch(image: &AppImage, stage: Stage, replaced_by: Option<&str>) -> Option<Value> {
    let label = image
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(labels::STAGE));
    let replacement = Stage::replaced_by(image);
    let want = match stage {
        Stage::Deprecated => replaced_by.or(replacement),
        _ => None,
    };
    if label.map(String::as_str) == Some(stage.as_str()) && replacement == want {
        return None;
    }
    let mut patch = json!({"labels": {labels::STAGE: stage.as_str()}});
    let has_annotation = image
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(labels::REPLACED_BY));
    if want != replacement || (want.is_none() && has_annotation) {
        patch["annotations"] = json!({ labels::REPLACED_BY: want });
    }
    Some(patch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(labels: Value, annotations: Value) -> AppImage {
        serde_json::from_value(json!({
            "apiVersion": "kuscia.secretflow/v1alpha1",
            "kind": "AppImage",
            "metadata": {"name": "a", "labels": labels, "annotations": annotations},
            "spec": {"image": {"name": "x", "tag": "1"}, "deployTemplates": []}
        }))
        .unwrap()
    }

    #[test]
    fn patches_only_what_changes() {
        let fresh = image(json!({}), json!({}));
        assert_eq!(
            metadata_patch(&fresh, Stage::Published, None),
            Some(json!({"labels": {labels::STAGE: "published"}}))
        );
        // No label is a draft, but `draft` writes the label so a selector finds it.
        assert_eq!(
            metadata_patch(&fresh, Stage::Draft, None),
            Some(json!({"labels": {labels::STAGE: "draft"}}))
        );
        let published = image(json!({labels::STAGE: "published"}), json!({}));
        assert_eq!(metadata_patch(&published, Stage::Published, None), None);
    }

    #[test]
    fn the_replacement_comes_with_deprecation_and_goes_with_it() {
        let fresh = image(json!({}), json!({}));
        assert_eq!(
            metadata_patch(&fresh, Stage::Deprecated, Some("b")),
            Some(json!({
                "labels": {labels::STAGE: "deprecated"},
                "annotations": {labels::REPLACED_BY: "b"}
            }))
        );
        let deprecated = image(
            json!({labels::STAGE: "deprecated"}),
            json!({labels::REPLACED_BY: "b"}),
        );
        // Deprecating again keeps the replacement; naming another replaces it.
        assert_eq!(metadata_patch(&deprecated, Stage::Deprecated, None), None);
        assert_eq!(
            metadata_patch(&deprecated, Stage::Deprecated, Some("c")),
            Some(json!({
                "labels": {labels::STAGE: "deprecated"},
                "annotations": {labels::REPLACED_BY: "c"}
            }))
        );
        assert_eq!(
            metadata_patch(&deprecated, Stage::Published, None),
            Some(json!({
                "labels": {labels::STAGE: "published"},
                "annotations": {labels::REPLACED_BY: null}
            }))
        );
    }
}
