//! Where an AppImage runs (`kubectl appimage status`, issue 17 section 5): one row per workload
//! (Deployment, StatefulSet, DaemonSet, Job, CronJob whose pod template carries the AppImage
//! label) and per bare Pod, with the revision it runs against the current one, its desired,
//! updated and ready counts, and whether it is outdated or stopped (a pending `--start-at`).
//! Pure: built from lists of objects the caller read; the same lists give the same report.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

use crate::labels;
use crate::resource::AppImage;
use crate::revision::{AppImageRevision, Named, named, policy};
use crate::stage::Stage;
use crate::workload::{self, UPDATE_POLICY, Workload, revision_hash};

/// What the caller read from the cluster; objects of other AppImages are left out here.
#[derive(Debug, Clone, Default)]
pub struct Objects {
    pub deployments: Vec<Deployment>,
    pub statefulsets: Vec<StatefulSet>,
    pub daemonsets: Vec<DaemonSet>,
    pub jobs: Vec<Job>,
    pub cronjobs: Vec<CronJob>,
    pub pods: Vec<Pod>,
    /// `FailedCreate` Events, read for StatefulSets and DaemonSets.
    pub failed_creates: Vec<FailedCreate>,
}

/// A `FailedCreate` Event of a workload. For a StatefulSet or DaemonSet it is the only trace of
/// Pods that admission denies: their controllers have no condition for it (a Deployment's
/// ReplicaSet has, see [`counts`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailedCreate {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub message: String,
    /// When it was last seen, in seconds since the epoch.
    pub last_seen: i64,
}

/// The whole status of one AppImage.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub app_image: String,
    /// draft, published or deprecated (a label value that is none of them, as it is).
    pub stage: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced_by: Option<String>,
    /// The number of the current spec's revision; none while it is not recorded.
    pub revision: Option<i64>,
    /// The current spec's revision hash.
    pub hash: String,
    /// Sorted by namespace, kind, name.
    pub workloads: Vec<Row>,
}

/// One workload or bare Pod.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// The revision it runs, when known.
    pub revision: Option<i64>,
    /// The revision hash its pod template names, when it names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// None where the kind has no such count (a CronJob's; a Job's updated).
    pub desired: Option<i32>,
    pub updated: Option<i32>,
    pub ready: Option<i32>,
    /// Runs another revision than the current one.
    pub outdated: bool,
    /// Created stopped by `deploy --start-at` and not started yet.
    pub stopped: bool,
    /// The pending start time (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_policy: Option<String>,
    /// What else to know: a Job's Complete or Failed, a Pod's phase, a bad annotation.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The current revision, as rows compare against it.
struct Current<'a> {
    hash: String,
    number: Option<i64>,
    /// This AppImage's revisions.
    revisions: Vec<&'a AppImageRevision>,
}

/// The report for `image`, from its recorded revisions and the objects read.
pub fn report(image: &AppImage, revisions: &[AppImageRevision], objects: &Objects) -> Report {
    let name = image.metadata.name.clone().unwrap_or_default();
    let hash = revision_hash(&image.spec);
    let mine: Vec<&AppImageRevision> = revisions
        .iter()
        .filter(|r| r.spec.app_image == name)
        .collect();
    let number = mine
        .iter()
        .find(|r| r.spec.hash == hash)
        .map(|r| r.spec.revision);
    let current = Current {
        hash: hash.clone(),
        number,
        revisions: mine,
    };
    let mut rows: Vec<Row> = workloads(objects)
        .iter()
        .filter(|w| template_image(w.pod_template()) == Some(name.as_str()))
        .filter(|w| !made_by_cronjob(w.metadata()))
        .map(|w| workload_row(w, &current))
        .map(|row| with_denial(row, &objects.failed_creates))
        .collect();
    rows.extend(
        objects
            .pods
            .iter()
            .filter(|p| label(&p.metadata) == Some(name.as_str()) && bare(&p.metadata))
            .map(|p| pod_row(p, &current)),
    );
    rows.sort_by(|a, b| {
        (&a.namespace, kind_order(&a.kind), &a.name).cmp(&(
            &b.namespace,
            kind_order(&b.kind),
            &b.name,
        ))
    });
    let stage = match Stage::of(image) {
        Ok(stage) => stage.to_string(),
        Err(e) => e.value,
    };
    Report {
        app_image: name,
        stage,
        replaced_by: Stage::replaced_by(image).map(str::to_string),
        revision: number,
        hash,
        workloads: rows,
    }
}

/// A StatefulSet or DaemonSet short of ready Pods gets the newest `FailedCreate` Event's words
/// (issue 30). One whose Pods are all there is not: its Events may be from a problem since fixed.
fn with_denial(mut row: Row, events: &[FailedCreate]) -> Row {
    let short = row.ready.unwrap_or(0) < row.desired.unwrap_or(0);
    if !short || !matches!(row.kind.as_str(), "StatefulSet" | "DaemonSet") {
        return row;
    }
    let newest = events
        .iter()
        .filter(|e| (&e.kind, &e.namespace, &e.name) == (&row.kind, &row.namespace, &row.name))
        .max_by_key(|e| e.last_seen);
    if let Some(e) = newest {
        row.notes
            .push(format!("Pods not created: {}", e.message.trim_end()));
    }
    row
}

fn workloads(o: &Objects) -> Vec<Workload> {
    let mut out: Vec<Workload> = Vec::new();
    out.extend(
        o.deployments
            .iter()
            .map(|k| Workload::Deployment(Box::new(k.clone()))),
    );
    out.extend(
        o.statefulsets
            .iter()
            .map(|k| Workload::StatefulSet(Box::new(k.clone()))),
    );
    out.extend(
        o.daemonsets
            .iter()
            .map(|k| Workload::DaemonSet(Box::new(k.clone()))),
    );
    out.extend(o.jobs.iter().map(|k| Workload::Job(Box::new(k.clone()))));
    out.extend(
        o.cronjobs
            .iter()
            .map(|k| Workload::CronJob(Box::new(k.clone()))),
    );
    out
}

fn label(meta: &ObjectMeta) -> Option<&str> {
    meta.labels
        .as_ref()?
        .get(labels::APP_IMAGE)
        .map(String::as_str)
}

fn template_image(t: Option<&PodTemplateSpec>) -> Option<&str> {
    label(t?.metadata.as_ref()?)
}

fn controller_kind(meta: &ObjectMeta) -> Option<&str> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| o.kind.as_str())
}

/// A CronJob's Jobs are shown as the CronJob.
fn made_by_cronjob(meta: &ObjectMeta) -> bool {
    controller_kind(meta) == Some("CronJob")
}

/// A Pod no controller made: a workload's Pods are counted in its row.
fn bare(meta: &ObjectMeta) -> bool {
    controller_kind(meta).is_none()
}

fn kind_order(kind: &str) -> usize {
    [
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "Job",
        "CronJob",
        "Pod",
    ]
    .iter()
    .position(|k| *k == kind)
    .unwrap_or(usize::MAX)
}

/// What a pod template's (or Pod's) revision annotations say it runs: (number, hash, outdated),
/// or a note when they are malformed.
fn runs(
    meta: Option<&ObjectMeta>,
    current: &Current,
) -> Result<(Option<i64>, Option<String>, bool), String> {
    let hash_of = |n: i64| {
        current
            .revisions
            .iter()
            .find(|r| r.spec.revision == n)
            .map(|r| r.spec.hash.clone())
    };
    Ok(match named(meta.and_then(|m| m.annotations.as_ref()))? {
        // The webhook injects the current spec into every new Pod.
        Named::Current => (current.number, None, false),
        Named::Number(n) => {
            let hash = hash_of(n);
            let outdated = hash.as_deref() != Some(current.hash.as_str());
            (hash.is_some().then_some(n), hash, outdated)
        }
        Named::Pinned { number, hash } => {
            let matches = hash_of(number).as_deref() == Some(hash.as_str());
            let outdated = hash != current.hash;
            (matches.then_some(number), Some(hash), outdated)
        }
        Named::Hash(h) => {
            let number = current
                .revisions
                .iter()
                .find(|r| r.spec.hash == h)
                .map(|r| r.spec.revision);
            let outdated = h != current.hash;
            (number, Some(h), outdated)
        }
    })
}

fn workload_row(w: &Workload, current: &Current) -> Row {
    let meta = w.metadata();
    let mut notes = Vec::new();
    let (revision, hash, outdated) =
        match runs(w.pod_template().and_then(|t| t.metadata.as_ref()), current) {
            Ok(r) => r,
            Err(e) => {
                notes.push(e);
                (None, None, false)
            }
        };
    let start_at = match workload::pending(w) {
        Ok(at) => at,
        Err(e) => {
            notes.push(e.to_string());
            None
        }
    };
    let stopped = start_at.is_some() && !workload::running(w);
    let (desired, updated, ready) = counts(w, &mut notes);
    if stopped {
        // Said by "Stopped until".
        notes.retain(|n| n != "Suspended");
    }
    let rolled = !matches!(w, Workload::Job(_));
    // A finished Job runs nothing: it is not outdated, whatever revision it ran.
    let outdated = outdated && !finished(w);
    let value = meta.annotations.as_ref().and_then(|a| a.get(UPDATE_POLICY));
    let update_policy = match policy(value.map(String::as_str)) {
        Ok(p) => rolled.then(|| format!("{p:?}")),
        Err(e) => {
            notes.push(e);
            value.cloned()
        }
    };
    Row {
        kind: w.kind().as_str().into(),
        namespace: w.namespace().into(),
        name: w.name().into(),
        revision,
        hash,
        desired,
        updated,
        ready,
        outdated,
        stopped,
        // As kubectl prints times: whole seconds, UTC.
        start_at: start_at.map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
        update_policy,
        notes,
    }
}

/// Whether `w` is a Job that has ended (Complete or Failed).
fn finished(w: &Workload) -> bool {
    let Workload::Job(job) = w else {
        return false;
    };
    let conditions = job.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions
        .into_iter()
        .flatten()
        .any(|c| c.status == "True" && matches!(c.type_.as_str(), "Complete" | "Failed"))
}

/// Desired, updated and ready as the kind counts them; a Job's and CronJob's state as notes.
fn counts(w: &Workload, notes: &mut Vec<String>) -> (Option<i32>, Option<i32>, Option<i32>) {
    match w {
        Workload::Deployment(o) => {
            let s = o.status.clone().unwrap_or_default();
            let desired = o.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            // Pods that admission denies: the Deployment controller copies its ReplicaSet's
            // FailedCreate into this condition, with the denial's words (issue 30).
            for c in s.conditions.iter().flatten() {
                if c.type_ == "ReplicaFailure" && c.status == "True" {
                    let why = c.message.as_deref().unwrap_or("no message");
                    notes.push(format!("Pods not created: {why}"));
                }
            }
            (
                Some(desired),
                Some(s.updated_replicas.unwrap_or(0)),
                Some(s.ready_replicas.unwrap_or(0)),
            )
        }
        Workload::StatefulSet(o) => {
            let s = o.status.clone().unwrap_or_default();
            let desired = o.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            (
                Some(desired),
                Some(s.updated_replicas.unwrap_or(0)),
                Some(s.ready_replicas.unwrap_or(0)),
            )
        }
        Workload::DaemonSet(o) => {
            let s = o.status.clone().unwrap_or_default();
            (
                Some(s.desired_number_scheduled),
                Some(s.updated_number_scheduled.unwrap_or(0)),
                Some(s.number_ready),
            )
        }
        Workload::Job(o) => {
            let spec = o.spec.as_ref();
            let s = o.status.clone().unwrap_or_default();
            for c in s.conditions.iter().flatten() {
                if c.status == "True"
                    && matches!(c.type_.as_str(), "Complete" | "Failed" | "Suspended")
                {
                    notes.push(c.type_.clone());
                }
            }
            let desired = spec.and_then(|s| s.parallelism).unwrap_or(1);
            (Some(desired), None, Some(s.ready.unwrap_or(0)))
        }
        Workload::CronJob(o) => {
            if o.spec.as_ref().is_some_and(|s| s.suspend == Some(true)) {
                notes.push("Suspended".into());
            }
            (None, None, None)
        }
    }
}

fn pod_row(p: &Pod, current: &Current) -> Row {
    let mut notes = Vec::new();
    let (revision, hash, outdated) = match named(p.metadata.annotations.as_ref()) {
        Ok(Named::Current) => {
            let outdated = admitted_before(p, current);
            (
                (!outdated).then_some(current.number).flatten(),
                None,
                outdated,
            )
        }
        _ => runs(Some(&p.metadata), current).unwrap_or_else(|e| {
            notes.push(e);
            (None, None, false)
        }),
    };
    let status = p.status.clone().unwrap_or_default();
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if let Some(phase) = status.phase.filter(|ph| ph != "Running") {
        notes.push(phase);
    }
    Row {
        kind: "Pod".into(),
        namespace: p.metadata.namespace.clone().unwrap_or_default(),
        name: p.metadata.name.clone().unwrap_or_default(),
        revision,
        hash,
        desired: Some(1),
        updated: Some(i32::from(!outdated)),
        ready: Some(i32::from(ready)),
        outdated,
        stopped: false,
        start_at: None,
        update_policy: None,
        notes,
    }
}

/// Whether a bare Pod that names no revision (it got the spec current when it was admitted)
/// runs an older one: it was made before the current revision was recorded, while another
/// revision already was. (Made before any was recorded: the revisions controller had not
/// caught up yet, so it runs the current spec.)
fn admitted_before(p: &Pod, current: &Current) -> bool {
    let at = |r: &AppImageRevision| r.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let (Some(made), Some(recorded)) = (
        p.metadata.creation_timestamp.as_ref().map(|t| t.0),
        current
            .revisions
            .iter()
            .find(|r| Some(r.spec.revision) == current.number)
            .and_then(|r| at(r)),
    ) else {
        return false;
    };
    made < recorded
        && current
            .revisions
            .iter()
            .any(|r| Some(r.spec.revision) != current.number && at(r).is_some_and(|t| t <= made))
}

/// The header above the table: the AppImage, its stage and its current revision.
pub fn header(r: &Report) -> String {
    let stage = match &r.replaced_by {
        Some(by) => format!("{} (replaced by {by})", r.stage),
        None => r.stage.clone(),
    };
    let short: String = r.hash.chars().take(12).collect();
    let revision = match r.revision {
        Some(n) => format!("{n} (hash {short})"),
        None => format!("not recorded yet (hash {short})"),
    };
    format!(
        "AppImage:  {}\nStage:     {stage}\nRevision:  {revision}\n",
        r.app_image
    )
}

/// The table's cells, with the header row: KIND NAMESPACE NAME REVISION DESIRED UPDATED READY
/// STATUS. STATUS flags stopped and outdated rows.
pub fn rows(r: &Report) -> Vec<Vec<String>> {
    let head = [
        "KIND",
        "NAMESPACE",
        "NAME",
        "REVISION",
        "DESIRED",
        "UPDATED",
        "READY",
        "STATUS",
    ];
    let mut out = vec![head.iter().map(|s| s.to_string()).collect::<Vec<_>>()];
    let count = |n: Option<i32>| n.map_or("-".into(), |n| n.to_string());
    for w in &r.workloads {
        let revision = match (w.revision, &w.hash) {
            (Some(n), _) => n.to_string(),
            (None, Some(h)) => h.chars().take(12).collect(),
            (None, None) => "<unknown>".into(),
        };
        out.push(vec![
            w.kind.clone(),
            w.namespace.clone(),
            w.name.clone(),
            revision,
            count(w.desired),
            count(w.updated),
            count(w.ready),
            status_cell(w),
        ]);
    }
    out
}

fn status_cell(w: &Row) -> String {
    let mut parts = Vec::new();
    if w.stopped {
        parts.push(format!(
            "Stopped until {}",
            w.start_at.as_deref().unwrap_or("?")
        ));
    }
    if w.outdated {
        match w.update_policy.as_deref() {
            Some("Manual") => parts.push("Outdated (Manual)".to_string()),
            _ => parts.push("Outdated".to_string()),
        }
    }
    parts.extend(w.notes.iter().cloned());
    if parts.is_empty() {
        return "Current".into();
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest;
    use crate::revision::AppImageRevisionSpec;
    use crate::workload::{DeployOptions, Kind, build};
    use serde_json::{Value, json};

    fn seed() -> AppImage {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/secretflow-image.yaml"
        );
        let text = std::fs::read_to_string(path).unwrap();
        manifest::appimages(path, &text).unwrap().remove(0)
    }

    fn revision(image: &AppImage, number: i64, hash: &str, created: &str) -> AppImageRevision {
        let mut r = AppImageRevision::new(
            &format!("secretflow-image-{number}"),
            AppImageRevisionSpec {
                app_image: "secretflow-image".into(),
                revision: number,
                hash: hash.into(),
                change_cause: None,
                task_id: None,
                template: image.spec.clone(),
            },
        );
        r.metadata.creation_timestamp = Some(serde_json::from_value(json!(created)).unwrap());
        r
    }

    fn from<T: serde::de::DeserializeOwned>(v: Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    /// The workload `deploy` makes, with a status as the cluster's controllers set it.
    fn deployed(image: &AppImage, opts: DeployOptions, status: Value) -> Value {
        let mut v = serde_json::to_value(build(image, &opts).unwrap()).unwrap();
        v["status"] = status;
        v
    }

    fn opts(kind: Kind, name: &str, ns: &str) -> DeployOptions {
        DeployOptions {
            kind,
            name: Some(name.into()),
            namespace: ns.into(),
            ..Default::default()
        }
    }

    /// Revision 2 is current; revision 1 is older.
    fn world() -> (AppImage, Vec<AppImageRevision>, Objects) {
        let mut image = seed();
        let current = revision_hash(&image.spec);
        let revs = vec![
            revision(&image, 1, "old-hash", "2026-12-01T10:00:00Z"),
            revision(&image, 2, &current, "2026-12-01T12:00:00Z"),
        ];
        let mut manual = deployed(
            &image,
            DeployOptions {
                replicas: Some(2),
                update_policy: workload::UpdatePolicy::Manual,
                ..opts(Kind::Deployment, "manual", "b")
            },
            json!({"updatedReplicas": 2, "readyReplicas": 1}),
        );
        manual["spec"]["template"]["metadata"]["annotations"][workload::REVISION_HASH] =
            json!("old-hash");
        let web = deployed(
            &image,
            DeployOptions {
                replicas: Some(3),
                ..opts(Kind::Deployment, "web", "a")
            },
            json!({"updatedReplicas": 3, "readyReplicas": 3}),
        );
        let job = deployed(
            &image,
            DeployOptions {
                replicas: Some(2),
                start_at: Some("2026-12-02T01:00:00Z".parse().unwrap()),
                ..opts(Kind::Job, "later", "a")
            },
            json!({}),
        );
        let mut other = web.clone();
        other["metadata"]["name"] = json!("other");
        other["spec"]["template"]["metadata"]["labels"][labels::APP_IMAGE] = json!("another");
        let pod = |name: &str, created: &str, owner: Option<&str>| {
            let mut p = json!({
                "metadata": {"name": name, "namespace": "a", "creationTimestamp": created,
                             "labels": {labels::APP_IMAGE: "secretflow-image"}},
                "status": {"phase": "Running",
                           "conditions": [{"type": "Ready", "status": "True"}]},
            });
            if let Some(kind) = owner {
                p["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": kind,
                    "name": "x", "uid": "u", "controller": true}]);
            }
            from::<Pod>(p)
        };
        let mut cron_job = from::<Job>(job.clone());
        cron_job.metadata.name = Some("nightly-123".into());
        cron_job.metadata.owner_references = from(json!([{"apiVersion": "batch/v1",
            "kind": "CronJob", "name": "nightly", "uid": "u", "controller": true}]));
        image.metadata.labels = Some([(labels::STAGE.into(), "deprecated".into())].into());
        image.metadata.annotations =
            Some([(labels::REPLACED_BY.into(), "secretflow-image-v2".into())].into());
        let objects = Objects {
            deployments: vec![from(web), from(manual), from(other)],
            jobs: vec![from(job), cron_job],
            pods: vec![
                pod("fresh", "2026-12-01T13:00:00Z", None),
                pod("stale", "2026-12-01T11:00:00Z", None),
                // Made before any revision was recorded: the current spec.
                pod("early", "2026-12-01T09:00:00Z", None),
                pod("web-abc", "2026-12-01T13:00:00Z", Some("ReplicaSet")),
            ],
            ..Default::default()
        };
        (image, revs, objects)
    }

    #[test]
    fn a_statefulset_whose_pods_are_denied_says_so_with_the_newest_event() {
        let (image, revs, mut objects) = world();
        let sts = deployed(
            &image,
            opts(Kind::StatefulSet, "db", "a"),
            json!({"replicas": 1, "readyReplicas": 0}),
        );
        let ds = deployed(
            &image,
            opts(Kind::DaemonSet, "agent", "a"),
            json!({"desiredNumberScheduled": 2, "numberReady": 2, "currentNumberScheduled": 2, "numberMisscheduled": 0}),
        );
        objects.statefulsets = vec![from(sts)];
        objects.daemonsets = vec![from(ds)];
        let event = |kind: &str, name: &str, message: &str, last_seen| FailedCreate {
            kind: kind.into(),
            namespace: "a".into(),
            name: name.into(),
            message: message.into(),
            last_seen,
        };
        objects.failed_creates = vec![
            event("StatefulSet", "db", "old words", 10),
            event(
                "StatefulSet",
                "db",
                "create Pod db-0 in StatefulSet db failed error: denied the request: x",
                20,
            ),
            event("StatefulSet", "other", "not this one", 30),
            // All its Pods are ready: an Event of a problem since fixed.
            event("DaemonSet", "agent", "since fixed", 30),
        ];
        let r = report(&image, &revs, &objects);
        let notes = |name: &str| {
            r.workloads
                .iter()
                .find(|w| w.name == name)
                .unwrap()
                .notes
                .clone()
        };
        assert_eq!(
            notes("db"),
            [
                "Pods not created: create Pod db-0 in StatefulSet db failed error: denied the request: x"
            ]
        );
        assert!(notes("agent").is_empty(), "{:?}", notes("agent"));
    }

    #[test]
    fn a_deployment_whose_pods_are_denied_says_so_with_the_denial() {
        let (image, revs, mut objects) = world();
        let denial = "admission webhook \"pods.appimage.kuscia.secretflow\" denied the request: AppImage \"secretflow-image\" failed signature verification";
        let denied = deployed(
            &image,
            opts(Kind::Deployment, "denied", "a"),
            json!({"conditions": [{"type": "ReplicaFailure", "status": "True",
                   "reason": "FailedCreate", "message": denial}]}),
        );
        objects.deployments = vec![from(denied)];
        let r = report(&image, &revs, &objects);
        let row = r.workloads.iter().find(|w| w.name == "denied").unwrap();
        assert_eq!(row.notes, [format!("Pods not created: {denial}")]);
        let table = rows(&r);
        let line = table.iter().find(|l| l[2] == "denied").unwrap();
        assert!(line[7].contains("denied the request"), "{table:?}");
    }

    #[test]
    fn a_finished_job_is_not_outdated_and_times_have_whole_seconds() {
        let (image, revs, mut objects) = world();
        let mut done = deployed(
            &image,
            DeployOptions {
                start_at: Some("2026-12-02T01:00:00.123456789Z".parse().unwrap()),
                ..opts(Kind::Job, "done", "a")
            },
            json!({"conditions": [{"type": "Complete", "status": "True"}]}),
        );
        done["spec"]["template"]["metadata"]["annotations"][workload::REVISION_HASH] =
            json!("old-hash");
        let mut running = done.clone();
        running["metadata"]["name"] = json!("running");
        running["status"] = json!({});
        objects.jobs = vec![from(done), from(running)];
        let r = report(&image, &revs, &objects);
        let row = |name: &str| r.workloads.iter().find(|w| w.name == name).unwrap();
        assert!(!row("done").outdated, "a Complete Job shown as Outdated");
        assert!(row("running").outdated);
        assert_eq!(
            row("running").start_at.as_deref(),
            Some("2026-12-02T01:00:00Z")
        );
    }

    #[test]
    fn each_workload_and_bare_pod_with_its_revision_counts_and_flags() {
        let (image, revs, objects) = world();
        let r = report(&image, &revs, &objects);
        assert_eq!(r.app_image, "secretflow-image");
        assert_eq!(r.stage, "deprecated");
        assert_eq!(r.replaced_by.as_deref(), Some("secretflow-image-v2"));
        assert_eq!(r.revision, Some(2));
        let table = rows(&r);
        let lines: Vec<String> = table.iter().map(|row| row.join("|")).collect();
        assert_eq!(
            lines,
            [
                "KIND|NAMESPACE|NAME|REVISION|DESIRED|UPDATED|READY|STATUS",
                "Deployment|a|web|2|3|3|3|Current",
                "Job|a|later|2|2|-|0|Stopped until 2026-12-02T01:00:00Z",
                "Pod|a|early|2|1|1|1|Current",
                "Pod|a|fresh|2|1|1|1|Current",
                "Pod|a|stale|<unknown>|1|0|1|Outdated",
                "Deployment|b|manual|1|2|2|1|Outdated (Manual)",
            ]
        );
        let later = &r.workloads[1];
        assert!(later.stopped && !later.outdated);
        assert_eq!(later.update_policy, None, "Jobs are not rolled");
        let manual = &r.workloads[5];
        assert_eq!(manual.hash.as_deref(), Some("old-hash"));
        assert_eq!(manual.update_policy.as_deref(), Some("Manual"));
        assert!(header(&r).contains(
            "Stage:     deprecated (replaced by secretflow-image-v2)\nRevision:  2 (hash "
        ));
    }

    #[test]
    fn the_report_is_deterministic_and_serialises_as_documented() {
        let (image, revs, mut objects) = world();
        let a = serde_json::to_string(&report(&image, &revs, &objects)).unwrap();
        objects.deployments.reverse();
        objects.pods.reverse();
        let b = serde_json::to_string(&report(&image, &revs, &objects)).unwrap();
        assert_eq!(a, b, "the input order does not matter");
        let v: Value = serde_json::from_str(&a).unwrap();
        assert_eq!(v["appImage"], "secretflow-image");
        assert_eq!(v["workloads"][1]["startAt"], "2026-12-02T01:00:00Z");
        assert_eq!(v["workloads"][1]["stopped"], true);
        assert_eq!(v["workloads"][1]["updated"], Value::Null);
        assert_eq!(v["workloads"][4]["outdated"], true);
        assert_eq!(v["workloads"][5]["updatePolicy"], "Manual");
    }

    #[test]
    fn started_unrecorded_and_malformed_workloads() {
        let image = seed();
        let mut started = deployed(
            &image,
            DeployOptions {
                replicas: Some(2),
                start_at: Some("2026-12-02T01:00:00Z".parse().unwrap()),
                ..opts(Kind::Deployment, "started", "a")
            },
            json!({"updatedReplicas": 2, "readyReplicas": 2}),
        );
        started["spec"]["replicas"] = json!(2);
        started["metadata"]["annotations"][workload::STARTED] = json!("2026-12-02T01:00:01Z");
        let mut bad = deployed(&image, opts(Kind::StatefulSet, "bad", "a"), json!({}));
        bad["spec"]["template"]["metadata"]["annotations"][crate::revision::REVISION] = json!("x");
        bad["metadata"]["annotations"][UPDATE_POLICY] = json!("Sometimes");
        let objects = Objects {
            deployments: vec![from(started)],
            statefulsets: vec![from(bad)],
            ..Default::default()
        };
        // No revision recorded yet: the current spec still compares by hash.
        let r = report(&image, &[], &objects);
        assert_eq!(r.revision, None);
        assert_eq!(r.stage, "draft");
        assert!(header(&r).contains("Revision:  not recorded yet (hash "));
        let started = &r.workloads[0];
        assert!(!started.stopped && !started.outdated && started.start_at.is_none());
        assert_eq!(started.hash.as_deref(), Some(r.hash.as_str()));
        let cells = rows(&r);
        assert_eq!(cells[1][3], r.hash[..12]);
        assert_eq!(cells[1][7], "Current");
        let bad = &cells[2];
        assert_eq!(bad[0], "StatefulSet");
        assert!(bad[7].contains("is not a revision number"), "{}", bad[7]);
        assert!(bad[7].contains("use Auto or Manual"), "{}", bad[7]);
    }
}
