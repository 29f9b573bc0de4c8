//! Injection: AppImage + Pod -> the mutated Pod, its rendered config files, Services and
//! NetworkPolicies. `kubectl appimage render` and the webhook both call [`inject`].
//!
//! `inject` is idempotent (`inject(inject(p)) == inject(p)`), so a reinvoked or re-admitted
//! Pod yields an empty patch without trusting any annotation to skip work.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use k8s_openapi::api::core::v1::{
    self as core, DownwardAPIVolumeFile, DownwardAPIVolumeSource, EnvVar, ObjectFieldSelector, Pod,
    ResourceRequirements, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde::{Deserialize, Serialize};

mod plan;

pub use plan::{Plan, PlannedPatch};

use crate::labels;
use crate::naming;
use crate::network_policy;
use crate::overrides::{self, PodOverrides};
use crate::owner;
use crate::ports::{self, AllocatedPort, PortError};
use crate::render::{MissingKey, RenderError, Template, Values};
use crate::resource::{AppImage, Container, DeployTemplate};
use crate::selection::SelectionError;
use crate::service;

/// What a Pod asks of its AppImage (from `appimage.kuscia.secretflow/*` options, or flags).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    pub namespace: String,
    pub pod_name: String,
    pub role: String,
    pub template: Option<String>,
    pub task_id: String,
    pub input_config: String,
    /// A cluster define to use verbatim; by default it is built from this Pod's Services.
    pub cluster_define: Option<String>,
    pub serving_id: String,
    /// Extra render values; they win over every built-in variable.
    pub values: BTreeMap<String, String>,
    pub missing: MissingKey,
    /// What the Pod may override of the template: the caller's setting (webhook or `render`
    /// flag), never the Pod's; the AppImage's annotation can tighten it.
    pub pod_overrides: PodOverrides,
    /// The reference the webhook pinned (`name@<manifest>` that has the signed image ID,
    /// [`crate::image_id::pin`]); `None`: the AppImage's `name:tag`.
    pub image: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum InjectionError {
    #[error(transparent)]
    Selection(#[from] SelectionError),
    #[error("AppImage {image:?}: {source}")]
    Ports {
        image: String,
        #[source]
        source: PortError,
    },
    #[error("AppImage {image:?}: {source}")]
    Render {
        image: String,
        #[source]
        source: RenderError,
    },
    /// Strict mode only; otherwise the mount is left out with a warning.
    #[error(
        "AppImage {image:?}: container {container:?} mounts config file {file:?}, which spec.configTemplates does not define; add it there or fix configVolumeMounts.subPath (strict mode refuses this; without it the mount is left out with a warning)"
    )]
    MissingConfig {
        image: String,
        container: String,
        file: String,
    },
    /// As in Kuscia, which creates no Pod then.
    #[error(
        "AppImage {image:?}: container {container:?} has metricProbe.port {port:?}, which no container of the template declares (declared: {declared}); declare that port or fix metricProbe.port"
    )]
    MetricProbe {
        image: String,
        container: String,
        port: String,
        declared: String,
    },
    /// Strict mode only: a network policy rule, role or port that is left out.
    #[error(
        "AppImage {image:?}: {message} (strict mode refuses this; without it that part is left out with a warning)"
    )]
    NetworkPolicy { image: String, message: String },
    #[error("{what}: {message}")]
    Option { what: String, message: String },
    /// The Pod overrides what the pod-overrides policy keeps from it.
    #[error(
        "AppImage {image:?}: {path}: {what}, which the pod-overrides policy {policy:?} refuses (it allows {allows}); remove it from the Pod, or put it into the AppImage's deploy template in a new revision and roll it out (kubectl appimage rollout)"
    )]
    Override {
        image: String,
        path: String,
        what: String,
        policy: &'static str,
        allows: &'static str,
    },
}

/// Everything one injection produces.
#[derive(Debug, Clone, PartialEq)]
pub struct Injection {
    pub pod: Pod,
    pub template_index: usize,
    pub template: String,
    pub ports: Vec<AllocatedPort>,
    /// File name -> rendered content, as the Pod will see it.
    pub config_files: BTreeMap<String, String>,
    pub services: Vec<core::Service>,
    pub network_policies: Vec<NetworkPolicy>,
    /// What was left out and why, in AppImage order (see [`PodInjection::warnings`]).
    pub warnings: Vec<String>,
}

/// The record kept in the status annotation; the reconciler builds Services from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub app_image: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
    pub template: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub role: String,
    pub image: String,
    pub ports: Vec<StatusPort>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusPort {
    pub name: String,
    pub port: i32,
    pub scope: crate::resource::PortScope,
    pub protocol: crate::resource::PortProtocol,
}

impl Status {
    fn new(
        image: &AppImage,
        template: &DeployTemplate,
        role: &str,
        image_ref: String,
        ports: &[AllocatedPort],
    ) -> Status {
        Status {
            app_image: image.name().into(),
            resource_version: image.metadata.resource_version.clone().unwrap_or_default(),
            template: template.name.clone(),
            role: role.to_string(),
            image: image_ref,
            ports: ports
                .iter()
                .map(|p| StatusPort {
                    name: p.name.clone(),
                    port: p.port,
                    scope: p.scope,
                    protocol: p.protocol,
                })
                .collect(),
        }
    }

    pub fn from_pod(pod: &Pod) -> Option<Status> {
        let raw = pod.metadata.annotations.as_ref()?.get(labels::STATUS)?;
        serde_json::from_str(raw).ok()
    }

    pub fn allocated_ports(&self) -> Vec<AllocatedPort> {
        self.ports
            .iter()
            .map(|p| AllocatedPort {
                name: p.name.clone(),
                port: p.port,
                scope: p.scope,
                protocol: p.protocol,
                container: 0,
            })
            .collect()
    }
}

impl Request {
    /// Read a Pod's options: annotations first, then labels, under `appimage.kuscia.secretflow/`.
    pub fn from_pod(pod: &Pod, namespace: &str, pod_name: &str) -> Result<Request, InjectionError> {
        let meta = &pod.metadata;
        Request::from_options(
            |key| {
                meta.annotations
                    .as_ref()
                    .and_then(|a| a.get(key))
                    .or_else(|| meta.labels.as_ref().and_then(|l| l.get(key)))
                    .map(String::as_str)
            },
            namespace,
            pod_name,
        )
    }

    /// [`Request::from_pod`] over a lookup of the Pod's options (annotation, else label).
    pub fn from_options<'a>(
        option: impl Fn(&str) -> Option<&'a str>,
        namespace: &str,
        pod_name: &str,
    ) -> Result<Request, InjectionError> {
        let get = |key: &str| option(key).map(str::to_string);
        let values = match option(labels::OPT_VALUES) {
            None => BTreeMap::new(),
            Some(raw) => serde_json::from_str::<BTreeMap<String, String>>(raw).map_err(|e| {
                InjectionError::Option {
                    what: format!("annotation {}", labels::OPT_VALUES),
                    message: format!(
                        "must be a JSON object of string values, e.g. {{\"KEY\":\"value\"}}: {e}"
                    ),
                }
            })?,
        };
        let missing = match get(labels::OPT_STRICT).as_deref() {
            None | Some("false" | "") => MissingKey::Empty,
            Some("true") => MissingKey::Error,
            Some(other) => {
                return Err(InjectionError::Option {
                    what: format!("annotation {}", labels::OPT_STRICT),
                    message: format!("must be \"true\" or \"false\", not {other:?}"),
                });
            }
        };
        Ok(Request {
            namespace: namespace.to_string(),
            pod_name: pod_name.to_string(),
            role: get(labels::OPT_ROLE).unwrap_or_default(),
            template: get(labels::OPT_TEMPLATE).filter(|t| !t.is_empty()),
            task_id: get(labels::OPT_TASK_ID).unwrap_or_default(),
            input_config: get(labels::OPT_INPUT_CONFIG).unwrap_or_default(),
            cluster_define: get(labels::OPT_CLUSTER_DEFINE),
            serving_id: get(labels::OPT_SERVING_ID).unwrap_or_default(),
            values,
            missing,
            pod_overrides: PodOverrides::default(),
            image: None,
        })
    }
}

/// The Pod's name, or for a `generateName` Pod one derived from `seed` (the admission
/// request UID), so that Services can be named before the apiserver names the Pod.
pub fn pod_name(pod: &Pod, seed: &str) -> Option<String> {
    let meta = &pod.metadata;
    pod_name_from(meta.name.as_deref(), meta.generate_name.as_deref(), seed)
}

/// [`pod_name`] from the Pod's `name` and `generateName`.
pub fn pod_name_from(
    name: Option<&str>,
    generate_name: Option<&str>,
    seed: &str,
) -> Option<String> {
    if let Some(name) = name.filter(|n| !n.is_empty()) {
        return Some(name.to_string());
    }
    let base = generate_name.filter(|g| !g.is_empty())?;
    let base: String = base.chars().take(naming::MAX_LABEL - 5).collect();
    Some(format!("{base}{}", naming::short_hash(seed, 5)))
}

/// Parsed config templates, sorted by file name. A slice, not a map: the webhook holds one per
/// AppImage, and a map node would outweigh a small template.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Templates(Box<[Template]>);

impl Templates {
    /// The template of config file `file`.
    pub fn get(&self, file: &str) -> Option<&Template> {
        let i = self.0.binary_search_by(|t| t.name().cmp(file)).ok()?;
        Some(&self.0[i])
    }

    pub fn iter(&self) -> impl Iterator<Item = &Template> {
        self.0.iter()
    }
}

/// Parse every config template of `image`.
pub fn parse_templates(image: &AppImage) -> Result<Templates, InjectionError> {
    // configTemplates is a sorted map, so the slice comes out sorted.
    let parsed: Vec<Template> = image
        .spec
        .config_templates
        .iter()
        .map(|(name, text)| {
            Template::parse(name, text).map_err(|source| InjectionError::Render {
                image: image.name().into(),
                source,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Templates(parsed.into()))
}

/// Inject `image` into `pod`. Pure and deterministic.
pub fn inject(image: &AppImage, pod: &Pod, req: &Request) -> Result<Injection, InjectionError> {
    inject_with(image, &parse_templates(image)?, pod, req)
}

/// [`inject`] with templates parsed once by the caller: the Pod, config files and ports of
/// [`inject_pod`], plus the Services and NetworkPolicies the reconciler will make.
pub fn inject_with(
    image: &AppImage,
    templates: &Templates,
    pod: &Pod,
    req: &Request,
) -> Result<Injection, InjectionError> {
    let PodInjection {
        pod,
        template_index,
        ports,
        config_files,
        warnings,
    } = inject_pod(image, templates, pod.clone(), req)?;
    let template = &image.spec.deploy_templates[template_index];
    let services = service::services(&pod, &req.namespace, &ports);
    let network_policies =
        network_policy::network_policies(&pod, &req.namespace, image.name(), template, &ports);
    Ok(Injection {
        pod,
        template_index,
        template: template.name.clone(),
        ports,
        config_files,
        services,
        network_policies,
        warnings,
    })
}

/// What admission needs of an injection: the mutated Pod and what went into it.
#[derive(Debug, Clone, PartialEq)]
pub struct PodInjection {
    pub pod: Pod,
    /// Index of the chosen template in `spec.deployTemplates`.
    pub template_index: usize,
    pub ports: Vec<AllocatedPort>,
    /// File name -> rendered content, as the Pod will see it.
    pub config_files: BTreeMap<String, String>,
    /// What was left out and why: a mount of a config file that `configTemplates` lacks, a
    /// network policy rule, role or port that would grant nothing. Admission sends them as
    /// AdmissionResponse warnings, `render` prints them; strict mode makes each an error.
    pub warnings: Vec<String>,
}

/// The mutated Pod alone: what the webhook patches and what [`inject_with`] builds on, so that
/// `render` and admission produce the same Pod. Admission creates no other object, so the
/// Services and NetworkPolicies are not built here.
pub fn inject_pod(
    image: &AppImage,
    templates: &Templates,
    pod: Pod,
    req: &Request,
) -> Result<PodInjection, InjectionError> {
    Plan::build(image, templates, req)?.inject(image, templates, pod, req)
}

/// [`inject_pod`] with what `plan` holds: the template, its ports and warnings.
fn inject_planned(
    plan: &Plan,
    image: &AppImage,
    templates: &Templates,
    pod: Pod,
    req: &Request,
) -> Result<PodInjection, InjectionError> {
    let index = plan.template_index;
    let template = &image.spec.deploy_templates[index];
    let ports = plan.ports.clone();
    let warnings = match req.missing {
        MissingKey::Empty => plan.warnings.clone(),
        MissingKey::Error => left_out(image, templates, index, &ports, req.missing)?,
    };
    let identity = naming::pod_identity(&req.pod_name);
    let cluster_define = match (&req.cluster_define, owner::workload_of(&pod.metadata)) {
        (Some(given), _) => given.clone(),
        // A workload's Pods are reached through the workload's Services.
        (None, Some(w)) => service::workload_cluster_define(&req.namespace, &req.role, w, &ports),
        (None, None) => service::cluster_define(&req.namespace, &req.role, &req.pod_name, &ports),
    };
    let controlled = owner::has_controller(&pod.metadata);

    let mut out = pod;
    let image_ref = req.image.clone().unwrap_or_else(|| image.image_ref());
    check_overrides(image, index, &out, &image_ref, &ports, req.pod_overrides)?;
    let (containers, port_env) = build_containers(template, templates, &out, &image_ref, &ports);
    let values = values(req, &ports, &cluster_define, &containers, &port_env);
    let config_files = render_configs(image, templates, template, req, &values)?;
    let spec = out.spec.get_or_insert_with(Default::default);
    spec.containers = containers;
    // A controller's Pod keeps the policy its workload gave it (a Deployment requires Always;
    // a Job sets its own); a bare Pod takes the deploy template's, as in Kuscia.
    if !controlled || spec.restart_policy.is_none() {
        spec.restart_policy = Some(template.spec.restart_policy.as_str().into());
    }
    if let Some(affinity) = &template.spec.affinity {
        spec.affinity = Some(affinity.clone());
    }
    let mut volumes: Vec<Volume> = spec
        .volumes
        .take()
        .unwrap_or_default()
        .into_iter()
        .filter(|v| v.name != labels::CONFIG_VOLUME)
        .collect();
    if !config_files.is_empty() {
        volumes.push(config_volume(&config_files));
    }
    spec.volumes = (!volumes.is_empty()).then_some(volumes);

    let meta = &mut out.metadata;
    meta.name = Some(req.pod_name.clone());
    let labels = meta.labels.get_or_insert_with(Default::default);
    labels.insert(labels::POD_IDENTITY.into(), identity);
    // A role label the Pod set itself would make it a NetworkPolicy peer of that role.
    if req.role.is_empty() {
        labels.remove(labels::POD_ROLE);
    } else {
        labels.insert(labels::POD_ROLE.into(), req.role.clone());
    }
    let annotations = meta.annotations.get_or_insert_with(Default::default);
    annotations.retain(|k, _| !k.starts_with(labels::CONFIG_PREFIX));
    for (file, content) in &config_files {
        annotations.insert(format!("{}{file}", labels::CONFIG_PREFIX), content.clone());
    }
    if let Some(id) = image.spec.image.id.as_deref().filter(|id| !id.is_empty()) {
        annotations.insert(labels::IMAGE_ID.into(), id.into());
    }
    if !req.task_id.is_empty() {
        annotations.insert(labels::TASK_ID.into(), req.task_id.clone());
    }
    for (key, value) in metric_annotations(image, template, &ports)? {
        annotations.insert(key.into(), value);
    }
    let status = Status::new(image, template, &req.role, image_ref, &ports);
    annotations.insert(
        labels::STATUS.into(),
        serde_json::to_string(&status).unwrap_or_default(),
    );

    Ok(PodInjection {
        pod: out,
        template_index: index,
        ports,
        config_files,
        warnings,
    })
}

/// Kuscia's metric annotations, and Prometheus' usual ones, from the containers'
/// `metricProbe` (path and port both set): as in Kuscia the last such container wins, and a
/// port no container declares is an error.
fn metric_annotations(
    image: &AppImage,
    template: &DeployTemplate,
    ports: &[AllocatedPort],
) -> Result<Vec<(&'static str, String)>, InjectionError> {
    let mut out = Vec::new();
    for c in &template.spec.containers {
        let Some(probe) = c
            .metric_probe
            .as_ref()
            .filter(|p| !p.path.is_empty() && !p.port.is_empty())
        else {
            continue;
        };
        let Some(port) = ports.iter().find(|p| p.name == probe.port) else {
            let declared: Vec<&str> = ports.iter().map(|p| p.name.as_str()).collect();
            return Err(InjectionError::MetricProbe {
                image: image.name().into(),
                container: c.name.clone(),
                port: probe.port.clone(),
                declared: if declared.is_empty() {
                    "none".into()
                } else {
                    declared.join(", ")
                },
            });
        };
        let number = port.port.to_string();
        out = vec![
            (METRIC_SCRAPE, "true".into()),
            (METRIC_PATH, probe.path.clone()),
            (METRIC_PORT, number.clone()),
            ("prometheus.io/scrape", "true".into()),
            ("prometheus.io/path", probe.path.clone()),
            ("prometheus.io/port", number),
        ];
    }
    Ok(out)
}

/// Kuscia's metric annotations (its `common.Metric*AnnotationKey`).
pub const METRIC_SCRAPE: &str = "kuscia.secretflow/should_be_scraped";
pub const METRIC_PATH: &str = "kuscia.secretflow/metric_path";
pub const METRIC_PORT: &str = "kuscia.secretflow/metric_port";

/// What the chosen template (`spec.deployTemplates[index]`) asks for that the Pod leaves out,
/// as warnings; in strict mode the first one is an error instead.
fn left_out(
    image: &AppImage,
    templates: &Templates,
    index: usize,
    ports: &[AllocatedPort],
    missing: MissingKey,
) -> Result<Vec<String>, InjectionError> {
    let strict = missing == MissingKey::Error;
    let template = &image.spec.deploy_templates[index];
    let mut warnings = Vec::new();
    for (ci, c) in template.spec.containers.iter().enumerate() {
        for (mi, m) in c.config_volume_mounts.iter().enumerate() {
            if templates.get(&m.sub_path).is_some() {
                continue;
            }
            if strict {
                return Err(InjectionError::MissingConfig {
                    image: image.name().into(),
                    container: c.name.clone(),
                    file: m.sub_path.clone(),
                });
            }
            warnings.push(format!(
                "AppImage {:?}: spec.deployTemplates[{index}].spec.containers[{ci}].configVolumeMounts[{mi}]: container {:?} mounts config file {:?}, which spec.configTemplates does not define; the mount is left out",
                image.name(),
                c.name,
                m.sub_path
            ));
        }
    }
    if let Some(policy) = &template.network_policy {
        let declared: Vec<&str> = ports.iter().map(|p| p.name.as_str()).collect();
        for problem in network_policy::rules(policy, &declared).1 {
            let message = format!(
                "spec.deployTemplates[{index}].networkPolicy.{}: {}",
                problem.path, problem.message
            );
            if strict {
                return Err(InjectionError::NetworkPolicy {
                    image: image.name().into(),
                    message,
                });
            }
            warnings.push(format!("AppImage {:?}: {message}", image.name()));
        }
    }
    Ok(warnings)
}

/// The render values: the literal env of the Pod's containers, then the built-in variables,
/// then the user's values, each later source winning a name.
fn values(
    req: &Request,
    ports: &[AllocatedPort],
    cluster_define: &str,
    containers: &[core::Container],
    port_env: &PortEnv,
) -> Values {
    let mut values = env_values(containers, port_env);
    let builtins = [
        ("TASK_ID", req.task_id.clone()),
        ("TASK_INPUT_CONFIG", req.input_config.clone()),
        ("INPUT_CONFIG", req.input_config.clone()),
        ("TASK_CLUSTER_DEFINE", cluster_define.to_string()),
        ("CLUSTER_DEFINE", cluster_define.to_string()),
        ("ALLOCATED_PORTS", ports::allocated_ports_json(ports)),
        ("KUSCIA_DOMAIN_ID", req.namespace.clone()),
        ("SERVING_ID", req.serving_id.clone()),
    ];
    for (k, v) in builtins {
        values.insert(k.into(), v);
    }
    for (k, v) in &req.values {
        values.insert(k.clone(), v.clone());
    }
    values
}

/// The literal env of every container of the Pod, names upper-cased, as Kuscia's Kubernetes
/// path reads it: the first container (in Pod order) to set a name wins, then the first
/// entry within it. A `valueFrom` entry has no value at admission and sets nothing.
/// Once the first container has set every port variable, the copies injected into the others
/// cannot win and are not looked up (20 containers and 50 ports would be 1,000 lookups).
fn env_values(containers: &[core::Container], port_env: &PortEnv) -> Values {
    let mut values = Values::new();
    let mut ports_settled = false;
    for (i, c) in containers.iter().enumerate() {
        let skip = port_env.blocks.get(i).filter(|_| ports_settled);
        for (j, e) in c.env.iter().flatten().enumerate() {
            if skip.is_some_and(|block| block.contains(&j)) {
                continue;
            }
            if let Some(v) = &e.value {
                let key = env_key(&e.name);
                if !values.contains_key(&*key) {
                    values.insert(key.into_owned(), v.clone());
                }
            }
        }
        if i == 0 {
            let known = |e: &EnvVar| values.contains_key(&*env_key(&e.name));
            ports_settled = port_env.entries.iter().all(known);
        }
    }
    values
}

/// A render value's name for an env entry's: upper case, as Kuscia reads it.
fn env_key(name: &str) -> std::borrow::Cow<'_, str> {
    if name.bytes().any(|b| b.is_ascii_lowercase()) || !name.is_ascii() {
        name.to_uppercase().into()
    } else {
        name.into()
    }
}

/// Every config file the template mounts and `configTemplates` defines, rendered with `values`.
fn render_configs(
    image: &AppImage,
    templates: &Templates,
    template: &DeployTemplate,
    req: &Request,
    values: &Values,
) -> Result<BTreeMap<String, String>, InjectionError> {
    let mut files = BTreeMap::new();
    let mounted: BTreeSet<&str> = template
        .spec
        .containers
        .iter()
        .flat_map(|c| c.config_volume_mounts.iter().map(|m| m.sub_path.as_str()))
        .collect();
    for file in mounted {
        // A file configTemplates lacks was reported by `left_out`; its mount is left out.
        let Some(parsed) = templates.get(file) else {
            continue;
        };
        let content =
            parsed
                .render(values, req.missing)
                .map_err(|source| InjectionError::Render {
                    image: image.name().into(),
                    source,
                })?;
        files.insert(file.to_string(), content);
    }
    Ok(files)
}

fn config_volume(files: &BTreeMap<String, String>) -> Volume {
    Volume {
        name: labels::CONFIG_VOLUME.into(),
        downward_api: Some(DownwardAPIVolumeSource {
            items: Some(
                files
                    .keys()
                    .map(|file| DownwardAPIVolumeFile {
                        path: file.clone(),
                        field_ref: Some(ObjectFieldSelector {
                            api_version: Some("v1".into()),
                            field_path: format!(
                                "metadata.annotations['{}{file}']",
                                labels::CONFIG_PREFIX
                            ),
                        }),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A relative `mountPath` is taken from the container's workingDir, as Kuscia does.
pub fn mount_path(container: &Container, path: &str) -> String {
    if path.starts_with('/') {
        return path.to_string();
    }
    let base = container.working_dir.as_deref().unwrap_or("/");
    let rel = path.trim_start_matches("./");
    format!("{}/{}", base.trim_end_matches('/'), rel)
}

/// The first thing `pod` overrides of deploy template `index` that `policy` (tightened by the
/// AppImage's annotation) refuses, with its field path. Each template container is merged with
/// the Pod's and alone, and the two compared (see [`crate::overrides`]); extra and init
/// containers are overrides of their own.
fn check_overrides(
    image: &AppImage,
    index: usize,
    pod: &Pod,
    image_ref: &str,
    ports: &[AllocatedPort],
    policy: PodOverrides,
) -> Result<(), InjectionError> {
    let policy = policy
        .for_image(image)
        .map_err(|message| InjectionError::Option {
            what: "pod overrides".into(),
            message,
        })?;
    if policy == PodOverrides::All {
        return Ok(());
    }
    let template = &image.spec.deploy_templates[index];
    let refused = |path: String, what: String| InjectionError::Override {
        image: image.name().into(),
        path,
        what,
        policy: policy.as_str(),
        allows: policy.allows(),
    };
    let spec = pod.spec.as_ref();
    if let Some(c) = spec.and_then(|s| s.init_containers.as_ref()?.first()) {
        let what = format!("init container {:?} is not in the deploy template", c.name);
        return Err(refused("spec.initContainers[0]".into(), what));
    }
    let port_env: Vec<EnvVar> = ports
        .iter()
        .map(|p| EnvVar {
            name: ports::env_name(&p.name),
            value: Some(p.port.to_string()),
            value_from: None,
        })
        .collect();
    for (j, c) in spec.map_or(&[][..], |s| &s.containers).iter().enumerate() {
        let Some((i, tc)) =
            (template.spec.containers.iter().enumerate()).find(|(_, t)| t.name == c.name)
        else {
            let what = format!(
                "container {:?} is not in deploy template {:?}",
                c.name, template.name
            );
            return Err(refused(format!("spec.containers[{j}]"), what));
        };
        let own: Vec<&AllocatedPort> = ports.iter().filter(|p| p.container == i).collect();
        // Both with the port variables, which a reinvoked Pod already carries.
        let mut alone = merge_container(tc, None, image_ref, &own);
        add_port_env(&mut alone, tc.env.len(), &port_env);
        let mut merged = merge_container(tc, Some(c), image_ref, &own);
        add_port_env(&mut merged, tc.env.len(), &port_env);
        if let Some(field) = overrides::overridden(policy, &alone, &merged, pod) {
            let what = format!("container {:?} overrides the template's {field}", c.name);
            return Err(refused(format!("spec.containers[{j}].{field}"), what));
        }
    }
    Ok(())
}

/// The port variables every container gets, and where each container's env holds them.
struct PortEnv {
    entries: Vec<EnvVar>,
    /// Per container, in Pod order: the range of its env that [`add_port_env`] inserted.
    blocks: Vec<Range<usize>>,
}

fn build_containers(
    template: &DeployTemplate,
    templates: &Templates,
    pod: &Pod,
    image_ref: &str,
    ports: &[AllocatedPort],
) -> (Vec<core::Container>, PortEnv) {
    let existing: &[core::Container] = pod.spec.as_ref().map_or(&[], |s| &s.containers);
    // Built once: every container gets the same entries.
    let mut port_env = PortEnv {
        entries: ports
            .iter()
            .map(|p| EnvVar {
                name: ports::env_name(&p.name),
                value: Some(p.port.to_string()),
                value_from: None,
            })
            .collect(),
        blocks: Vec::new(),
    };
    let mut out: Vec<core::Container> = template
        .spec
        .containers
        .iter()
        .enumerate()
        .map(|(i, tc)| {
            let user = existing.iter().find(|c| c.name == tc.name);
            let own_ports: Vec<&AllocatedPort> =
                ports.iter().filter(|p| p.container == i).collect();
            let mut c = if tc
                .config_volume_mounts
                .iter()
                .all(|m| templates.get(&m.sub_path).is_some())
            {
                merge_container(tc, user, image_ref, &own_ports)
            } else {
                // Mounts of files configTemplates lacks are left out (see `left_out`).
                let mut kept = tc.clone();
                kept.config_volume_mounts
                    .retain(|m| templates.get(&m.sub_path).is_some());
                merge_container(&kept, user, image_ref, &own_ports)
            };
            let block = add_port_env(&mut c, tc.env.len(), &port_env.entries);
            port_env.blocks.push(block);
            c
        })
        .collect();
    for c in existing {
        if !template.spec.containers.iter().any(|tc| tc.name == c.name) {
            let mut c = c.clone();
            let end = c.env.as_ref().map_or(0, Vec::len);
            let block = add_port_env(&mut c, end, &port_env.entries);
            port_env.blocks.push(block);
            out.push(c);
        }
    }
    (out, port_env)
}

/// `KUSCIA_PORT_<NAME>_NUMBER` for every port of the Pod, as Kuscia gives each container all
/// of them (so a sidecar finds the main container's port), inserted at `at` in port order. A
/// name the container already sets is skipped: the user's value wins, and injecting twice
/// adds nothing.
fn add_port_env(c: &mut core::Container, at: usize, port_env: &[EnvVar]) -> Range<usize> {
    let old = c.env.take().unwrap_or_default();
    let added: Vec<&EnvVar> = port_env
        .iter()
        .filter(|e| !old.iter().any(|o| o.name == e.name))
        .collect();
    // Built once at its final size: an EnvVar is large, and a container gets one per port.
    let mut env = Vec::with_capacity(old.len() + added.len());
    let at = at.min(old.len());
    let mut old = old.into_iter();
    env.extend(old.by_ref().take(at));
    let block = at..at + added.len();
    env.extend(added.into_iter().cloned());
    env.extend(old);
    c.env = (!env.is_empty()).then_some(env);
    block
}

/// The template's container, with a user's same-named container merged the way Kuscia merges
/// party templates: env appended, resources merged key by key, command and args replaced together.
pub(crate) fn merge_container(
    tc: &Container,
    user: Option<&core::Container>,
    image_ref: &str,
    ports: &[&AllocatedPort],
) -> core::Container {
    let mut c = user.cloned().unwrap_or_default();
    c.name = tc.name.clone();
    // The image always comes from the AppImage: that is what its signature covers.
    c.image = Some(image_ref.into());
    let user_cmd = user.is_some_and(|u| {
        u.command.as_ref().is_some_and(|v| !v.is_empty())
            || u.args.as_ref().is_some_and(|v| !v.is_empty())
    });
    if !user_cmd {
        c.command = non_empty(&tc.command);
        c.args = non_empty(&tc.args);
    }
    if tc.working_dir.is_some() {
        c.working_dir = tc.working_dir.clone();
    }

    let mut env: Vec<EnvVar> = tc.env.clone();
    for e in c.env.take().unwrap_or_default() {
        if !env.contains(&e) {
            env.push(e);
        }
    }
    c.env = (!env.is_empty()).then_some(env);

    let mut env_from = tc.env_from.clone();
    for e in c.env_from.take().unwrap_or_default() {
        if !env_from.contains(&e) {
            env_from.push(e);
        }
    }
    c.env_from = (!env_from.is_empty()).then_some(env_from);

    c.resources = merge_resources(tc.resources.as_ref(), c.resources.take());
    if tc.liveness_probe.is_some() {
        c.liveness_probe = tc.liveness_probe.clone();
    }
    if tc.readiness_probe.is_some() {
        c.readiness_probe = tc.readiness_probe.clone();
    }
    if tc.startup_probe.is_some() {
        c.startup_probe = tc.startup_probe.clone();
    }
    if tc.security_context.is_some() {
        c.security_context = tc.security_context.clone();
    }
    c.image_pull_policy = Some(tc.image_pull_policy.unwrap_or_default().as_str().into());
    // As Kuscia sets it, unless the Pod's container already says otherwise.
    if c.termination_message_policy.is_none() {
        c.termination_message_policy = Some(FALLBACK_TO_LOGS.into());
    }

    let mut container_ports: Vec<core::ContainerPort> = ports
        .iter()
        .map(|p| core::ContainerPort {
            name: Some(p.name.clone()),
            container_port: p.port,
            protocol: Some(p.protocol.transport().into()),
            ..Default::default()
        })
        .collect();
    for p in c.ports.take().unwrap_or_default() {
        if !container_ports.iter().any(|o| o.name == p.name) {
            container_ports.push(p);
        }
    }
    c.ports = (!container_ports.is_empty()).then_some(container_ports);

    let mut mounts: Vec<VolumeMount> = tc
        .config_volume_mounts
        .iter()
        .map(|m| VolumeMount {
            name: labels::CONFIG_VOLUME.into(),
            mount_path: mount_path(tc, &m.mount_path),
            sub_path: Some(m.sub_path.clone()),
            read_only: Some(true),
            ..Default::default()
        })
        .collect();
    for m in c.volume_mounts.take().unwrap_or_default() {
        if !mounts.iter().any(|o| o.mount_path == m.mount_path) {
            mounts.push(m);
        }
    }
    c.volume_mounts = (!mounts.is_empty()).then_some(mounts);
    c
}

/// Kuscia's `terminationMessagePolicy` for the containers it builds.
pub const FALLBACK_TO_LOGS: &str = "FallbackToLogsOnError";

fn non_empty(v: &[String]) -> Option<Vec<String>> {
    (!v.is_empty()).then(|| v.to_vec())
}

/// Template resources, with the user's limits, requests and claims winning key by key.
fn merge_resources(
    template: Option<&ResourceRequirements>,
    user: Option<ResourceRequirements>,
) -> Option<ResourceRequirements> {
    let Some(user) = user else {
        return template.cloned();
    };
    let mut out = template.cloned().unwrap_or_default();
    for (dst, src) in [
        (&mut out.limits, user.limits),
        (&mut out.requests, user.requests),
    ] {
        if let Some(src) = src {
            dst.get_or_insert_with(Default::default).extend(src);
        }
    }
    if user.claims.is_some() {
        out.claims = user.claims;
    }
    Some(out)
}
