//! `keys plan-rotation --remove KEY`: every AppImage, revision and running workload that
//! removing or revoking one trusted key would break, offline (`-f`) or against the cluster.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Result, anyhow};
use appimage::resource::AppImage;
use appimage::revision::AppImageRevision;
use appimage::signature::Requirement;
use appimage::signature::rotation::{Breakage, plan};
use clap::{ArgGroup, Args, Subcommand};

use crate::client::{Cluster, block_on, server_error};
use crate::flags::Global;
use crate::history::{in_use, known, revisions};
use crate::input;
use crate::keyfile::load_keys;
use crate::output::{print, table};

#[derive(Args, Debug)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// List every AppImage, revision and workload that removing or revoking KEY would break
    PlanRotation(PlanArgs),
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("trusted").required(true).args(["key", "keys_dir"]).multiple(true)))]
pub struct PlanArgs {
    /// The trusted key to remove or revoke: its file name (as in keys-policy.yaml) or path
    #[arg(long, value_name = "KEY")]
    pub remove: String,
    /// A trusted PEM public key; repeatable
    #[arg(long, value_name = "PUBLIC_KEY")]
    pub key: Vec<PathBuf>,
    /// Every *.pem and *.pub key in this directory, with its keys-policy.yaml (the webhook's
    /// --trusted-keys-dir)
    #[arg(long, value_name = "DIR")]
    pub keys_dir: Option<PathBuf>,
    /// Check the AppImages in these files (offline) instead of the cluster's
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub filename: Vec<String>,
    /// Also accept payload v1, as the webhook's --accept-payload-v1
    #[arg(long)]
    pub accept_payload_v1: bool,
}

pub fn run(global: &Global, args: &KeysArgs) -> Result<()> {
    let KeysCommand::PlanRotation(args) = &args.command;
    let keys = load_keys(&args.key, args.keys_dir.as_deref())?;
    let requirement = Requirement {
        accept_v1: args.accept_payload_v1,
        min_signers: 1,
    };
    let now = jiff::Timestamp::now();
    if !args.filename.is_empty() {
        let loaded = input::load(&args.filename)?;
        let subjects: Vec<(String, &AppImage)> = loaded
            .iter()
            .map(|l| (format!("appimage/{}", input::display_name(l)), &l.image))
            .collect();
        let found =
            plan(&subjects, &keys, &args.remove, &requirement, now).map_err(|e| anyhow!(e))?;
        return print(&render(
            &args.remove,
            subjects.len(),
            &found,
            &BTreeMap::new(),
        ));
    }
    block_on(async {
        let cluster = Cluster::connect(global).await?;
        let (client, server, context) = cluster.parts();
        let err = |e| server_error(e, server, context);
        let images = cluster.list().await?;
        let mut revs: Vec<(AppImageRevision, AppImage)> = Vec::new();
        let mut users = BTreeMap::new();
        for image in &images {
            let name = image.metadata.name.clone().unwrap_or_default();
            let recorded = match revisions(&client, &name).await {
                Err(kube::Error::Api(s)) if s.code == 404 => Vec::new(),
                other => other.map_err(err)?,
            };
            for (number, by) in in_use(&client, &name, &known(&recorded))
                .await
                .map_err(err)?
            {
                users.insert(subject_of_revision(&name, number), by);
            }
            for r in recorded {
                let as_image = AppImage::new(&name, r.spec.template.clone());
                revs.push((r, as_image));
            }
        }
        let mut subjects: Vec<(String, &AppImage)> = images
            .iter()
            .map(|i| {
                (
                    format!(
                        "appimage/{}",
                        i.metadata.name.as_deref().unwrap_or_default()
                    ),
                    i,
                )
            })
            .collect();
        subjects.extend(
            revs.iter()
                .map(|(r, i)| (subject_of_revision(&r.spec.app_image, r.spec.revision), i)),
        );
        let found =
            plan(&subjects, &keys, &args.remove, &requirement, now).map_err(|e| anyhow!(e))?;
        print(&render(&args.remove, subjects.len(), &found, &users))
    })
}

fn subject_of_revision(appimage: &str, number: i64) -> String {
    format!(
        "revision/{}",
        appimage::revision::revision_name(appimage, number)
    )
}

/// A table of what breaks, and who runs it; or one line saying nothing does.
fn render(
    key: &str,
    checked: usize,
    found: &[Breakage],
    users: &BTreeMap<String, Vec<String>>,
) -> String {
    if found.is_empty() {
        return format!(
            "Removing or revoking {key} breaks none of the {checked} AppImages and revisions checked.\n"
        );
    }
    let yes_no = |b: &Option<String>| if b.is_some() { "breaks" } else { "keeps" }.to_string();
    let mut rows = vec![
        ["SUBJECT", "IF-REMOVED", "IF-REVOKED", "RUN-BY", "REASON"]
            .map(String::from)
            .to_vec(),
    ];
    for b in found {
        let by = users
            .get(&b.subject)
            .map_or("<none>".into(), |u| u.join(","));
        let reason = b
            .if_revoked
            .clone()
            .or(b.if_removed.clone())
            .unwrap_or_default();
        rows.push(vec![
            b.subject.clone(),
            yes_no(&b.if_removed),
            yes_no(&b.if_revoked),
            by,
            reason,
        ]);
    }
    table(&rows)
}
