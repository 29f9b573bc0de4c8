//! `kubectl appimage rollout APPIMAGE [--workload NAME] [-n NS]`: move the AppImage's workloads
//! (Manual ones too) to its current revision, as the controller moves Auto ones: the pod
//! template names the revision and carries its image; the workload rolls with its strategy.
//! Every kind `deploy` makes: a Deployment, StatefulSet or DaemonSet rolls its Pods; a CronJob's
//! next runs use the new revision; a Job cannot (its pod template is immutable), which is said,
//! with what to do instead. The Jobs a CronJob spawned are its runs, not workloads: left alone.

use anyhow::{Result, bail};
use appimage::revision::{LATEST, REVISION, REVISION_HASH, named, resolve};
use appimage::workload::{Workload, is_own_workload, revision_hash};
use clap::Args;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource};
use serde_json::{Value, json};

use crate::client::{Cluster, block_on, server_error};
use crate::flags::{DocOutput, Global};
use crate::output::{println, to_json, to_yaml};

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct RolloutArgs {
    /// Steer a progressive rollout (an AppImage with an AppImageRollout of its name)
    #[command(subcommand)]
    pub command: Option<crate::waves::WavesCommand>,
    /// The AppImage
    #[arg(required = true)]
    pub name: Option<String>,
    /// Only this workload (by name) [default: every workload of the AppImage in the namespace]
    #[arg(long, value_name = "NAME")]
    pub workload: Option<String>,
    /// The namespace [default: the context's]
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// yaml or json: what happened to each workload, as a document [default: a line each]
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<DocOutput>,
}

pub fn run(global: &Global, args: &RolloutArgs) -> Result<()> {
    if let Some(command) = &args.command {
        return crate::waves::run(global, command);
    }
    let name = args.name.clone().unwrap_or_default();
    let args = &Named { name, args };
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
        // The reference deploy and the webhook's Pods use (name@sha256:… when pinned).
        let image_ref = image.image_ref();
        let want = Want {
            number: current.spec.revision,
            hash: &hash,
            image: &image_ref,
            base: &image.spec.image.name,
            known: &known,
            report: args.output.map(|_| std::sync::Mutex::new(Vec::new())),
        };
        let found = roll_every_kind(&client, &ns, args, &want)
            .await
            .map_err(err)?;
        if found.count == 0 {
            let which = args
                .workload
                .as_deref()
                .map_or(String::new(), |w| format!(" named {w:?}"));
            bail!(
                "no Deployment, StatefulSet, DaemonSet, Job or CronJob{which} of AppImage {:?} in namespace {ns:?}",
                args.name
            );
        }
        if let (Some(format), Some(report)) = (args.output, want.report) {
            let workloads = report.into_inner().unwrap_or_default();
            let doc = json!({"appImage": args.name, "namespace": ns,
                             "revision": want.number, "workloads": workloads});
            crate::output::print(&match format {
                DocOutput::Yaml => to_yaml(&doc)?,
                DocOutput::Json => to_json(&doc)?,
            })?;
        }
        match (found.immutable.first(), &args.workload) {
            (Some(why), Some(_)) => bail!("{why}"),
            _ => found
                .immutable
                .iter()
                .for_each(|why| eprintln!("warning: {why}")),
        }
        Ok(())
    })
}

/// Where a Deployment's, StatefulSet's, DaemonSet's or Job's pod template is.
const TEMPLATE: &[&str] = &["spec", "template"];
/// Where a CronJob's pod template is.
const CRON_TEMPLATE: &[&str] = &["spec", "jobTemplate", "spec", "template"];

/// The workloads found, and why those that cannot be rolled out (Jobs) were not.
struct Found {
    count: usize,
    immutable: Vec<String>,
}

/// Roll every workload kind `deploy` makes.
async fn roll_every_kind(
    client: &Client,
    ns: &str,
    args: &Named<'_>,
    want: &Want<'_>,
) -> kube::Result<Found> {
    let mut count = 0;
    count += roll_all::<Deployment>(client, ns, args, want, TEMPLATE, |d| {
        d.spec.as_ref().map(|s| &s.template)
    })
    .await?;
    count += roll_all::<StatefulSet>(client, ns, args, want, TEMPLATE, |d| {
        d.spec.as_ref().map(|s| &s.template)
    })
    .await?;
    count += roll_all::<DaemonSet>(client, ns, args, want, TEMPLATE, |d| {
        d.spec.as_ref().map(|s| &s.template)
    })
    .await?;
    count += roll_all::<CronJob>(client, ns, args, want, CRON_TEMPLATE, |c| {
        c.spec
            .as_ref()
            .and_then(|s| s.job_template.spec.as_ref())
            .map(|s| &s.template)
    })
    .await?;
    let immutable = jobs(client, ns, args, want).await?;
    count += immutable.count;
    Ok(Found {
        count,
        immutable: immutable.immutable,
    })
}

/// The AppImage's own Jobs (not a CronJob's runs): unchanged when they run the revision,
/// else why they cannot be rolled out.
async fn jobs(client: &Client, ns: &str, args: &Named<'_>, want: &Want<'_>) -> kube::Result<Found> {
    let mut found = Found {
        count: 0,
        immutable: Vec::new(),
    };
    for job in mine::<Job>(client, ns, args).await? {
        if !is_own_workload(&Workload::Job(Box::new(job.clone()))) {
            continue;
        }
        let Some(t) = job.spec.as_ref().map(|s| &s.template) else {
            continue;
        };
        found.count += 1;
        let name = job.metadata.name.clone().unwrap_or_default();
        let shown = shown::<Job>(&name);
        let runs = runs(t, want);
        if runs == Some(want.number) {
            want.say::<Job>(&name, runs, "unchanged");
            continue;
        }
        want.say::<Job>(&name, runs, "immutable");
        found.immutable.push(format!(
            "{shown} runs revision {} of AppImage {:?}, which is at revision {}: a Job's pod template is immutable, so a Job cannot be rolled out; to run revision {} delete it and deploy it again: kubectl delete job {name} -n {ns} && kubectl appimage deploy {} --kind Job --name {name} -n {ns}",
            runs.map_or("unknown".into(), |n| n.to_string()),
            args.name,
            want.number,
            want.number,
            args.name,
        ));
    }
    Ok(found)
}

/// The objects of kind `K` labelled for the AppImage (and named `--workload`, when given).
async fn mine<K>(client: &Client, ns: &str, args: &Named<'_>) -> kube::Result<Vec<K>>
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
    let mut items = api.list(&lp).await?.items;
    items.retain(|o| {
        args.workload
            .as_ref()
            .is_none_or(|w| Some(w) == o.meta().name.as_ref())
    });
    Ok(items)
}

/// `kind.group/name`, as kubectl shows an object.
fn shown<K: Resource<DynamicType = ()>>(name: &str) -> String {
    let kind = K::kind(&()).to_lowercase();
    let group = K::group(&());
    if group.is_empty() {
        format!("{kind}/{name}")
    } else {
        format!("{kind}.{group}/{name}")
    }
}

/// The revision a pod template runs, if known.
fn runs(t: &PodTemplateSpec, want: &Want<'_>) -> Option<i64> {
    named(t.metadata.as_ref().and_then(|m| m.annotations.as_ref()))
        .ok()
        .and_then(|n| resolve(&n, want.known))
}

struct Want<'a> {
    number: i64,
    hash: &'a str,
    image: &'a str,
    /// The AppImage's image name: the containers running it get [`Want::image`].
    base: &'a str,
    known: &'a [appimage::revision::Known],
    /// With `-o yaml|json`: what happened to each workload, printed at the end.
    report: Option<std::sync::Mutex<Vec<Value>>>,
}

impl Want<'_> {
    /// Tell what happened to workload `name`: a line, or an entry of the report.
    fn say<K: Resource<DynamicType = ()>>(&self, name: &str, from: Option<i64>, outcome: &str) {
        let Some(report) = &self.report else {
            let line = match outcome {
                "rolled out" => format!(
                    "{} rolled out: revision {} -> {}",
                    shown::<K>(name),
                    from.map_or("unknown".into(), |n| n.to_string()),
                    self.number
                ),
                "unchanged" => format!("{} unchanged (revision {})", shown::<K>(name), self.number),
                _ => return,
            };
            println(&line).ok();
            return;
        };
        if let Ok(mut items) = report.lock() {
            items.push(json!({"kind": K::kind(&()), "name": name, "from": from,
                              "to": self.number, "outcome": outcome}));
        }
    }
}

async fn roll_all<K>(
    client: &Client,
    ns: &str,
    args: &Named<'_>,
    want: &Want<'_>,
    path: &[&str],
    template: impl Fn(&K) -> Option<&PodTemplateSpec>,
) -> kube::Result<usize>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api = Api::<K>::namespaced(client.clone(), ns);
    let mut count = 0;
    for obj in mine::<K>(client, ns, args).await? {
        let name = obj.meta().name.clone().unwrap_or_default();
        let Some(t) = template(&obj) else { continue };
        count += 1;
        let runs = runs(t, want);
        if runs == Some(want.number) {
            want.say::<K>(&name, runs, "unchanged");
            continue;
        }
        let patch = patch(t, want, path);
        api.patch(&name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await?;
        want.say::<K>(&name, runs, "rolled out");
    }
    Ok(count)
}

/// The strategic merge patch: the revision noted on the workload, named by its template, and
/// the image on the containers that already run the AppImage's image name; the template at
/// `path` (its last segment `template`).
fn patch(t: &PodTemplateSpec, want: &Want<'_>, path: &[&str]) -> Value {
    let runs_base = |i: &str| {
        i.strip_prefix(want.base)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '@']))
    };
    let containers: Vec<Value> = t
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .filter(|c| c.image.as_deref().is_some_and(runs_base))
        .map(|c| json!({"name": c.name, "image": want.image}))
        .collect();
    let mut template = json!({
        "metadata": {"annotations": {REVISION: want.number.to_string(), REVISION_HASH: want.hash}},
        "spec": {"containers": containers},
    });
    for segment in path.iter().rev() {
        template = json!({ *segment: template });
    }
    let mut body = json!({
        "metadata": {
            "labels": {LATEST: want.number.to_string()},
            "annotations": {LATEST: want.number.to_string()},
        },
    });
    body["spec"] = template["spec"].take();
    body
}

/// The arguments with the AppImage's name, which clap requires when no subcommand is given.
struct Named<'a> {
    name: String,
    args: &'a RolloutArgs,
}

impl std::ops::Deref for Named<'_> {
    type Target = RolloutArgs;
    fn deref(&self) -> &RolloutArgs {
        self.args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cronjobs_patch_reaches_its_job_templates_pod_template() {
        let t: PodTemplateSpec = serde_json::from_value(json!({
            "spec": {"containers": [
                {"name": "main", "image": "secretflow/sf:1.0"},
                {"name": "tools", "image": "secretflow/sf-tools:1.0"},
                {"name": "pinned", "image": "secretflow/sf@sha256:99"},
            ]}
        }))
        .unwrap();
        let want = Want {
            number: 2,
            hash: "abc",
            image: "secretflow/sf@sha256:0123",
            base: "secretflow/sf",
            known: &[],
            report: None,
        };
        let p = patch(&t, &want, CRON_TEMPLATE);
        let template = &p["spec"]["jobTemplate"]["spec"]["template"];
        assert_eq!(template["metadata"]["annotations"][REVISION], "2");
        assert_eq!(
            template["spec"]["containers"],
            json!([
                {"name": "main", "image": "secretflow/sf@sha256:0123"},
                {"name": "pinned", "image": "secretflow/sf@sha256:0123"},
            ]),
            "the AppImage's image, by the reference deploy writes; not another image's"
        );
        assert_eq!(p["metadata"]["labels"][LATEST], "2");
        let p = patch(&t, &want, TEMPLATE);
        assert_eq!(
            p["spec"]["template"]["metadata"]["annotations"][REVISION],
            "2"
        );
    }
}
