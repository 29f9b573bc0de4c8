//! Pure core of kubectl-appimage: the AppImage types, the config renderer, and the
//! Pod / Service / NetworkPolicy builders. No network IO lives here, so every rule can be
//! tested without a cluster; the plugin and the webhook are thin shells around it. The one
//! exception to "no IO at all" is [`trusted_keys`]: the scan of a local key directory, kept here
//! so that `kubectl appimage verify --keys-dir` and the webhook's `--trusted-keys-dir` read the
//! same files in the same order (it reads files only; what a broken key means is the caller's).

pub mod admitted;
pub mod batch;
pub mod desired;
pub mod duration;
pub mod image_id;
pub mod image_ref;
pub mod injection;
pub mod labels;
pub mod manifest;
pub mod naming;
pub mod network_policy;
pub mod overrides;
pub mod owner;
pub mod patch;
pub mod pod_integrity;
pub mod pod_view;
pub mod ports;
pub mod progressive;
pub mod render;
pub mod resource;
pub mod revision;
pub mod search;
pub mod selection;
pub mod service;
pub mod set_image;
pub mod signature;
pub mod stage;
pub mod status;
pub mod trusted_keys;
pub mod validation;
pub mod workload;
