//! AppImages as applications: the native workload (Deployment, StatefulSet, DaemonSet, Job or
//! CronJob) that `kubectl appimage deploy` applies, the Services per workload, the Pod the
//! webhook will make of it, and the revision hash of an AppImage spec. Pure and deterministic:
//! the same AppImage and options give byte-identical objects.
//!
//! The workload's pod template only *asks* for the AppImage (its label and the documented
//! option annotations) and names the template's containers with the AppImage's image, so that
//! the workload validates; the webhook completes every Pod at admission, as for a bare Pod.

mod build;
mod fragment;
mod options;
mod pod_template;
mod preview;
mod services;
mod start;

pub use crate::revision::{canonical_json, revision_hash};
pub use build::{Workload, build};
pub use fragment::parse_pod_template;
pub use options::{
    DeployOptions, Kind, UpdatePolicy, parse_node_selector, parse_start_at, validate_schedule,
};
pub use preview::{preview_pod, preview_pod_with};
pub use services::{
    governing_service_name, has_controller, is_own_workload, owner_reference, service_name,
    services, workload_of,
};
pub use start::{Start, StartError, pending, running, start};

use crate::injection::InjectionError;
use crate::selection::SelectionError;

pub use crate::labels::{
    PLUGIN_MANAGER as MANAGER, REVISION_HASH, START_AT, START_REPLICAS, STARTED, UPDATE_POLICY,
    WORKLOAD,
};

#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error(
        "unknown workload kind {given:?}; use one of: Deployment, StatefulSet, DaemonSet, Job, CronJob"
    )]
    UnknownKind { given: String },
    #[error("unknown update policy {given:?}; use Auto or Manual")]
    UnknownPolicy { given: String },
    #[error(transparent)]
    Selection(#[from] SelectionError),
    #[error(transparent)]
    Injection(#[from] InjectionError),
    #[error("workload name {name:?} {message}")]
    Name { name: String, message: String },
    #[error("{flag}: {message}")]
    Flag { flag: String, message: String },
    #[error("pod template {source_name}: {message}")]
    PodTemplate {
        source_name: String,
        message: String,
    },
}

impl WorkloadError {
    fn flag(flag: &str, message: impl Into<String>) -> WorkloadError {
        WorkloadError::Flag {
            flag: flag.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests;
