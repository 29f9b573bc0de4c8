//! The command line: kubectl's flag names, so the plugin feels like kubectl.

use clap::{Parser, Subcommand};
use clap_complete::Shell;

use crate::delete::DeleteArgs;
use crate::describe::DescribeArgs;
use crate::flags::Global;
use crate::get::GetArgs;
use crate::info::VersionArgs;
use crate::keygen::KeygenArgs;
use crate::payload::PayloadArgs;
use crate::render::RenderArgs;
use crate::sign::SignArgs;
use crate::stage::{DeprecateArgs, StageArgs};
use crate::validate::ValidateArgs;
use crate::verify::VerifyArgs;
use crate::write::WriteArgs;

#[derive(Parser, Debug)]
#[command(
    name = "kubectl-appimage",
    bin_name = "kubectl appimage",
    version,
    about = "Manage Kuscia AppImages (kuscia.secretflow/v1alpha1): create, apply, get, describe, validate or render them offline, sign and verify them, deploy them as workloads or in batches to many nodes, and roll their revisions out and back",
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create AppImages from files; fails if one already exists
    Create(WriteArgs),
    /// Create or update AppImages from files (server-side apply, forcing conflicts)
    Apply(WriteArgs),
    /// Replace existing AppImages from files; fails if one does not exist
    #[command(visible_alias = "replace")]
    Update(WriteArgs),
    /// Delete AppImages by name or by the names in files
    Delete(DeleteArgs),
    /// List AppImages, or show some by name
    Get(GetArgs),
    /// Show AppImages in detail: image, config files, templates, containers and ports
    Describe(DescribeArgs),
    /// Show what the admission webhook would inject into a Pod, without a cluster when given -f
    Render(Box<RenderArgs>),
    /// Check AppImage files offline: schema, cross-references and config templates
    Validate(ValidateArgs),
    /// Generate a key pair for signing images: a private PKCS#8 PEM key and its public key
    Keygen(KeygenArgs),
    /// Print the exact bytes that an image signature covers (no trailing newline)
    Payload(PayloadArgs),
    /// Fill spec.image.sign of AppImage files with a private key (offline)
    Sign(SignArgs),
    /// Check spec.image.sign of AppImages against trusted public keys
    Verify(VerifyArgs),
    /// Trusted keys: plan-rotation lists what removing or revoking a key would break
    Keys(crate::keys::KeysArgs),
    /// Deploy an AppImage to many nodes as a job (BatchDeployment): create, get, describe,
    /// stop, continue, retry, delete
    Batch(crate::batch::BatchArgs),
    /// Run an AppImage as a Deployment, StatefulSet, DaemonSet, Job or CronJob (server-side apply)
    Deploy(Box<crate::deploy::DeployArgs>),
    /// List an AppImage's revisions: number, hash, age, change cause, and what runs each
    History(crate::history::HistoryArgs),
    /// Compare two revisions of an AppImage (or one with its current spec) as a unified diff
    Diff(crate::diff::DiffArgs),
    /// Restore the spec of an earlier revision onto an AppImage; Auto workloads follow
    Rollback(crate::rollback::RollbackArgs),
    /// Move an AppImage's workloads (Manual ones too) to its current revision
    Rollout(crate::rollout::RolloutArgs),
    /// Show where an AppImage runs: each workload and bare Pod, its revision, counts, and
    /// whether it is outdated or stopped
    Status(crate::status::StatusArgs),
    /// Set an AppImage's image (name, tag, image ID), re-signing it with --key in the same write
    SetImage(crate::set_image::SetImageArgs),
    /// Mark AppImages published: their spec may no longer change (label appimage.kuscia.secretflow/stage)
    Publish(StageArgs),
    /// Mark AppImages deprecated: new deployments refuse them, running ones keep running
    Deprecate(DeprecateArgs),
    /// Move AppImages back to draft, where their spec may change again
    Draft(StageArgs),
    /// Print the CustomResourceDefinitions (AppImage, AppImageRevision, BatchDeployment, AppImageRollout) as YAML
    Crd,
    /// Print a shell completion script
    Completion {
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the plugin's version
    Version(VersionArgs),
    /// What kubectl_complete-appimage answers kubectl 1.26+ for `kubectl appimage <TAB>`
    #[command(name = "__complete", hide = true)]
    Complete {
        /// The words after `appimage`; the last is the one being completed
        #[arg(raw = true)]
        words: Vec<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::{DryRun, parse_timeout};
    use clap::CommandFactory;
    use std::time::Duration;

    #[test]
    fn clap_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn timeouts_use_kubectl_syntax() {
        assert_eq!(parse_timeout("0"), Ok(Duration::ZERO));
        assert_eq!(parse_timeout("1m30s"), Ok(Duration::from_secs(90)));
        let err = parse_timeout("10x").unwrap_err();
        assert!(
            err.contains("e.g. 30s") && err.ends_with("or 0 to wait forever"),
            "{err}"
        );
    }

    #[test]
    fn global_flags_go_before_or_after_the_subcommand() {
        let a = Cli::try_parse_from(["x", "--context", "c", "get"]).unwrap();
        let b = Cli::try_parse_from(["x", "get", "--context", "c"]).unwrap();
        assert_eq!(a.global.context.as_deref(), Some("c"));
        assert_eq!(b.global.context.as_deref(), Some("c"));
    }

    #[test]
    fn dry_run_alone_means_client_and_does_not_eat_names() {
        let cli = Cli::try_parse_from(["x", "delete", "--dry-run", "a"]).unwrap();
        let Command::Delete(d) = cli.command else {
            panic!("not delete")
        };
        assert_eq!(d.dry_run.dry_run, DryRun::Client);
        assert_eq!(d.names, ["a"]);
        let cli = Cli::try_parse_from(["x", "create", "-f", "a.yaml", "--dry-run=server"]).unwrap();
        let Command::Create(c) = cli.command else {
            panic!("not create")
        };
        assert_eq!(c.dry_run.dry_run, DryRun::Server);
    }
}
