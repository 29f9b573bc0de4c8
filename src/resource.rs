//! The AppImage resource (`kuscia.secretflow/v1alpha1`), field for field as Kuscia defines it,
//! plus TCP/UDP port protocols, which the seed's own reference example uses.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvFromSource, EnvVar, Probe, ResourceRequirements, SecurityContext,
};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "kuscia.secretflow";
pub const VERSION: &str = "v1alpha1";
pub const KIND: &str = "AppImage";
pub const PLURAL: &str = "appimages";
/// `appimages.kuscia.secretflow`, as kubectl names the resource in its messages.
pub const RESOURCE: &str = "appimages.kuscia.secretflow";

/// An application image and the templates to deploy it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "kuscia.secretflow",
    version = "v1alpha1",
    kind = "AppImage",
    plural = "appimages",
    shortname = "aimg",
    doc = "AppImage holds an application's image and its deploy templates (Kuscia).",
    printcolumn = r#"{"name":"Image","type":"string","jsonPath":".spec.image.name"}"#,
    printcolumn = r#"{"name":"Tag","type":"string","jsonPath":".spec.image.tag"}"#,
    printcolumn = r#"{"name":"Roles","type":"string","jsonPath":".spec.deployTemplates[*].role"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AppImageSpec {
    /// Config file name -> template text (Go-template subset, see the README).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config_templates: BTreeMap<String, String>,
    /// Deploy templates; one is chosen per role.
    pub deploy_templates: Vec<DeployTemplate>,
    pub image: ImageInfo,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ImageInfo {
    /// Repository, e.g. `secretflow/secretflow-lite-anolis8`.
    pub name: String,
    pub tag: String,
    /// Image ID, as in Kuscia: the config digest (`crictl inspecti`), not a manifest digest.
    /// A `sha256:<64 hex>` id is checked against the registry by the webhook, which pins the
    /// manifest that has it ([`crate::image_id`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Base64 signature over the canonical payload (see `signature`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeployTemplate {
    pub name: String,
    /// Roles this template serves, comma-separated (`"server,client"`); empty serves any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Number of Pods; unset means 1, 0 means none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_policy: Option<NetworkPolicy>,
    pub spec: PodSpec,
}

impl DeployTemplate {
    /// The comma-separated role list, trimmed, without empty entries.
    pub fn roles(&self) -> Vec<&str> {
        self.role
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .collect()
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicy {
    #[serde(default)]
    pub ingresses: Vec<Ingress>,
}

/// Pods of `from.roles` may reach `ports` of the Pods of this template.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct Ingress {
    pub from: IngressFrom,
    pub ports: Vec<IngressPort>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct IngressFrom {
    pub roles: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct IngressPort {
    /// A port *name* declared by a container of this template.
    pub port: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    pub containers: Vec<Container>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default, Hash)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    #[default]
    Never,
}

impl RestartPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::OnFailure => "OnFailure",
            Self::Never => "Never",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Config files (keys of `configTemplates`) mounted into the container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_volume_mounts: Vec<ConfigVolumeMount>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<EnvFromSource>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_probe: Option<Probe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_probe: Option<MetricProbe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConfigVolumeMount {
    /// Where the file appears; a relative path is taken from the container's workingDir.
    pub mount_path: String,
    /// A key of `spec.configTemplates`.
    pub sub_path: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    pub name: String,
    /// Fixed number; when unset a number in [20000, 32767) is allocated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    #[serde(default)]
    pub protocol: PortProtocol,
    #[serde(default)]
    pub scope: PortScope,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default, Hash)]
#[allow(clippy::upper_case_acronyms)]
pub enum PortProtocol {
    #[default]
    HTTP,
    GRPC,
    TCP,
    UDP,
}

impl PortProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HTTP => "HTTP",
            Self::GRPC => "GRPC",
            Self::TCP => "TCP",
            Self::UDP => "UDP",
        }
    }

    /// The Kubernetes transport protocol: only UDP is not TCP.
    pub fn transport(self) -> &'static str {
        if self == Self::UDP { "UDP" } else { "TCP" }
    }
}

/// Who may reach a port: `Cluster` (other parties too) and `Domain` get a Service, `Local` none.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default, Hash)]
pub enum PortScope {
    Cluster,
    Domain,
    #[default]
    Local,
}

impl PortScope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cluster => "Cluster",
            Self::Domain => "Domain",
            Self::Local => "Local",
        }
    }

    pub fn has_service(self) -> bool {
        self != Self::Local
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct MetricProbe {
    pub path: String,
    /// A port *name* of this template.
    pub port: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default, Hash)]
pub enum ImagePullPolicy {
    Always,
    #[default]
    IfNotPresent,
    Never,
}

impl ImagePullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

impl ImageInfo {
    /// The reference an AppImage names: `name:tag`. Never `name@<id>`: the id is the image
    /// ID, which names no manifest ([`crate::image_id`]); the webhook pins the manifest at
    /// admission. The one rule for `deploy`, `render`, the rollout and batch controllers.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.name, self.tag)
    }
}

impl AppImage {
    /// `name:tag` ([`ImageInfo::reference`]).
    pub fn image_ref(&self) -> String {
        self.spec.image.reference()
    }

    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }
}

/// `sha256:` followed by 64 lower-case hex digits.
pub fn is_sha256_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The CRD, generated from these types.
pub fn crd()
-> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    use kube::CustomResourceExt;
    AppImage::crd()
}

/// The CRD as the YAML committed under `charts/appimage-webhook/crds/`.
pub fn crd_yaml() -> String {
    crd_yaml_of(&crd(), "`kubectl appimage crd`")
}

/// A CRD as committed YAML, under a header naming what generates it. One writer for every CRD
/// this project defines.
pub fn crd_yaml_of(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    generator: &str,
) -> String {
    let body = serde_yaml_ng::to_string(crd).unwrap_or_default();
    format!("# Generated by {generator} from the Rust types; do not edit.\n{body}")
}
