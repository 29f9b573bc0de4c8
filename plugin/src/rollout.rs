//! `kubectl appimage rollout APPIMAGE [--workload NAME] [-n NS]`: move the AppImage's workloads
//! (Manual ones too) to its current revision, as the controller moves Auto ones: the pod
//! template names the revision and carries its image; the workload rolls with its strategy.

use anyhow::{Result, bail};
use appimage::revision::{LATEST, REVISION, REVISION_HASH, named, resolve};
use appimage::workload::revision_hash;
use clap::Args;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource};
use serde_json::{Value, json};

use crate::cli::Global;
use crate::client::{Cluster, block_on, server_error};
use crate::output::println;

#[derive(Args, Debug)]
pub struct RolloutArgs {
    /// The AppImage
    pub name: String,
    /// Only this workload (by name) [default: every workload of the AppImage in the namespace]
    #[arg(long, value_name = "NAME")]
    pub workload: Option<String>,
    /// The namespace [default: the context's]
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

pub fn run(global: &Global, args: &RolloutArgs) -> Result<()> {
    block_on(async {
        let cluster = Cluster::connect(global).await?;
        let image = cluster.get(&args.name).await?;
        let (client, server, context) = cluster.parts();
        let err = |e| server_error(e, server, context);
        let revs = crate::history::revisions(&client, &args.name)
            .await
            .map_err(err)?;
        let hash = revision_hash(&image.spec);
        let Some(current) = revs.iter().find(|r| r.spec.hash == hash) else {
            bail!(
                "the current spec of AppImage {:?} is not recorded as a revision yet: the webhook's controllers record it (is the webhook running as leader, with the AppImageRevision CRD installed?); retry in a moment",
                args.name
            );
        };
        let known = crate::history::known(&revs);
        let ns = args
            .namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string());
        let image_ref = format!("{}:{}", image.spec.image.name, image.spec.image.tag);
        let want = Want {
            number: current.spec.revision,
            hash: &hash,
            image: &image_ref,
            known: &known,
        };
        let mut found = 0;
        found += roll_all::<Deployment>(&client, &ns, args, &want, |d| {
            d.spec.as_ref().map(|s| &s.template)
        })
        .await
        .map_err(err)?;
        found += roll_all::<StatefulSet>(&client, &ns, args, &want, |d| {
            d.spec.as_ref().map(|s| &s.template)
        })
        .await
        .map_err(err)?;
        found += roll_all::<DaemonSet>(&client, &ns, args, &want, |d| {
            d.spec.as_ref().map(|s| &s.template)
        })
        .await
        .map_err(err)?;
        if found == 0 {
            let which = args
                .workload
                .as_deref()
                .map_or(String::new(), |w| format!(" named {w:?}"));
            bail!(
                "no Deployment, StatefulSet or DaemonSet{which} of AppImage {:?} in namespace {ns:?}",
                args.name
            );
        }
        Ok(())
    })
}

struct Want<'a> {
    number: i64,
    hash: &'a str,
    image: &'a str,
    known: &'a [appimage::revision::Known],
}

async fn roll_all<K>(
    client: &Client,
    ns: &str,
    args: &RolloutArgs,
    want: &Want<'_>,
    template: impl Fn(&K) -> Option<&PodTemplateSpec>,
) -> kube::Result<usize>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api = Api::<K>::namespaced(client.clone(), ns);
    let lp = kube::api::ListParams::default().labels(&format!(
        "{}={}",
        appimage::labels::APP_IMAGE,
        args.name
    ));
    let mut count = 0;
    for obj in api.list(&lp).await?.items {
        let name = obj.meta().name.clone().unwrap_or_default();
        if args.workload.as_ref().is_some_and(|w| *w != name) {
            continue;
        }
        let Some(t) = template(&obj) else { continue };
        count += 1;
        let kind = K::kind(&()).to_lowercase();
        let group = K::group(&());
        let shown = if group.is_empty() {
            format!("{kind}/{name}")
        } else {
            format!("{kind}.{group}/{name}")
        };
        let runs = named(t.metadata.as_ref().and_then(|m| m.annotations.as_ref()))
            .ok()
            .and_then(|n| resolve(&n, want.known));
        if runs == Some(want.number) {
            println(&format!("{shown} unchanged (revision {})", want.number)).ok();
            continue;
        }
        let patch = patch(t, want);
        api.patch(&name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await?;
        let from = runs.map_or("unknown".into(), |n| n.to_string());
        println(&format!(
            "{shown} rolled out: revision {from} -> {}",
            want.number
        ))
        .ok();
    }
    Ok(count)
}

/// The strategic merge patch: the revision noted on the workload, named by its template, and
/// the image on the containers that already run the AppImage's image name.
fn patch(t: &PodTemplateSpec, want: &Want<'_>) -> Value {
    let base = want.image.rsplit_once(':').map_or(want.image, |(b, _)| b);
    let containers: Vec<Value> = t
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .filter(|c| c.image.as_deref().is_some_and(|i| i.starts_with(base)))
        .map(|c| json!({"name": c.name, "image": want.image}))
        .collect();
    json!({
        "metadata": {
            "labels": {LATEST: want.number.to_string()},
            "annotations": {LATEST: want.number.to_string()},
        },
        "spec": {"template": {
            "metadata": {"annotations": {REVISION: want.number.to_string(), REVISION_HASH: want.hash}},
            "spec": {"containers": containers},
        }},
    })
}
