//! `kubectl appimage deploy`: run an AppImage as a native workload (Deployment, StatefulSet,
//! DaemonSet, Job or CronJob), written by server-side apply. The object comes from the core's
//! `appimage::workload::build`; this file only reads flags, talks to the cluster and prints.

use std::fmt::Debug;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use appimage::resource::AppImage;
use appimage::workload::{
    self, DeployOptions, Kind, UpdatePolicy, WORKLOAD, Workload, parse_node_selector,
    parse_pod_template, parse_start_at,
};
use clap::{ArgGroup, Args};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::client::{Cluster, MANAGER, server_error};
use crate::error::eprint_line;
use crate::flags::{DryRun, DryRunArg, Global, ObjectOutput};
use crate::input::{self, pick_for};
use crate::output::{list, print, println, to_json, to_yaml};
use crate::render::parse_sets;

#[derive(Args, Debug, Clone)]
#[command(group(ArgGroup::new("source").required(true).args(["appimage", "filename"]).multiple(true)))]
pub struct DeployArgs {
    /// The AppImage: fetched from the cluster, or picked from the -f files
    #[arg(value_name = "APPIMAGE")]
    pub appimage: Option<String>,
    /// Read the AppImage from files (with --dry-run=client nothing contacts a cluster)
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub filename: Vec<String>,
    /// The workload's name [default: the AppImage's, or <appimage>-<role> with --role]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// The namespace [default: the context's, or "default" offline]
    #[arg(short = 'n', long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Deployment, StatefulSet, DaemonSet, Job or CronJob
    #[arg(long, default_value = "Deployment", value_parser = parse_kind)]
    pub kind: Kind,
    /// The Pods' role; picks the deploy template as Kuscia does
    #[arg(long, default_value = "")]
    pub role: String,
    /// Only consider deploy templates with this name
    #[arg(long, value_name = "NAME")]
    pub template: Option<String>,
    /// Pods to run [default: the template's replicas; unset 1, 0 none]
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub replicas: Option<i32>,
    /// Run only on nodes with these labels: k=v,k2=v2
    #[arg(long, value_name = "K=V,...")]
    pub node_selector: Option<String>,
    /// CronJob schedule, five fields or @hourly, @daily...
    #[arg(long, value_name = "CRON")]
    pub schedule: Option<String>,
    /// Create the workload stopped, to start at this time: RFC 3339, or +DURATION from now
    #[arg(long, value_name = "TIME")]
    pub start_at: Option<String>,
    /// Value of TASK_ID
    #[arg(long, value_name = "ID", default_value = "")]
    pub task_id: String,
    /// Value of TASK_INPUT_CONFIG / INPUT_CONFIG
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub input_config: String,
    /// An extra template value, KEY=VALUE; repeatable
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// A PodTemplateSpec fragment (YAML or JSON) to merge into the pod template
    #[arg(long, value_name = "FILE")]
    pub pod_template: Option<PathBuf>,
    /// Run the Pods in the host's network namespace
    #[arg(long)]
    pub host_network: bool,
    /// A Secret for pulling the image from a private registry; repeatable
    #[arg(long = "image-pull-secret", value_name = "NAME")]
    pub image_pull_secrets: Vec<String>,
    /// Auto: follow new AppImage revisions; Manual: wait for `rollout`
    #[arg(long, default_value = "Auto", value_parser = parse_policy)]
    pub update_policy: UpdatePolicy,
    /// Deploy even when the AppImage is deprecated
    #[arg(long)]
    pub allow_deprecated: bool,
    /// The webhook's --pod-overrides, for the Pod preview (-o with --dry-run): all, env or none
    #[arg(long, default_value = "env", value_name = "all|env|none",
          value_parser = |s: &str| s.parse::<appimage::overrides::PodOverrides>())]
    pub pod_overrides: appimage::overrides::PodOverrides,
    #[command(flatten)]
    pub dry_run: DryRunArg,
    /// Print the workload instead of a message (with --dry-run, and the Pod the webhook makes)
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<ObjectOutput>,
}

fn parse_kind(text: &str) -> Result<Kind, String> {
    text.parse().map_err(|e: workload::WorkloadError| {
        e.to_string()
            .trim_start_matches("unknown workload kind ")
            .to_string()
    })
}

fn parse_policy(text: &str) -> Result<UpdatePolicy, String> {
    text.parse()
        .map_err(|e: workload::WorkloadError| e.to_string())
}

/// Run `deploy`; `-f` with `--dry-run=client` never builds a client.
pub fn run(global: &Global, args: DeployArgs) -> Result<()> {
    let now = Timestamp::now();
    if args.dry_run.dry_run == DryRun::Client && !args.filename.is_empty() {
        let image = from_files(&args)?;
        appimage::stage::check_new_use(&image, args.allow_deprecated)
            .map_err(anyhow::Error::msg)?;
        let namespace = args.namespace.as_deref().unwrap_or("default");
        let built = workload::build(&image, &options(&args, namespace, now)?)?;
        if let Some(note) = appimage::image_id::offline_note(&image.spec.image) {
            crate::error::eprint_line(&format!("Note: {note}"));
        }
        if image.spec.image.sign.as_deref().is_none_or(str::is_empty) {
            crate::error::eprint_line(&format!(
                "Warning: AppImage {:?} is not signed (spec.image.sign): the webhook denies its Pods unless it runs with --require-signature=false; sign it first: kubectl appimage sign -f FILE --key KEY",
                image.name()
            ));
        }
        return print_dry_run(&image, &built, &args);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_cluster(global, &args, now))
}

/// The AppImage named on the command line (or the only one) from the `-f` files, validated.
fn from_files(args: &DeployArgs) -> Result<AppImage> {
    let images = input::load_valid(&args.filename)?;
    pick_for(images, args.appimage.as_deref(), &args.filename, "deploy")
}

/// The flags as the core's options.
fn options(args: &DeployArgs, namespace: &str, now: Timestamp) -> Result<DeployOptions> {
    let pod_template = match &args.pod_template {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| {
                format!(
                    "--pod-template: cannot read {:?} (is it a readable UTF-8 file?)",
                    path.display().to_string()
                )
            })?;
            Some(parse_pod_template(&path.display().to_string(), &text)?)
        }
    };
    Ok(DeployOptions {
        kind: args.kind,
        name: args.name.clone(),
        namespace: namespace.to_string(),
        role: args.role.clone(),
        template: args.template.clone(),
        replicas: args.replicas,
        node_selector: match &args.node_selector {
            Some(text) => parse_node_selector(text)?,
            None => Default::default(),
        },
        schedule: args.schedule.clone(),
        start_at: match &args.start_at {
            Some(text) => Some(parse_start_at(text, now)?),
            None => None,
        },
        task_id: args.task_id.clone(),
        input_config: args.input_config.clone(),
        values: parse_sets(&args.set)?,
        pod_template,
        host_network: args.host_network,
        image_pull_secrets: args.image_pull_secrets.clone(),
        update_policy: args.update_policy,
    })
}

/// `-o yaml`: the workload, then the Pod the webhook will make as a second document.
/// `-o json`: both in a List. Otherwise kubectl's one line.
fn print_dry_run(image: &AppImage, built: &Workload, args: &DeployArgs) -> Result<()> {
    let kind = built.kind();
    match args.output {
        None => println(&format!(
            "{}/{} created{}",
            kind.resource(),
            built.name(),
            args.dry_run.dry_run.suffix()
        )),
        Some(ObjectOutput::Name) => println(&format!("{}/{}", kind.resource(), built.name())),
        Some(ObjectOutput::Yaml) => {
            let pod = workload::preview_pod_with(image, built, args.pod_overrides)?;
            print(&format!(
                "{}---\n# The Pod the webhook makes of it (the first one, as admitted):\n{}",
                to_yaml(built)?,
                to_yaml(&pod)?
            ))
        }
        Some(ObjectOutput::Json) => {
            let pod = workload::preview_pod_with(image, built, args.pod_overrides)?;
            let items = vec![serde_json::to_value(built)?, serde_json::to_value(&pod)?];
            print(&to_json(&list(items))?)
        }
    }
}

/// The cluster side: the AppImage, the ownership check, server-side apply.
async fn run_cluster(global: &Global, args: &DeployArgs, now: Timestamp) -> Result<()> {
    let cluster = Cluster::connect(global).await?;
    let image = cluster_image(&cluster, args).await?;
    appimage::stage::check_new_use(&image, args.allow_deprecated).map_err(anyhow::Error::msg)?;
    let (client, server, context) = cluster.parts();
    let namespace = match &args.namespace {
        Some(ns) => ns.clone(),
        None => client.default_namespace().to_string(),
    };
    let built = workload::build(&image, &options(args, &namespace, now)?)?;
    if args.dry_run.dry_run == DryRun::Client {
        return print_dry_run(&image, &built, args);
    }
    let target = Target {
        client,
        server: server.to_string(),
        context: context.to_string(),
        namespace,
        dry_run: args.dry_run.dry_run == DryRun::Server,
    };
    admitted(&target, &built).await?;
    let (before, after) = target.apply(&built).await?;
    print_applied(&image, &built, before.as_ref(), &after, args)
}

/// Refuse a workload whose Pods admission would deny (issue 30): one Pod of its template is
/// created with dryRun=All, which runs every admission webhook (ours checks the signature, the
/// stage, the revision and the pod-overrides policy) and stores nothing. Written anyway, such a
/// workload would look healthy while its controller's Pod creations are denied one by one.
/// When the check itself cannot run (no right to create Pods, say), a warning says so.
async fn admitted(target: &Target, built: &Workload) -> Result<()> {
    let Some(template) = built.pod_template() else {
        return Ok(());
    };
    let mut metadata = template.metadata.clone().unwrap_or_default();
    metadata.generate_name = Some(format!("{}-", built.name()));
    metadata.namespace = Some(target.namespace.clone());
    let pod = Pod {
        metadata,
        spec: template.spec.clone(),
        status: None,
    };
    let api: Api<Pod> = Api::namespaced(target.client.clone(), &target.namespace);
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let shown = format!("{}/{}", built.kind().resource(), built.name());
    let mut result = api.create(&params, &pod).await;
    // A denial may be the webhook's watch a moment behind an AppImage just applied: asked again
    // for up to about 2 s before it counts.
    for pause in [250, 500, 1000] {
        if !matches!(&result, Err(kube::Error::Api(s)) if s.message.contains("denied the request"))
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
        result = api.create(&params, &pod).await;
    }
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.message.contains("denied the request") => bail!(
            "{shown} not written: admission denies its Pods (checked with a server dry run of one): {}",
            s.message.trim_end()
        ),
        Err(e) => {
            eprint_line(&format!(
                "Warning: could not check that admission admits the Pods of {shown} (a server dry run of one Pod): {}",
                target.error(e)
            ));
            Ok(())
        }
    }
}

/// The AppImage the Pods will get: the cluster's. With `-f`, the file's must be there too.
async fn cluster_image(cluster: &Cluster, args: &DeployArgs) -> Result<AppImage> {
    if args.filename.is_empty() {
        let name = args.appimage.as_deref().unwrap_or_default();
        return cluster.get(name).await;
    }
    let file = from_files(args)?;
    let Some(stored) = cluster.get_opt(file.name()).await? else {
        bail!(
            "AppImage {:?} is not in the cluster, and the webhook completes the workload's Pods from the cluster's copy; apply it first: kubectl appimage apply -f {}",
            file.name(),
            args.filename.join(" -f ")
        );
    };
    if stored.spec != file.spec {
        eprint_line(&format!(
            "Warning: AppImage {:?} in the cluster differs from {}; its Pods get the cluster's (apply the file first to change that)",
            file.name(),
            args.filename.join(", ")
        ));
    }
    Ok(stored)
}

fn print_applied(
    image: &AppImage,
    built: &Workload,
    before: Option<&Workload>,
    after: &Workload,
    args: &DeployArgs,
) -> Result<()> {
    let suffix = args.dry_run.dry_run.suffix();
    let outcome = match before {
        None => "created",
        Some(b) if unchanged(b, after) => "unchanged",
        Some(_) => "configured",
    };
    match args.output {
        None => println(&format!(
            "{}/{} {outcome}{suffix}",
            after.kind().resource(),
            after.name()
        )),
        Some(ObjectOutput::Name) => {
            println(&format!("{}/{}", after.kind().resource(), after.name()))
        }
        Some(ObjectOutput::Yaml) if args.dry_run.dry_run == DryRun::Server => {
            let pod = workload::preview_pod_with(image, built, args.pod_overrides)?;
            print(&format!(
                "{}---\n{}",
                to_yaml(&shown(after)?)?,
                to_yaml(&pod)?
            ))
        }
        Some(ObjectOutput::Yaml) => print(&to_yaml(&shown(after)?)?),
        Some(ObjectOutput::Json) => print(&to_json(&shown(after)?)?),
    }
}

/// Whether the apply changed nothing but who manages which field: after a rollout wrote the
/// same image (issue 30, item 4) the apply only shares the field's ownership, which bumps the
/// resourceVersion without changing the workload or restarting a Pod.
fn unchanged(before: &Workload, after: &Workload) -> bool {
    if before.metadata().resource_version == after.metadata().resource_version {
        return true;
    }
    let content = |w: &Workload| {
        let mut v = serde_json::to_value(w).ok()?;
        let obj = v.as_object_mut()?;
        obj.remove("status");
        let meta = obj.get_mut("metadata")?.as_object_mut()?;
        meta.remove("managedFields");
        meta.remove("resourceVersion");
        Some(v)
    };
    content(before).is_some_and(|b| Some(b) == content(after))
}

/// The object as kubectl prints it: without `metadata.managedFields`.
fn shown(obj: &Workload) -> Result<serde_json::Value> {
    let mut value = serde_json::to_value(obj)?;
    if let Some(meta) = value.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        meta.remove("managedFields");
    }
    Ok(value)
}

/// Where and how to write one workload.
struct Target {
    client: Client,
    server: String,
    context: String,
    namespace: String,
    dry_run: bool,
}

impl Target {
    fn error(&self, e: kube::Error) -> anyhow::Error {
        server_error(e, &self.server, &self.context)
    }

    /// Apply `built`; the object before (if any) and after.
    async fn apply(&self, built: &Workload) -> Result<(Option<Workload>, Workload)> {
        match built {
            Workload::Deployment(o) => self.typed(o.as_ref(), Workload::Deployment).await,
            Workload::StatefulSet(o) => self.typed(o.as_ref(), Workload::StatefulSet).await,
            Workload::DaemonSet(o) => self.typed(o.as_ref(), Workload::DaemonSet).await,
            Workload::Job(o) => self.typed(o.as_ref(), Workload::Job).await,
            Workload::CronJob(o) => self.typed(o.as_ref(), Workload::CronJob).await,
        }
    }

    async fn typed<K>(
        &self,
        obj: &K,
        wrap: fn(Box<K>) -> Workload,
    ) -> Result<(Option<Workload>, Workload)>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + Debug
            + Serialize
            + DeserializeOwned,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), &self.namespace);
        let name = obj.meta().name.clone().unwrap_or_default();
        let before = api.get_opt(&name).await.map_err(|e| self.error(e))?;
        let before = before.map(|b| wrap(Box::new(b)));
        if let Some(existing) = &before {
            check_owner(existing)?;
        }
        // Forcing conflicts, as `kubectl appimage apply` does: deploy states the intent.
        let mut params = PatchParams::apply(MANAGER).force();
        params.dry_run = self.dry_run;
        let after = api
            .patch(&name, &params, &Patch::Apply(obj))
            .await
            .map_err(|e| self.error(e))?;
        Ok((before, wrap(Box::new(after))))
    }
}

/// Refuse to take over a workload that `deploy` did not make: it must carry our workload label
/// and have been applied by our field manager before.
fn check_owner(existing: &Workload) -> Result<()> {
    let meta = existing.metadata();
    let name = existing.name();
    let labelled = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(WORKLOAD))
        .is_some_and(|v| v == name);
    let managers: Vec<&str> = meta
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.as_deref())
        .collect();
    if labelled && managers.contains(&MANAGER) {
        return Ok(());
    }
    let mut managers = managers;
    managers.sort_unstable();
    managers.dedup();
    let why = if labelled {
        format!("was never applied by {MANAGER}")
    } else {
        format!("lacks the label {WORKLOAD}={name}")
    };
    Err(anyhow!(
        "{}/{name} in namespace {:?} exists and was not made by kubectl appimage deploy (it {why}; its field managers: {}); it is left untouched: choose another --name, or delete it first",
        existing.kind().resource(),
        existing.namespace(),
        if managers.is_empty() {
            "none".to_string()
        } else {
            managers.join(", ")
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::Deployment;
    use serde_json::json;

    fn deployment(rv: &str, manager: &str, image: &str, ready: i32) -> Workload {
        Workload::Deployment(Box::new(
            serde_json::from_value::<Deployment>(json!({
                "metadata": {"name": "web", "resourceVersion": rv,
                    "managedFields": [{"manager": manager, "operation": "Apply"}]},
                "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "c", "image": image}]}}},
                "status": {"readyReplicas": ready}
            }))
            .unwrap(),
        ))
    }

    #[test]
    fn an_apply_that_only_shares_field_ownership_is_unchanged() {
        let before = deployment("1", "appimage-webhook-rollout", "a@sha256:1", 0);
        let same = deployment("2", "kubectl-appimage", "a@sha256:1", 1);
        assert!(unchanged(&before, &same));
        assert!(unchanged(&before, &before));
        let changed = deployment("2", "kubectl-appimage", "a:1", 1);
        assert!(!unchanged(&before, &changed));
    }
}
