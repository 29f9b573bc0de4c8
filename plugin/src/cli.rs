//! The command line: kubectl's flag names, so the plugin feels like kubectl.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use clap_complete::Shell;

#[derive(Parser, Debug)]
#[command(
    name = "kubectl-appimage",
    bin_name = "kubectl appimage",
    version,
    about = "Manage Kuscia AppImages (kuscia.secretflow/v1alpha1): create, apply, get, describe, validate or render them offline, and sign and verify their images",
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

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
    /// Set an AppImage's image (name, tag, digest), re-signing it with --key in the same write
    SetImage(crate::set_image::SetImageArgs),
    /// Mark AppImages published: their spec may no longer change (label appimage.kuscia.secretflow/stage)
    Publish(StageArgs),
    /// Mark AppImages deprecated: new deployments refuse them, running ones keep running
    Deprecate(DeprecateArgs),
    /// Move AppImages back to draft, where their spec may change again
    Draft(StageArgs),
    /// Print the AppImage CustomResourceDefinition as YAML
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

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GetOutput {
    Yaml,
    Json,
    Name,
    Wide,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RenderOutput {
    #[default]
    Yaml,
    Json,
    /// The Pod, Services and NetworkPolicies as a multi-document YAML stream for kubectl
    Manifests,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionOutput {
    Json,
    Yaml,
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

#[derive(Args, Debug, Clone)]
pub struct WriteArgs {
    #[command(flatten)]
    pub files: Files,
    #[command(flatten)]
    pub dry_run: DryRunArg,
    /// Print the resulting objects instead of a message
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<ObjectOutput>,
}

#[derive(Args, Debug, Clone)]
#[command(group(ArgGroup::new("what").required(true).args(["names", "filename"])))]
pub struct DeleteArgs {
    /// AppImage names
    #[arg(value_name = "NAME", conflicts_with = "filename")]
    pub names: Vec<String>,
    /// Delete the AppImages named in these files (file, directory or -)
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub filename: Vec<String>,
    /// Treat a missing AppImage as deleted
    #[arg(long)]
    pub ignore_not_found: bool,
    #[command(flatten)]
    pub dry_run: DryRunArg,
}

/// `get --sort`: the simple orders.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortOrder {
    /// By name
    Name,
    /// By age, oldest first (as --sort-by=.metadata.creationTimestamp)
    Age,
}

#[derive(Args, Debug, Clone)]
pub struct GetArgs {
    /// AppImage names; all when none are given
    #[arg(value_name = "NAME", conflicts_with_all = ["selector", "search"])]
    pub names: Vec<String>,
    /// Only AppImages whose labels match this selector, e.g. -l team=a,stage!=draft
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Only AppImages whose name, image or roles contain TEXT (any case), best match first
    #[arg(long, value_name = "TEXT")]
    pub search: Option<String>,
    /// List in pages of N AppImages through the API's limit and continue; 0 lists in one request
    #[arg(long, value_name = "N", default_value_t = 500)]
    pub chunk_size: u32,
    /// Sort by name, or by age (oldest first); without it a search lists the best match first
    #[arg(long, value_enum, value_name = "ORDER", conflicts_with = "sort_by")]
    pub sort: Option<SortOrder>,
    /// Sort by a field, as kubectl: a JSONPath such as .metadata.creationTimestamp or {.spec.image.tag}
    #[arg(long, value_name = "JSONPATH")]
    pub sort_by: Option<String>,
    /// yaml, json, name, or wide (adds TEMPLATES and IMAGE-ID)
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<GetOutput>,
    /// Leave out the table's header line
    #[arg(long)]
    pub no_headers: bool,
}

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

#[derive(Args, Debug, Clone)]
pub struct DescribeArgs {
    /// AppImage names; all when none are given
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
}

#[derive(Args, Debug, Clone)]
#[command(group(ArgGroup::new("source").required(true).args(["name", "filename"]).multiple(true)))]
pub struct RenderArgs {
    /// The AppImage: fetched from the cluster, or picked from the -f files
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    /// Read the AppImage from files instead of the cluster (works offline)
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub filename: Vec<String>,
    /// The Pod's role; picks the deploy template as Kuscia does
    #[arg(long, default_value = "")]
    pub role: String,
    /// Only consider deploy templates with this name
    #[arg(long, value_name = "NAME")]
    pub template: Option<String>,
    /// Value of TASK_ID
    #[arg(long, value_name = "ID", default_value = "")]
    pub task_id: String,
    /// Value of TASK_INPUT_CONFIG / INPUT_CONFIG
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub input_config: String,
    /// Use this cluster define verbatim instead of the one built from the Pod's Services
    #[arg(long, value_name = "TEXT")]
    pub cluster_define: Option<String>,
    /// Value of SERVING_ID
    #[arg(long, value_name = "ID", default_value = "")]
    pub serving_id: String,
    /// An extra template value, KEY=VALUE; repeatable, wins over built-in values
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// The Pod's namespace (KUSCIA_DOMAIN_ID)
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// The Pod's name [default: <appimage>-<template>-0]
    #[arg(long, value_name = "NAME")]
    pub pod_name: Option<String>,
    /// Fail when a template references a key that has no value, or when a part of the
    /// AppImage would be left out (a mount of a config file configTemplates lacks, a network
    /// policy rule, role or port that grants nothing)
    #[arg(long)]
    pub strict: bool,
    /// What the Pod may override of the deploy template, as the webhook's --pod-overrides:
    /// all, env (env and resources only) or none; the AppImage's annotation can tighten it
    #[arg(long, default_value = "env", value_name = "all|env|none",
          value_parser = |s: &str| s.parse::<appimage::overrides::PodOverrides>())]
    pub pod_overrides: appimage::overrides::PodOverrides,
    /// yaml or json (a Render document), or manifests (objects for kubectl apply)
    #[arg(short = 'o', long = "output", value_enum, default_value = "yaml")]
    pub output: RenderOutput,
    /// Print only this rendered config file's content
    #[arg(long, value_name = "FILE")]
    pub show_config: Option<String>,
}

/// Signature algorithms `keygen` can generate.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// ECDSA on NIST P-256 with SHA-256 (openssl dgst -sha256 -sign, cosign sign-blob)
    #[default]
    EcdsaP256,
    /// Ed25519 (openssl pkeyutl -sign -rawin)
    Ed25519,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SignOutput {
    #[default]
    Yaml,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct KeygenArgs {
    /// The key type
    #[arg(long, value_enum, default_value = "ecdsa-p256")]
    pub algorithm: Algorithm,
    /// Where to write the private key (PKCS#8 PEM, mode 0600)
    #[arg(long, value_name = "PATH", default_value = "appimage.key")]
    pub private_key: PathBuf,
    /// Where to write the public key (PEM PUBLIC KEY), to give to verifiers
    #[arg(long, value_name = "PATH", default_value = "appimage.pub")]
    pub public_key: PathBuf,
    /// Overwrite existing key files
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug, Clone)]
#[command(group(ArgGroup::new("source").required(true).args(["name", "filename"]).multiple(true)))]
pub struct PayloadArgs {
    /// The AppImage: fetched from the cluster, or picked from the -f files
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    /// Read the AppImage from files instead of the cluster (works offline)
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub filename: Vec<String>,
    /// v2 (the AppImage's name and whole spec, the default) or v1 (the image alone)
    #[arg(long, value_enum, default_value = "v2")]
    pub payload_version: PayloadVersionArg,
}

/// Which signature payload.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadVersionArg {
    V1,
    V2,
}

#[derive(Args, Debug, Clone)]
pub struct SignArgs {
    /// Sign only the AppImage with this name (others are left as they are)
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    #[command(flatten)]
    pub files: Files,
    /// The private key: PEM PKCS#8 (ECDSA P-256 or Ed25519) or SEC1 (ECDSA P-256)
    #[arg(long, value_name = "PRIVATE_KEY")]
    pub key: PathBuf,
    /// yaml (several AppImages as a multi-document stream) or json
    #[arg(short = 'o', long = "output", value_enum, conflicts_with = "in_place")]
    pub output: Option<SignOutput>,
    /// Rewrite the file instead of printing (one regular file; comments are not kept)
    #[arg(long)]
    pub in_place: bool,
    /// Keep the signatures already there and add this key's (k-of-n signing)
    #[arg(long)]
    pub add: bool,
}

#[derive(Args, Debug, Clone)]
#[command(group(ArgGroup::new("source").required(true).args(["names", "filename"])))]
#[command(group(ArgGroup::new("trusted").required(true).args(["key", "keys_dir"]).multiple(true)))]
pub struct VerifyArgs {
    /// AppImage names, fetched from the cluster
    #[arg(value_name = "NAME", conflicts_with = "filename")]
    pub names: Vec<String>,
    /// Verify the AppImages in these files instead (works offline)
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub filename: Vec<String>,
    /// A trusted PEM public key; repeatable
    #[arg(long, value_name = "PUBLIC_KEY")]
    pub key: Vec<PathBuf>,
    /// Also trust every *.pem and *.pub public key in this directory (and apply its
    /// keys-policy.yaml: validity windows and revocations)
    #[arg(long, value_name = "DIR")]
    pub keys_dir: Option<PathBuf>,
    /// Also accept signatures over payload v1 (the image alone), as the webhook's flag does
    #[arg(long)]
    pub accept_payload_v1: bool,
    /// Distinct trusted keys that must have signed (as the webhook's --publish-signatures)
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub min_signatures: u16,
}

#[derive(Args, Debug, Clone)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub files: Files,
}

#[derive(Args, Debug, Clone)]
pub struct VersionArgs {
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<VersionOutput>,
}

/// kubectl's `--request-timeout`: bare seconds, or Go duration syntax (`1m30s`, `500ms`).
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    appimage::duration::parse(text).map_err(|e| format!("{e}, or 0 to wait forever"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

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
