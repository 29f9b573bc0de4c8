//! `kubectl appimage batch …`: BatchDeployments, one AppImage deployed to many nodes as a job
//! (issue 18). A module per subcommand: `create` builds the object and checks it with the core's
//! own spec rules before anything is sent; `control` (stop, continue, retry) patches the spec;
//! `get`, `describe` and `delete`; the controller does the rest.

mod control;
mod create;
mod delete;
mod describe;
mod get;
#[cfg(test)]
mod tests;

use control::{retry, suspend};
pub use create::CreateArgs;
use create::{build, create, created};
pub use delete::DeleteArgs;
use delete::delete;
use describe::describe;
pub use get::GetArgs;
use get::get;

use crate::client::{Cluster, MANAGER, server_error};
use crate::flags::{DryRun, Global};
use crate::output::{now, print};
use anyhow::{Context, Result, anyhow};
use appimage::batch::BatchDeployment;
use clap::{Args, Subcommand};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};

/// `batchdeployment.appimage.kuscia.secretflow`, kubectl's singular name in messages.
pub(super) const KIND_NAME: &str = "batchdeployment.appimage.kuscia.secretflow";

#[derive(Args, Debug)]
pub struct BatchArgs {
    #[command(subcommand)]
    pub command: BatchCommand,
}

#[derive(Subcommand, Debug)]
pub enum BatchCommand {
    /// Create a BatchDeployment: deploy an AppImage to the chosen nodes as a job
    Create(Box<CreateArgs>),
    /// List BatchDeployments (phase, succeeded/total, failed, age), or show one
    Get(GetArgs),
    /// Show a BatchDeployment in detail, with a line per node and its reason
    Describe(NameArgs),
    /// Stop a job: in-flight nodes are halted, finished ones keep their results
    Stop(NameArgs),
    /// Continue a stopped job with the nodes not yet done
    Continue(NameArgs),
    /// Retry a Failed, PartiallySucceeded or TimedOut job: only nodes that did not succeed rerun
    Retry(NameArgs),
    /// Delete a BatchDeployment and, through owner references, its workloads
    Delete(DeleteArgs),
    /// Print the BatchDeployment CustomResourceDefinition as YAML
    Crd,
}

#[derive(Args, Debug)]
pub struct NameArgs {
    #[arg(value_name = "NAME")]
    pub name: String,
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
}

/// Run a batch command; only `crd` and `create --dry-run=client` stay offline.
pub fn run(global: &Global, args: BatchArgs) -> Result<()> {
    match args.command {
        BatchCommand::Crd => print(&appimage::batch::crd_yaml()),
        BatchCommand::Create(c) if c.dry_run.dry_run == DryRun::Client => {
            let bd = build(&c, c.namespace.as_deref().unwrap_or("default"))?;
            created(&c, &bd)
        }
        command => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(run_cluster(global, command))
        }
    }
}

async fn run_cluster(global: &Global, command: BatchCommand) -> Result<()> {
    let cluster = Cluster::connect(global).await?;
    let (client, server, context) = cluster.parts();
    let jobs = Jobs {
        client,
        server: server.to_string(),
        context: context.to_string(),
    };
    match command {
        BatchCommand::Create(c) => create(&cluster, &jobs, &c).await,
        BatchCommand::Get(g) => get(&jobs, &g).await,
        BatchCommand::Describe(n) => {
            let bd = jobs.get(&n).await?;
            print(&describe(&bd, now()))
        }
        BatchCommand::Stop(n) => suspend(&jobs, &n, true).await,
        BatchCommand::Continue(n) => suspend(&jobs, &n, false).await,
        BatchCommand::Retry(n) => retry(&jobs, &n).await,
        BatchCommand::Delete(d) => delete(&jobs, &d).await,
        BatchCommand::Crd => unreachable!("crd runs offline"),
    }
}

/// BatchDeployments on one cluster, with errors in kubectl's words.
pub(super) struct Jobs {
    client: Client,
    server: String,
    context: String,
}

impl Jobs {
    pub(super) fn api(&self, namespace: Option<&str>) -> Api<BatchDeployment> {
        match namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::default_namespaced(self.client.clone()),
        }
    }

    pub(super) fn namespace<'a>(&'a self, given: Option<&'a str>) -> &'a str {
        given.unwrap_or(self.client.default_namespace())
    }

    /// A kube error in kubectl's words; a missing CRD says how to install it.
    pub(super) fn error(&self, e: kube::Error) -> anyhow::Error {
        match &e {
            kube::Error::Api(s)
                if s.code == 404
                    && (s.reason != "NotFound"
                        || s.message == "the server could not find the requested resource") =>
            {
                anyhow!(
                    "the server {} doesn't have a resource type \"batchdeployments\"; install the CRD: kubectl appimage batch crd | kubectl apply -f -",
                    self.server
                )
            }
            _ => server_error(e, &self.server, &self.context),
        }
    }

    pub(super) async fn get(&self, n: &NameArgs) -> Result<BatchDeployment> {
        let api = self.api(n.namespace.as_deref());
        api.get(&n.name).await.map_err(|e| self.error(e))
    }

    pub(super) async fn patch(
        &self,
        n: &NameArgs,
        patch: serde_json::Value,
    ) -> Result<BatchDeployment> {
        let params = PatchParams {
            field_manager: Some(MANAGER.into()),
            ..Default::default()
        };
        let api = self.api(n.namespace.as_deref());
        api.patch(&n.name, &params, &Patch::Merge(&patch))
            .await
            .map_err(|e| self.error(e))
    }
}
