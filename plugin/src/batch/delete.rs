//! `batch delete`: the job and, through owner references, its workloads.

use super::*;
use crate::output::println;
use anyhow::Result;
use clap::Args;
use kube::api::DeleteParams;

#[derive(Args, Debug)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub target: NameArgs,
    /// Treat a missing BatchDeployment as deleted
    #[arg(long)]
    pub ignore_not_found: bool,
}

pub(super) async fn delete(jobs: &Jobs, d: &DeleteArgs) -> Result<()> {
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
