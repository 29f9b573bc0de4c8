//! The label contract: every label, annotation and field manager by which Pods, workloads,
//! revisions, batch jobs, the webhook and the plugin know each other. Defined here only; other
//! modules re-export what their callers name.

/// The opt-in label: its value names the AppImage.
pub const APP_IMAGE: &str = "kuscia.secretflow/app-image";
/// Set on injected Pods (Kuscia's names).
pub const POD_ROLE: &str = "kuscia.secretflow/pod-role";
pub const POD_IDENTITY: &str = "kuscia.secretflow/pod-identity";
pub const IMAGE_ID: &str = "kuscia.secretflow/image-id";
pub const TASK_ID: &str = "kuscia.secretflow/task-id";
/// On Services.
pub const PORT_NAME: &str = "kuscia.secretflow/port-name";
pub const PORT_SCOPE: &str = "kuscia.secretflow/port-scope";
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The webhook's field manager and `app.kubernetes.io/managed-by` value.
pub const MANAGER: &str = "appimage-webhook";
/// The `app.kubernetes.io/managed-by` value and field manager of the webhook configurations
/// `appimage-webhook dev` registers: the ones it may replace or remove.
pub const DEV_MANAGER: &str = "appimage-webhook-dev";

/// The one prefix for a Pod's injection options, read from annotations, then labels.
pub const OPTION_PREFIX: &str = "appimage.kuscia.secretflow/";
pub const OPT_ROLE: &str = "appimage.kuscia.secretflow/role";
pub const OPT_TEMPLATE: &str = "appimage.kuscia.secretflow/deploy-template";
pub const OPT_TASK_ID: &str = "appimage.kuscia.secretflow/task-id";
pub const OPT_INPUT_CONFIG: &str = "appimage.kuscia.secretflow/input-config";
pub const OPT_CLUSTER_DEFINE: &str = "appimage.kuscia.secretflow/cluster-define";
pub const OPT_SERVING_ID: &str = "appimage.kuscia.secretflow/serving-id";
/// A JSON object of extra render values, e.g. `{"LOG_LEVEL":"debug"}`.
pub const OPT_VALUES: &str = "appimage.kuscia.secretflow/values";
/// `"true"`: a template key with no value is an error instead of empty.
pub const OPT_STRICT: &str = "appimage.kuscia.secretflow/strict";
/// What was injected (written by us; never trusted to skip anything).
pub const STATUS: &str = "appimage.kuscia.secretflow/status";
/// The webhook's seal over the status: an HMAC only the webhook's key makes (see `admitted`).
pub const ADMITTED: &str = "appimage.kuscia.secretflow/admitted";
/// On an AppImage: `all`, `env` or `none`, what its Pods may override; it only tightens the
/// webhook's setting (see `overrides`).
pub const POD_OVERRIDES: &str = "appimage.kuscia.secretflow/pod-overrides";

/// Rendered config files live in annotations with this prefix and the file name.
pub const CONFIG_PREFIX: &str = "config.appimage.kuscia.secretflow/";
/// The downwardAPI volume that projects those annotations as files.
pub const CONFIG_VOLUME: &str = "appimage-config";

/// On an AppImage: its lifecycle stage, `draft` (also when absent), `published` or `deprecated`.
pub const STAGE: &str = "appimage.kuscia.secretflow/stage";
/// On a deprecated AppImage: the AppImage to use instead.
pub const REPLACED_BY: &str = "appimage.kuscia.secretflow/replaced-by";

/// Label on a workload, its pod template and its Services: the workload's name. Pods and
/// Services select on it.
pub const WORKLOAD: &str = "appimage.kuscia.secretflow/workload";

// Workloads (`deploy`, the rollout and start controllers).

/// Annotation on the workload: `Auto` (default) follows new AppImage revisions, `Manual` waits.
pub const UPDATE_POLICY: &str = "appimage.kuscia.secretflow/update-policy";
/// Annotation on a workload created stopped by `--start-at`: when to start it (RFC 3339).
pub const START_AT: &str = "appimage.kuscia.secretflow/start-at";
/// Annotation next to [`START_AT`]: the replicas (or Job parallelism) to start with.
pub const START_REPLICAS: &str = "appimage.kuscia.secretflow/start-replicas";
/// Annotation the start controller sets when it has started a [`START_AT`] workload (RFC 3339):
/// it never acts on the workload again, so a later scale stays.
pub const STARTED: &str = "appimage.kuscia.secretflow/started-at";
/// Annotation on the pod template: [`crate::workload::revision_hash`] of the AppImage spec it
/// was built from.
pub const REVISION_HASH: &str = "appimage.kuscia.secretflow/revision-hash";
/// The field manager and `app.kubernetes.io/managed-by` value of what `deploy` writes.
pub const PLUGIN_MANAGER: &str = "kubectl-appimage";

// Batch jobs.

/// Label on each workload and its Pods: the BatchDeployment's name (hashed to fit a label).
pub const BATCH: &str = "appimage.kuscia.secretflow/batch";
/// Annotation on each workload: the node it is pinned to.
pub const BATCH_NODE: &str = "appimage.kuscia.secretflow/batch-node";
/// Annotation on each workload: the node attempt it was made for.
pub const BATCH_ATTEMPT: &str = "appimage.kuscia.secretflow/batch-attempt";
/// Label "true" on the image pull Jobs of a job's pre-pull phase and their Pods (with [`BATCH`]);
/// the pull Jobs' [`BATCH_ATTEMPT`] is the job's attempt (`status.attempts`).
pub const BATCH_PREPULL: &str = "appimage.kuscia.secretflow/batch-prepull";

// Revisions.

/// Pod (template) annotation: the number of the AppImage revision to inject (written by the
/// rollout, `deploy` and batch for a pinned revision).
pub const REVISION: &str = "appimage.kuscia.secretflow/revision";
/// Workload label (and, for people, annotation): the AppImage revision the rollout controller
/// last acted on (rolled an Auto workload to, or reported a Manual one outdated against). The
/// label is the one read: `kubectl rollout undo` restores a Deployment's annotations.
pub const LATEST: &str = "appimage.kuscia.secretflow/latest-revision";
/// AppImage annotation: how many revisions to keep (default [`crate::revision::DEFAULT_HISTORY_LIMIT`]).
pub const HISTORY_LIMIT: &str = "appimage.kuscia.secretflow/revision-history-limit";
/// The AppImage annotation recorded as a revision's change cause (as Deployments do).
pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";
