//! The injection plan: what injecting a Pod derives from the AppImage revision and the Pod's
//! role, template and image reference alone, built once per such key. The webhook caches one
//! per key with the revision ([`crate::injection`]'s callers); `render` builds one per run.
//!
//! A plan holds the chosen template, its ports and warnings, and for a Pod that brings nothing
//! of its own to merge (spec `{"containers": []}`, [`PodView::is_bare`]) the rest too: the
//! spec's JSONPatch operations pre-encoded, the config templates with every value that does
//! not depend on the Pod written in, and the annotations that do not. [`Plan::patch`] fills the
//! per-Pod holes (name, namespace, task id, cluster define, ...) and writes the same bytes as
//! [`crate::patch::pod_diff`] of [`Plan::inject`]'s Pod: the property tests hold it to that.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Pod, PodSpec};
use serde_json::json;

use super::{
    InjectionError, PodInjection, Request, Status, Templates, build_containers, config_volume,
    env_values, inject_planned, left_out, metric_annotations,
};
use crate::admitted::{SealKey, seal_value};
use crate::labels;
use crate::naming;
use crate::patch::Writer;
use crate::pod_view::PodView;
use crate::ports::{self, AllocatedPort};
use crate::render::{MissingKey, Template, Values};
use crate::resource::AppImage;
use crate::selection;
use crate::service;

/// The render values a Pod supplies (the built-in variables but `ALLOCATED_PORTS`); every
/// other value of a bare Pod is the plan's.
const PER_POD: [&str; 7] = [
    "TASK_ID",
    "TASK_INPUT_CONFIG",
    "INPUT_CONFIG",
    "TASK_CLUSTER_DEFINE",
    "CLUSTER_DEFINE",
    "KUSCIA_DOMAIN_ID",
    "SERVING_ID",
];

/// What plans are keyed by within one revision (whose resourceVersion and trust generation key
/// the cache they live in).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PlanKey {
    pub role: String,
    pub template: Option<String>,
    /// The pinned image reference; `None`: the AppImage's `name:tag`.
    pub image: Option<String>,
}

impl PlanKey {
    pub fn of(req: &Request) -> PlanKey {
        PlanKey {
            role: req.role.clone(),
            template: req.template.clone(),
            image: req.image.clone(),
        }
    }

    /// Whether `req` is served by a plan of this key.
    pub fn matches(&self, req: &Request) -> bool {
        self.role == req.role && self.template == req.template && self.image == req.image
    }
}

/// One compiled injection; see the module's text.
#[derive(Debug)]
pub struct Plan {
    pub key: PlanKey,
    /// The AppImage's name, for errors.
    image: Box<str>,
    /// Index of the chosen template in `spec.deployTemplates`.
    pub template_index: usize,
    pub ports: Vec<AllocatedPort>,
    /// What is left out, as lenient mode warns of it.
    pub warnings: Vec<String>,
    /// A bare Pod's injection; `None` when some part of it fails (then per Pod, in order).
    bare: Option<Bare>,
}

/// A bare Pod's injection, but for the per-Pod values.
#[derive(Debug)]
struct Bare {
    /// The operations on `/spec`: a bare Pod's injected spec does not depend on the Pod.
    spec_ops: std::sync::Arc<[u8]>,
    spec_count: usize,
    /// Annotation key and config template with the plan's values written in.
    configs: Box<[(Box<str>, Template)]>,
    /// The image id, metric and status annotations.
    annotations: Box<[(&'static str, String)]>,
}

/// A bare Pod's patch, and the warnings that go with it.
#[derive(Debug)]
pub struct PlannedPatch<'p> {
    /// `None`: the Pod is injected already.
    pub patch: Option<Vec<u8>>,
    pub warnings: &'p [String],
}

impl Plan {
    /// The plan for `req`'s role, template and image reference. Errors are those injection
    /// reports first (the template choice, its ports); later ones are left to each Pod.
    pub fn build(
        image: &AppImage,
        templates: &Templates,
        req: &Request,
    ) -> Result<Plan, InjectionError> {
        let index = selection::select(image, &req.role, req.template.as_deref())?;
        let template = &image.spec.deploy_templates[index];
        // The path is formatted only if an error needs it.
        let path = format_args!("spec.deployTemplates[{index}]");
        let ports = ports::allocate(template, path).map_err(|source| InjectionError::Ports {
            image: image.name().into(),
            source,
        })?;
        let warnings = left_out(image, templates, index, &ports, MissingKey::Empty)?;
        let key = PlanKey::of(req);
        let bare = Bare::build(image, templates, index, &ports, &key);
        Ok(Plan {
            key,
            image: image.name().into(),
            template_index: index,
            ports,
            warnings,
            bare,
        })
    }

    /// Let `intern` swap the pre-encoded spec operations for an equal shared copy: copies of
    /// one application (equal specs, other names) then hold them once.
    pub fn share_spec(
        &mut self,
        intern: impl FnOnce(std::sync::Arc<[u8]>) -> std::sync::Arc<[u8]>,
    ) {
        if let Some(bare) = &mut self.bare {
            bare.spec_ops = intern(bare.spec_ops.clone());
        }
    }

    /// The pre-encoded `/spec` operations of a bare Pod's patch, if the plan has them.
    pub fn spec_ops(&self) -> Option<&[u8]> {
        self.bare.as_ref().map(|b| &*b.spec_ops)
    }

    /// Inject `pod` (any Pod) as [`super::inject_pod`] does, with what the plan holds.
    pub fn inject(
        &self,
        image: &AppImage,
        templates: &Templates,
        pod: Pod,
        req: &Request,
    ) -> Result<PodInjection, InjectionError> {
        inject_planned(self, image, templates, pod, req)
    }

    /// The JSONPatch that injects the bare Pod `pod`, written from the plan's parts; `None`
    /// when the plan does not cover this Pod or request (not bare, strict, own values, an
    /// override policy that fails): [`Plan::inject`] and a diff then.
    pub fn patch(
        &self,
        image: &AppImage,
        pod: &PodView<'_>,
        req: &Request,
        seal: Option<(&SealKey, &str)>,
    ) -> Option<Result<PlannedPatch<'_>, InjectionError>> {
        let bare = self.bare.as_ref()?;
        let covered = pod.is_bare()
            && req.missing == MissingKey::Empty
            && req.values.is_empty()
            && self.key.matches(req)
            && req.pod_overrides.for_image(image).is_ok();
        if !covered {
            return None;
        }
        Some(bare.patch(self, pod, req, seal).map(|patch| PlannedPatch {
            patch,
            warnings: &self.warnings,
        }))
    }
}

impl Bare {
    fn build(
        image: &AppImage,
        templates: &Templates,
        index: usize,
        ports: &[AllocatedPort],
        key: &PlanKey,
    ) -> Option<Bare> {
        let template = &image.spec.deploy_templates[index];
        let image_ref = key.image.clone().unwrap_or_else(|| image.image_ref());
        let empty = Pod {
            spec: Some(PodSpec::default()),
            ..Pod::default()
        };
        let (containers, port_env) =
            build_containers(template, templates, &empty, &image_ref, ports);
        let mut fixed = env_values(&containers, &port_env);
        fixed.insert("ALLOCATED_PORTS".into(), ports::allocated_ports_json(ports));
        let mounted: BTreeSet<&str> = (template.spec.containers.iter())
            .flat_map(|c| c.config_volume_mounts.iter().map(|m| m.sub_path.as_str()))
            .collect();
        let mut configs = Vec::new();
        for file in mounted {
            let Some(parsed) = templates.get(file) else {
                continue;
            };
            let partial = parsed.partial(&fixed, |k| PER_POD.contains(&k))?;
            configs.push((format!("{}{file}", labels::CONFIG_PREFIX).into(), partial));
        }
        let files: BTreeMap<String, String> = configs
            .iter()
            .map(|(k, _): &(Box<str>, Template)| {
                (k[labels::CONFIG_PREFIX.len()..].to_string(), String::new())
            })
            .collect();
        let spec = PodSpec {
            containers,
            restart_policy: Some(template.spec.restart_policy.as_str().into()),
            affinity: template.spec.affinity.clone(),
            volumes: (!files.is_empty()).then(|| vec![config_volume(&files)]),
            ..PodSpec::default()
        };
        let mut ops = Writer::new(&[]);
        ops.push_key("spec");
        ops.value(
            &json!({"containers": []}),
            &serde_json::to_value(&spec).ok()?,
        );
        let (spec_ops, spec_count) = ops.into_ops();
        let mut annotations = Vec::new();
        if let Some(id) = image.spec.image.id.as_deref().filter(|id| !id.is_empty()) {
            annotations.push((labels::IMAGE_ID, id.to_string()));
        }
        annotations.extend(metric_annotations(image, template, ports).ok()?);
        let status = Status::new(image, template, &key.role, image_ref, ports);
        annotations.push((labels::STATUS, serde_json::to_string(&status).ok()?));
        Some(Bare {
            spec_ops: spec_ops.into(),
            spec_count,
            configs: configs.into(),
            annotations: annotations.into(),
        })
    }

    /// The patch of a bare Pod: metadata operations per Pod, then the spec's, as a diff of the
    /// two Pods orders them.
    fn patch(
        &self,
        plan: &Plan,
        pod: &PodView<'_>,
        req: &Request,
        seal: Option<(&SealKey, &str)>,
    ) -> Result<Option<Vec<u8>>, InjectionError> {
        let meta = pod.meta();
        let values = per_pod_values(plan, pod, req);
        let mut rendered = Vec::with_capacity(self.configs.len());
        for (key, template) in &self.configs {
            let content = template
                .render(&values, MissingKey::Empty)
                .map_err(|source| InjectionError::Render {
                    image: plan.image.to_string(),
                    source,
                })?;
            rendered.push((&**key, content));
        }
        let mut annotations: BTreeMap<&str, &str> = BTreeMap::new();
        for (k, v) in meta.annotations.iter().flatten() {
            if !k.starts_with(labels::CONFIG_PREFIX) {
                annotations.insert(k, v);
            }
        }
        for (k, v) in &rendered {
            annotations.insert(k, v);
        }
        if !req.task_id.is_empty() {
            annotations.insert(labels::TASK_ID, &req.task_id);
        }
        for (k, v) in &self.annotations {
            annotations.insert(k, v);
        }
        let sealed = seal.and_then(|(key, namespace)| {
            let image = meta.label(labels::APP_IMAGE)?;
            let status = annotations.get(labels::STATUS)?;
            Some(seal_value(key, namespace, &req.pod_name, image, status))
        });
        if let Some(value) = &sealed {
            annotations.insert(labels::ADMITTED, value);
        }
        let identity = naming::pod_identity(&req.pod_name);
        let mut pod_labels: BTreeMap<&str, &str> = BTreeMap::new();
        for (k, v) in meta.labels.iter().flatten() {
            pod_labels.insert(k, v);
        }
        pod_labels.insert(labels::POD_IDENTITY, &identity);
        if req.role.is_empty() {
            pod_labels.remove(labels::POD_ROLE);
        } else {
            pod_labels.insert(labels::POD_ROLE, &req.role);
        }
        let mut out = Writer::new(&[]);
        // The spec's operations, the annotations' text, and room for the JSON around them.
        let text: usize = annotations.values().map(|v| v.len()).sum();
        out.reserve(self.spec_ops.len() + text + text / 8 + 1024);
        let at = out.push_key("metadata");
        out.string_map("annotations", meta.annotations.as_ref(), &annotations);
        out.string_map("labels", meta.labels.as_ref(), &pod_labels);
        let name = out.push_key("name");
        match meta.name.as_deref() {
            None => out.op("add", Some(&req.pod_name)),
            Some(n) if n != req.pod_name => out.op("replace", Some(&req.pod_name)),
            Some(_) => {}
        }
        out.truncate(name);
        out.truncate(at);
        out.splice(&self.spec_ops, self.spec_count);
        Ok(out.finish())
    }
}

/// The render values a bare Pod supplies, as [`super::values`] computes them.
fn per_pod_values(plan: &Plan, pod: &PodView<'_>, req: &Request) -> Values {
    let meta = pod.meta();
    let cluster_define = match (&req.cluster_define, meta.workload()) {
        (Some(given), _) => given.clone(),
        (None, Some(w)) => {
            service::workload_cluster_define(&req.namespace, &req.role, w, &plan.ports)
        }
        (None, None) => {
            service::cluster_define(&req.namespace, &req.role, &req.pod_name, &plan.ports)
        }
    };
    let values = [
        ("TASK_ID", req.task_id.clone()),
        ("TASK_INPUT_CONFIG", req.input_config.clone()),
        ("INPUT_CONFIG", req.input_config.clone()),
        ("TASK_CLUSTER_DEFINE", cluster_define.clone()),
        ("CLUSTER_DEFINE", cluster_define),
        ("KUSCIA_DOMAIN_ID", req.namespace.clone()),
        ("SERVING_ID", req.serving_id.clone()),
    ];
    values
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}
