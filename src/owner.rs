//! Who owns an object, as far as injection and the workloads read it: whether a controller
//! does, and which workload's Services a Pod uses. Apart from `workload`, so that injection
//! (which asks) and the workload builders (which build on injection) import no circle.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::labels::WORKLOAD;

/// Whether a controller (a ReplicaSet, StatefulSet, DaemonSet or Job) owns the object.
pub fn has_controller(meta: &ObjectMeta) -> bool {
    meta.owner_references
        .as_ref()
        .is_some_and(|refs| refs.iter().any(|o| o.controller == Some(true)))
}

/// The workload whose Services a Pod uses: its [`WORKLOAD`] label, when a controller owns the
/// Pod. A bare Pod (even one carrying the label) keeps its own per-Pod Services.
pub fn workload_of(meta: &ObjectMeta) -> Option<&str> {
    let name = meta.labels.as_ref()?.get(WORKLOAD)?;
    (has_controller(meta) && !name.is_empty()).then_some(name.as_str())
}
