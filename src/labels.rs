//! The labels and annotations that make up the contract between a Pod, the webhook and
//! the objects made for it.

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
pub const MANAGER: &str = "appimage-webhook";

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
