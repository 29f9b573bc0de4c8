//! Rollouts follow the AppImage (issue 17, section 4). When an AppImage has a revision its
//! workloads have not been acted on for, every Auto workload's pod template is pointed at it
//! (revision annotations and image, by server-side apply under its own field manager), and the
//! workload's controller rolls it with its own strategy. Manual workloads are reported outdated.
//!
//! - The rule is the core's `revision::step`: the workload's annotation
//!   [`LATEST`] records the revision acted on, so a user's `kubectl rollout undo` stays until
//!   the AppImage changes again.
//! - A revision whose signature does not verify is never rolled out: a Warning Event says why.
//! - Bare Pods cannot change: each outdated one gets one Event per revision.

use std::collections::HashSet;
use std::sync::Mutex;

use appimage::batch::workload::BATCH;
use appimage::labels;
use appimage::resource::AppImage;
use appimage::revision::{
    AppImageRevision, Known, LATEST, Named, Policy, REVISION, REVISION_HASH, Step, named, policy,
    resolve, step,
};
use appimage::workload::UPDATE_POLICY;
use k8s_openapi::api::core::v1::{ObjectReference, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::Context;

/// The field manager of the pod-template fields a rollout sets (not the room's [`super::MANAGER`],
/// whose other applies would otherwise drop them).
pub const ROLLOUT_MANAGER: &str = "appimage-webhook-rollout";

/// A workload that runs an AppImage, whatever its kind.
#[derive(Debug, Clone)]
pub struct Workload {
    pub gvk: GroupVersionKind,
    pub meta: ObjectMeta,
    pub template: PodTemplateSpec,
    /// JSON path segments from the object to its pod template.
    pub path: &'static [&'static str],
}

impl Workload {
    fn reference(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some(self.gvk.api_version()),
            kind: Some(self.gvk.kind.clone()),
            name: self.meta.name.clone(),
            namespace: self.meta.namespace.clone(),
            uid: self.meta.uid.clone(),
            ..Default::default()
        }
    }
}

/// The current revision and what the rollout needs of it.
pub struct Current<'a> {
    pub image: &'a AppImage,
    pub number: i64,
    pub hash: &'a str,
    pub known: &'a [Known],
    pub revision: Option<&'a AppImageRevision>,
}

/// Bare Pods already told they are outdated, per revision (so one Event each).
#[derive(Default)]
pub struct Told(Mutex<HashSet<(String, i64)>>);

/// Act on every workload and bare Pod of `current.image`.
pub async fn roll(
    ctx: &Context,
    current: &Current<'_>,
    workloads: &[Workload],
    pods: &[Pod],
    told: &Told,
) {
    let name = current.image.name_any();
    // Why a rollout may not start: the new revision's signature.
    let blocked = match ctx.catalog.lookup_named(&name, &Named::Hash(current.hash.to_string())) {
        Ok(Some(p)) => p.derived.signature.as_ref().err().map(|e| format!(
            "revision {} of AppImage {name:?} failed signature verification ({e}): not rolled out; a tampered update (tag or digest changed, signature kept) is never rolled out — re-sign it (kubectl appimage sign) or roll the AppImage back",
            current.number
        )),
        Ok(None) => return,
        Err(e) => Some(e),
    };
    for w in workloads {
        if let Err(e) = act(ctx, current, w, blocked.as_deref()).await {
            tracing::warn!(workload = ?w.meta.name, namespace = ?w.meta.namespace, "rollout: {e}");
        }
    }
    for pod in pods {
        tell_outdated(ctx, current, pod, told).await;
    }
}

async fn act(
    ctx: &Context,
    current: &Current<'_>,
    w: &Workload,
    blocked: Option<&str>,
) -> Result<(), kube::Error> {
    let annotations = w.meta.annotations.as_ref();
    let acted = annotations
        .and_then(|a| a.get(LATEST))
        .and_then(|v| v.parse().ok());
    let runs = named(
        w.template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.as_ref()),
    )
    .ok()
    .and_then(|n| resolve(&n, current.known));
    let policy = policy(
        annotations
            .and_then(|a| a.get(UPDATE_POLICY))
            .map(String::as_str),
    )
    .unwrap_or(Policy::Manual);
    let number = current.number;
    let image = current.image.name_any();
    match step(policy, acted, runs, number) {
        Step::Nothing => Ok(()),
        Step::Record => apply(ctx, w, number, None).await,
        Step::Roll { from } => {
            if let Some(why) = blocked {
                return event(
                    ctx,
                    w,
                    EventType::Warning,
                    "RolloutBlocked",
                    why.to_string(),
                )
                .await;
            }
            apply(ctx, w, number, Some(current)).await?;
            let note = format!("AppImage {image:?} revision {} → {number}", show(from));
            event(ctx, w, EventType::Normal, "RolledOut", note).await
        }
        Step::Outdated { runs } => {
            apply(ctx, w, number, None).await?;
            let kind = &w.gvk.kind;
            let note = format!(
                "outdated: runs revision {} of AppImage {image:?}, which is at revision {number}; update-policy is Manual: run kubectl appimage rollout {image} --workload {} -n {}",
                show(runs),
                w.meta.name.as_deref().unwrap_or_default(),
                w.meta.namespace.as_deref().unwrap_or_default(),
            );
            event(ctx, w, EventType::Normal, &format!("{kind}Outdated"), note).await
        }
    }
}

fn show(n: Option<i64>) -> String {
    n.map_or("unknown".into(), |n| n.to_string())
}

/// Server-side apply of the acted-on revision and, when rolling, the pod template's revision
/// and the image of the AppImage's containers.
async fn apply(
    ctx: &Context,
    w: &Workload,
    number: i64,
    roll: Option<&Current<'_>>,
) -> Result<(), kube::Error> {
    let mut body = json!({
        "apiVersion": w.gvk.api_version(),
        "kind": w.gvk.kind,
        "metadata": {"name": w.meta.name, "annotations": {LATEST: number.to_string()}},
    });
    if let Some(current) = roll {
        let template = template_patch(w, current);
        let mut at = &mut body;
        for segment in w.path {
            at = &mut at[*segment];
        }
        *at = template;
    }
    let ar = ApiResource::from_gvk(&w.gvk);
    let ns = w.meta.namespace.as_deref().unwrap_or("default");
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &ar);
    let params = PatchParams::apply(ROLLOUT_MANAGER).force();
    let name = w.meta.name.as_deref().unwrap_or_default();
    api.patch(name, &params, &Patch::Apply(&body)).await?;
    Ok(())
}

/// The pod template fields a rollout owns: the revision it names and the AppImage's image on
/// the containers that the revision's deploy templates name.
fn template_patch(w: &Workload, current: &Current<'_>) -> serde_json::Value {
    let spec = current
        .revision
        .map_or(&current.image.spec, |r| &r.spec.template);
    let ours: HashSet<&str> = spec
        .deploy_templates
        .iter()
        .flat_map(|t| t.spec.containers.iter().map(|c| c.name.as_str()))
        .collect();
    let image_ref = format!("{}:{}", spec.image.name, spec.image.tag);
    let containers: Vec<serde_json::Value> = w
        .template
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .filter(|c| ours.contains(c.name.as_str()))
        .map(|c| json!({"name": c.name, "image": image_ref}))
        .collect();
    json!({
        "metadata": {"annotations": {REVISION: current.number.to_string(), REVISION_HASH: current.hash}},
        "spec": {"containers": containers},
    })
}

async fn event(
    ctx: &Context,
    w: &Workload,
    type_: EventType,
    reason: &str,
    note: String,
) -> Result<(), kube::Error> {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Rollout".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &w.reference()).await {
        tracing::warn!("cannot record an Event: {e}");
    }
    Ok(())
}

/// One Event on a bare Pod that runs an older revision than the current one.
async fn tell_outdated(ctx: &Context, current: &Current<'_>, pod: &Pod, told: &Told) {
    let owned = pod
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true));
    if owned || pod.labels().contains_key(BATCH) {
        return;
    }
    let Ok(named) = named(pod.metadata.annotations.as_ref()) else {
        return;
    };
    let runs = resolve(&named, current.known);
    let outdated = match named {
        // Admitted with the spec current then: outdated if older than the current revision.
        Named::Current => match (current.revision, &pod.metadata.creation_timestamp) {
            (Some(r), Some(created)) => r
                .metadata
                .creation_timestamp
                .as_ref()
                .is_some_and(|t| created.0 < t.0),
            _ => false,
        },
        _ => runs != Some(current.number),
    };
    let uid = pod.uid().unwrap_or_default();
    if !outdated
        || !told
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((uid, current.number))
    {
        return;
    }
    let image = current.image.name_any();
    let event = Event {
        type_: EventType::Normal,
        reason: "PodOutdated".into(),
        note: Some(format!(
            "runs revision {} of AppImage {image:?}, which is at revision {}; a Pod cannot change: recreate it to run the new revision",
            show(runs),
            current.number
        )),
        action: "Rollout".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &pod.object_ref(&())).await {
        tracing::warn!("cannot record an Event: {e}");
    }
}

/// Whether `meta` belongs to AppImage `name` and is a rollout's to follow (not a batch's).
pub fn follows(meta: &ObjectMeta, name: &str) -> bool {
    let labels = meta.labels.as_ref();
    labels
        .and_then(|l| l.get(labels::APP_IMAGE))
        .is_some_and(|v| v == name)
        && !labels.is_some_and(|l| l.contains_key(BATCH))
}
