//! `batch create`: the object built from the flags and checked as the controller checks it.

use super::get::shown;
use super::*;
use crate::client::{Cluster, MANAGER, server_error};
use crate::flags::{DryRun, DryRunArg, ObjectOutput};
use crate::output::{print, println, to_json, to_yaml};
use anyhow::{Context, Result, anyhow, bail};
use appimage::batch::machine::spec_error;
use appimage::batch::{
    BatchDeployment, BatchDeploymentSpec, Mode, Override, PrePull, RestartPolicy,
};
use clap::{ArgGroup, Args, ValueEnum};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ListParams, PostParams};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// IEF's 总是重启 / 失败时重启 / 不重启.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyArg {
    #[value(name = "Always")]
    Always,
    #[value(name = "OnFailure")]
    OnFailure,
    #[value(name = "Never")]
    Never,
}

/// `spec.mode`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModeArg {
    #[value(name = "Once")]
    Once,
    #[value(name = "Continuous")]
    Continuous,
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("targets").required(true).multiple(true).args(["node_selector", "nodes"])))]
pub struct CreateArgs {
    /// The BatchDeployment's name
    #[arg(value_name = "NAME")]
    pub name: String,
    /// The AppImage to deploy
    #[arg(long = "appimage", value_name = "APPIMAGE")]
    pub app_image: String,
    /// Run this revision of the AppImage [default: its current spec]
    #[arg(long, value_name = "N")]
    pub revision: Option<i64>,
    /// Nodes whose labels match, K=V[,K=V…]; with --nodes, the union is chosen
    #[arg(long, value_name = "K=V,...")]
    pub node_selector: Option<String>,
    /// Nodes by name, comma-separated
    #[arg(long, value_name = "NODE,...", value_delimiter = ',')]
    pub nodes: Vec<String>,
    /// Pods per node [default: 1]
    #[arg(long, value_name = "N")]
    pub instances: Option<i32>,
    /// Workloads are named PREFIX-NODE [default: NAME]
    #[arg(long, value_name = "PREFIX")]
    pub name_prefix: Option<String>,
    /// Always: Pods must become Ready; OnFailure or Never: Pods must succeed [default: Always]
    #[arg(long, value_enum, ignore_case = true, value_name = "POLICY")]
    pub restart_policy: Option<PolicyArg>,
    /// Longest time queued plus running, e.g. 10m, 90s; 0 for none [default: 10m]
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Nodes in flight at once [default: all]
    #[arg(long, value_name = "N")]
    pub parallelism: Option<i32>,
    /// Failed nodes that still count as partial success: N or P% [default: any short of all]
    #[arg(long, value_name = "N|P%")]
    pub failure_tolerance: Option<String>,
    /// Automatic reruns of a node whose workload failed [default: 0]
    #[arg(long, value_name = "N")]
    pub retries: Option<i32>,
    /// Wait before a node's first automatic rerun, doubled for each next one (at most 5m)
    /// [default: 10s]
    #[arg(long, value_name = "DURATION")]
    pub retry_backoff: Option<String>,
    /// The role that chooses the deploy template
    #[arg(long)]
    pub role: Option<String>,
    /// Only consider deploy templates with this name
    #[arg(long, value_name = "NAME")]
    pub template: Option<String>,
    /// Value of TASK_ID
    #[arg(long, value_name = "ID")]
    pub task_id: Option<String>,
    /// Value of TASK_INPUT_CONFIG / INPUT_CONFIG
    #[arg(long, value_name = "TEXT")]
    pub input_config: Option<String>,
    /// Value of SERVING_ID
    #[arg(long, value_name = "ID")]
    pub serving_id: Option<String>,
    /// An extra template value, KEY=VALUE; repeatable
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Share the node's PID namespace
    #[arg(long = "host-pid")]
    pub host_pid: bool,
    /// Use the node's network
    #[arg(long)]
    pub host_network: bool,
    /// A PodTemplateSpec fragment (YAML or JSON) each node's Pods start from
    #[arg(long, value_name = "FILE")]
    pub pod_template: Option<PathBuf>,
    /// Per-group overrides (YAML or JSON): a list of {nodeSelector, replicas, env, resources,
    /// tolerations, set}, applied in order, the last match winning
    #[arg(long, value_name = "FILE")]
    pub overrides: Option<PathBuf>,
    /// Once: nodes chosen at start, the job ends; Continuous: nodes join and leave as they
    /// come to match the selector or stop matching [default: Once]
    #[arg(long, value_enum, ignore_case = true, value_name = "MODE")]
    pub mode: Option<ModeArg>,
    /// Continuous: how long a node that stops matching keeps the app [default: 5m]
    #[arg(long, value_name = "DURATION")]
    pub leave_grace: Option<String>,
    /// Pull the AppImage's image on every chosen node before any Pod of the app is created
    /// (phase PrePulling); nodes whose pull fails are not deployed to
    #[arg(long)]
    pub pre_pull: bool,
    /// Nodes pulling at once; implies --pre-pull [default: all]
    #[arg(long, value_name = "N")]
    pub pre_pull_concurrency: Option<i32>,
    /// Longest pull on one node, e.g. 2m, 90s; implies --pre-pull [default: 5m]
    #[arg(long, value_name = "DURATION")]
    pub pre_pull_timeout: Option<String>,
    /// Failed pulls that still let the job deploy to the other nodes: N or P% of the chosen
    /// nodes; more fail the job before any Pod is created; implies --pre-pull [default: 0]
    #[arg(long, value_name = "N|P%")]
    pub pre_pull_failure_tolerance: Option<String>,
    /// Create the job stopped; `batch continue` starts it
    #[arg(long)]
    pub suspend: bool,
    /// The namespace [default: the context's, else default]
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Create it even when the AppImage is deprecated
    #[arg(long)]
    pub allow_deprecated: bool,
    #[command(flatten)]
    pub dry_run: DryRunArg,
    /// Print the object instead of a message
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<ObjectOutput>,
}

/// The object `create` sends, checked with the controller's own spec rules.
pub(super) fn build(c: &CreateArgs, namespace: &str) -> Result<BatchDeployment> {
    if let Some(e) = appimage::naming::dns1123_subdomain_error(&c.name) {
        bail!("BatchDeployment name {:?} {e}", c.name);
    }
    let spec = BatchDeploymentSpec {
        app_image: c.app_image.clone(),
        revision: c.revision,
        role: c.role.clone(),
        template: c.template.clone(),
        task_id: c.task_id.clone(),
        input_config: c.input_config.clone(),
        serving_id: c.serving_id.clone(),
        values: key_values(&c.set, "--set")?,
        node_selector: match &c.node_selector {
            Some(text) => node_selector(text)?,
            None => BTreeMap::new(),
        },
        node_names: c
            .nodes
            .iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect(),
        name_prefix: c.name_prefix.clone(),
        instances: c.instances,
        restart_policy: c.restart_policy.map(|p| match p {
            PolicyArg::Always => RestartPolicy::Always,
            PolicyArg::OnFailure => RestartPolicy::OnFailure,
            PolicyArg::Never => RestartPolicy::Never,
        }),
        host_pid: c.host_pid.then_some(true),
        host_network: c.host_network.then_some(true),
        pod_template: c.pod_template.as_deref().map(pod_template).transpose()?,
        parallelism: c.parallelism,
        failure_tolerance: c.failure_tolerance.as_deref().map(tolerance),
        timeout: c.timeout.clone(),
        suspend: c.suspend.then_some(true),
        retry_generation: None,
        retries: c.retries,
        retry_backoff: c.retry_backoff.clone(),
        overrides: c
            .overrides
            .as_deref()
            .map(overrides)
            .transpose()?
            .unwrap_or_default(),
        mode: c.mode.map(|m| match m {
            ModeArg::Once => Mode::Once,
            ModeArg::Continuous => Mode::Continuous,
        }),
        leave_grace: c.leave_grace.clone(),
        pre_pull: pre_pull(c),
    };
    let prefix = c.name_prefix.as_deref().unwrap_or(&c.name);
    if let Some(e) = spec_error(&spec, prefix) {
        bail!(
            "{e} (flags: --appimage, --node-selector, --nodes, --instances, --parallelism, --name-prefix, --timeout, --failure-tolerance, --retries, --retry-backoff, --overrides, --mode, --leave-grace, --pre-pull-concurrency, --pre-pull-timeout, --pre-pull-failure-tolerance)"
        );
    }
    let mut bd = BatchDeployment::new(&c.name, spec);
    bd.metadata.namespace = Some(namespace.to_string());
    Ok(bd)
}

/// `spec.prePull` from `--pre-pull` and its settings (any of which asks for it).
fn pre_pull(c: &CreateArgs) -> Option<PrePull> {
    let asked = c.pre_pull
        || c.pre_pull_concurrency.is_some()
        || c.pre_pull_timeout.is_some()
        || c.pre_pull_failure_tolerance.is_some();
    asked.then(|| PrePull {
        concurrency: c.pre_pull_concurrency,
        timeout: c.pre_pull_timeout.clone(),
        failure_tolerance: c.pre_pull_failure_tolerance.as_deref().map(tolerance),
    })
}

/// `k=v,k2=v2` (kubectl's form); an empty selector is refused, never "every node".
pub(super) fn node_selector(text: &str) -> Result<BTreeMap<String, String>> {
    let pairs: Vec<String> = text.split(',').map(|p| p.trim().to_string()).collect();
    let map = key_values(&pairs, "--node-selector")?;
    if map.is_empty() {
        bail!("--node-selector is empty; give K=V pairs such as --node-selector pool=edge");
    }
    Ok(map)
}

pub(super) fn key_values(pairs: &[String], flag: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for pair in pairs {
        match pair.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                out.insert(k.trim().to_string(), v.to_string());
            }
            _ => bail!("{flag} {pair:?} is not KEY=VALUE; write it as e.g. {flag} pool=edge"),
        }
    }
    Ok(out)
}

/// A count (`3`) or a percentage (`10%`); the core checks the range.
pub(super) fn tolerance(text: &str) -> IntOrString {
    match text.trim().parse::<i32>() {
        Ok(n) => IntOrString::Int(n),
        Err(_) => IntOrString::String(text.trim().to_string()),
    }
}

pub(super) fn pod_template(path: &std::path::Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --pod-template {}", path.display()))?;
    let value: serde_json::Value = serde_yaml_ng::from_str(&text)
        .map_err(|e| anyhow!("--pod-template {} is not YAML or JSON: {e}", path.display()))?;
    if !value.is_object() {
        bail!(
            "--pod-template {} must hold a PodTemplateSpec fragment (a mapping with metadata and/or spec)",
            path.display()
        );
    }
    Ok(value)
}

/// `--overrides FILE`: the list `spec.overrides` takes.
pub(super) fn overrides(path: &std::path::Path) -> Result<Vec<Override>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --overrides {}", path.display()))?;
    serde_yaml_ng::from_str(&text).map_err(|e| {
        anyhow!(
            "--overrides {} is not a list of overrides ({{nodeSelector, replicas, env, resources, tolerations, set}}): {e}",
            path.display()
        )
    })
}

pub(super) async fn create(cluster: &Cluster, jobs: &Jobs, c: &CreateArgs) -> Result<()> {
    let namespace = jobs.namespace(c.namespace.as_deref()).to_string();
    let bd = build(c, &namespace)?;
    check_refs(cluster, jobs, c, &bd.spec.node_names).await?;
    let params = PostParams {
        dry_run: c.dry_run.dry_run == DryRun::Server,
        field_manager: Some(MANAGER.into()),
    };
    let api = jobs.api(Some(&namespace));
    let made = api.create(&params, &bd).await.map_err(|e| jobs.error(e))?;
    created(c, &made)
}

/// What `deploy` refuses, refused before anything is written, each with the flag to fix: an
/// AppImage that does not exist or is deprecated, a revision it does not have, a node that
/// does not exist.
pub(super) async fn check_refs(
    cluster: &Cluster,
    jobs: &Jobs,
    c: &CreateArgs,
    nodes: &[String],
) -> Result<()> {
    let Some(image) = cluster.get_opt(&c.app_image).await? else {
        bail!(
            "--appimage {0}: AppImage {0:?} not found; kubectl appimage get lists them, kubectl appimage apply -f FILE creates one",
            c.app_image
        );
    };
    // A deprecated AppImage is for what already runs, not for new jobs (issue 19).
    appimage::stage::check_new_use(&image, c.allow_deprecated).map_err(anyhow::Error::msg)?;
    if let Some(n) = c.revision {
        check_revision(jobs, &c.app_image, n).await?;
    }
    if nodes.is_empty() {
        return Ok(());
    }
    let api: Api<Node> = Api::all(jobs.client.clone());
    let known = match api.list_metadata(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(kube::Error::Api(s)) if s.code == 403 => {
            crate::error::eprint_line(&format!(
                "Warning: cannot list nodes to check --nodes ({}); a node that does not exist fails the job later",
                s.message
            ));
            return Ok(());
        }
        Err(e) => return Err(server_error(e, &jobs.server, &jobs.context)),
    };
    let missing: Vec<&str> = nodes
        .iter()
        .filter(|n| !known.iter().any(|k| k.metadata.name.as_ref() == Some(*n)))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        bail!(
            "--nodes: no node named {}; kubectl get nodes lists them",
            missing.join(", ")
        );
    }
    Ok(())
}

/// `--revision N` must name one of the AppImage's AppImageRevisions.
pub(super) async fn check_revision(jobs: &Jobs, app_image: &str, n: i64) -> Result<()> {
    let revs = match crate::history::revisions(&jobs.client, app_image).await {
        Ok(revs) => revs,
        Err(kube::Error::Api(s)) if s.code == 404 => bail!(
            "--revision {n}: the server {} doesn't have a resource type \"appimagerevisions\" to look it up in; install the webhook's CRDs (charts/appimage-webhook/crds)",
            jobs.server
        ),
        Err(e) => return Err(server_error(e, &jobs.server, &jobs.context)),
    };
    if revs.iter().any(|r| r.spec.revision == n) {
        return Ok(());
    }
    let have: Vec<String> = revs.iter().map(|r| r.spec.revision.to_string()).collect();
    bail!(
        "--revision {n}: AppImage {app_image:?} has no revision {n} (it has: {}); kubectl appimage history {app_image} lists them",
        if have.is_empty() {
            "none".into()
        } else {
            have.join(", ")
        }
    )
}

pub(super) fn created(c: &CreateArgs, bd: &BatchDeployment) -> Result<()> {
    let name = bd.metadata.name.as_deref().unwrap_or_default();
    match c.output {
        None => println(&format!(
            "{KIND_NAME}/{name} created{}",
            c.dry_run.dry_run.suffix()
        )),
        Some(ObjectOutput::Name) => println(&format!("{KIND_NAME}/{name}")),
        Some(ObjectOutput::Yaml) => print(&to_yaml(&shown(bd))?),
        Some(ObjectOutput::Json) => println(&to_json(&shown(bd))?),
    }
}
