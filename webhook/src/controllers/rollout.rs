//! Rollouts follow the AppImage (issue 17, section 4). When an AppImage has a revision its
//! workloads have not been acted on for, every Auto workload's pod template is pointed at it
//! (revision annotations and image, by server-side apply under its own field manager), and the
//! workload's controller rolls it with its own strategy. Manual workloads are reported outdated.
//!
//! - The rule is the core's `revision::step`: the workload's label [`LATEST`] records the
//!   revision acted on, so a user's `kubectl rollout undo` stays until the AppImage changes
//!   again (a label, because an undo restores a Deployment's annotations; see [`acted_on`]).
//! - A revision whose signature does not verify is never rolled out: a Warning Event says why.
//! - Bare Pods cannot change: each outdated one gets one Event per revision.
//! - An update-policy annotation that is neither Auto nor Manual is reported (a Warning Event
//!   naming the value) and read as Manual: a typo must never widen what the controller does.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use appimage::batch::workload::BATCH;
use appimage::labels;
use appimage::resource::AppImage;
use appimage::revision::{
    AppImageRevision, Known, LATEST, Named, Policy, REVISION, REVISION_HASH, Step, named, policy,
    resolve, revision_name, step,
};
use appimage::signature::{SignatureError, changed_paths};
use appimage::workload::UPDATE_POLICY;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ObjectReference, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::Context;
use crate::catalog::Recorded;

/// The field manager of the pod-template fields a rollout sets (not the room's [`super::MANAGER`],
/// whose other applies would otherwise drop them).
pub const ROLLOUT_MANAGER: &str = "appimage-webhook-rollout";

/// Workloads written at once (as the batch controller does).
const WRITES_IN_FLIGHT: usize = 32;

/// A kind with a pod template.
pub trait Templated: Resource<DynamicType = ()> + Send + Sync + 'static {
    /// JSON path segments from the object to its pod template.
    const PATH: &'static [&'static str];
    fn pod_template(&self) -> Option<&PodTemplateSpec>;
}

macro_rules! templated {
    ($($kind:ty => [$($seg:literal),+] $template:expr;)+) => {$(
        impl Templated for $kind {
            const PATH: &'static [&'static str] = &[$($seg),+];
            fn pod_template(&self) -> Option<&PodTemplateSpec> {
                let template: fn(&$kind) -> Option<&PodTemplateSpec> = $template;
                template(self)
            }
        }
    )+};
}

templated! {
    Deployment => ["spec", "template"] |d| d.spec.as_ref().map(|s| &s.template);
    StatefulSet => ["spec", "template"] |d| d.spec.as_ref().map(|s| &s.template);
    DaemonSet => ["spec", "template"] |d| d.spec.as_ref().map(|s| &s.template);
    Job => ["spec", "template"] |d| d.spec.as_ref().map(|s| &s.template);
    ReplicaSet => ["spec", "template"] |d| d.spec.as_ref().and_then(|s| s.template.as_ref());
    CronJob => ["spec", "jobTemplate", "spec", "template"]
        |c| c.spec.as_ref()?.job_template.spec.as_ref().map(|s| &s.template);
}

/// The metadata and pod template of a stored object, read in place.
trait Object: Send + Sync {
    fn meta(&self) -> &ObjectMeta;
    fn template(&self) -> Option<&PodTemplateSpec>;
}

impl<K: Templated> Object for K {
    fn meta(&self) -> &ObjectMeta {
        Resource::meta(self)
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.pod_template()
    }
}

/// A workload that runs an AppImage, whatever its kind: the store's own object, shared, not
/// a copy (issue 25: a reconcile copied every workload of the AppImage, and held the copies
/// for the whole rollout).
#[derive(Clone)]
pub struct Workload {
    pub gvk: GroupVersionKind,
    object: Arc<dyn Object>,
    /// JSON path segments from the object to its pod template.
    pub path: &'static [&'static str],
}

impl Workload {
    /// `object` as a workload, when it has a pod template.
    pub fn new<K: Templated>(object: Arc<K>) -> Option<Workload> {
        object.pod_template()?;
        Some(Workload {
            gvk: GroupVersionKind::gvk(&K::group(&()), &K::version(&()), &K::kind(&())),
            object,
            path: K::PATH,
        })
    }

    pub fn meta(&self) -> &ObjectMeta {
        self.object.meta()
    }

    pub fn template(&self) -> &PodTemplateSpec {
        static NONE: std::sync::LazyLock<PodTemplateSpec> =
            std::sync::LazyLock::new(PodTemplateSpec::default);
        // Always set: `new` takes only objects with a template.
        self.object.template().unwrap_or(&NONE)
    }

    fn reference(&self) -> ObjectReference {
        let meta = self.meta();
        ObjectReference {
            api_version: Some(self.gvk.api_version()),
            kind: Some(self.gvk.kind.clone()),
            name: meta.name.clone(),
            namespace: meta.namespace.clone(),
            uid: meta.uid.clone(),
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
    /// The recorded revision of the current spec, once the catalog holds it.
    pub revision: Option<&'a Recorded>,
}

/// What was already reported, so that each report is one Event.
#[derive(Default)]
pub struct Told {
    /// Bare Pods told they are outdated, per revision.
    pods: Mutex<HashSet<(String, i64)>>,
    /// Workloads told their update-policy value is invalid, per value.
    policies: Mutex<HashSet<(String, String)>>,
}

/// Insert into a told-set; whether it is new (a poisoned lock still works).
fn first_time<T: std::hash::Hash + Eq>(set: &Mutex<HashSet<T>>, key: T) -> bool {
    set.lock().unwrap_or_else(|p| p.into_inner()).insert(key)
}

/// The policy a workload's update-policy annotation names. An invalid value is read as Manual
/// (never widen) and comes with the warning to report on `kind`/`name`.
pub fn update_policy(
    value: Option<&str>,
    kind: &str,
    name: &str,
    namespace: &str,
) -> (Policy, Option<String>) {
    match policy(value) {
        Ok(p) => (p, None),
        Err(_) => (
            Policy::Manual,
            Some(format!(
                "annotation {UPDATE_POLICY}={:?} is not an update policy (allowed: Auto|Manual): treated as Manual, so {kind}/{name} is not rolled automatically; fix it with kubectl annotate {} {name} -n {namespace} {UPDATE_POLICY}=Auto --overwrite (or =Manual)",
                value.unwrap_or_default(),
                kind.to_lowercase(),
            )),
        ),
    }
}

/// Why `current` may not be rolled out, if it may not: its signature, with the spec fields
/// changed since the previous revision when that one still verifies.
fn blocked(ctx: &Context, current: &Current<'_>) -> Option<SignatureError> {
    let requirement = ctx.policy.signatures.to_run();
    let name = current.image.name_any();
    let version = current.image.metadata.resource_version.as_deref();
    // The catalog's cached verdict when it holds this very version (the freshness rule; the
    // revisions controller reads the spec from it), else verified afresh.
    let e = match ctx.catalog.lookup(&name) {
        Some(p)
            if version.is_some() && p.head().metadata.resource_version.as_deref() == version =>
        {
            ctx.catalog.verdict(&p, &requirement).err()?
        }
        _ => ctx.catalog.verify(current.image, &requirement).err()?,
    };
    let uid = current.image.uid().unwrap_or_default();
    let previous = ctx
        .catalog
        .revisions()
        .by_number(&name, &uid, current.number - 1, None)
        .ok()
        .map(|p| p.appimage())
        .filter(|p| {
            ctx.catalog
                .verify(p, &ctx.policy.signatures.to_run())
                .is_ok()
        });
    Some(match previous {
        Some(p) => e.with_changes(&changed_paths(&p.spec, &current.image.spec)),
        None => e,
    })
}

/// Act on every workload and bare Pod of `current.image`.
pub async fn roll(
    ctx: &Context,
    current: &Current<'_>,
    workloads: &[Workload],
    pods: &[Arc<Pod>],
    told: &Told,
) {
    let name = current.image.name_any();
    // Why a rollout may not start: the new revision's signature (see `blocked`).
    let blocked = blocked(ctx, current).map(|e| {
        if ctx.policy.require_signature {
            format!(
                "revision {} of AppImage {name:?} failed signature verification ({e}): not rolled out; a tampered update (any spec field changed, signature kept) or a revoked or expired key is never rolled out — re-sign it (kubectl appimage sign) or roll the AppImage back",
                current.number
            )
        } else {
            tracing::warn!(appimage = %name, revision = current.number, "rolling out despite a failed signature check (--require-signature=false): {e}");
            format!(
                "revision {} of AppImage {name:?} failed signature verification ({e}): rolled out anyway, because the webhook runs with --require-signature=false (as admission, which warns and admits); re-sign it (kubectl appimage sign)",
                current.number
            )
        }
    });
    // Several workloads at once, and their Events after every write: the writes are what a
    // rollout waits for. 1,000 Deployments took 47 s one at a time with an Event after each
    // patch, 3.7 s 32 at a time, still 1.85x a plain client sending the patches alone: the
    // Events doubled the writes before the last patch (BENCHMARKS.md, rollout).
    let blocked = blocked.as_deref();
    // By index: a closure taking `&Workload` makes the controller's future not Send for
    // every lifetime (a rustc limitation with higher-ranked closures).
    let reports: Vec<Report> = futures::stream::iter(0..workloads.len())
        .map(|i| act_logged(ctx, current, &workloads[i], blocked, told))
        .buffer_unordered(WRITES_IN_FLIGHT)
        .filter_map(std::future::ready)
        .collect()
        .await;
    futures::stream::iter(&reports)
        .for_each_concurrent(WRITES_IN_FLIGHT, |r| async move { publish(ctx, r).await })
        .await;
    for pod in pods {
        tell_outdated(ctx, current, pod, told).await;
    }
}

/// [`act`], its failure logged (the next reconcile retries).
async fn act_logged(
    ctx: &Context,
    current: &Current<'_>,
    w: &Workload,
    blocked: Option<&str>,
    told: &Told,
) -> Option<Report> {
    act(ctx, current, w, blocked, told)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(workload = ?w.meta().name, namespace = ?w.meta().namespace, "rollout: {e}");
            None
        })
}

async fn act(
    ctx: &Context,
    current: &Current<'_>,
    w: &Workload,
    blocked: Option<&str>,
    told: &Told,
) -> Result<Option<Report>, kube::Error> {
    let annotations = w.meta().annotations.as_ref();
    let acted = acted_on(w.meta());
    let runs = named(
        w.template()
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.as_ref()),
    )
    .ok()
    .and_then(|n| resolve(&n, current.known));
    let value = annotations
        .and_then(|a| a.get(UPDATE_POLICY))
        .map(String::as_str);
    let workload = w.meta().name.as_deref().unwrap_or_default();
    let namespace = w.meta().namespace.as_deref().unwrap_or_default();
    let (policy, invalid) = update_policy(value, &w.gvk.kind, workload, namespace);
    let invalid_value = invalid.is_some();
    if let Some(why) = invalid {
        let key = (
            w.meta().uid.clone().unwrap_or_default(),
            value.unwrap_or_default().to_string(),
        );
        if first_time(&told.policies, key) {
            event(ctx, w, EventType::Warning, "InvalidUpdatePolicy", why, None).await;
        }
    }
    let number = current.number;
    let image = current.image.name_any();
    let related = || Some(revision_ref(&image, number));
    match step(policy, acted, runs, number) {
        Step::Nothing => Ok(None),
        Step::Record => apply(ctx, w, number, None).await.map(|()| None),
        Step::Roll { from } => {
            if let Some(why) = blocked
                && hold(ctx, w, why, &image, number).await
            {
                return Ok(None);
            }
            apply(ctx, w, number, Some(current)).await?;
            let note = format!("AppImage {image:?} revision {} → {number}", show(from));
            let r = report(w, EventType::Normal, "RolledOut", note, related());
            Ok(Some(r))
        }
        Step::Outdated { runs } => {
            apply(ctx, w, number, None).await?;
            let kind = &w.gvk.kind;
            let note = format!(
                "outdated: runs revision {} of AppImage {image:?}, which is at revision {number}; update-policy is {}: run kubectl appimage rollout {image} --workload {} -n {}",
                show(runs),
                if invalid_value {
                    format!("{:?}, read as Manual", value.unwrap_or_default())
                } else {
                    "Manual".into()
                },
                w.meta().name.as_deref().unwrap_or_default(),
                w.meta().namespace.as_deref().unwrap_or_default(),
            );
            let reason = format!("{kind}Outdated");
            Ok(Some(report(w, EventType::Normal, &reason, note, related())))
        }
    }
}

/// Tell `w` once per revision (not once per reconcile, issue 25) that revision `number` failed
/// its signature check; whether the rollout is held: it is unless `--require-signature=false`,
/// where the Event is an `UnverifiedRollout` warning and the rollout goes on.
async fn hold(ctx: &Context, w: &Workload, why: &str, image: &str, number: i64) -> bool {
    let reason = if ctx.policy.require_signature {
        "RolloutBlocked"
    } else {
        "UnverifiedRollout"
    };
    let uid = w.meta().uid.as_deref().unwrap_or_default();
    if ctx.told.first(format!("{reason}/{uid}/{image}/{number}")) {
        let related = Some(revision_ref(image, number));
        event(ctx, w, EventType::Warning, reason, why.into(), related).await;
    }
    ctx.policy.require_signature
}

/// The revision last acted on for a workload: its [`LATEST`] label, else (a workload noted
/// before the label, or by an older `kubectl appimage rollout`) the annotation of that name.
/// The label comes first because `kubectl rollout undo` of a Deployment copies the old
/// ReplicaSet's annotations back onto the Deployment, which would restore an older note and
/// make the controller roll the undone Deployment forward again; labels are left alone.
pub fn acted_on(meta: &ObjectMeta) -> Option<i64> {
    let read = |m: Option<&std::collections::BTreeMap<String, String>>| {
        m.and_then(|m| m.get(LATEST))
            .and_then(|v| v.trim().parse().ok())
    };
    read(meta.labels.as_ref()).or_else(|| read(meta.annotations.as_ref()))
}

fn show(n: Option<i64>) -> String {
    n.map_or("unknown".into(), |n| n.to_string())
}

/// Note the acted-on revision and, when rolling, point the pod template at it: its revision
/// and the image of the AppImage's containers, by server-side apply. Without a roll only the
/// note is written, by a merge patch: an apply of the note alone would drop the template
/// fields an earlier roll applied (a Manual workload would lose its revision and roll).
pub(super) async fn apply(
    ctx: &Context,
    w: &Workload,
    number: i64,
    roll: Option<&Current<'_>>,
) -> Result<(), kube::Error> {
    // The label is what the controller reads (see `acted_on`); the annotation is kept for
    // people and tools that read it.
    let noted = json!({LATEST: number.to_string()});
    let note = json!({"metadata": {"labels": noted, "annotations": noted}});
    let ar = ApiResource::from_gvk(&w.gvk);
    let ns = w.meta().namespace.as_deref().unwrap_or("default");
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &ar);
    let name = w.meta().name.as_deref().unwrap_or_default();
    let Some(current) = roll else {
        let params = PatchParams {
            field_manager: Some(ROLLOUT_MANAGER.into()),
            ..PatchParams::default()
        };
        api.patch(name, &params, &Patch::Merge(&note)).await?;
        return Ok(());
    };
    let mut body = json!({
        "apiVersion": w.gvk.api_version(),
        "kind": w.gvk.kind,
        "metadata": {"name": w.meta().name, "labels": noted, "annotations": noted},
    });
    let mut at = &mut body;
    for segment in w.path {
        at = &mut at[*segment];
    }
    *at = template_patch(w, current);
    let params = PatchParams::apply(ROLLOUT_MANAGER).force();
    api.patch(name, &params, &Patch::Apply(&body)).await?;
    Ok(())
}

/// The pod template fields a rollout owns: the revision it names and the AppImage's image on
/// the containers that the revision's deploy templates name.
fn template_patch(w: &Workload, current: &Current<'_>) -> serde_json::Value {
    let spec = current
        .revision
        .and_then(|r| r.read.as_ref().ok())
        .map_or(&current.image.spec, |s| &*s.spec);
    let ours: HashSet<&str> = spec
        .deploy_templates
        .iter()
        .flat_map(|t| t.spec.containers.iter().map(|c| c.name.as_str()))
        .collect();
    // As `deploy` and the Pods: pinned by digest when the image id is one.
    let image_ref = spec.image.reference();
    let containers: Vec<serde_json::Value> = w
        .template()
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

/// The AppImageRevision an Event is about. Events name it as their related object, which also
/// keeps them apart: the recorder folds an Event into an earlier one of the same reason,
/// object and related object (keeping the earlier note), so without it a second
/// `DeploymentOutdated` (say, after a rollback) would still read the first one's revisions.
pub(super) fn revision_ref(image: &str, number: i64) -> ObjectReference {
    ObjectReference {
        api_version: Some(AppImageRevision::api_version(&()).into_owned()),
        kind: Some(AppImageRevision::kind(&()).into_owned()),
        name: Some(revision_name(image, number)),
        ..ObjectReference::default()
    }
}

/// An Event on a workload, published by [`publish`].
struct Report {
    regarding: ObjectReference,
    event: Event,
}

fn report(
    w: &Workload,
    type_: EventType,
    reason: &str,
    note: String,
    related: Option<ObjectReference>,
) -> Report {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Rollout".into(),
        secondary: related,
    };
    Report {
        regarding: w.reference(),
        event,
    }
}

async fn publish(ctx: &Context, r: &Report) {
    if let Err(e) = ctx.recorder.publish(&r.event, &r.regarding).await {
        tracing::warn!("cannot record an Event: {e}");
    }
}

pub(super) async fn event(
    ctx: &Context,
    w: &Workload,
    type_: EventType,
    reason: &str,
    note: String,
    related: Option<ObjectReference>,
) {
    publish(ctx, &report(w, type_, reason, note, related)).await;
}

/// A deprecated AppImage's warning, told to the workloads whose controllers make its Pods
/// (issue 30): admission warns the client that creates a Pod, and for a workload's Pods that
/// client is the workload's controller, so the user would never see it. One Warning Event per
/// workload and AppImage (not per Pod, not per pass); a CronJob's runs and a batch job's
/// workloads are left out (the CronJob is told; the batch controller reports on its own).
pub async fn tell_deprecated(ctx: &Context, image: &AppImage, workloads: &[Workload]) {
    let Some(warning) = appimage::stage::deprecation_warning(image) else {
        return;
    };
    let name = image.name_any();
    for w in workloads {
        let spawned =
            (w.meta().owner_references.iter().flatten()).any(|o| o.controller == Some(true));
        let batch = w
            .meta()
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(BATCH));
        if spawned || batch || w.gvk.kind == "ReplicaSet" {
            continue;
        }
        let uid = w.meta().uid.as_deref().unwrap_or_default();
        if !ctx.told.first(format!("AppImageDeprecated/{uid}/{name}")) {
            continue;
        }
        let note = format!(
            "{warning}; its Pods keep running and are still admitted (kubectl appimage status {name} -A lists what runs it)"
        );
        event(ctx, w, EventType::Warning, "AppImageDeprecated", note, None).await;
    }
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
            (Some(r), Some(created)) => r.created.as_ref().is_some_and(|t| created.0 < t.0),
            _ => false,
        },
        _ => runs != Some(current.number),
    };
    let uid = pod.uid().unwrap_or_default();
    if !outdated || !first_time(&told.pods, (uid, current.number)) {
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
        secondary: Some(revision_ref(&image, current.number)),
    };
    if let Err(e) = ctx.recorder.publish(&event, &pod.object_ref(&())).await {
        tracing::warn!("cannot record an Event: {e}");
    }
}

/// Whether `w`'s update policy is Auto (an invalid value is Manual: never widen).
pub fn is_auto(w: &Workload) -> bool {
    let value = w
        .meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(UPDATE_POLICY))
        .map(String::as_str);
    policy(value).is_ok_and(|p| p == Policy::Auto)
}

/// Whether `meta` belongs to AppImage `name` and is a rollout's to follow (not a batch's).
pub fn follows(meta: &ObjectMeta, name: &str) -> bool {
    let labels = meta.labels.as_ref();
    labels
        .and_then(|l| l.get(labels::APP_IMAGE))
        .is_some_and(|v| v == name)
        && !labels.is_some_and(|l| l.contains_key(BATCH))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_update_policy_is_manual_and_says_why() {
        assert_eq!(
            update_policy(None, "Deployment", "a", "ns"),
            (Policy::Auto, None)
        );
        assert_eq!(
            update_policy(Some("Manual"), "Deployment", "a", "ns"),
            (Policy::Manual, None)
        );
        for bad in ["manual", "Always", " "] {
            let (p, why) = update_policy(Some(bad), "Deployment", "web", "ns");
            if bad.trim().is_empty() {
                // An empty value is the default, as an absent one.
                assert_eq!((p, why), (Policy::Auto, None));
                continue;
            }
            assert_eq!(p, Policy::Manual, "{bad}: never widen");
            let why = why.expect("reported");
            assert!(why.contains(&format!("{bad:?}")), "{why}");
            assert!(why.contains("Auto|Manual"), "{why}");
            // The advice is a command that works: it names the namespace.
            assert!(
                why.contains("kubectl annotate deployment web -n ns "),
                "{why}"
            );
        }
    }

    #[test]
    fn the_acted_on_label_wins_over_an_annotation_an_undo_restored() {
        let map = |v: &str| Some([(LATEST.to_string(), v.to_string())].into());
        let meta = ObjectMeta {
            labels: map("2"),
            annotations: map("1"),
            ..ObjectMeta::default()
        };
        assert_eq!(acted_on(&meta), Some(2));
        let annotated = ObjectMeta {
            annotations: map("3"),
            ..ObjectMeta::default()
        };
        assert_eq!(acted_on(&annotated), Some(3));
        let bad = ObjectMeta {
            labels: map("x"),
            ..ObjectMeta::default()
        };
        assert_eq!(acted_on(&bad), None);
        assert_eq!(acted_on(&ObjectMeta::default()), None);
    }

    #[test]
    fn the_rollout_writes_the_image_deploy_writes() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let spec = |id: Option<&str>| -> appimage::resource::AppImageSpec {
            serde_json::from_value(json!({
                "image": {"name": "team/app", "tag": "2", "id": id},
                "deployTemplates": [{"name": "t", "spec": {"containers": [{"name": "app"}]}}]
            }))
            .unwrap()
        };
        let template: PodTemplateSpec = serde_json::from_value(json!({
            "spec": {"containers": [{"name": "app", "image": "old"}, {"name": "side", "image": "s"}]}
        }))
        .unwrap();
        let w = deployment(ObjectMeta::default(), template);
        for (id, want) in [
            // An image ID names no manifest: the webhook pins Pods at admission (issue 27).
            (Some(digest.as_str()), "team/app:2".to_string()),
            (None, "team/app:2".to_string()),
            (Some("not-a-digest"), "team/app:2".to_string()),
        ] {
            let image = AppImage::new("app", spec(id));
            let current = Current {
                image: &image,
                number: 2,
                hash: "h",
                known: &[],
                revision: None,
            };
            let patch = template_patch(&w, &current);
            assert_eq!(
                patch["spec"]["containers"],
                json!([{"name": "app", "image": want}]),
                "{id:?}"
            );
            // The one rule: what `deploy` and the webhook's Pods use.
            assert_eq!(want, image.image_ref());
        }
    }

    /// An Auto Deployment on revision 1 of an unsigned AppImage at revision 2, with no trusted
    /// key: the signature check fails.
    fn unverified() -> (AppImage, Workload) {
        let image = AppImage::new(
            "app",
            serde_json::from_value(json!({
                "image": {"name": "team/app", "tag": "2"},
                "deployTemplates": [{"name": "t", "spec": {"containers": [{"name": "app"}]}}]
            }))
            .unwrap(),
        );
        let meta: ObjectMeta = serde_json::from_value(json!({
            "name": "web", "namespace": "ns", "uid": "u1", "labels": {LATEST: "1"}
        }))
        .unwrap();
        let template: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"annotations": {REVISION_HASH: "h1"}},
            "spec": {"containers": [{"name": "app", "image": "team/app:1"}]}
        }))
        .unwrap();
        (image, deployment(meta, template))
    }

    /// A Deployment of `meta` and `template` as a workload.
    fn deployment(metadata: ObjectMeta, template: PodTemplateSpec) -> Workload {
        let spec = k8s_openapi::api::apps::v1::DeploymentSpec {
            template,
            ..Default::default()
        };
        let d = Deployment {
            metadata,
            spec: Some(spec),
            status: None,
        };
        Workload::new(Arc::new(d)).unwrap()
    }

    #[tokio::test]
    async fn a_deprecated_appimage_is_told_once_per_workload_not_per_pass() {
        let (mut image, w) = unverified();
        let (client, log) = super::super::mock_api::mock();
        let ctx = super::super::mock_api::context(client);
        tell_deprecated(&ctx, &image, std::slice::from_ref(&w)).await;
        assert_eq!(
            super::super::mock_api::events(&log).len(),
            0,
            "a draft is not told"
        );
        image.metadata.labels = Some([(labels::STAGE.into(), "deprecated".into())].into());
        let mut meta = w.meta().clone();
        meta.uid = Some("u2".into());
        meta.owner_references = Some(vec![serde_json::from_value(json!({
            "apiVersion": "batch/v1", "kind": "CronJob", "name": "c", "uid": "c1", "controller": true
        }))
        .unwrap()]);
        let spawned = deployment(meta, w.template().clone());
        for _ in 0..3 {
            tell_deprecated(&ctx, &image, &[w.clone(), spawned.clone()]).await;
        }
        let events = super::super::mock_api::events(&log);
        assert_eq!(events.len(), 1, "one Event, on the workload: {events:?}");
    }

    /// Revisions 1 (`h1`) and 2 (`h2`) are known.
    fn two_revisions() -> [Known; 2] {
        [1, 2].map(|number| Known {
            number,
            hash: format!("h{number}"),
        })
    }

    #[tokio::test]
    async fn a_failed_signature_holds_the_rollout_unless_signatures_are_not_required() {
        let (image, w) = unverified();
        let known = two_revisions();
        let current = Current {
            image: &image,
            number: 2,
            hash: "h2",
            known: &known,
            revision: None,
        };
        for required in [true, false] {
            let (client, log) = super::super::mock_api::mock();
            let mut ctx = super::super::mock_api::context(client);
            ctx.policy.require_signature = required;
            roll(
                &ctx,
                &current,
                std::slice::from_ref(&w),
                &[],
                &Told::default(),
            )
            .await;
            let log = log.lock().unwrap().clone();
            let patched = log
                .iter()
                .any(|l| l == "PATCH /apis/apps/v1/namespaces/ns/deployments/web");
            assert_eq!(patched, !required, "required={required}: {log:?}");
            let events = log.iter().filter(|l| l.contains("/events")).count();
            assert!(events >= 1, "a Warning either way: {log:?}");
        }
    }

    #[tokio::test]
    async fn an_auto_workload_is_rolled_by_one_apply_and_a_current_one_costs_nothing() {
        use crate::controllers::mock_api::{Seen, assert_apply, echo, server};
        let (image, w) = unverified();
        let known = two_revisions();
        let current = Current {
            image: &image,
            number: 2,
            hash: "h2",
            known: &known,
            revision: None,
        };
        let (client, seen) = server(echo);
        let mut ctx = super::super::mock_api::context(client);
        // Unsigned: rolled with a warning (the signature hold has its own test).
        ctx.policy.require_signature = false;
        roll(
            &ctx,
            &current,
            std::slice::from_ref(&w),
            &[],
            &Told::default(),
        )
        .await;
        let sent: Vec<Seen> = crate::controllers::mock_api::writes(&seen);
        assert_eq!(sent.len(), 1, "{sent:?}");
        let path = "/apis/apps/v1/namespaces/ns/deployments/web";
        assert_apply(&sent[0], path, ROLLOUT_MANAGER);
        let body = &sent[0].body;
        assert_eq!(body["metadata"]["labels"][LATEST], "2");
        let template = &body["spec"]["template"];
        assert_eq!(template["metadata"]["annotations"][REVISION], "2");
        assert_eq!(template["metadata"]["annotations"][REVISION_HASH], "h2");
        assert_eq!(
            template["spec"]["containers"],
            json!([{"name": "app", "image": "team/app:2"}])
        );
        // Acted on 2 and running 2: nothing to send.
        let mut meta = w.meta().clone();
        let mut template = w.template().clone();
        meta.labels = Some([(LATEST.to_string(), "2".to_string())].into());
        template.metadata = Some(ObjectMeta {
            annotations: Some(
                [
                    (REVISION.to_string(), "2".to_string()),
                    (REVISION_HASH.to_string(), "h2".to_string()),
                ]
                .into(),
            ),
            ..ObjectMeta::default()
        });
        let w = deployment(meta, template);
        let (client, seen) = server(echo);
        let ctx = super::super::mock_api::context(client);
        roll(
            &ctx,
            &current,
            std::slice::from_ref(&w),
            &[],
            &Told::default(),
        )
        .await;
        let none = seen.lock().unwrap().is_empty();
        assert!(none, "{:?}", seen.lock().unwrap());
    }

    #[test]
    fn first_time_is_once_per_key() {
        let told = Told::default();
        assert!(first_time(&told.policies, ("u".into(), "x".into())));
        assert!(!first_time(&told.policies, ("u".into(), "x".into())));
        assert!(first_time(&told.policies, ("u".into(), "y".into())));
    }
}
