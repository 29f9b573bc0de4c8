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
use crate::flags::Global;
use crate::output::{human_duration, now, table};

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// The AppImage
    pub name: String,
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
        let now = now();
        let mut rows = vec![
            vec![
                "REVISION",
                "HASH",
                "AGE",
                "CHANGE-CAUSE",
                "TASK-ID",
                "IN-USE-BY",
            ]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>(),
        ];
        for r in &revs {
            let age = r
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or("<unknown>".into(), |t| {
                    human_duration(now - t.0.as_second())
                });
            let by = users
                .get(&r.spec.revision)
                .map_or("<none>".into(), |u| u.join(","));
            rows.push(vec![
                r.spec.revision.to_string(),
                r.spec.hash.chars().take(12).collect(),
                age,
                r.spec
                    .change_cause
                    .clone()
                    .unwrap_or_else(|| "<none>".into()),
                r.spec.task_id.clone().unwrap_or_else(|| "<none>".into()),
                by,
            ]);
        }
        crate::output::print(&table(&rows))?;
        Ok(())
    })
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
