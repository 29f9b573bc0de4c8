//! The AppImageRollout resource (`appimage.kuscia.secretflow/v1alpha1`, cluster-scoped, named
//! after its AppImage): the waves and gates of the AppImage's rollouts, and where the current
//! one stands. A resource rather than an annotation: its status is what a new leader resumes
//! from, `pause`/`promote`/`abort` are rights that can be granted apart from editing the
//! AppImage (whose spec is signed), and the API server validates it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const KIND: &str = "AppImageRollout";
pub const PLURAL: &str = "appimagerollouts";
/// `appimagerollouts.appimage.kuscia.secretflow`, as kubectl names the resource.
pub const RESOURCE: &str = "appimagerollouts.appimage.kuscia.secretflow";
/// A wave's progress deadline when its gate names none.
pub const DEFAULT_DEADLINE_SECONDS: i64 = 600;

/// The rollout policy of the AppImage of the same name.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[kube(
    group = "appimage.kuscia.secretflow",
    version = "v1alpha1",
    kind = "AppImageRollout",
    plural = "appimagerollouts",
    shortname = "airo",
    status = "AppImageRolloutStatus",
    doc = "AppImageRollout moves a new revision of the AppImage of the same name through ordered waves of its Auto workloads, each behind a health gate, and aborts by moving every moved workload back.",
    validation = kube::core::Rule::new("size(self.spec.waves) > 0")
        .message("spec.waves is empty; name at least one wave (workloads that match no wave go in the last one)"),
    printcolumn = r#"{"name":"Revision","type":"integer","jsonPath":".status.revision"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Wave","type":"string","jsonPath":".status.waveName"}"#,
    printcolumn = r#"{"name":"Message","type":"string","priority":1,"jsonPath":".status.message"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AppImageRolloutSpec {
    /// The waves, in order. A workload goes in the first wave that selects it; one that no
    /// wave selects goes in the last wave.
    pub waves: Vec<Wave>,
    /// Hold before moving any more workloads (`kubectl appimage rollout pause`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// Pass the manual pause of this wave of this revision (`rollout promote`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promote: Option<Promote>,
    /// Abort the rollout of this revision (`rollout abort`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<i64>,
    /// Roll this failed revision out again (`rollout retry`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<i64>,
}

/// One wave: the workloads it selects and the gate they must pass before the next wave.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct Wave {
    pub name: String,
    /// Workloads whose labels include all of these. Empty selects by namespace alone; with
    /// no namespaces either, the wave selects nothing (never everything).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Workloads in these namespaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// How many of the wave's workloads may be moving at once: a count or a percentage of the
    /// wave (at least one); unset moves the whole wave at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<IntOrString>,
    #[serde(default)]
    pub gate: Gate,
}

/// What a wave's workloads must show before the next wave starts.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct Gate {
    /// Every Pod of the wave Ready on the new revision for this long.
    #[serde(default)]
    pub min_ready_seconds: i64,
    /// Container restarts allowed per Pod on the new revision; more fails the gate.
    #[serde(default)]
    pub max_restarts: i32,
    /// The wave fails (and the rollout aborts) if its gate has not passed this long after the
    /// wave started; default 600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_seconds: Option<i64>,
    /// After the wave passes, wait for `kubectl appimage rollout promote`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pause: bool,
    /// Once the wave's workloads are ready: run a role of the new revision as a Job, which
    /// must succeed (within the wave's deadline) before the wave passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<Check>,
}

/// A check: a role of the AppImage's new revision, run as a Job, as `kubectl appimage deploy
/// --kind Job --role ROLE` would run it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    /// Where the Job runs.
    pub namespace: String,
    /// The role that chooses the deploy template, as Kuscia chooses it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub role: String,
    /// Only the deploy template of this name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
}

/// The check Job of wave `wave` of revision `revision` of AppImage `appimage`: one name per
/// wave and revision, so a retry or a new leader finds the Job it made.
pub fn check_name(appimage: &str, revision: i64, wave: i64) -> String {
    let base: String = appimage.chars().take(40).collect();
    format!(
        "{}-r{revision}-w{wave}-check",
        base.trim_end_matches(['-', '.'])
    )
}

/// A promotion: the manual pause of `wave` (its index) of `revision` is passed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct Promote {
    pub revision: i64,
    pub wave: i64,
}

/// Where the rollout stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    /// Moving the current wave, or waiting for its gate.
    Progressing,
    /// `spec.paused`: nothing more moves.
    Paused,
    /// The wave passed its gate and waits for `rollout promote`.
    WaitingForPromote,
    /// Every wave passed.
    Succeeded,
    /// Moving the moved workloads back.
    Aborting,
    /// Every moved workload is back; the revision is not tried again until `rollout retry`.
    Aborted,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Progressing => "Progressing",
            Phase::Paused => "Paused",
            Phase::WaitingForPromote => "WaitingForPromote",
            Phase::Succeeded => "Succeeded",
            Phase::Aborting => "Aborting",
            Phase::Aborted => "Aborted",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct AppImageRolloutStatus {
    /// The revision being (or last) rolled out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The current wave's index (equal to the number of waves once all passed).
    #[serde(default)]
    pub wave: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave_name: Option<String>,
    /// When the current wave started (its progress deadline counts from here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave_started: Option<Time>,
    /// A word for why it stands where it stands (GateFailed, ProgressDeadlineExceeded, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Each wave's counts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waves: Vec<WaveStatus>,
    /// Every workload of the rollout, sorted by kind, namespace and name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<WorkloadStatus>,
    /// Revisions that failed: Auto workloads are not moved to them again until `rollout retry`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct WaveStatus {
    pub name: String,
    pub workloads: i64,
    /// Workloads whose template names the new revision.
    pub updated: i64,
    /// Of those, the ones that pass the gate's readiness.
    pub ready: i64,
}

/// A workload of the rollout and what was done to it.
#[derive(
    Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema, Default,
)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadStatus {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub wave: i64,
    /// The revision it ran before it was moved (what an abort moves it back to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<i64>,
    /// Moved by this rollout.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub moved: bool,
    /// Passes the gate's readiness on the new revision.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ready: bool,
}

/// The CRD, generated from these types.
pub fn crd()
-> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    use kube::CustomResourceExt;
    AppImageRollout::crd()
}

/// The CRD as the YAML committed under `charts/appimage-webhook/crds/`.
pub fn crd_yaml() -> String {
    crate::resource::crd_yaml_of(&crd(), "`kubectl appimage crd`")
}
