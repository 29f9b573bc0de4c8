//! `kubectl appimage status APPIMAGE [-n NS | -A] [-o yaml|json]`: where the AppImage runs (issue 17,
//! section 5). Reads the AppImage, its revisions, the workloads and the Pods, and prints the
//! core's `appimage::status` report: the stage and current revision, then one row per workload
//! and bare Pod.

use anyhow::Result;
use appimage::labels;
use appimage::revision::AppImageRevision;
use appimage::status::{FailedCreate, Objects, Report, header, report, rows};
use clap::{Args, ValueEnum};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Event;
use kube::api::ListParams;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use crate::client::{CHUNK_SIZE, Cluster, block_on, server_error};
use crate::flags::Global;
use crate::output::{print, table, to_json, to_yaml};
use crate::printer::{Output, Template, output_parser};

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusOutput {
    Yaml,
    Json,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The AppImage
    pub name: String,
    /// The namespace to look in [default: the context's]
    #[arg(short = 'n', long, conflicts_with = "all_namespaces")]
    pub namespace: Option<String>,
    /// Every namespace, as kubectl's -A
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// yaml or json: the report as a document [default: a table]; or jsonpath=TEMPLATE,
    /// custom-columns=SPEC (over its workloads) or go-template=TEMPLATE
    #[arg(short = 'o', long = "output", value_parser = output_parser::<StatusOutput>(), value_name = "FORMAT")]
    pub output: Option<Output<StatusOutput>>,
}

pub fn run(global: &Global, args: &StatusArgs) -> Result<()> {
    block_on(async {
        let cluster = Cluster::connect(global).await?;
        let image = cluster.get(&args.name).await?;
        let (client, server, context) = cluster.parts();
        let err = |e| server_error(e, server, context);
        let revisions = revisions(&client, &args.name).await.map_err(err)?;
        // As kubectl: the context's namespace unless -n or -A says otherwise.
        let namespace = match (&args.namespace, args.all_namespaces) {
            (_, true) => None,
            (Some(ns), false) => Some(ns.clone()),
            (None, false) => Some(client.default_namespace().to_string()),
        };
        let objects = objects(&client, &args.name, namespace.as_deref())
            .await
            .map_err(err)?;
        let report = report(&image, &revisions, &objects);
        let mut text = render(&report, args.output.as_ref())?;
        // Where a progressive rollout stands (issue 28), under the table.
        if args.output.is_none()
            && let Some(line) = crate::waves::progress(&client, &args.name).await
        {
            text += &format!("Progressive rollout: {line}\n");
        }
        print(&text)
    })
}

fn render(report: &Report, output: Option<&Output<StatusOutput>>) -> Result<String> {
    Ok(match output {
        Some(Output::Format(StatusOutput::Yaml)) => to_yaml(report)?,
        Some(Output::Format(StatusOutput::Json)) => to_json(report)?,
        Some(Output::Template(t @ Template::CustomColumns(_))) => {
            // Columns are over the workloads, one row each, as kubectl's are over a list's items.
            let doc = serde_json::to_value(report)?;
            t.render(&serde_json::json!({"items": doc["workloads"]}), true)?
        }
        Some(Output::Template(template)) => {
            template.render(&serde_json::to_value(report)?, true)?
        }
        None if report.workloads.is_empty() => format!(
            "{}\nNo workloads or bare Pods run AppImage {:?}.\n",
            header(report),
            report.app_image
        ),
        None => format!("{}\n{}", header(report), table(&rows(report))),
    })
}

/// The AppImage's revisions; none where the AppImageRevision CRD is not installed.
async fn revisions(client: &Client, name: &str) -> kube::Result<Vec<AppImageRevision>> {
    match crate::history::revisions(client, name).await {
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Vec::new()),
        other => other,
    }
}

/// Every workload (its pod template may carry the AppImage label without the workload
/// carrying it, so all are read; the core picks) and the AppImage's Pods.
async fn objects(client: &Client, name: &str, ns: Option<&str>) -> kube::Result<Objects> {
    let pods = ListParams::default().labels(&format!("{}={name}", labels::APP_IMAGE));
    let all = ListParams::default();
    Ok(Objects {
        deployments: list(client, ns, &all).await?,
        statefulsets: list(client, ns, &all).await?,
        daemonsets: list(client, ns, &all).await?,
        jobs: list(client, ns, &all).await?,
        cronjobs: list(client, ns, &all).await?,
        pods: list(client, ns, &pods).await?,
        failed_creates: failed_creates(client, ns).await?,
    })
}

/// The `FailedCreate` Events of StatefulSets and DaemonSets (their Pods' denials, issue 30).
async fn failed_creates(client: &Client, ns: Option<&str>) -> kube::Result<Vec<FailedCreate>> {
    let params = ListParams::default().fields("reason=FailedCreate");
    let events: Vec<Event> = list(client, ns, &params).await?;
    let seen = |e: &Event| {
        let series = e
            .series
            .as_ref()
            .and_then(|s| s.last_observed_time.as_ref());
        (series.map(|t| t.0))
            .or(e.event_time.as_ref().map(|t| t.0))
            .or(e.last_timestamp.as_ref().map(|t| t.0))
            .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0))
            .map_or(0, |t| t.as_second())
    };
    Ok(events
        .iter()
        .filter(|e| {
            matches!(
                e.involved_object.kind.as_deref(),
                Some("StatefulSet" | "DaemonSet")
            )
        })
        .map(|e| FailedCreate {
            kind: e.involved_object.kind.clone().unwrap_or_default(),
            namespace: e.involved_object.namespace.clone().unwrap_or_default(),
            name: e.involved_object.name.clone().unwrap_or_default(),
            message: e.message.clone().unwrap_or_default(),
            last_seen: seen(e),
        })
        .collect())
}

/// Every `K` matching `params`, in `ns` or all namespaces, read in kubectl's pages.
async fn list<K>(client: &Client, ns: Option<&str>, params: &ListParams) -> kube::Result<Vec<K>>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut params = params.clone().limit(CHUNK_SIZE);
    let mut items = Vec::new();
    loop {
        let page = api.list(&params).await?;
        items.extend(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(items),
        }
    }
}
