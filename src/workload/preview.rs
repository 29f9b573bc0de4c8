//! The Pod the webhook will make of a workload's pod template: the template as its controller
//! would create the Pod, then the webhook's own reading of its options and `inject`, the code
//! path `kubectl appimage render` uses.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::{Kind, Workload, WorkloadError};
use crate::injection::{self, Request};
use crate::overrides::PodOverrides;
use crate::resource::AppImage;

/// The admitted first Pod of `workload`. A StatefulSet's is `<name>-0`; the other kinds'
/// Pods get a generated name, stood in for by a fixed suffix so the output is deterministic.
pub fn preview_pod(image: &AppImage, workload: &Workload) -> Result<Pod, WorkloadError> {
    preview_pod_with(image, workload, PodOverrides::default())
}

/// [`preview_pod`] under the webhook setting `pod_overrides`.
pub fn preview_pod_with(
    image: &AppImage,
    workload: &Workload,
    pod_overrides: PodOverrides,
) -> Result<Pod, WorkloadError> {
    let template = workload.pod_template().cloned().unwrap_or_default();
    let mut pod = Pod {
        metadata: template.metadata.unwrap_or_default(),
        spec: template.spec,
        status: None,
    };
    let namespace = workload.namespace().to_string();
    pod.metadata.namespace = Some(namespace.clone());
    if workload.kind() == Kind::StatefulSet {
        pod.metadata.name = Some(format!("{}-0", workload.name()));
    } else {
        pod.metadata.generate_name = Some(format!("{}-", workload.name()));
    }
    // Its controller owns the Pod, which keeps the workload's restartPolicy and names the
    // workload's Services; "preview" stands in for the controller's UID.
    let (kind, api_version) = match workload.kind() {
        Kind::Deployment => ("ReplicaSet", "apps/v1"),
        Kind::CronJob => ("Job", "batch/v1"),
        other => (other.as_str(), other.api_version()),
    };
    pod.metadata.owner_references = Some(vec![OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: workload.name().into(),
        uid: "preview".into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }]);
    // The webhook derives a generateName Pod's name from the request UID; "preview" stands in.
    let name = injection::pod_name(&pod, "preview").unwrap_or_default();
    let mut req = Request::from_pod(&pod, &namespace, &name)?;
    req.pod_overrides = pod_overrides;
    Ok(injection::inject(image, &pod, &req)?.pod)
}
