//! The Services of a workload: one per `Cluster` or `Domain` port, named as Kuscia names a
//! KusciaDeployment's (`<workload>-<port>`), selecting the workload's Pods and owned by the
//! workload; a StatefulSet also gets its governing headless Service.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Service, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::{Kind, WORKLOAD, Workload, WorkloadError};
use crate::injection::Request;
pub use crate::naming::workload_service_name as service_name;
pub use crate::owner::{has_controller, workload_of};
use crate::ports::{self, AllocatedPort};
use crate::resource::AppImage;
use crate::{labels, selection};

/// The headless Service a StatefulSet names in `serviceName`, giving each Pod a stable DNS
/// name `<pod>.<service>.<namespace>.svc`: the workload's own name.
pub fn governing_service_name(workload: &str) -> String {
    workload.to_string()
}

/// Whether `workload` is one of its own: not a Job that a CronJob spawned. Such a Job carries
/// the CronJob's labels (the workload label included) from its job template, but its Pods are
/// the CronJob's, selected by the CronJob's Services: Services of its own would select nothing,
/// one set per run.
pub fn is_own_workload(workload: &Workload) -> bool {
    let spawned = workload.kind() == Kind::Job
        && workload
            .metadata()
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.controller == Some(true) && o.kind == Kind::CronJob.as_str());
    !spawned
}

/// Owner reference to the workload (controller), for its Services; `uid` from the server.
pub fn owner_reference(kind: Kind, name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: kind.api_version().into(),
        kind: kind.as_str().into(),
        name: name.into(),
        uid: uid.into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The Services `workload` of `image` should have. The deploy template is chosen from the pod
/// template's options, as the webhook chooses it for the Pods.
pub fn services(
    image: &AppImage,
    workload: &Workload,
    owner: Option<OwnerReference>,
) -> Result<Vec<Service>, WorkloadError> {
    if !is_own_workload(workload) {
        return Ok(Vec::new());
    }
    let template = workload.pod_template().cloned().unwrap_or_default();
    let pod = Pod {
        metadata: template.metadata.unwrap_or_default(),
        spec: None,
        status: None,
    };
    let name = workload.name();
    let req = Request::from_pod(&pod, workload.namespace(), name)?;
    let index = selection::select(image, &req.role, req.template.as_deref())?;
    let path = format_args!("spec.deployTemplates[{index}]");
    let allocated =
        ports::allocate(&image.spec.deploy_templates[index], path).map_err(|source| {
            crate::injection::InjectionError::Ports {
                image: image.name().into(),
                source,
            }
        })?;
    let headless = workload.kind() == Kind::StatefulSet;
    let base = Base {
        image: image.name(),
        workload: name,
        namespace: workload.namespace(),
        owner,
    };
    let mut out: Vec<Service> = allocated
        .iter()
        .filter(|p| p.scope.has_service())
        .map(|p| base.port_service(p, headless))
        .collect();
    if headless {
        out.push(base.governing());
    }
    Ok(out)
}

/// What every Service of one workload shares.
struct Base<'a> {
    image: &'a str,
    workload: &'a str,
    namespace: &'a str,
    owner: Option<OwnerReference>,
}

impl Base<'_> {
    fn service(
        &self,
        name: String,
        labels: BTreeMap<String, String>,
        spec: ServiceSpec,
    ) -> Service {
        let mut all = BTreeMap::from([
            (labels::MANAGED_BY.to_string(), labels::MANAGER.to_string()),
            (labels::APP_IMAGE.to_string(), self.image.to_string()),
            (WORKLOAD.to_string(), self.workload.to_string()),
        ]);
        all.extend(labels);
        Service {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(self.namespace.into()),
                labels: Some(all),
                owner_references: self.owner.clone().map(|o| vec![o]),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                selector: Some(BTreeMap::from([(
                    WORKLOAD.to_string(),
                    self.workload.to_string(),
                )])),
                ..spec
            }),
            status: None,
        }
    }

    /// One port; headless (every Pod's address, ready or not) for a StatefulSet.
    fn port_service(&self, p: &AllocatedPort, headless: bool) -> Service {
        let labels = BTreeMap::from([
            (labels::PORT_NAME.to_string(), p.name.clone()),
            (labels::PORT_SCOPE.to_string(), p.scope.as_str().to_string()),
        ]);
        let spec = ServiceSpec {
            cluster_ip: headless.then(|| "None".into()),
            publish_not_ready_addresses: headless.then_some(true),
            ports: Some(vec![crate::service::service_port(p)]),
            ..Default::default()
        };
        self.service(service_name(self.workload, &p.name), labels, spec)
    }

    /// The StatefulSet's governing Service: headless, no ports, only for DNS.
    fn governing(&self) -> Service {
        let spec = ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            ..Default::default()
        };
        self.service(governing_service_name(self.workload), BTreeMap::new(), spec)
    }
}
