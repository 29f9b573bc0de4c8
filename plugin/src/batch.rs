//! `kubectl appimage batch …`: BatchDeployments, one AppImage deployed to many nodes as a job
//! (issue 18). create builds the object and checks it with the core's own spec rules before
//! anything is sent; stop, continue and retry patch the spec; the controller does the rest.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use appimage::batch::machine::{COND_FAILED, spec_error};
use appimage::batch::{BatchDeployment, BatchDeploymentSpec, NodeStatus, Phase, RestartPolicy};
use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::client::{Cluster, MANAGER, server_error};
use crate::describe::tabwrite;
use crate::flags::{DryRun, DryRunArg, Global, ObjectOutput};
use crate::output::{human_duration, now, print, println, table, to_json, to_yaml};

/// `batchdeployment.appimage.kuscia.secretflow`, kubectl's singular name in messages.
const KIND_NAME: &str = "batchdeployment.appimage.kuscia.secretflow";

#[derive(Args, Debug)]
pub struct BatchArgs {
    #[command(subcommand)]
    pub command: BatchCommand,
}

#[derive(Subcommand, Debug)]
pub enum BatchCommand {
    /// Create a BatchDeployment: deploy an AppImage to the chosen nodes as a job
    Create(Box<CreateArgs>),
    /// List BatchDeployments (phase, succeeded/total, failed, age), or show one
    Get(GetArgs),
    /// Show a BatchDeployment in detail, with a line per node and its reason
    Describe(NameArgs),
    /// Stop a job: in-flight nodes are halted, finished ones keep their results
    Stop(NameArgs),
    /// Continue a stopped job with the nodes not yet done
    Continue(NameArgs),
    /// Retry a Failed, PartiallySucceeded or TimedOut job: only nodes that did not succeed rerun
    Retry(NameArgs),
    /// Delete a BatchDeployment and, through owner references, its workloads
    Delete(DeleteArgs),
    /// Print the BatchDeployment CustomResourceDefinition as YAML
    Crd,
}

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

#[derive(Args, Debug)]
pub struct GetArgs {
    /// A BatchDeployment; all in the namespace when none is given
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// List across all namespaces
    #[arg(short = 'A', long, conflicts_with_all = ["namespace", "name"])]
    pub all_namespaces: bool,
    /// Follow changes with a progress line; with NAME, ends when the job is finished or stopped
    #[arg(short = 'w', long)]
    pub watch: bool,
    #[arg(short = 'o', long = "output", value_enum, conflicts_with = "watch")]
    pub output: Option<ObjectOutput>,
    /// Leave out the table's header line
    #[arg(long)]
    pub no_headers: bool,
}

#[derive(Args, Debug)]
pub struct NameArgs {
    #[arg(value_name = "NAME")]
    pub name: String,
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub target: NameArgs,
    /// Treat a missing BatchDeployment as deleted
    #[arg(long)]
    pub ignore_not_found: bool,
}

/// Run a batch command; only `crd` and `create --dry-run=client` stay offline.
pub fn run(global: &Global, args: BatchArgs) -> Result<()> {
    match args.command {
        BatchCommand::Crd => print(&appimage::batch::crd_yaml()),
        BatchCommand::Create(c) if c.dry_run.dry_run == DryRun::Client => {
            let bd = build(&c, c.namespace.as_deref().unwrap_or("default"))?;
            created(&c, &bd)
        }
        command => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(run_cluster(global, command))
        }
    }
}

async fn run_cluster(global: &Global, command: BatchCommand) -> Result<()> {
    let cluster = Cluster::connect(global).await?;
    let (client, server, context) = cluster.parts();
    let jobs = Jobs {
        client,
        server: server.to_string(),
        context: context.to_string(),
    };
    match command {
        BatchCommand::Create(c) => create(&cluster, &jobs, &c).await,
        BatchCommand::Get(g) => get(&jobs, &g).await,
        BatchCommand::Describe(n) => {
            let bd = jobs.get(&n).await?;
            print(&describe(&bd, now()))
        }
        BatchCommand::Stop(n) => suspend(&jobs, &n, true).await,
        BatchCommand::Continue(n) => suspend(&jobs, &n, false).await,
        BatchCommand::Retry(n) => retry(&jobs, &n).await,
        BatchCommand::Delete(d) => delete(&jobs, &d).await,
        BatchCommand::Crd => unreachable!("crd runs offline"),
    }
}

/// BatchDeployments on one cluster, with errors in kubectl's words.
struct Jobs {
    client: Client,
    server: String,
    context: String,
}

impl Jobs {
    fn api(&self, namespace: Option<&str>) -> Api<BatchDeployment> {
        match namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::default_namespaced(self.client.clone()),
        }
    }

    fn namespace<'a>(&'a self, given: Option<&'a str>) -> &'a str {
        given.unwrap_or(self.client.default_namespace())
    }

    /// A kube error in kubectl's words; a missing CRD says how to install it.
    fn error(&self, e: kube::Error) -> anyhow::Error {
        match &e {
            kube::Error::Api(s)
                if s.code == 404
                    && (s.reason != "NotFound"
                        || s.message == "the server could not find the requested resource") =>
            {
                anyhow!(
                    "the server {} doesn't have a resource type \"batchdeployments\"; install the CRD: kubectl appimage batch crd | kubectl apply -f -",
                    self.server
                )
            }
            _ => server_error(e, &self.server, &self.context),
        }
    }

    async fn get(&self, n: &NameArgs) -> Result<BatchDeployment> {
        let api = self.api(n.namespace.as_deref());
        api.get(&n.name).await.map_err(|e| self.error(e))
    }

    async fn patch(&self, n: &NameArgs, patch: serde_json::Value) -> Result<BatchDeployment> {
        let params = PatchParams {
            field_manager: Some(MANAGER.into()),
            ..Default::default()
        };
        let api = self.api(n.namespace.as_deref());
        api.patch(&n.name, &params, &Patch::Merge(&patch))
            .await
            .map_err(|e| self.error(e))
    }
}

/// The object `create` sends, checked with the controller's own spec rules.
fn build(c: &CreateArgs, namespace: &str) -> Result<BatchDeployment> {
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
    };
    let prefix = c.name_prefix.as_deref().unwrap_or(&c.name);
    if let Some(e) = spec_error(&spec, prefix) {
        bail!(
            "{e} (flags: --appimage, --node-selector, --nodes, --instances, --parallelism, --name-prefix, --timeout, --failure-tolerance)"
        );
    }
    let mut bd = BatchDeployment::new(&c.name, spec);
    bd.metadata.namespace = Some(namespace.to_string());
    Ok(bd)
}

/// `k=v,k2=v2` (kubectl's form); an empty selector is refused, never "every node".
fn node_selector(text: &str) -> Result<BTreeMap<String, String>> {
    let pairs: Vec<String> = text.split(',').map(|p| p.trim().to_string()).collect();
    let map = key_values(&pairs, "--node-selector")?;
    if map.is_empty() {
        bail!("--node-selector is empty; give K=V pairs such as --node-selector pool=edge");
    }
    Ok(map)
}

fn key_values(pairs: &[String], flag: &str) -> Result<BTreeMap<String, String>> {
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
fn tolerance(text: &str) -> IntOrString {
    match text.trim().parse::<i32>() {
        Ok(n) => IntOrString::Int(n),
        Err(_) => IntOrString::String(text.trim().to_string()),
    }
}

fn pod_template(path: &std::path::Path) -> Result<serde_json::Value> {
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

async fn create(cluster: &Cluster, jobs: &Jobs, c: &CreateArgs) -> Result<()> {
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
async fn check_refs(
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
async fn check_revision(jobs: &Jobs, app_image: &str, n: i64) -> Result<()> {
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

fn created(c: &CreateArgs, bd: &BatchDeployment) -> Result<()> {
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

async fn suspend(jobs: &Jobs, n: &NameArgs, stop: bool) -> Result<()> {
    let current = jobs.get(n).await?;
    let phase = phase(&current);
    if !stop && current.spec.suspend != Some(true) {
        bail!(
            "{} is not stopped (phase {}); nothing to continue",
            n.name,
            phase.as_str()
        );
    }
    if stop && phase.finished() {
        bail!(
            "{} is {} and has nothing in flight to stop; delete it or retry it instead",
            n.name,
            phase.as_str()
        );
    }
    jobs.patch(n, json!({"spec": {"suspend": stop}})).await?;
    let verb = if stop { "stopped" } else { "continued" };
    println(&format!("{KIND_NAME}/{} {verb}", n.name))
}

/// Bump `spec.retryGeneration`, guarded by the resourceVersion just read, so a retry is
/// never sent for a phase that changed meanwhile.
async fn retry(jobs: &Jobs, n: &NameArgs) -> Result<()> {
    let current = jobs.get(n).await?;
    let phase = phase(&current);
    if !phase.retryable() {
        bail!(
            "cannot retry {}: it is {}; a retry works from Failed, PartiallySucceeded or TimedOut",
            n.name,
            phase.as_str()
        );
    }
    let seen = current
        .status
        .as_ref()
        .map_or(0, |s| s.observed_retry_generation);
    let next = current.spec.retry_generation.unwrap_or(0).max(seen) + 1;
    let patch = json!({
        "metadata": {"resourceVersion": current.metadata.resource_version},
        "spec": {"retryGeneration": next},
    });
    jobs.patch(n, patch).await?;
    println(&format!(
        "{KIND_NAME}/{} retried (retryGeneration {next})",
        n.name
    ))
}

async fn delete(jobs: &Jobs, d: &DeleteArgs) -> Result<()> {
    let api = jobs.api(d.target.namespace.as_deref());
    match api.delete(&d.target.name, &DeleteParams::default()).await {
        Ok(_) => println(&format!("{KIND_NAME} \"{}\" deleted", d.target.name)),
        Err(kube::Error::Api(s))
            if s.code == 404 && s.reason == "NotFound" && d.ignore_not_found =>
        {
            Ok(())
        }
        Err(e) => Err(jobs.error(e)),
    }
}

fn phase(bd: &BatchDeployment) -> Phase {
    bd.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

async fn get(jobs: &Jobs, g: &GetArgs) -> Result<()> {
    let api: Api<BatchDeployment> = if g.all_namespaces {
        Api::all(jobs.client.clone())
    } else {
        jobs.api(g.namespace.as_deref())
    };
    let load = || async {
        match &g.name {
            Some(name) => api.get(name).await.map(|b| vec![b]),
            None => api.list(&ListParams::default()).await.map(|l| l.items),
        }
        .map_err(|e| jobs.error(e))
    };
    let items = load().await?;
    if let Some(format) = g.output {
        return print_objects(&items, format, g.name.is_none());
    }
    if items.is_empty() && !g.watch {
        // kubectl's words, on stderr.
        let scope = if g.all_namespaces {
            String::new()
        } else {
            format!(" in {} namespace", jobs.namespace(g.namespace.as_deref()))
        };
        crate::error::eprint_line(&format!("No resources found{scope}."));
        return Ok(());
    }
    print(&rows(&items, g.all_namespaces, !g.no_headers, now()))?;
    if !g.watch {
        return Ok(());
    }
    // Polled once a second: a watch stream would need another crate in the plugin, and a
    // person reading progress does not need more.
    let mut items = items;
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    loop {
        for (key, line) in progress_lines(&items) {
            if last.get(&key) != Some(&line) {
                println(&line)?;
                last.insert(key, line);
            }
        }
        if g.name.is_some() && items_done(&items) {
            return watched_end(&items[0]);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        items = load().await?;
    }
}

/// How `batch get -w NAME` ends, as `kubectl rollout status`: an error (exit 1) when the job
/// ended Failed or TimedOut, success otherwise (Succeeded, PartiallySucceeded, Stopped).
fn watched_end(bd: &BatchDeployment) -> Result<()> {
    let p = phase(bd);
    if !matches!(p, Phase::Failed | Phase::TimedOut) {
        return Ok(());
    }
    let name = bd.metadata.name.as_deref().unwrap_or_default();
    let ns = bd.metadata.namespace.as_deref().unwrap_or_default();
    let why = bd
        .status
        .as_ref()
        .and_then(|s| {
            s.conditions
                .iter()
                .find(|c| c.type_ == COND_FAILED && c.status == "True")
        })
        .filter(|c| !c.message.is_empty())
        .map_or(String::new(), |c| format!(": {}", c.message));
    bail!(
        "{KIND_NAME}/{name} ended {}{why}; see kubectl appimage batch describe {name} -n {ns}",
        p.as_str()
    )
}

/// A watched job is done when its status is current and its phase will not change by itself.
fn items_done(items: &[BatchDeployment]) -> bool {
    !items.is_empty()
        && items.iter().all(|bd| {
            let status = bd.status.as_ref();
            let current = status.and_then(|s| s.observed_generation) == bd.metadata.generation;
            let p = phase(bd);
            current && (p.finished() || p == Phase::Stopped)
        })
}

fn progress_lines(items: &[BatchDeployment]) -> BTreeMap<String, String> {
    items
        .iter()
        .map(|bd| {
            let ns = bd.metadata.namespace.clone().unwrap_or_default();
            let name = bd.metadata.name.clone().unwrap_or_default();
            (format!("{ns}/{name}"), progress_line(bd))
        })
        .collect()
}

/// `NAME PHASE 17/20 succeeded, 1 failed, 2 running, 0 pending [#################---] 85%`
pub fn progress_line(bd: &BatchDeployment) -> String {
    let name = bd.metadata.name.as_deref().unwrap_or_default();
    let c = bd
        .status
        .as_ref()
        .map(|s| s.counts.clone())
        .unwrap_or_default();
    let done = c.succeeded + c.failed;
    let (bar, pct) = if c.total > 0 {
        let filled = (done * 20 / c.total) as usize;
        let bar = format!("{}{}", "#".repeat(filled), "-".repeat(20 - filled));
        (bar, done * 100 / c.total)
    } else {
        ("-".repeat(20), 0)
    };
    format!(
        "{name} {} {}/{} succeeded, {} failed, {} running, {} pending, {} stopped [{bar}] {pct}%",
        phase(bd).as_str(),
        c.succeeded,
        c.total,
        c.failed,
        c.running,
        c.pending,
        c.stopped
    )
}

/// The object as kubectl shows it: without `metadata.managedFields` (`get` hides them too).
fn shown(bd: &BatchDeployment) -> BatchDeployment {
    let mut bd = bd.clone();
    bd.metadata.managed_fields = None;
    bd
}

fn print_objects(items: &[BatchDeployment], format: ObjectOutput, list: bool) -> Result<()> {
    let items: Vec<BatchDeployment> = items.iter().map(shown).collect();
    if format == ObjectOutput::Name {
        let names: Vec<String> = items
            .iter()
            .map(|b| {
                format!(
                    "{KIND_NAME}/{}",
                    b.metadata.name.as_deref().unwrap_or_default()
                )
            })
            .collect();
        return print(&names.iter().map(|n| format!("{n}\n")).collect::<String>());
    }
    let value = if list || items.len() != 1 {
        json!({"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}})
    } else {
        serde_json::to_value(&items[0])?
    };
    match format {
        ObjectOutput::Yaml => print(&to_yaml(&value)?),
        _ => println(&to_json(&value)?),
    }
}

/// The table `kubectl get batchdeployments` shows, from the same status fields.
pub fn rows(items: &[BatchDeployment], namespaces: bool, headers: bool, now: i64) -> String {
    let mut rows = Vec::new();
    if headers {
        let mut h = vec!["NAME", "PHASE", "SUCCEEDED", "FAILED", "AGE"];
        if namespaces {
            h.insert(0, "NAMESPACE");
        }
        rows.push(h.into_iter().map(String::from).collect::<Vec<_>>());
    }
    for bd in items {
        let status = bd.status.clone().unwrap_or_default();
        let age = bd
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or("<unknown>".into(), |t| {
                human_duration(now - t.0.as_second())
            });
        let mut row = vec![
            bd.metadata.name.clone().unwrap_or_default(),
            bd.status
                .as_ref()
                .map_or(String::new(), |s| s.phase.as_str().into()),
            status.summary.clone(),
            bd.status
                .as_ref()
                .map_or(String::new(), |s| s.counts.failed.to_string()),
            age,
        ];
        if namespaces {
            row.insert(0, bd.metadata.namespace.clone().unwrap_or_default());
        }
        rows.push(row);
    }
    if rows.is_empty() {
        return String::new();
    }
    table(&rows)
}

/// `batch describe`: the spec in words, the conditions, then a line per node with its reason.
pub fn describe(bd: &BatchDeployment, now: i64) -> String {
    let status = bd.status.clone().unwrap_or_default();
    let mut out = String::new();
    for (k, v) in spec_fields(bd).into_iter().chain(status_fields(bd, now)) {
        out.push_str(&format!("{k}:\t{v}\n"));
    }
    let mut text = tabwrite(&out, 1);
    text.push_str("Conditions:\n");
    if status.conditions.is_empty() {
        text.push_str("  <none>\n");
    } else {
        let mut rows = vec![header(&["TYPE", "STATUS", "REASON", "MESSAGE"])];
        for c in &status.conditions {
            let cells = [&c.type_, &c.status, &c.reason, &c.message];
            rows.push(cells.map(|s| s.clone()).to_vec());
        }
        text.push_str(&indent(&table(&rows)));
    }
    text.push_str("Nodes:\n");
    text.push_str(&node_table(&status.nodes, bd.spec.instances.unwrap_or(1)));
    text
}

fn header(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

fn or_none(text: String) -> String {
    if text.is_empty() {
        "<none>".into()
    } else {
        text
    }
}

fn spec_fields(bd: &BatchDeployment) -> Vec<(&'static str, String)> {
    let s = &bd.spec;
    let selector: Vec<String> = s
        .node_selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let tolerance = match &s.failure_tolerance {
        None => "<any short of all>".into(),
        Some(IntOrString::Int(n)) => n.to_string(),
        Some(IntOrString::String(p)) => p.clone(),
    };
    let policy = s.restart_policy.unwrap_or(RestartPolicy::Always);
    let timeout = s.timeout.clone();
    vec![
        ("Name", bd.metadata.name.clone().unwrap_or_default()),
        (
            "Namespace",
            bd.metadata.namespace.clone().unwrap_or_default(),
        ),
        ("AppImage", s.app_image.clone()),
        (
            "Revision",
            s.revision.map_or("<current>".into(), |r| r.to_string()),
        ),
        ("Role", or_none(s.role.clone().unwrap_or_default())),
        ("Restart Policy", policy.as_str().into()),
        (
            "Instances",
            format!("{} per node", s.instances.unwrap_or(1)),
        ),
        ("Node Selector", or_none(selector.join(","))),
        ("Node Names", or_none(s.node_names.join(","))),
        (
            "Parallelism",
            s.parallelism
                .map_or("<all nodes>".into(), |p| p.to_string()),
        ),
        ("Failure Tolerance", tolerance),
        (
            "Timeout",
            timeout.unwrap_or_else(|| appimage::batch::DEFAULT_TIMEOUT.into()),
        ),
        ("Suspend", s.suspend.unwrap_or(false).to_string()),
    ]
}

fn status_fields(bd: &BatchDeployment, now: i64) -> Vec<(&'static str, String)> {
    let Some(status) = &bd.status else {
        return vec![("Phase", "<not seen by the controller yet>".into())];
    };
    let time = |t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| match t {
        None => "<none>".to_string(),
        Some(t) => format!("{} ({} ago)", t.0, human_duration(now - t.0.as_second())),
    };
    let c = &status.counts;
    vec![
        ("Phase", status.phase.as_str().into()),
        ("Succeeded", format!("{} of {} nodes", c.succeeded, c.total)),
        ("Failed", c.failed.to_string()),
        ("Attempts", status.attempts.to_string()),
        ("Start Time", time(&status.start_time)),
        ("Completion Time", time(&status.completion_time)),
    ]
}

fn node_table(nodes: &[NodeStatus], instances: i32) -> String {
    if nodes.is_empty() {
        return "  <none chosen yet>\n".into();
    }
    let mut rows = vec![header(&[
        "NODE", "PHASE", "PODS", "ATTEMPTS", "REASON", "MESSAGE",
    ])];
    for n in nodes {
        rows.push(vec![
            n.node.clone(),
            n.phase.as_str().into(),
            format!("{}/{instances}", n.pods),
            n.attempts.to_string(),
            n.reason.clone().unwrap_or_default(),
            n.message.clone().unwrap_or_default(),
        ]);
    }
    indent(&table(&rows))
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use appimage::batch::{BatchDeploymentStatus, Counts, NodePhase};
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cmd {
        #[command(subcommand)]
        batch: BatchCommand,
    }

    fn create_args(args: &[&str]) -> Result<CreateArgs, clap::Error> {
        let mut full = vec!["x", "create"];
        full.extend_from_slice(args);
        match Cmd::try_parse_from(full)?.batch {
            BatchCommand::Create(c) => Ok(*c),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn create_builds_the_spec_from_flags() {
        let c = create_args(&[
            "job",
            "--appimage",
            "app",
            "--node-selector",
            "pool=edge,zone=a",
            "--instances",
            "2",
            "--restart-policy",
            "onfailure",
            "--failure-tolerance",
            "10%",
            "--parallelism",
            "5",
            "--timeout",
            "90s",
            "--set",
            "A=1",
            "--host-pid",
        ])
        .unwrap();
        let bd = build(&c, "ns").unwrap();
        let s = &bd.spec;
        assert_eq!(s.node_selector.len(), 2);
        assert_eq!(s.restart_policy, Some(RestartPolicy::OnFailure));
        assert_eq!(s.failure_tolerance, Some(IntOrString::String("10%".into())));
        assert_eq!(
            (s.instances, s.parallelism, s.host_pid),
            (Some(2), Some(5), Some(true))
        );
        assert_eq!(s.values["A"], "1");
        assert_eq!(bd.metadata.namespace.as_deref(), Some("ns"));
        let c = create_args(&[
            "job",
            "--appimage",
            "app",
            "--nodes",
            "a,b",
            "--failure-tolerance",
            "3",
        ])
        .unwrap();
        let bd = build(&c, "ns").unwrap();
        assert_eq!(bd.spec.node_names, ["a", "b"]);
        assert_eq!(bd.spec.failure_tolerance, Some(IntOrString::Int(3)));
    }

    #[test]
    fn create_refuses_bad_input_before_sending() {
        let e = create_args(&["job", "--appimage", "app"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--node-selector") && e.contains("--nodes"),
            "{e}"
        );
        let e = create_args(&[
            "job",
            "--appimage",
            "app",
            "--nodes",
            "a",
            "--restart-policy",
            "Sometimes",
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("Sometimes") && e.contains("OnFailure"), "{e}");
        let bad = |args: &[&str]| {
            build(&create_args(args).unwrap(), "ns")
                .unwrap_err()
                .to_string()
        };
        let e = bad(&["job", "--appimage", "app", "--nodes", ","]);
        assert!(e.contains("never means every node"), "{e}");
        let e = bad(&["job", "--appimage", "app", "--node-selector", "pool"]);
        assert!(e.contains("not KEY=VALUE"), "{e}");
        let e = bad(&[
            "job",
            "--appimage",
            "app",
            "--nodes",
            "a",
            "--timeout",
            "soon",
        ]);
        assert!(e.contains("spec.timeout"), "{e}");
        let e = bad(&[
            "job",
            "--appimage",
            "app",
            "--nodes",
            "a",
            "--instances",
            "0",
        ]);
        assert!(e.contains("spec.instances"), "{e}");
        let e = bad(&["Job", "--appimage", "app", "--nodes", "a"]);
        assert!(e.contains("DNS-1123"), "{e}");
    }

    fn job(phase: Phase, succeeded: i32, failed: i32, total: i32) -> BatchDeployment {
        let mut bd = BatchDeployment::new("job", BatchDeploymentSpec::default());
        bd.status = Some(BatchDeploymentStatus {
            phase,
            summary: format!("{succeeded}/{total}"),
            counts: Counts {
                total,
                succeeded,
                failed,
                running: total - succeeded - failed,
                ..Default::default()
            },
            nodes: vec![NodeStatus {
                node: "edge-1".into(),
                phase: NodePhase::Failed,
                reason: Some("NodeNotReady".into()),
                message: Some("node edge-1 is not Ready".into()),
                pods: 0,
                attempts: 1,
            }],
            ..Default::default()
        });
        bd
    }

    #[test]
    fn table_progress_and_describe() {
        let bd = job(Phase::Running, 17, 1, 20);
        let out = rows(std::slice::from_ref(&bd), false, true, 0);
        let lines: Vec<Vec<&str>> = out
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(lines[0], ["NAME", "PHASE", "SUCCEEDED", "FAILED", "AGE"]);
        assert_eq!(lines[1], ["job", "Running", "17/20", "1", "<unknown>"]);
        let line = progress_line(&bd);
        assert!(
            line.starts_with("job Running 17/20 succeeded, 1 failed, 2 running"),
            "{line}"
        );
        assert!(line.ends_with("[##################--] 90%"), "{line}");
        let text = describe(&bd, 0);
        assert!(text.contains("Phase:"), "{text}");
        let node_line = text.lines().find(|l| l.contains("edge-1")).unwrap();
        let cells: Vec<&str> = node_line.split_whitespace().collect();
        assert_eq!(
            &cells[..5],
            ["edge-1", "Failed", "0/1", "1", "NodeNotReady"]
        );
    }

    #[test]
    fn a_watched_job_is_done_only_on_a_current_final_status() {
        let mut bd = job(Phase::Succeeded, 1, 0, 1);
        bd.metadata.generation = Some(2);
        assert!(!items_done(&[bd.clone()]), "status of an older generation");
        bd.status.as_mut().unwrap().observed_generation = Some(2);
        assert!(items_done(&[bd.clone()]));
        bd.status.as_mut().unwrap().phase = Phase::Stopping;
        assert!(!items_done(&[bd]));
    }

    #[test]
    fn a_watched_job_that_failed_or_timed_out_is_an_error() {
        for ok in [Phase::Succeeded, Phase::PartiallySucceeded, Phase::Stopped] {
            assert!(watched_end(&job(ok, 1, 0, 1)).is_ok(), "{ok:?}");
        }
        let mut bd = job(Phase::TimedOut, 0, 0, 1);
        bd.metadata.namespace = Some("ns".into());
        bd.status.as_mut().unwrap().conditions.push(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
                type_: COND_FAILED.into(),
                status: "True".into(),
                reason: "TimedOut".into(),
                message: "took longer than 10m".into(),
                observed_generation: None,
                last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    jiff::Timestamp::UNIX_EPOCH,
                ),
            },
        );
        let e = watched_end(&bd).unwrap_err().to_string();
        assert_eq!(
            e,
            "batchdeployment.appimage.kuscia.secretflow/job ended TimedOut: took longer than 10m; see kubectl appimage batch describe job -n ns"
        );
        let e = watched_end(&job(Phase::Failed, 0, 1, 1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/job ended Failed; see"), "{e}");
    }
}
