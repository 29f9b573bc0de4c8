//! `kubectl appimage history APPIMAGE`: the AppImage's revisions (issue 17, section 3) with
//! their hash, age, change cause, task id and the workloads and Pods that run each.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use appimage::labels;
use appimage::revision::{AppImageRevision, Known, named, resolve};
use clap::Args;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::ListParams;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use crate::client::{Cluster, block_on, server_error};
use crate::flags::{DocOutput, Global};
use crate::output::{human_duration, now, table, to_json, to_yaml};
use crate::printer::{Output, output_parser};
use serde::Serialize;

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// The AppImage
    pub name: String,
    /// yaml, json, jsonpath=TEMPLATE, custom-columns=SPEC or go-template=TEMPLATE (over a
    /// List of the revisions) [default: a table]
    #[arg(short = 'o', long = "output", value_parser = output_parser::<DocOutput>(), value_name = "FORMAT")]
    pub output: Option<Output<DocOutput>>,
}

pub fn run(global: &Global, args: &HistoryArgs) -> Result<()> {
    block_on(async {
        let cluster = Cluster::connect(global).await?;
        let (client, server, context) = cluster.parts();
        let revs = revisions(&client, &args.name)
            .await
            .map_err(|e| server_error(e, server, context))?;
        if revs.is_empty() {
            bail!(
                "AppImage {:?} has no recorded revisions: check the name (kubectl appimage get) and that the webhook's controllers run with the AppImageRevision CRD installed",
                args.name
            );
        }
        let users = in_use(&client, &args.name, &known(&revs))
            .await
            .map_err(|e| server_error(e, server, context))?;
        let entries: Vec<Entry> = revs.iter().map(|r| entry(r, &users)).collect();
        // As a List of entries, so jsonpath and custom-columns read `.items` as kubectl's do.
        let doc = || serde_json::json!({"apiVersion": "v1", "kind": "List", "items": entries});
        let text = match &args.output {
            Some(Output::Format(DocOutput::Yaml)) => to_yaml(&doc())?,
            Some(Output::Format(DocOutput::Json)) => to_json(&doc())?,
            Some(Output::Template(t)) => t.render(&doc(), true)?,
            None => table(&history_rows(&entries, now())),
        };
        crate::output::print(&text)
    })
}

/// One revision as `history -o yaml|json` prints it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    revision: i64,
    hash: String,
    creation_timestamp: Option<String>,
    change_cause: Option<String>,
    task_id: Option<String>,
    /// `kind/namespace/name` of what runs it.
    in_use_by: Vec<String>,
    #[serde(skip)]
    created: Option<i64>,
}

fn entry(r: &AppImageRevision, users: &BTreeMap<i64, Vec<String>>) -> Entry {
    let created = r.metadata.creation_timestamp.as_ref();
    Entry {
        revision: r.spec.revision,
        hash: r.spec.hash.clone(),
        creation_timestamp: created.map(|t| t.0.to_string()),
        change_cause: r.spec.change_cause.clone(),
        task_id: r.spec.task_id.clone(),
        in_use_by: users.get(&r.spec.revision).cloned().unwrap_or_default(),
        created: created.map(|t| t.0.as_second()),
    }
}

fn history_rows(entries: &[Entry], now: i64) -> Vec<Vec<String>> {
    let header = [
        "REVISION",
        "HASH",
        "AGE",
        "CHANGE-CAUSE",
        "TASK-ID",
        "IN-USE-BY",
    ];
    let none = |v: &Option<String>| v.clone().unwrap_or_else(|| "<none>".into());
    let mut rows = vec![header.map(String::from).to_vec()];
    for e in entries {
        rows.push(vec![
            e.revision.to_string(),
            e.hash.chars().take(12).collect(),
            e.created
                .map_or("<unknown>".into(), |t| human_duration(now - t)),
            none(&e.change_cause),
            none(&e.task_id),
            if e.in_use_by.is_empty() {
                "<none>".into()
            } else {
                e.in_use_by.join(",")
            },
        ]);
    }
    rows
}

/// The revisions of `appimage`, oldest first.
pub async fn revisions(client: &Client, appimage: &str) -> kube::Result<Vec<AppImageRevision>> {
    let api = Api::<AppImageRevision>::all(client.clone());
    let lp = ListParams::default().fields(&format!("spec.appImage={appimage}"));
    let mut items = api.list(&lp).await?.items;
    items.sort_by_key(|r| r.spec.revision);
    Ok(items)
}

pub fn known(revs: &[AppImageRevision]) -> Vec<Known> {
    revs.iter()
        .map(|r| Known {
            number: r.spec.revision,
            hash: r.spec.hash.clone(),
        })
        .collect()
}

/// Revision number -> `kind/namespace/name` of the workloads and Pods whose template names it.
pub async fn in_use(
    client: &Client,
    appimage: &str,
    known: &[Known],
) -> kube::Result<BTreeMap<i64, Vec<String>>> {
    let mut out: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    let mut add = |kind: &str, meta: &ObjectMeta, template: Option<&ObjectMeta>| {
        let Some(t) = template else { return };
        if let Ok(n) = named(t.annotations.as_ref())
            && let Some(number) = resolve(&n, known)
        {
            let ns = meta.namespace.as_deref().unwrap_or_default();
            let name = meta.name.as_deref().unwrap_or_default();
            out.entry(number)
                .or_default()
                .push(format!("{kind}/{ns}/{name}"));
        }
    };
    let tpl = |t: &PodTemplateSpec| t.metadata.clone();
    for d in list::<Deployment>(client, appimage).await? {
        add(
            "deployment",
            &d.metadata,
            d.spec.as_ref().and_then(|s| tpl(&s.template)).as_ref(),
        );
    }
    for d in list::<StatefulSet>(client, appimage).await? {
        add(
            "statefulset",
            &d.metadata,
            d.spec.as_ref().and_then(|s| tpl(&s.template)).as_ref(),
        );
    }
    for d in list::<DaemonSet>(client, appimage).await? {
        add(
            "daemonset",
            &d.metadata,
            d.spec.as_ref().and_then(|s| tpl(&s.template)).as_ref(),
        );
    }
    for c in list::<CronJob>(client, appimage).await? {
        let t = c
            .spec
            .as_ref()
            .and_then(|s| s.job_template.spec.as_ref())
            .and_then(|s| tpl(&s.template));
        add("cronjob", &c.metadata, t.as_ref());
    }
    for j in list::<Job>(client, appimage).await? {
        if j.metadata
            .owner_references
            .as_ref()
            .is_some_and(|o| !o.is_empty())
        {
            continue;
        }
        add(
            "job",
            &j.metadata,
            j.spec.as_ref().and_then(|s| tpl(&s.template)).as_ref(),
        );
    }
    for p in list::<Pod>(client, appimage).await? {
        let bare = p
            .metadata
            .owner_references
            .as_ref()
            .is_none_or(|o| o.is_empty());
        if bare {
            add("pod", &p.metadata, Some(&p.metadata));
        }
    }
    Ok(out)
}

/// Every `K` in all namespaces labelled with the AppImage.
pub async fn list<K>(client: &Client, appimage: &str) -> kube::Result<Vec<K>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let lp = ListParams::default().labels(&format!("{}={appimage}", labels::APP_IMAGE));
    Ok(Api::<K>::all(client.clone()).list(&lp).await?.items)
}
