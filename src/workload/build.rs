//! The native workload object for an AppImage and deploy options.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, Deployment, DeploymentSpec, StatefulSet, StatefulSetSpec,
};
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::Serialize;

use super::pod_template::pod_template;
use super::{
    DeployOptions, Kind, MANAGER, START_AT, START_REPLICAS, UPDATE_POLICY, WORKLOAD, WorkloadError,
    governing_service_name, validate_schedule,
};
use crate::resource::AppImage;
use crate::{labels, naming, selection};

/// CronJob names leave 11 characters for the Jobs' time suffix.
const MAX_CRONJOB_NAME: usize = 52;

/// One of the native workloads; serialises as the object itself. (Boxed: they differ in size.)
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Workload {
    Deployment(Box<Deployment>),
    StatefulSet(Box<StatefulSet>),
    DaemonSet(Box<DaemonSet>),
    Job(Box<Job>),
    CronJob(Box<CronJob>),
}

impl Workload {
    pub fn kind(&self) -> Kind {
        match self {
            Workload::Deployment(_) => Kind::Deployment,
            Workload::StatefulSet(_) => Kind::StatefulSet,
            Workload::DaemonSet(_) => Kind::DaemonSet,
            Workload::Job(_) => Kind::Job,
            Workload::CronJob(_) => Kind::CronJob,
        }
    }

    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Workload::Deployment(o) => &o.metadata,
            Workload::StatefulSet(o) => &o.metadata,
            Workload::DaemonSet(o) => &o.metadata,
            Workload::Job(o) => &o.metadata,
            Workload::CronJob(o) => &o.metadata,
        }
    }

    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or_default()
    }

    pub fn namespace(&self) -> &str {
        self.metadata().namespace.as_deref().unwrap_or_default()
    }

    /// The template its Pods are made from.
    pub fn pod_template(&self) -> Option<&PodTemplateSpec> {
        match self {
            Workload::Deployment(o) => o.spec.as_ref().map(|s| &s.template),
            Workload::StatefulSet(o) => o.spec.as_ref().map(|s| &s.template),
            Workload::DaemonSet(o) => o.spec.as_ref().map(|s| &s.template),
            Workload::Job(o) => o.spec.as_ref().map(|s| &s.template),
            Workload::CronJob(o) => o
                .spec
                .as_ref()
                .and_then(|s| s.job_template.spec.as_ref())
                .map(|s| &s.template),
        }
    }
}

/// The workload for `image` and `opts`. Pure and deterministic.
pub fn build(image: &AppImage, opts: &DeployOptions) -> Result<Workload, WorkloadError> {
    let index = selection::select(image, &opts.role, opts.template.as_deref())?;
    let template = &image.spec.deploy_templates[index];
    check_image_name(image)?;
    let name = workload_name(image, opts)?;
    check_flags(opts)?;
    if opts.replicas.is_some_and(|r| r < 0) {
        return Err(WorkloadError::flag(
            "--replicas",
            "must be 0 or more (0 runs no Pods)",
        ));
    }
    // Kuscia's reading of the template: unset means 1, 0 means none.
    let replicas = opts.replicas.or(template.replicas).unwrap_or(1).max(0);
    let pod = pod_template(image, template, &name, opts)?;
    let meta = metadata(image, &name, opts, replicas);
    let stopped = opts.start_at.is_some();
    let selector = LabelSelector {
        match_labels: Some(BTreeMap::from([(WORKLOAD.to_string(), name.clone())])),
        ..Default::default()
    };
    let running = if stopped { 0 } else { replicas };
    Ok(match opts.kind {
        Kind::Deployment => Workload::Deployment(Box::new(Deployment {
            metadata: meta,
            spec: Some(DeploymentSpec {
                replicas: Some(running),
                selector,
                template: pod,
                ..Default::default()
            }),
            status: None,
        })),
        Kind::StatefulSet => Workload::StatefulSet(Box::new(StatefulSet {
            metadata: meta,
            spec: Some(StatefulSetSpec {
                replicas: Some(running),
                selector,
                service_name: Some(governing_service_name(&name)),
                template: pod,
                ..Default::default()
            }),
            status: None,
        })),
        Kind::DaemonSet => Workload::DaemonSet(Box::new(DaemonSet {
            metadata: meta,
            spec: Some(DaemonSetSpec {
                selector,
                template: pod,
                ..Default::default()
            }),
            status: None,
        })),
        Kind::Job => Workload::Job(Box::new(Job {
            metadata: meta,
            spec: Some(job_spec(pod, replicas, stopped)),
            status: None,
        })),
        Kind::CronJob => Workload::CronJob(Box::new(CronJob {
            metadata: meta,
            spec: Some(CronJobSpec {
                schedule: opts.schedule.clone().unwrap_or_default(),
                suspend: stopped.then_some(true),
                job_template: JobTemplateSpec {
                    metadata: None,
                    spec: Some(job_spec(pod, replicas, false)),
                },
                ..Default::default()
            }),
            status: None,
        })),
    })
}

/// `replicas` Pods that each run to completion, at once; suspended until started.
fn job_spec(template: PodTemplateSpec, replicas: i32, suspend: bool) -> JobSpec {
    JobSpec {
        completions: Some(replicas),
        parallelism: Some(replicas),
        suspend: suspend.then_some(true),
        template,
        ..Default::default()
    }
}

fn metadata(image: &AppImage, name: &str, opts: &DeployOptions, replicas: i32) -> ObjectMeta {
    let mut annotations = BTreeMap::from([(
        UPDATE_POLICY.to_string(),
        opts.update_policy.as_str().to_string(),
    )]);
    if let Some(at) = opts.start_at {
        annotations.insert(START_AT.into(), at.to_string());
        annotations.insert(START_REPLICAS.into(), replicas.to_string());
    }
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(opts.namespace.clone()),
        labels: Some(BTreeMap::from([
            (labels::APP_IMAGE.to_string(), image.name().to_string()),
            (labels::MANAGED_BY.to_string(), MANAGER.to_string()),
            (WORKLOAD.to_string(), name.to_string()),
        ])),
        annotations: Some(annotations),
        ..Default::default()
    }
}

/// The AppImage's name becomes a label value on every Pod; it must fit one.
fn check_image_name(image: &AppImage) -> Result<(), WorkloadError> {
    let name = image.name();
    if name.is_empty() {
        return Err(WorkloadError::flag(
            "APPIMAGE",
            "the AppImage has no metadata.name",
        ));
    }
    match naming::label_value_error(name) {
        Some(why) => Err(WorkloadError::flag(
            "APPIMAGE",
            format!(
                "AppImage name {name:?} cannot be the value of label {}: it {why}; Pods can only ask for AppImages whose names fit a label",
                labels::APP_IMAGE
            ),
        )),
        None => Ok(()),
    }
}

/// `--name`, else the AppImage's name, or `<appimage>-<role>` for a role (as Kuscia names a
/// KusciaDeployment's Deployments). It must be a DNS-1035 label: it names the workload's
/// Services and is a label value.
fn workload_name(image: &AppImage, opts: &DeployOptions) -> Result<String, WorkloadError> {
    let role = opts.role.trim();
    let name = match &opts.name {
        Some(n) => n.clone(),
        None if role.is_empty() => image.name().to_string(),
        None => format!("{}-{role}", image.name()),
    };
    let hint = if opts.name.is_some() {
        "; pass another --name"
    } else {
        "; pass --name NAME"
    };
    let err = |message: String| WorkloadError::Name {
        name: name.clone(),
        message: format!("{message}{hint}"),
    };
    if let Some(why) = naming::dns1123_label_error(&name) {
        return Err(err(why));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(err(
            "must start with a letter: it names the workload's Services".into(),
        ));
    }
    if opts.kind == Kind::CronJob && name.len() > MAX_CRONJOB_NAME {
        return Err(err(format!(
            "must be no more than {MAX_CRONJOB_NAME} characters for a CronJob (it has {}), whose Jobs add a time suffix",
            name.len()
        )));
    }
    Ok(name)
}

/// Flags that only some kinds take.
fn check_flags(opts: &DeployOptions) -> Result<(), WorkloadError> {
    let kind = opts.kind;
    match (&opts.schedule, kind) {
        (None, Kind::CronJob) => {
            return Err(WorkloadError::flag(
                "--schedule",
                "a CronJob needs one, e.g. --schedule \"*/5 * * * *\"",
            ));
        }
        (Some(s), Kind::CronJob) => validate_schedule(s)?,
        (Some(_), _) => {
            return Err(WorkloadError::flag(
                "--schedule",
                format!(
                    "only a CronJob runs on a schedule, not a {}; add --kind CronJob or drop --schedule",
                    kind.as_str()
                ),
            ));
        }
        (None, _) => {}
    }
    if kind == Kind::DaemonSet && opts.replicas.is_some() {
        return Err(WorkloadError::flag(
            "--replicas",
            "a DaemonSet runs one Pod on each matching node; choose the nodes with --node-selector and drop --replicas",
        ));
    }
    if kind == Kind::DaemonSet && opts.start_at.is_some() {
        return Err(WorkloadError::flag(
            "--start-at",
            "a DaemonSet cannot be created stopped; deploy it at the time, or use a Deployment with --node-selector",
        ));
    }
    Ok(())
}
