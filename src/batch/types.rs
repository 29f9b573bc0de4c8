//! The BatchDeployment resource (`appimage.kuscia.secretflow/v1alpha1`): one AppImage deployed
//! to many chosen nodes as a job whose phase people watch (Huawei IEF's batch app deployment).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::resource::RestartPolicy;

pub const GROUP: &str = "appimage.kuscia.secretflow";
pub const VERSION: &str = "v1alpha1";
pub const KIND: &str = "BatchDeployment";
pub const PLURAL: &str = "batchdeployments";
/// `batchdeployments.appimage.kuscia.secretflow`, as kubectl names the resource.
pub const RESOURCE: &str = "batchdeployments.appimage.kuscia.secretflow";
/// The timeout when `spec.timeout` is unset: IEF's 10 minutes of queueing plus running.
pub const DEFAULT_TIMEOUT: &str = "10m";

/// One AppImage deployed to many nodes, chosen by name or by labels, as a job.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[kube(
    group = "appimage.kuscia.secretflow",
    version = "v1alpha1",
    kind = "BatchDeployment",
    plural = "batchdeployments",
    shortname = "bd",
    namespaced,
    status = "BatchDeploymentStatus",
    doc = "BatchDeployment deploys one AppImage to many chosen nodes as a job: queued, running, (partially) succeeded, failed, stopped or timed out.",
    validation = kube::core::Rule::new("(has(self.spec.nodeNames) && size(self.spec.nodeNames) > 0) || (has(self.spec.nodeSelector) && size(self.spec.nodeSelector) > 0)")
        .message("choose nodes with spec.nodeSelector or spec.nodeNames; an empty choice never means every node"),
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Succeeded","type":"string","description":"nodes succeeded / nodes chosen","jsonPath":".status.summary"}"#,
    printcolumn = r#"{"name":"Failed","type":"integer","jsonPath":".status.counts.failed"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BatchDeploymentSpec {
    /// The AppImage to deploy (cluster-scoped, by name).
    pub app_image: String,
    /// Pin a revision of the AppImage; unset runs its current spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// Role that chooses the deploy template, as Kuscia chooses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Only consider deploy templates with this name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// TASK_ID of the rendered config files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// TASK_INPUT_CONFIG / INPUT_CONFIG.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_config: Option<String>,
    /// SERVING_ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving_id: Option<String>,
    /// Extra render values; they win over the built-in ones.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, String>,
    /// Nodes whose labels hold all of these. With nodeNames, the union of both is chosen.
    /// Both empty is an error, never "every node".
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Nodes by name; a name that does not exist fails that node (NodeNotFound).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_names: Vec<String>,
    /// Per-node workloads are named `<namePrefix>-<node>` (cut and hashed to 63 characters);
    /// default: the BatchDeployment's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_prefix: Option<String>,
    /// Pods per node (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub instances: Option<i32>,
    /// Always: a long-running workload whose Pods must become Ready. OnFailure or Never: a
    /// Job whose Pods must succeed. Default Always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "hostPID")]
    pub host_pid: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_network: Option<bool>,
    /// A PodTemplateSpec fragment each node's Pod template starts from (volumes, tolerations,
    /// initContainers, ...). The AppImage label and options, the image of the template's
    /// containers, nodeName, restartPolicy, hostPID and hostNetwork are set on top.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub pod_template: Option<serde_json::Value>,
    /// Nodes in flight at once; default all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub parallelism: Option<i32>,
    /// Failed nodes that still make the job PartiallySucceeded rather than Failed: a count or a
    /// percentage of the chosen nodes ("10%"). Default: Failed only when no node succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_tolerance: Option<IntOrString>,
    /// Longest time queued plus running, e.g. 10m, 1h30m; 0 for none. Default 10m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// true stops the job (in-flight nodes are halted, finished ones keep their results);
    /// false continues it with the nodes not yet done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// Bump to retry a Failed, PartiallySucceeded or TimedOut job: only the nodes that did
    /// not succeed run again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_generation: Option<i64>,
    /// Automatic reruns of a node whose workload failed, before the node counts as Failed
    /// (default 0). A manual retry starts the count again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub retries: Option<i32>,
    /// Wait before a node's first automatic rerun, doubled for each one after it (at most
    /// 5m), e.g. 10s, 1m. Default 10s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_backoff: Option<String>,
    /// Per-group differences, applied in order to the nodes each selects; for each field the
    /// last matching override that sets it wins (env and set: per name). Never the image,
    /// command, args or config templates: the AppImage's signature covers those.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<Override>,
    /// Once (default): the nodes are chosen at start and the job ends. Continuous: a node
    /// that comes to match gets the app, one that stops matching loses it after
    /// `leaveGrace`; the job stays Running, its results kept current, and has no timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// Continuous: how long a node that stops matching keeps the app (e.g. 30s, 5m). Default 5m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leave_grace: Option<String>,
    /// Pull the AppImage's image on every chosen node before any Pod of the app is created
    /// (phase PrePulling); nodes whose pull fails are not deployed to. Unset: no pre-pull.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_pull: Option<PrePull>,
}

/// The image pre-pull phase (KubeEdge's ImagePrePullJob): a pull per chosen node, pinned to it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct PrePull {
    /// Nodes pulling at once; default all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub concurrency: Option<i32>,
    /// Longest pull on one node, e.g. 2m, 90s; default 5m. A pull not done by then failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Failed pulls that still let the job deploy to the other nodes: a count or a percentage
    /// of the chosen nodes ("10%"). Default 0. More fail the job before any Pod is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_tolerance: Option<IntOrString>,
}

/// The pull timeout when `spec.prePull.timeout` is unset.
pub const DEFAULT_PULL_TIMEOUT: &str = "5m";

/// How the job's nodes are chosen.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default, Hash)]
pub enum Mode {
    /// Chosen once at start; the job ends.
    #[default]
    Once,
    /// Kept in step with the selector for as long as the job exists.
    Continuous,
}

/// The grace when `spec.leaveGrace` is unset.
pub const DEFAULT_LEAVE_GRACE: &str = "5m";

/// What a group of nodes gets differently (KubeEdge's overriders, OpenYurt's workloadTweaks).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct Override {
    /// The nodes whose labels hold all of these; required (an empty selector never means
    /// every node).
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    /// Pods on each of these nodes, instead of spec.instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub replicas: Option<i32>,
    /// Env vars for every container of the deploy template, NAME: value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Resources for every container, merged key by key over the template's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Added to the Pods' tolerations (for example of these nodes' taints).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Render values on top of spec.values, KEY: value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    /// Refused: the AppImage's signature covers the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("false").message(SIGNED_IMAGE))]
    pub image: Option<String>,
    /// Refused: the AppImage's signature covers the command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("false").message(SIGNED_COMMAND))]
    pub command: Option<Vec<String>>,
    /// Refused: the AppImage's signature covers the args.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("false").message(SIGNED_COMMAND))]
    pub args: Option<Vec<String>>,
    /// Refused: the AppImage's signature covers the config templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    #[x_kube(validation = Rule::new("false").message(SIGNED_CONFIG))]
    pub config_templates: Option<serde_json::Value>,
}

/// Why an override may not set these: what the AppImage's signature covers stays as signed.
pub const SIGNED_IMAGE: &str =
    "the AppImage's signature covers the image; an override cannot change it (remove it)";
pub const SIGNED_COMMAND: &str = "the AppImage's signature covers the command and args; an override cannot change them (remove them)";
pub const SIGNED_CONFIG: &str = "the AppImage's signature covers the config templates; an override cannot change them (use set for render values)";

/// `{type: object, x-kubernetes-preserve-unknown-fields: true}`: a fragment, checked when merged.
fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// The job's phase (IEF's eight states).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default, Hash)]
pub enum Phase {
    /// Accepted; nodes not chosen yet.
    #[default]
    Queued,
    /// Nodes chosen; the image is being pulled on them (spec.prePull), no Pod of the app yet.
    PrePulling,
    Running,
    /// Every chosen node succeeded.
    Succeeded,
    /// Some nodes failed, no more than failureTolerance.
    PartiallySucceeded,
    /// No node succeeded, more failed than tolerated, or the input is bad.
    Failed,
    /// Suspended; in-flight nodes are being halted.
    Stopping,
    Stopped,
    /// Queued plus running took longer than the timeout.
    TimedOut,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "Queued",
            Self::PrePulling => "PrePulling",
            Self::Running => "Running",
            Self::Succeeded => "Succeeded",
            Self::PartiallySucceeded => "PartiallySucceeded",
            Self::Failed => "Failed",
            Self::Stopping => "Stopping",
            Self::Stopped => "Stopped",
            Self::TimedOut => "TimedOut",
        }
    }

    /// The phases a retry starts from.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            Self::Failed | Self::PartiallySucceeded | Self::TimedOut
        )
    }

    /// Nothing more happens in these phases until a retry.
    pub fn finished(self) -> bool {
        self.retryable() || self == Self::Succeeded
    }
}

/// One node's part of the job.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default, Hash)]
pub enum NodePhase {
    /// Waiting for a slot (parallelism) or for the job to run.
    #[default]
    Pending,
    /// Its workload exists and has not met the success rule yet.
    Running,
    Succeeded,
    Failed,
    /// Halted by a stop; runs again on continue.
    Stopped,
    /// Its turn came but it cannot start yet: its node is not Ready (NodeNotReady; it is
    /// caught up when the node returns) or it waits out a retry's backoff (RetryBackoff).
    Waiting,
}

impl NodePhase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Running => "Running",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::Stopped => "Stopped",
            Self::Waiting => "Waiting",
        }
    }

    pub fn done(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    pub node: String,
    pub phase: NodePhase,
    /// Why it failed or stopped, CamelCase (NodeNotReady, TimedOut, BackoffLimitExceeded, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Pods that met the success rule (Ready, or Succeeded), out of spec.instances.
    #[serde(default)]
    pub pods: i32,
    /// How many times a workload was started on this node.
    #[serde(default)]
    pub attempts: i32,
    /// Automatic reruns used so far in this run (spec.retries).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub auto_retries: i32,
    /// The reason of the last failed attempt on this node, kept after a rerun succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
    /// When a Waiting node's next automatic rerun may start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<Time>,
    /// Continuous: since when the node no longer matches; it loses the app after leaveGrace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaving_since: Option<Time>,
    /// The image pre-pull on this node (spec.prePull); unset without pre-pull.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull: Option<PullStatus>,
}

/// One node's image pull.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default, Hash)]
pub enum PullPhase {
    /// Waiting for a slot (prePull.concurrency) or for its node to be Ready.
    #[default]
    Pending,
    /// Its pull Job exists.
    Pulling,
    Pulled,
    /// The pull failed or timed out: the node is not deployed to (node reason PullFailed).
    Failed,
}

impl PullPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Pulling => "Pulling",
            Self::Pulled => "Pulled",
            Self::Failed => "Failed",
        }
    }

    pub fn done(self) -> bool {
        matches!(self, Self::Pulled | Self::Failed)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct PullStatus {
    pub phase: PullPhase,
    /// Why it failed, CamelCase (ErrImagePull, ImagePullBackOff, PullTimedOut, NodeNotFound, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When its pull Job was asked for (the start of prePull.timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
}

/// The pulls by phase (spec.prePull).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct PullCounts {
    pub pending: i32,
    pub pulling: i32,
    pub pulled: i32,
    pub failed: i32,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub total: i32,
    pub pending: i32,
    pub running: i32,
    pub succeeded: i32,
    pub failed: i32,
    pub stopped: i32,
    /// Nodes whose node is not Ready or that wait out a retry's backoff.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub waiting: i32,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct BatchDeploymentStatus {
    #[serde(default)]
    pub phase: Phase,
    /// `succeeded/total`, for the printer column.
    #[serde(default)]
    pub summary: String,
    #[serde(default)]
    pub counts: Counts,
    /// The image pulls by phase; unset without spec.prePull.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pulls: Option<PullCounts>,
    /// The nodes chosen at start, sorted by name, with their results.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeStatus>,
    /// When the job (or its latest retry) started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Start of the current Queued/Running stretch; unset while stopped or finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_since: Option<Time>,
    /// Seconds spent queued or running before `activeSince` (stops do not count).
    #[serde(default)]
    pub active_seconds: i64,
    /// 1 for the first run, plus one per retry.
    #[serde(default)]
    pub attempts: i32,
    #[serde(default)]
    pub observed_retry_generation: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The CRD, generated from these types.
pub fn crd()
-> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    use kube::CustomResourceExt;
    BatchDeployment::crd()
}

/// The CRD as the YAML committed under `charts/appimage-webhook/crds/`.
pub fn crd_yaml() -> String {
    crate::resource::crd_yaml_of(&crd(), "`kubectl appimage batch crd`")
}
