//! `batch get`: the table, the objects, and `--watch` until the jobs end.

use super::*;
use crate::flags::ObjectOutput;
use crate::output::{human_duration, now, print, println, table, to_json, to_yaml};
use crate::printer::{Output, output_parser};
use anyhow::{Result, bail};
use appimage::batch::machine::COND_FAILED;
use appimage::batch::{BatchDeployment, Phase};
use clap::Args;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

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
    /// yaml, json, name, jsonpath=TEMPLATE, custom-columns=SPEC or go-template=TEMPLATE
    #[arg(short = 'o', long = "output", value_parser = output_parser::<ObjectOutput>(),
          value_name = "FORMAT", conflicts_with = "watch")]
    pub output: Option<Output<ObjectOutput>>,
    /// Leave out the table's header line
    #[arg(long)]
    pub no_headers: bool,
}

pub(super) fn phase(bd: &BatchDeployment) -> Phase {
    bd.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

pub(super) async fn get(jobs: &Jobs, g: &GetArgs) -> Result<()> {
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
    match &g.output {
        Some(Output::Format(format)) => return print_objects(&items, *format, g.name.is_none()),
        Some(Output::Template(t)) => {
            let items: Vec<BatchDeployment> = items.iter().map(shown).collect();
            return print(&t.render(&document(&items, g.name.is_none())?, !g.no_headers)?);
        }
        None => {}
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
    let mut seen: BTreeMap<String, BatchDeployment> = BTreeMap::new();
    loop {
        for (key, line) in progress_lines(&items) {
            if last.get(&key) != Some(&line) {
                println(&line)?;
                last.insert(key, line);
            }
        }
        for bd in &items {
            let key = format!("{}/{}", bd.namespace().unwrap_or_default(), bd.name_any());
            if let Some(before) = seen.insert(key, bd.clone()) {
                for line in membership_lines(&before, bd) {
                    println(&line)?;
                }
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
pub(super) fn watched_end(bd: &BatchDeployment) -> Result<()> {
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
pub(super) fn items_done(items: &[BatchDeployment]) -> bool {
    !items.is_empty()
        && items.iter().all(|bd| {
            let status = bd.status.as_ref();
            let current = status.and_then(|s| s.observed_generation) == bd.metadata.generation;
            let p = phase(bd);
            current && (p.finished() || p == Phase::Stopped)
        })
}

pub(super) fn progress_lines(items: &[BatchDeployment]) -> BTreeMap<String, String> {
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
    // Waiting nodes are shown only when there are some, so other jobs read as before.
    let waiting = if c.waiting > 0 {
        format!(", {} waiting", c.waiting)
    } else {
        String::new()
    };
    // Pulls are shown only for jobs that pre-pull, so other jobs read as before.
    let pulls = bd
        .status
        .as_ref()
        .and_then(|s| s.pulls.as_ref())
        .map_or(String::new(), |p| {
            let of = p.pending + p.pulling + p.pulled + p.failed;
            format!(
                "; pulled {}/{of}, {} pull failed, {} pulling",
                p.pulled, p.failed, p.pulling
            )
        });
    format!(
        "{name} {} {}/{} succeeded, {} failed, {} running, {} pending, {} stopped{waiting}{pulls} [{bar}] {pct}%",
        phase(bd).as_str(),
        c.succeeded,
        c.total,
        c.failed,
        c.running,
        c.pending,
        c.stopped
    )
}

/// What changed in a Continuous job's nodes between two reads: joins, leaves begun or called
/// off, and nodes gone; sorted by node.
pub fn membership_lines(before: &BatchDeployment, after: &BatchDeployment) -> Vec<String> {
    let nodes = |bd: &BatchDeployment| -> BTreeMap<String, bool> {
        let status = bd.status.as_ref();
        let list = status.map(|s| s.nodes.as_slice()).unwrap_or_default();
        (list.iter())
            .map(|n| (n.node.clone(), n.leaving_since.is_some()))
            .collect()
    };
    let (old, new) = (nodes(before), nodes(after));
    let name = after.name_any();
    let mut lines = BTreeMap::new();
    for (node, leaving) in &new {
        let what = match (old.get(node), leaving) {
            (None, _) => "joined",
            (Some(false), true) => "no longer matches: leaving after the grace",
            (Some(true), false) => "matches again: stays",
            _ => continue,
        };
        lines.insert(node.clone(), format!("{name} node {node} {what}"));
    }
    for node in old.keys().filter(|n| !new.contains_key(*n)) {
        lines.insert(node.clone(), format!("{name} node {node} left"));
    }
    lines.into_values().collect()
}

/// The object as kubectl shows it: without `metadata.managedFields` (`get` hides them too).
pub(super) fn shown(bd: &BatchDeployment) -> BatchDeployment {
    let mut bd = bd.clone();
    bd.metadata.managed_fields = None;
    bd
}

pub(super) fn print_objects(
    items: &[BatchDeployment],
    format: ObjectOutput,
    list: bool,
) -> Result<()> {
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
    let value = document(&items, list)?;
    match format {
        ObjectOutput::Yaml => print(&to_yaml(&value)?),
        _ => println(&to_json(&value)?),
    }
}

/// One object, or a List (of many, or whenever a listing was asked for), as kubectl prints.
fn document(items: &[BatchDeployment], list: bool) -> Result<serde_json::Value> {
    Ok(if list || items.len() != 1 {
        json!({"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}})
    } else {
        serde_json::to_value(&items[0])?
    })
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
