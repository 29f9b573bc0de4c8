//! `kubectl appimage rollback APPIMAGE --to-revision N`: put revision N's spec back on the
//! AppImage. The controller sees the spec of revision N again and Auto workloads follow.

use anyhow::Result;
use appimage::revision::{CHANGE_CAUSE, revision_name};
use clap::Args;
use kube::Api;

use crate::client::{Cluster, block_on, server_error};
use crate::flags::Global;
use crate::output::{object_name, println};

#[derive(Args, Debug)]
pub struct RollbackArgs {
    /// The AppImage
    pub name: String,
    /// The revision whose spec to restore (kubectl appimage history lists them)
    #[arg(long, value_name = "N")]
    pub to_revision: i64,
}

pub fn run(global: &Global, args: &RollbackArgs) -> Result<()> {
    block_on(async {
        let cluster = Cluster::connect(global).await?;
        let mut image = cluster.get(&args.name).await?;
        let (client, server, context) = cluster.parts();
        let api = Api::<appimage::revision::AppImageRevision>::all(client);
        let rev_name = revision_name(&args.name, args.to_revision);
        let Some(rev) = api
            .get_opt(&rev_name)
            .await
            .map_err(|e| server_error(e, server, context))?
        else {
            anyhow::bail!(
                "--to-revision {}: AppImage {:?} has no revision {} (kubectl appimage history {} lists them)",
                args.to_revision,
                args.name,
                args.to_revision,
                args.name
            );
        };
        if image.spec == rev.spec.template {
            return println(&format!(
                "{} unchanged (already revision {})",
                object_name(&args.name),
                args.to_revision
            ));
        }
        image.spec = rev.spec.template;
        let cause = format!(
            "kubectl appimage rollback --to-revision {}",
            args.to_revision
        );
        image
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(CHANGE_CAUSE.into(), cause);
        image.metadata.managed_fields = None;
        cluster.replace(&image, false).await?;
        println(&format!(
            "{} rolled back to revision {}",
            object_name(&args.name),
            args.to_revision
        ))
    })
}
