//! The BatchDeployment controller (issue 18): it gathers the facts the core's state machine
//! reads (`appimage::batch::step`), writes the next status, then carries out the step's
//! actions (create per-node workloads by server-side apply, delete the ones no longer wanted).
//!
//! - Level-triggered: every reconcile recomputes the whole answer from the stored job and the
//!   shared stores; a lost write is redone next time.
//! - The status is written first, guarded by the resourceVersion the step read, and the actions
//!   only after it lands: two replicas (or a stale cache) can never both act on one transition.
//! - Bad input (an unknown, unsigned, tampered or deprecated AppImage, a spec the builder
//!   refuses) becomes a condition and phase Failed through the machine, never an error loop.
//! - Watches: the room's shared watches of BatchDeployments, Deployments and Jobs (its own by
//!   owner reference), Pods (by the batch label), Nodes (only when their readiness or labels
//!   change), and the image pull Jobs of the pre-pull phase and their Pods (by the pre-pull
//!   label; a pull Job is created when its node's pull starts, deleted once it is decided).
//! - The AppImage is the catalog's (no GET per reconcile, issue 25).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use appimage::batch::pull_job::{pull_job, pull_progress, pull_reference};
use appimage::batch::workload::{
    BATCH, app_image_fact, build, build_for, deployment_progress, job_progress, node_fact,
};
use appimage::batch::{
    self, Action as StepAction, AppImageFact, BatchDeployment, Observed, Phase, PullPhase,
    PullProgress,
};
use appimage::labels;
use appimage::naming::pod_identity;
use appimage::resource::AppImage;
use appimage::stage::Stage;
use appimage::workload::{WORKLOAD, Workload};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};

use super::kube_ops::{self, Propagation};
use super::{Backoff, Context, Error, MANAGER, Watches};

/// This controller's name in metrics and logs.
const NAME: &str = "batch";
/// Re-check a job this often even without events.
const RESYNC: Duration = Duration::from_secs(300);
/// Creates and deletes in flight at once per reconcile.
const WRITES_IN_FLIGHT: usize = 32;
/// Coalesce bursts of workload events (a thousand Deployments turning Ready) into one reconcile.
const DEBOUNCE: Duration = Duration::from_millis(200);

struct Ctx {
    base: Context,
    deployments: Store<Deployment>,
    jobs: Store<Job>,
    pods: Store<Pod>,
    nodes: Store<Node>,
    pull_jobs: Store<Job>,
    pull_pods: Store<Pod>,
    /// Failures in a row per job (namespace/name).
    backoff: Backoff,
    /// Nodes whose workload name another object holds, by "job uid/node": their progress, a
    /// failure naming the owner (the workload stores hold only the jobs' own workloads).
    taken: std::sync::Mutex<HashMap<String, batch::Progress>>,
    /// The same for pull Jobs, by "job uid/node": a failed pull naming the owner.
    pulls_taken: std::sync::Mutex<HashMap<String, PullProgress>>,
    /// When this process last wrote each job's status, by job UID (`batch::pace`).
    written: std::sync::Mutex<HashMap<String, Instant>>,
}

/// The controller, on the shared watches of BatchDeployments, Deployments, Jobs, Pods and
/// Nodes. Without the BatchDeployment CRD its store is empty and nothing is reconciled; the
/// watch starts once the CRD is installed.
pub fn controller(ctx: Context, watches: &Watches) -> impl Future<Output = ()> + Send + 'static {
    let batches = &watches.batches;
    let controller = Controller::for_shared_stream(batches.subscribe(), batches.store.clone())
        .with_config(super::config().debounce(DEBOUNCE));
    let jobs_of = batches.store.clone();
    let pulls_of = batches.store.clone();
    let active = batches.store.clone();
    let mut last: HashMap<String, u64> = HashMap::new();
    // What a job reads of a Node: a change elsewhere (heartbeats) triggers nothing.
    let nodes = watches.nodes.subscribe().filter(move |n| {
        let key = node_key(n);
        futures::future::ready(last.insert(n.name_any(), key) != Some(key))
    });
    let controller = controller
        .owns_shared_stream(watches.deployments.subscribe())
        .owns_shared_stream(watches.jobs.subscribe())
        .watches_shared_stream(watches.pods.subscribe(), move |pod| {
            job_of_pod(&jobs_of, &pod)
        })
        .watches_shared_stream(nodes, move |_| active_jobs(&active))
        .owns_shared_stream(watches.pull_jobs.subscribe())
        .watches_shared_stream(watches.pull_pods.subscribe(), move |pod| {
            job_of_pod(&pulls_of, &pod)
        });
    let ctx = Arc::new(Ctx {
        base: ctx,
        deployments: watches.deployments.store.clone(),
        jobs: watches.jobs.store.clone(),
        pods: watches.pods.store.clone(),
        nodes: watches.nodes.store.clone(),
        pull_jobs: watches.pull_jobs.store.clone(),
        pull_pods: watches.pull_pods.store.clone(),
        backoff: Backoff::default(),
        taken: Default::default(),
        pulls_taken: Default::default(),
        written: Default::default(),
    });
    super::drain(NAME, controller.run(reconcile, error_policy, ctx))
}

/// What a job reads of a Node: a change elsewhere (heartbeats) triggers nothing.
fn node_key(node: &Node) -> u64 {
    let fact = node_fact(node);
    let mut h = DefaultHasher::new();
    (fact.name, fact.labels, fact.ready).hash(&mut h);
    h.finish()
}

/// The job a Pod was made for: by its batch label, in its namespace.
fn job_of_pod(jobs: &Store<BatchDeployment>, pod: &Pod) -> Vec<ObjectRef<BatchDeployment>> {
    let Some(label) = pod.labels().get(BATCH) else {
        return Vec::new();
    };
    let ns = pod.namespace();
    jobs.state()
        .iter()
        .filter(|bd| bd.namespace() == ns && pod_identity(&bd.name_any()) == *label)
        .map(|bd| ObjectRef::from_obj(bd.as_ref()))
        .collect()
}

/// Jobs whose nodes a Node change can affect.
fn active_jobs(jobs: &Store<BatchDeployment>) -> Vec<ObjectRef<BatchDeployment>> {
    jobs.state()
        .iter()
        .filter(|bd| {
            let phase = bd.status.as_ref().map(|s| s.phase).unwrap_or_default();
            matches!(
                phase,
                Phase::Queued | Phase::PrePulling | Phase::Running | Phase::Stopping
            )
        })
        .map(|bd| ObjectRef::from_obj(bd.as_ref()))
        .collect()
}

async fn reconcile(bd: Arc<BatchDeployment>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_job(&bd, &ctx).await;
    super::observe(
        &ctx.base,
        NAME,
        &ctx.backoff,
        &job_key(&bd),
        started,
        &result,
    );
    result
}

/// A job's key for its backoff.
fn job_key(bd: &BatchDeployment) -> String {
    format!("{}/{}", bd.namespace().unwrap_or_default(), bd.name_any())
}

fn error_policy(bd: Arc<BatchDeployment>, error: &Error, ctx: Arc<Ctx>) -> Action {
    super::retry(&ctx.base, NAME, &ctx.backoff, job_key(&bd), error)
}

async fn reconcile_job(bd: &BatchDeployment, ctx: &Ctx) -> Result<Action, Error> {
    if bd.metadata.deletion_timestamp.is_some() || bd.metadata.uid.is_none() {
        return Ok(Action::await_change());
    }
    if !stores_ready(ctx).await || !ctx.base.catalog.is_ready() {
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    let (fact, image) = appimage_of(bd, ctx).await?;
    let Some(fact) = fact else {
        // Stored but not yet in the catalog's cache: look again shortly.
        return Ok(Action::requeue(Duration::from_secs(1)));
    };
    let owned = Owned::gather(bd, ctx);
    let mut workloads = owned.progress();
    add_taken(bd, ctx, &mut workloads);
    let mut pulls = owned.pulls();
    add_pulls_taken(bd, ctx, &mut pulls);
    let observed = Observed {
        app_image: fact,
        nodes: ctx.nodes.state().iter().map(|n| node_fact(n)).collect(),
        workloads,
        pulls,
    };
    let step = batch::step(bd, &observed, Timestamp::now());
    let before = bd.status.clone().unwrap_or_default();
    if step.status != before {
        if let Some(wait) = pace(bd, &before, &step, ctx) {
            return Ok(Action::requeue(wait));
        }
        if !write_status(bd, &step.status, ctx).await? {
            // Someone wrote the job since we read it: start again from the new version.
            return Ok(Action::requeue(Duration::from_millis(100)));
        }
        if step.status.phase != before.phase {
            phase_event(bd, &step.status, ctx).await;
        }
    }
    carry_out(bd, &step.actions, image.as_ref(), &owned, ctx).await?;
    Ok(Action::requeue(step.requeue_after.unwrap_or(RESYNC)))
}

/// The nodes of `bd` whose workload name another object holds, as failed progress of the
/// node's current attempt (a node with a workload of its own keeps that one's; an entry of an
/// earlier attempt is dropped, so that a retry creates again).
fn add_taken(bd: &BatchDeployment, ctx: &Ctx, workloads: &mut BTreeMap<String, batch::Progress>) {
    let prefix = format!("{}/", bd.uid().unwrap_or_default());
    let attempts: HashMap<&str, i32> = bd
        .status
        .iter()
        .flat_map(|s| s.nodes.iter().map(|n| (n.node.as_str(), n.attempts)))
        .collect();
    let mut taken = ctx.taken.lock().unwrap_or_else(|p| p.into_inner());
    taken.retain(|key, progress| {
        let Some(node) = key.strip_prefix(&prefix) else {
            return true;
        };
        if attempts.get(node) != Some(&progress.attempt) {
            return false;
        }
        workloads
            .entry(node.to_string())
            .or_insert_with(|| progress.clone());
        true
    });
}

/// The nodes of `bd` whose pull Job name another object holds, as failed pulls of the job's
/// current attempt, while their pull is in flight (as [`add_taken`] for workloads).
fn add_pulls_taken(bd: &BatchDeployment, ctx: &Ctx, pulls: &mut BTreeMap<String, PullProgress>) {
    let prefix = format!("{}/", bd.uid().unwrap_or_default());
    let status = bd.status.clone().unwrap_or_default();
    let pulling: HashMap<&str, bool> = status
        .nodes
        .iter()
        .map(|n| {
            let on = n
                .pull
                .as_ref()
                .is_some_and(|p| p.phase == PullPhase::Pulling);
            (n.node.as_str(), on)
        })
        .collect();
    let mut taken = ctx.pulls_taken.lock().unwrap_or_else(|p| p.into_inner());
    taken.retain(|key, progress| {
        let Some(node) = key.strip_prefix(&prefix) else {
            return true;
        };
        if progress.attempt != status.attempts || pulling.get(node) != Some(&true) {
            return false;
        }
        pulls
            .entry(node.to_string())
            .or_insert_with(|| progress.clone());
        true
    });
}

/// Until every store has its initial list (a missing workload proves nothing before).
async fn stores_ready(ctx: &Ctx) -> bool {
    let (d, j, p, n) = futures::future::join4(
        ctx.deployments.wait_until_ready(),
        ctx.jobs.wait_until_ready(),
        ctx.pods.wait_until_ready(),
        ctx.nodes.wait_until_ready(),
    )
    .await;
    let (pj, pp) = futures::future::join(
        ctx.pull_jobs.wait_until_ready(),
        ctx.pull_pods.wait_until_ready(),
    )
    .await;
    d.is_ok() && j.is_ok() && p.is_ok() && n.is_ok() && pj.is_ok() && pp.is_ok()
}

/// The AppImage fact for the machine and the AppImage to build from; `None` fact while the
/// catalog lags an AppImage the apiserver has.
async fn appimage_of(
    bd: &BatchDeployment,
    ctx: &Ctx,
) -> Result<(Option<AppImageFact>, Option<AppImage>), Error> {
    let name = &bd.spec.app_image;
    let phase = bd.status.as_ref().map(|s| s.phase).unwrap_or_default();
    if !matches!(phase, Phase::Queued | Phase::PrePulling | Phase::Running) {
        // Only a Queued, PrePulling or Running job reads the AppImage (and only it creates
        // workloads and pull Jobs).
        return Ok((Some(AppImageFact::Usable), None));
    }
    // The catalog is the one source (issue 25: before, a GET per reconcile): its entry keeps
    // the stage label and replaced-by annotation the machine reads. Absence counts only once
    // the catalog's watch has had time to bring the AppImage (`Catalog::settled`).
    let Some(prepared) = ctx.base.catalog.lookup(name) else {
        if !ctx
            .base
            .catalog
            .settled(bd.metadata.creation_timestamp.as_ref())
        {
            return Ok((None, None));
        }
        return Ok((Some(app_image_fact(bd, None, None)), None));
    };
    let verdict = ctx
        .base
        .catalog
        .verdict(&prepared, &ctx.base.policy.signatures.to_run())
        .err();
    let image = prepared.image();
    let verdict = verdict.map(|e| e.to_string());
    let (problem, unverified) = problem(verdict, &image, ctx.base.policy.require_signature);
    if let Some(why) = unverified {
        warn_unverified(bd, &why, ctx).await;
    }
    let mut fact = app_image_fact(
        bd,
        Some(&image),
        problem.as_ref().map(|(r, m)| (r.as_str(), m.as_str())),
    );
    if fact == AppImageFact::Usable {
        // A spec the builder refuses (a podTemplate that is no PodTemplateSpec) fails the job
        // once, as bad input, instead of failing every create.
        if let Err(message) = build(bd, &image, "probe-node", 1) {
            fact = AppImageFact::Unusable {
                reason: "InvalidSpec".into(),
                message,
            };
        }
    }
    Ok((Some(fact), Some(image)))
}

/// Why `image` may not run a job, as (reason, message), from its signature check's failure
/// (if any) and its stage; and the failure to warn about instead when signatures are not
/// required (`--require-signature=false`, as admission: a warning, and the job goes on).
fn problem(
    signature: Option<String>,
    image: &AppImage,
    require_signature: bool,
) -> (Option<(String, String)>, Option<String>) {
    let (blocking, unverified) = match signature {
        Some(e) if !require_signature => (None, Some(e)),
        other => (other, None),
    };
    let problem = match (blocking, Stage::of(image)) {
        (Some(e), _) => Some(("SignatureNotVerified".to_string(), e)),
        (_, Err(e)) => Some(("InvalidStage".to_string(), e.to_string())),
        (_, Ok(Stage::Deprecated)) => Some(("AppImageDeprecated".to_string(), deprecated(image))),
        _ => None,
    };
    (problem, unverified)
}

/// A Warning Event on the job (once per job and AppImage) and a log line: its AppImage's
/// signature does not verify, and it runs because signatures are not required.
async fn warn_unverified(bd: &BatchDeployment, why: &str, ctx: &Ctx) {
    let (uid, image) = (bd.uid().unwrap_or_default(), &bd.spec.app_image);
    tracing::warn!(batch = %bd.name_any(), namespace = ?bd.namespace(), appimage = %image, "running despite a failed signature check (--require-signature=false): {why}");
    if !ctx
        .base
        .told
        .first(format!("UnverifiedAppImage/{uid}/{image}"))
    {
        return;
    }
    let event = Event {
        type_: EventType::Warning,
        reason: "UnverifiedAppImage".into(),
        note: Some(format!(
            "AppImage {image:?} failed signature verification ({why}): run anyway, because the webhook runs with --require-signature=false (as admission, which warns and admits); re-sign it (kubectl appimage sign)"
        )),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.base.recorder.publish(&event, &bd.object_ref(&())).await {
        tracing::debug!("cannot record an Event: {e}");
    }
}

fn deprecated(image: &AppImage) -> String {
    match Stage::replaced_by(image) {
        Some(next) => format!(
            "it is deprecated (label {}); use {next} instead (spec.appImage), then retry",
            labels::STAGE
        ),
        None => format!(
            "it is deprecated (label {}); choose another AppImage (spec.appImage), then retry",
            labels::STAGE
        ),
    }
}

/// This job's workloads as stored: its Deployments and Jobs (by owner UID) and their Pods;
/// its pull Jobs (by owner UID) and their Pods.
struct Owned {
    deployments: Vec<Arc<Deployment>>,
    jobs: Vec<Arc<Job>>,
    pods: Vec<Arc<Pod>>,
    pull_jobs: Vec<Arc<Job>>,
    pull_pods: Vec<Arc<Pod>>,
}

impl Owned {
    fn gather(bd: &BatchDeployment, ctx: &Ctx) -> Owned {
        let ns = bd.namespace();
        let uid = bd.metadata.uid.as_deref();
        let ours = |meta: &kube::api::ObjectMeta| {
            meta.namespace == ns
                && meta
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| Some(o.uid.as_str()) == uid && o.controller == Some(true))
        };
        let label = pod_identity(&bd.name_any());
        Owned {
            deployments: ctx
                .deployments
                .state()
                .into_iter()
                .filter(|d| ours(&d.metadata))
                .collect(),
            jobs: ctx
                .jobs
                .state()
                .into_iter()
                .filter(|j| ours(&j.metadata))
                .collect(),
            pods: ctx
                .pods
                .state()
                .into_iter()
                .filter(|p| p.namespace() == ns && p.labels().get(BATCH) == Some(&label))
                .collect(),
            pull_jobs: ctx
                .pull_jobs
                .state()
                .into_iter()
                .filter(|j| ours(&j.metadata))
                .collect(),
            pull_pods: ctx
                .pull_pods
                .state()
                .into_iter()
                .filter(|p| p.namespace() == ns && p.labels().get(BATCH) == Some(&label))
                .collect(),
        }
    }

    /// Each pull Job's progress by node, with the Pods it owns.
    fn pulls(&self) -> BTreeMap<String, PullProgress> {
        let mut out = BTreeMap::new();
        for j in &self.pull_jobs {
            let Some((node, _)) = batch::workload::node_and_attempt(&j.metadata) else {
                continue;
            };
            let uid = j.metadata.uid.as_deref();
            let pods: Vec<Pod> = self
                .pull_pods
                .iter()
                .filter(|p| {
                    let mut owners = p.metadata.owner_references.iter().flatten();
                    owners.any(|o| Some(o.uid.as_str()) == uid)
                })
                .map(|p| Pod::clone(p))
                .collect();
            out.insert(node, pull_progress(j, &pods));
        }
        out
    }

    /// The stored pull Job `name`: its UID, and whether it is going.
    fn find_pull(&self, name: &str) -> Option<(Option<String>, bool)> {
        let j = self
            .pull_jobs
            .iter()
            .find(|j| j.metadata.name.as_deref() == Some(name))?;
        let m = &j.metadata;
        Some((m.uid.clone(), m.deletion_timestamp.is_some()))
    }

    /// Progress by node, as `batch::workload::progress_by_node` reads it, with the Pods
    /// grouped once (a thousand Deployments would otherwise each scan every Pod).
    fn progress(&self) -> BTreeMap<String, batch::Progress> {
        let mut by_workload: HashMap<&str, Vec<Pod>> = HashMap::new();
        for pod in &self.pods {
            if let Some(w) = pod.labels().get(WORKLOAD) {
                by_workload
                    .entry(w.as_str())
                    .or_default()
                    .push(Pod::clone(pod));
            }
        }
        let mut out = BTreeMap::new();
        for d in &self.deployments {
            if let Some((node, _)) = batch::workload::node_and_attempt(&d.metadata) {
                let pods = by_workload
                    .get(d.name_any().as_str())
                    .map_or(&[][..], Vec::as_slice);
                out.insert(node, deployment_progress(d, pods));
            }
        }
        for j in &self.jobs {
            if let Some((node, _)) = batch::workload::node_and_attempt(&j.metadata) {
                out.insert(node, job_progress(j));
            }
        }
        out
    }

    /// The stored workload `name`: whether it is a Job, its UID, and whether it is going.
    fn find(&self, name: &str) -> Option<(bool, Option<String>, bool)> {
        let hit = |m: &kube::api::ObjectMeta| m.name.as_deref() == Some(name);
        if let Some(d) = self.deployments.iter().find(|d| hit(&d.metadata)) {
            let m = &d.metadata;
            return Some((false, m.uid.clone(), m.deletion_timestamp.is_some()));
        }
        let j = self.jobs.iter().find(|j| hit(&j.metadata))?;
        let m = &j.metadata;
        Some((true, m.uid.clone(), m.deletion_timestamp.is_some()))
    }
}

/// How long a progress-only status write of a large job waits (`batch::pace`); `None`: write
/// now, which is then noted as the job's last write.
fn pace(
    bd: &BatchDeployment,
    before: &batch::BatchDeploymentStatus,
    step: &batch::Step,
    ctx: &Ctx,
) -> Option<Duration> {
    let uid = bd.metadata.uid.clone().unwrap_or_default();
    let mut written = ctx.written.lock().unwrap_or_else(|p| p.into_inner());
    let since = written.get(&uid).map(Instant::elapsed);
    let wait = batch::pace::hold(before, step, since);
    if wait.is_none() {
        // Entries past any interval say nothing more (and would pile up with deleted jobs).
        written.retain(|_, at| at.elapsed() < Duration::from_secs(60));
        written.insert(uid, Instant::now());
    }
    wait
}

/// Server-side apply of the status, guarded by the resourceVersion the step read. Returns
/// false on a conflict.
async fn write_status(
    bd: &BatchDeployment,
    status: &batch::BatchDeploymentStatus,
    ctx: &Ctx,
) -> Result<bool, Error> {
    let ns = bd.namespace().unwrap_or_default();
    let api = Api::<BatchDeployment>::namespaced(ctx.base.client.clone(), &ns);
    let body = serde_json::json!({
        "apiVersion": BatchDeployment::api_version(&()),
        "kind": BatchDeployment::kind(&()),
        "metadata": {"name": bd.name_any(), "resourceVersion": bd.resource_version()},
        "status": status,
    });
    // The status subresource: the one apply kube_ops cannot send.
    let params = PatchParams::apply(MANAGER).force();
    match api
        .patch_status(&bd.name_any(), &params, &Patch::Apply(&body))
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The step's creates and deletes, several at once.
async fn carry_out(
    bd: &BatchDeployment,
    actions: &[StepAction],
    image: Option<&AppImage>,
    owned: &Owned,
    ctx: &Ctx,
) -> Result<(), Error> {
    let writes: Vec<_> = actions
        .iter()
        .map(|action| carry_one(bd, action, image, owned, ctx))
        .collect();
    let results: Vec<Result<(), Error>> = futures::stream::iter(writes)
        .buffer_unordered(WRITES_IN_FLIGHT)
        .collect()
        .await;
    results.into_iter().collect()
}

async fn carry_one(
    bd: &BatchDeployment,
    action: &StepAction,
    image: Option<&AppImage>,
    owned: &Owned,
    ctx: &Ctx,
) -> Result<(), Error> {
    match action {
        StepAction::Create { node, attempt, .. } => match image {
            Some(image) => create(bd, image, node, *attempt, ctx).await,
            None => Ok(()),
        },
        StepAction::Delete { name, .. } => match owned.find(name) {
            Some((_, _, true)) | None => Ok(()),
            Some((is_job, uid, false)) => remove(bd, name, is_job, uid, ctx).await,
        },
        StepAction::CreatePull { node, attempt, .. } => match image {
            Some(image) => create_pull(bd, image, node, *attempt, ctx).await,
            None => Ok(()),
        },
        StepAction::DeletePull { name, .. } => match owned.find_pull(name) {
            Some((_, true)) | None => Ok(()),
            Some((uid, false)) => remove(bd, name, true, uid, ctx).await,
        },
    }
}

/// The manifest the webhook pins the app's Pods to (`name@sha256:…`), when it checks signed
/// image ids (`--verify-image-ids`) and the AppImage's id is one; else `None`, and the pull
/// names `name:tag`, which the app's Pods then run too. A registry that cannot be read, or a
/// tag that holds other bytes than were signed, also leaves `name:tag`: admission refuses the
/// app's Pods then, whatever was pulled.
async fn pinned(image: &AppImage, ctx: &Ctx) -> Option<String> {
    let registry = ctx.base.registry.as_ref()?;
    let info = &image.spec.image;
    appimage::image_id::checked_id(info)?;
    if registry.known(info).is_none() {
        registry.check(info).await;
    }
    registry.known(info)?.ok().map(|p| p.reference)
}

/// The labels of node `node`, as the store holds them (none when it is gone).
fn node_labels(ctx: &Ctx, node: &str) -> BTreeMap<String, String> {
    ctx.nodes
        .get(&ObjectRef::new(node))
        .and_then(|n| n.metadata.labels.clone())
        .unwrap_or_default()
}

/// Create one node's image pull Job (never taking over a same-named Job); a name another
/// object holds fails that node's pull, naming the owner.
async fn create_pull(
    bd: &BatchDeployment,
    image: &AppImage,
    node: &str,
    attempt: i32,
    ctx: &Ctx,
) -> Result<(), Error> {
    let labels = node_labels(ctx, node);
    let reference = pull_reference(image, pinned(image, ctx).await.as_deref());
    let job = match pull_job(bd, &reference, node, &labels, attempt) {
        Ok(j) => j,
        Err(e) => {
            // The spec is checked before the step; a node-specific refusal is logged.
            tracing::warn!(batch = %bd.name_any(), %node, "cannot build the pull Job: {e}");
            return Ok(());
        }
    };
    let ns = bd.namespace().unwrap_or_default();
    let api = Api::<Job>::namespaced(ctx.base.client.clone(), &ns);
    if let Some((reason, message)) = create_new(&api, &job, bd, "Job").await? {
        tracing::warn!(batch = %bd.name_any(), namespace = %ns, %node, "{message}");
        let progress = PullProgress {
            name: job.name_any(),
            attempt,
            outcome: batch::PullOutcome::Failed { reason, message },
        };
        let key = format!("{}/{node}", bd.uid().unwrap_or_default());
        let mut taken = ctx.pulls_taken.lock().unwrap_or_else(|p| p.into_inner());
        taken.insert(key, progress);
    }
    Ok(())
}

/// Server-side apply of one node's workload, as [`MANAGER`].
async fn create(
    bd: &BatchDeployment,
    image: &AppImage,
    node: &str,
    attempt: i32,
    ctx: &Ctx,
) -> Result<(), Error> {
    let labels = node_labels(ctx, node);
    let workload = match build_for(bd, image, node, &labels, attempt) {
        Ok(w) => w,
        Err(e) => {
            // Checked before the step (appimage_of); a node-specific refusal is logged.
            tracing::warn!(batch = %bd.name_any(), %node, "cannot build the workload: {e}");
            return Ok(());
        }
    };
    let ns = bd.namespace().unwrap_or_default();
    let client = ctx.base.client.clone();
    let held = match workload {
        Workload::Deployment(d) => {
            let api = Api::<Deployment>::namespaced(client, &ns);
            create_new(&api, &d, bd, "Deployment").await?
        }
        Workload::Job(j) => {
            let api = Api::<Job>::namespaced(client, &ns);
            create_new(&api, &j, bd, "Job").await?
        }
        other => {
            tracing::warn!(batch = %bd.name_any(), "unexpected workload kind {other:?}");
            None
        }
    };
    if let Some((reason, message)) = held {
        tracing::warn!(batch = %bd.name_any(), namespace = %ns, %node, "{message}");
        let progress = batch::Progress {
            name: workload_name_of(bd, node),
            attempt,
            failure: Some((reason, message)),
            ..Default::default()
        };
        let key = format!("{}/{node}", bd.uid().unwrap_or_default());
        let mut taken = ctx.taken.lock().unwrap_or_else(|p| p.into_inner());
        taken.insert(key, progress);
    }
    Ok(())
}

/// The workload name `bd` gives `node`'s workload.
fn workload_name_of(bd: &BatchDeployment, node: &str) -> String {
    let prefix = bd.spec.name_prefix.clone().unwrap_or_else(|| bd.name_any());
    batch::workload::workload_name(&prefix, node)
}

/// Create `obj`, never taking over a same-named object: a create (not an apply), and on
/// AlreadyExists the stored one is read; the failure to report when `bd` does not control it.
async fn create_new<K>(
    api: &Api<K>,
    obj: &K,
    bd: &BatchDeployment,
    kind: &str,
) -> Result<Option<(String, String)>, Error>
where
    K: Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = PostParams {
        field_manager: Some(MANAGER.into()),
        ..PostParams::default()
    };
    match api.create(&params, obj).await {
        Ok(_) => Ok(None),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let stored = api.get_metadata_opt(&obj.name_any()).await?;
            Ok(stored.and_then(|m| batch::workload::taken(bd, kind, &m.metadata)))
        }
        Err(e) => Err(Error::Apply(e)),
    }
}

/// Delete a workload in the foreground: it stays (being deleted) until its Pods are gone, so
/// the job is Stopped only once no Pod is left.
async fn remove(
    bd: &BatchDeployment,
    name: &str,
    is_job: bool,
    uid: Option<String>,
    ctx: &Ctx,
) -> Result<(), Error> {
    let ns = bd.namespace().unwrap_or_default();
    let client = ctx.base.client.clone();
    let how = Propagation::Foreground;
    if is_job {
        kube_ops::delete_owned(&Api::<Job>::namespaced(client, &ns), name, uid, how).await
    } else {
        kube_ops::delete_owned(&Api::<Deployment>::namespaced(client, &ns), name, uid, how).await
    }
}

/// An Event on the job for each phase it enters.
async fn phase_event(bd: &BatchDeployment, status: &batch::BatchDeploymentStatus, ctx: &Ctx) {
    let type_ = match status.phase {
        Phase::Failed | Phase::TimedOut | Phase::PartiallySucceeded => EventType::Warning,
        _ => EventType::Normal,
    };
    let note = status
        .conditions
        .iter()
        .max_by_key(|c| c.last_transition_time.0)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    let event = Event {
        type_,
        reason: status.phase.as_str().into(),
        note: Some(format!(
            "{} ({}) {note}",
            status.phase.as_str(),
            status.summary
        )),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.base.recorder.publish(&event, &bd.object_ref(&())).await {
        tracing::debug!("cannot record an Event: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(stage: Option<&str>) -> AppImage {
        let mut image = AppImage::new(
            "app",
            serde_json::from_value(serde_json::json!({
                "image": {"name": "team/app", "tag": "1"}, "deployTemplates": []
            }))
            .unwrap(),
        );
        if let Some(stage) = stage {
            image.metadata.labels = Some([(labels::STAGE.to_string(), stage.to_string())].into());
        }
        image
    }

    #[test]
    fn a_failed_signature_fails_the_job_unless_signatures_are_not_required() {
        let failed = || Some("no signature".to_string());
        let (p, warn) = problem(failed(), &image(None), true);
        assert_eq!(p.map(|p| p.0), Some("SignatureNotVerified".into()));
        assert_eq!(warn, None);
        // --require-signature=false: a warning, and the job goes on, as admission does.
        let (p, warn) = problem(failed(), &image(None), false);
        assert_eq!(p, None);
        assert_eq!(warn.as_deref(), Some("no signature"));
        // The stage still counts.
        let (p, _) = problem(failed(), &image(Some("deprecated")), false);
        assert_eq!(p.map(|p| p.0), Some("AppImageDeprecated".into()));
        assert_eq!(problem(None, &image(None), true), (None, None));
    }
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod api_tests;
