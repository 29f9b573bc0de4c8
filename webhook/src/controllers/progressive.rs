//! Progressive rollouts (issue 28): for every AppImage with an AppImageRollout of its name, its
//! Auto workloads move to a new revision wave by wave, behind each wave's gate, instead of all
//! at once (the revisions controller leaves them to this one). The rules are the core's
//! (`appimage::progressive::step`); this module reads the stores, writes the status first
//! (guarded by the version it read, so a new leader resumes from it) and then moves the
//! workloads by the rollout's own path ([`rollout::apply`]): a move back on abort is a move
//! like any other, so image, rendered config and Services come back together.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use appimage::labels;
use appimage::progressive::{self, Action as Do, AppImageRollout, Phase};
use appimage::resource::AppImage;
use appimage::revision::{Known, check_owner};
use appimage::workload::{DeployOptions, Kind, Workload as Typed, revision_hash};
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};

use super::rollout::{self, Current, Workload, follows};
use super::{Backoff, Context, Error, MANAGER, Watches};
use crate::catalog::Recorded;

/// This controller's name in metrics and logs.
const NAME: &str = "progressive";
/// Look again this often while a rollout moves (gates read Pods that change on their own).
const LIVE: Duration = Duration::from_secs(5);
/// Look again this often when nothing moves.
const RESYNC: Duration = Duration::from_secs(120);
/// Look again this soon while a store is cold or the revision is not recorded yet.
const COLD: Duration = Duration::from_millis(500);

struct Ctx {
    base: Context,
    pods: Store<Pod>,
    watches: Stores,
    backoff: Backoff,
}

/// The workload stores a rollout reads.
struct Stores {
    deployments: Store<k8s_openapi::api::apps::v1::Deployment>,
    statefulsets: Store<k8s_openapi::api::apps::v1::StatefulSet>,
    daemonsets: Store<k8s_openapi::api::apps::v1::DaemonSet>,
    cronjobs: Store<k8s_openapi::api::batch::v1::CronJob>,
}

fn by_label<K: Resource>(o: &K) -> Option<ObjectRef<AppImageRollout>> {
    let name = o.meta().labels.as_ref()?.get(labels::APP_IMAGE)?;
    Some(ObjectRef::new(name))
}

/// The controller, on the shared watches of rollouts, workloads, Pods and revisions.
pub fn controller(ctx: Context, w: &Watches) -> impl Future<Output = ()> + Send + 'static {
    let controller =
        Controller::for_shared_stream(w.rollouts.subscribe(), w.rollouts.store.clone())
            .with_config(super::config())
            .watches_shared_stream(w.deployments.subscribe(), |o| by_label(&*o))
            .watches_shared_stream(w.statefulsets.subscribe(), |o| by_label(&*o))
            .watches_shared_stream(w.daemonsets.subscribe(), |o| by_label(&*o))
            .watches_shared_stream(w.cronjobs.subscribe(), |o| by_label(&*o))
            .watches_shared_stream(w.pods.subscribe(), |o| by_label(&*o))
            .reconcile_on(catalog_changes(
                ctx.catalog.clone(),
                w.rollouts.store.clone(),
            ));
    let ctx = Arc::new(Ctx {
        base: ctx,
        pods: w.pods.store.clone(),
        watches: Stores {
            deployments: w.deployments.store.clone(),
            statefulsets: w.statefulsets.store.clone(),
            daemonsets: w.daemonsets.store.clone(),
            cronjobs: w.cronjobs.store.clone(),
        },
        backoff: Backoff::default(),
    });
    super::drain(NAME, controller.run(reconcile, error_policy, ctx))
}

fn error_policy(r: Arc<AppImageRollout>, error: &Error, ctx: Arc<Ctx>) -> Action {
    super::retry(&ctx.base, NAME, &ctx.backoff, r.name_any(), error)
}

async fn reconcile(r: Arc<AppImageRollout>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_rollout(&r, &ctx).await;
    super::observe(
        &ctx.base,
        NAME,
        &ctx.backoff,
        &r.name_any(),
        started,
        &result,
    );
    result
}

fn stores_ready(ctx: &Ctx) -> bool {
    use super::synced as ready;
    let s = &ctx.watches;
    ready(&ctx.pods)
        && ctx.base.catalog.revisions().is_ready()
        && ready(&s.deployments)
        && ready(&s.statefulsets)
        && ready(&s.daemonsets)
        && ready(&s.cronjobs)
        && ctx.base.catalog.is_ready()
}

/// The AppImage `name` (kept metadata with the stored spec), its trusted revisions, and the
/// number of its current one; `None` while the AppImage or that revision is not known.
fn current(ctx: &Ctx, name: &str) -> Option<(AppImage, Vec<Arc<Recorded>>, i64)> {
    let root = ctx.base.catalog.controlled(name)?;
    let stored = ctx.base.catalog.appimage(name)?;
    let image = AppImage {
        metadata: root.metadata,
        spec: stored.spec,
    };
    let uid = image.uid().unwrap_or_default();
    // As the revisions controller reads them: valid, and owned by this AppImage's UID.
    let revisions: Vec<Arc<Recorded>> = ctx
        .base
        .catalog
        .revisions()
        .of(name)
        .into_iter()
        .filter(|r| r.read.is_ok())
        .filter(|r| {
            check_owner(
                &r.name,
                &r.appimage,
                r.owner.as_deref().unwrap_or_default(),
                &uid,
            )
            .is_ok()
        })
        .collect();
    let hash = revision_hash(&image.spec);
    let number = revisions.iter().find(|r| *r.hash == *hash)?.number;
    Some((image, revisions, number))
}

/// The spec of recorded revision `rev`, as the AppImage was then.
fn at(image: &AppImage, rev: &Recorded) -> Option<AppImage> {
    let stored = rev.read.as_ref().ok()?;
    Some(AppImage {
        metadata: image.metadata.clone(),
        spec: (*stored.spec).clone(),
    })
}

/// The rollouts the catalog's changes concern: the AppImage's of the same name, or all of
/// them when anything may have changed (a new list, a listener behind).
fn catalog_changes(
    catalog: crate::catalog::Catalog,
    rollouts: Store<AppImageRollout>,
) -> futures::stream::BoxStream<'static, ObjectRef<AppImageRollout>> {
    use tokio::sync::broadcast::error::RecvError;
    futures::stream::unfold(catalog.changes(), move |mut rx| {
        let rollouts = rollouts.clone();
        async move {
            let refs = match rx.recv().await {
                Ok(crate::catalog::Change::One(name)) => vec![ObjectRef::new(&name)],
                Ok(crate::catalog::Change::All) | Err(RecvError::Lagged(_)) => rollouts
                    .state()
                    .iter()
                    .map(|r| ObjectRef::from_obj(&**r))
                    .collect(),
                Err(RecvError::Closed) => return None,
            };
            Some((futures::stream::iter(refs), rx))
        }
    })
    .flatten()
    .boxed()
}

async fn reconcile_rollout(r: &AppImageRollout, ctx: &Ctx) -> Result<Action, Error> {
    if !stores_ready(ctx) {
        return Ok(Action::requeue(COLD));
    }
    let name = r.name_any();
    let Some((image, revisions, number)) = current(ctx, &name) else {
        return Ok(Action::requeue(COLD));
    };
    let known: Vec<Known> = revisions
        .iter()
        .map(|r| Known {
            number: r.number,
            hash: r.hash.to_string(),
        })
        .collect();
    let starting = r.status.as_ref().and_then(|s| s.revision) != Some(number);
    if starting && let Some(why) = unverified(ctx, &image, number) {
        if ctx
            .base
            .told
            .first(format!("RolloutBlocked/{name}/{number}"))
        {
            publish(ctx, &image, EventType::Warning, "RolloutBlocked", why).await;
        }
        return Ok(Action::requeue(RESYNC));
    }
    let check = check_state(ctx, r, number).await?;
    let workloads = workloads(ctx, &name);
    let pods = ctx.pods.state();
    let facts = progressive::Facts {
        revision: number,
        workloads: workloads
            .iter()
            .map(|(t, _)| progressive::facts::fact(t, &name, pods.iter().map(|p| &**p), &known))
            .collect(),
        check,
    };
    let step = progressive::step(r, &facts, Timestamp::now());
    if Some(&step.status) != r.status.as_ref() && !write_status(r, &step.status, ctx).await? {
        // Someone wrote first (a promote, a new leader): read again.
        return Ok(Action::requeue(COLD));
    }
    let current = Rolled {
        image: &image,
        revisions: &revisions,
        known: &known,
        number,
    };
    for action in &step.actions {
        carry_out(ctx, r, &current, &workloads, action).await?;
    }
    let live = !matches!(
        step.status.phase,
        Some(Phase::Succeeded | Phase::Aborted) | None
    );
    let wait = if live {
        step.requeue.map_or(LIVE, |d| d.unsigned_abs().min(LIVE))
    } else {
        RESYNC
    };
    Ok(Action::requeue(wait))
}

/// The AppImage at the rollout's revision, and its revisions.
struct Rolled<'a> {
    image: &'a AppImage,
    revisions: &'a [Arc<Recorded>],
    known: &'a [Known],
    number: i64,
}

/// Carry out one action of the step.
async fn carry_out(
    ctx: &Ctx,
    r: &AppImageRollout,
    c: &Rolled<'_>,
    workloads: &[(Typed, Workload)],
    action: &Do,
) -> Result<(), Error> {
    match action {
        Do::Move {
            kind,
            namespace,
            name: w,
            to,
        } => {
            let Some((_, target)) = workloads.iter().find(|(t, _)| {
                t.kind().as_str() == kind && t.namespace() == namespace && t.name() == w
            }) else {
                return Ok(());
            };
            move_to(ctx, c.image, c.revisions, c.known, target, *to, c.number).await?;
        }
        Do::Check {
            namespace,
            name: job,
            check,
            revision,
        } => {
            run_check(
                ctx,
                r,
                c.image,
                c.revisions,
                (namespace, job),
                check,
                *revision,
            )
            .await?;
        }
        Do::Event {
            reason,
            message,
            warning,
        } => {
            let type_ = if *warning {
                EventType::Warning
            } else {
                EventType::Normal
            };
            publish(ctx, c.image, type_, reason, message.clone()).await;
        }
    }
    Ok(())
}

/// Why revision `number` may not start rolling out: its signature, when signatures are required.
fn unverified(ctx: &Ctx, image: &AppImage, number: i64) -> Option<String> {
    let requirement = ctx.base.policy.signatures.to_run();
    let e = ctx.base.catalog.verify(image, &requirement).err()?;
    if !ctx.base.policy.require_signature {
        tracing::warn!(appimage = %image.name_any(), revision = number, "progressive rollout despite a failed signature check (--require-signature=false): {e}");
        return None;
    }
    Some(format!(
        "revision {number} of AppImage {:?} failed signature verification ({e}): not rolled out; re-sign it (kubectl appimage sign) or roll the AppImage back",
        image.name_any()
    ))
}

/// The AppImage's Auto workloads that a rollout moves, typed (for the facts) and as the
/// rollout's shape (for the move).
fn workloads(ctx: &Ctx, name: &str) -> Vec<(Typed, Workload)> {
    let s = &ctx.watches;
    let mut out: Vec<(Typed, Workload)> = Vec::new();
    // Typed copies for the facts, of this AppImage's workloads only.
    let mine = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| follows(m, name);
    for d in s
        .deployments
        .state()
        .into_iter()
        .filter(|o| mine(&o.metadata))
    {
        out.extend(pair(
            Typed::Deployment(Box::new((*d).clone())),
            Workload::new(d),
        ));
    }
    for o in s
        .statefulsets
        .state()
        .into_iter()
        .filter(|o| mine(&o.metadata))
    {
        out.extend(pair(
            Typed::StatefulSet(Box::new((*o).clone())),
            Workload::new(o),
        ));
    }
    for o in s
        .daemonsets
        .state()
        .into_iter()
        .filter(|o| mine(&o.metadata))
    {
        out.extend(pair(
            Typed::DaemonSet(Box::new((*o).clone())),
            Workload::new(o),
        ));
    }
    for o in s.cronjobs.state().into_iter().filter(|o| mine(&o.metadata)) {
        out.extend(pair(
            Typed::CronJob(Box::new((*o).clone())),
            Workload::new(o),
        ));
    }
    // Auto ones only: a Manual one is reported outdated, as without a policy.
    out.retain(|(_, w)| rollout::is_auto(w));
    out.sort_by(|a, b| (a.0.namespace(), a.0.name()).cmp(&(b.0.namespace(), b.0.name())));
    out
}

fn pair(t: Typed, w: Option<Workload>) -> Option<(Typed, Workload)> {
    Some((t, w?))
}

/// Point `w`'s template at revision `to` by the rollout's own apply, with an Event on it.
async fn move_to(
    ctx: &Ctx,
    image: &AppImage,
    revisions: &[Arc<Recorded>],
    known: &[Known],
    w: &Workload,
    to: i64,
    target: i64,
) -> Result<(), Error> {
    let name = image.name_any();
    let found = revisions.iter().find(|r| r.number == to);
    let Some((rev, spec_image)) = found.and_then(|r| Some((r, at(image, r)?))) else {
        tracing::warn!(appimage = %name, revision = to, "cannot move {:?}: revision not recorded", w.meta().name);
        return Ok(());
    };
    let current = Current {
        image: &spec_image,
        number: to,
        hash: &rev.hash,
        known,
        revision: Some(rev),
    };
    rollout::apply(&ctx.base, w, to, Some(&current)).await?;
    let (reason, note) = if to == target {
        (
            "RolledOut",
            format!("AppImage {name:?} revision {to}: moved by its progressive rollout"),
        )
    } else {
        (
            "RolledBack",
            format!(
                "AppImage {name:?}: back to revision {to}, the rollout of revision {target} was aborted"
            ),
        )
    };
    let related = Some(rollout::revision_ref(&name, to));
    rollout::event(&ctx.base, w, EventType::Normal, reason, note, related).await;
    Ok(())
}

/// An Event on the AppImage (cluster-scoped), once per transition (the machine says when).
async fn publish(ctx: &Ctx, image: &AppImage, type_: EventType, reason: &str, note: String) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Rollout".into(),
        secondary: None,
    };
    if let Err(e) = ctx
        .base
        .recorder
        .publish(&event, &image.object_ref(&()))
        .await
    {
        tracing::warn!("cannot record an Event: {e}");
    }
}

/// Server-side apply of the status, guarded by the resourceVersion the step read; false on a
/// conflict (the next reconcile reads the newer object).
async fn write_status(
    r: &AppImageRollout,
    status: &progressive::AppImageRolloutStatus,
    ctx: &Ctx,
) -> Result<bool, Error> {
    let api = Api::<AppImageRollout>::all(ctx.base.client.clone());
    let body = serde_json::json!({
        "apiVersion": AppImageRollout::api_version(&()),
        "kind": AppImageRollout::kind(&()),
        "metadata": {"name": r.name_any(), "resourceVersion": r.resource_version()},
        "status": status,
    });
    let params = PatchParams::apply(MANAGER).force();
    match api
        .patch_status(&r.name_any(), &params, &Patch::Apply(&body))
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Whether AppImage `name`'s Auto workloads are this controller's (it has a rollout policy);
/// `None` until the policies are listed: a cold store must not read as "no policy", or a new
/// leader would move every Auto workload at once.
pub fn has_policy(rollouts: &Store<AppImageRollout>, name: &str) -> Option<bool> {
    super::synced(rollouts).then(|| rollouts.get(&ObjectRef::new(name)).is_some())
}

/// The check Job of the wave the status names, when that wave has one and the Job exists.
async fn check_state(
    ctx: &Ctx,
    r: &AppImageRollout,
    number: i64,
) -> Result<Option<(String, progressive::CheckState)>, Error> {
    let status = r.status.clone().unwrap_or_default();
    let wave = r.spec.waves.get(status.wave.max(0) as usize);
    let Some(check) = wave.and_then(|w| w.gate.check.as_ref()) else {
        return Ok(None);
    };
    let name = progressive::check_name(&r.name_any(), number, status.wave);
    let api = Api::<Job>::namespaced(ctx.base.client.clone(), &check.namespace);
    let Some(job) = api.get_opt(&name).await? else {
        return Ok(None);
    };
    let conditions = job.status.and_then(|s| s.conditions).unwrap_or_default();
    let done = |t: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == t && c.status == "True")
    };
    let state = match (done("Complete"), done("Failed")) {
        (Some(_), _) => progressive::CheckState::Succeeded,
        (_, Some(c)) => progressive::CheckState::Failed(
            c.message
                .clone()
                .or(c.reason.clone())
                .unwrap_or_else(|| "failed".into()),
        ),
        _ => progressive::CheckState::Running,
    };
    Ok(Some((name, state)))
}

/// Make the wave's check Job: the check's role of revision `revision`, as `deploy --kind Job`
/// makes it, pinned to that revision and owned by the rollout policy.
async fn run_check(
    ctx: &Ctx,
    r: &AppImageRollout,
    image: &AppImage,
    revisions: &[Arc<Recorded>],
    (namespace, name): (&str, &str),
    check: &progressive::Check,
    revision: i64,
) -> Result<(), Error> {
    let found = revisions.iter().find(|x| x.number == revision);
    let Some((rev, spec_at)) = found.and_then(|r| Some((r, at(image, r)?))) else {
        return Ok(());
    };
    let opts = DeployOptions {
        kind: Kind::Job,
        name: Some(name.into()),
        namespace: namespace.into(),
        role: check.role.clone(),
        template: check.template.clone(),
        ..DeployOptions::default()
    };
    let job = match appimage::workload::build(&spec_at, &opts) {
        Ok(Typed::Job(job)) => job,
        Ok(_) => return Ok(()),
        Err(e) => {
            let why = format!(
                "the check Job {namespace}/{name} cannot be made: {e}; the wave's deadline will abort the rollout unless the policy is fixed"
            );
            if ctx.base.told.first(format!("CheckInvalid/{name}")) {
                publish(ctx, image, EventType::Warning, "CheckInvalid", why).await;
            }
            return Ok(());
        }
    };
    let mut job = *job;
    let pin = [
        (labels::REVISION.to_string(), revision.to_string()),
        (labels::REVISION_HASH.to_string(), rev.hash.to_string()),
    ];
    if let Some(t) = job.spec.as_mut().map(|s| &mut s.template) {
        t.metadata
            .get_or_insert_with(Default::default)
            .annotations
            .get_or_insert_with(Default::default)
            .extend(pin);
    }
    job.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(labels::MANAGED_BY.into(), labels::MANAGER.into());
    job.metadata.owner_references = super::kube_ops::owner_ref(r).map(|o| vec![o]);
    let api = Api::<Job>::namespaced(ctx.base.client.clone(), namespace);
    super::kube_ops::apply(&api, name, &job).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::{reflector, watcher};

    fn policy(name: &str) -> AppImageRollout {
        let mut r = AppImageRollout::new(name, progressive::AppImageRolloutSpec::default());
        r.metadata.resource_version = Some("1".into());
        r
    }

    /// The revisions controller leaves Auto workloads alone while this is unknown: on a new
    /// leader whose policy list had not arrived, it moved every wave at once (a CI failure).
    #[test]
    fn a_policy_list_not_yet_read_is_not_no_policy() {
        let (store, mut writer) = reflector::store::<AppImageRollout>();
        assert_eq!(has_policy(&store, "seed"), None);
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitApply(policy("seed")));
        assert_eq!(has_policy(&store, "seed"), None, "listed in part");
        writer.apply_watcher_event(&watcher::Event::InitDone);
        assert_eq!(has_policy(&store, "seed"), Some(true));
        assert_eq!(has_policy(&store, "other"), Some(false));
    }
}
