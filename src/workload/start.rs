//! Delayed start (`deploy --start-at`): a workload stored stopped, with [`START_AT`] and
//! [`START_REPLICAS`], is started once at that time, and marked [`STARTED`] so that the
//! controller never acts on it again (a later `kubectl scale` stays). A later `deploy
//! --start-at` (always a future time) is pending again: [`STARTED`] only settles the start
//! times at or before it.

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::{Kind, START_AT, START_REPLICAS, STARTED, Workload};

/// What the start controller should do with a workload.
#[derive(Debug, Clone, PartialEq)]
pub enum Start {
    /// No delayed start, or already started.
    Nothing,
    /// Not yet: look again at this time.
    At(Timestamp),
    /// Apply this (server-side apply body) now.
    Apply(Value),
    /// Due, but someone already started it by hand (scaled it up, unsuspended it): apply
    /// this body, which records [`STARTED`] only and leaves the spec to the user.
    Record(Value),
}

/// Why a stored start cannot be carried out (a hand-edited annotation).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{kind} {name:?}: annotation {key} {message}")]
pub struct StartError {
    pub kind: &'static str,
    pub name: String,
    pub key: &'static str,
    pub message: String,
}

/// The start time `w` still waits for (or is overdue for): [`START_AT`], unless [`STARTED`]
/// records a start at or after it. A [`STARTED`] that is not a time (hand-edited) settles it.
pub fn pending(w: &Workload) -> Result<Option<Timestamp>, StartError> {
    let Some(annotations) = w.metadata().annotations.as_ref() else {
        return Ok(None);
    };
    let Some(at) = annotations.get(START_AT) else {
        return Ok(None);
    };
    let at: Timestamp = at.parse().map_err(|e| StartError {
        kind: w.kind().as_str(),
        name: w.name().into(),
        key: START_AT,
        message: format!("is {at:?}, not an RFC 3339 time ({e}); fix or remove it"),
    })?;
    let settled = annotations
        .get(STARTED)
        .is_some_and(|s| s.parse::<Timestamp>().map_or(true, |s| s >= at));
    Ok((!settled && w.kind() != Kind::DaemonSet).then_some(at))
}

/// Whether `w` runs: a Deployment or StatefulSet above 0 replicas, a Job or CronJob not
/// suspended (a DaemonSet always).
pub fn running(w: &Workload) -> bool {
    match w {
        Workload::Deployment(o) => o.spec.as_ref().is_none_or(|s| s.replicas != Some(0)),
        Workload::StatefulSet(o) => o.spec.as_ref().is_none_or(|s| s.replicas != Some(0)),
        Workload::DaemonSet(_) => true,
        Workload::Job(o) => o.spec.as_ref().is_none_or(|s| s.suspend != Some(true)),
        Workload::CronJob(o) => o.spec.as_ref().is_none_or(|s| s.suspend != Some(true)),
    }
}

/// The next step for `w` at `now`. The apply body sets the intended replicas (Deployment,
/// StatefulSet) or unsuspends (Job, CronJob), and records [`STARTED`] as `now`; for a
/// workload already started by hand it records [`STARTED`] only ([`Start::Record`]).
pub fn start(w: &Workload, now: Timestamp) -> Result<Start, StartError> {
    let Some(at) = pending(w)? else {
        return Ok(Start::Nothing);
    };
    if now < at {
        return Ok(Start::At(at));
    }
    let mut body = json!({
        "apiVersion": w.kind().api_version(),
        "kind": w.kind().as_str(),
        "metadata": {
            "name": w.name(),
            "namespace": w.namespace(),
            "annotations": {STARTED: now.to_string()},
        },
    });
    if running(w) {
        return Ok(Start::Record(body));
    }
    body["spec"] = match w.kind() {
        Kind::Deployment | Kind::StatefulSet => json!({"replicas": start_replicas(w)?}),
        Kind::Job | Kind::CronJob | Kind::DaemonSet => json!({"suspend": false}),
    };
    Ok(Start::Apply(body))
}

/// [`START_REPLICAS`], 1 when absent.
fn start_replicas(w: &Workload) -> Result<i32, StartError> {
    let raw = w
        .metadata()
        .annotations
        .as_ref()
        .and_then(|a| a.get(START_REPLICAS))
        .map_or("1", String::as_str);
    raw.parse()
        .ok()
        .filter(|r| *r >= 0)
        .ok_or_else(|| StartError {
            kind: w.kind().as_str(),
            name: w.name().into(),
            key: START_REPLICAS,
            message: format!("is {raw:?}, not a replica count (0 or more)"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest;
    use crate::workload::{DeployOptions, build};

    fn stopped(kind: Kind, at: &str) -> Workload {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/secretflow-image.yaml"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let img = manifest::appimages(path, &text).unwrap().remove(0);
        let opts = DeployOptions {
            kind,
            namespace: "alice".into(),
            replicas: Some(3),
            start_at: Some(at.parse().unwrap()),
            schedule: (kind == Kind::CronJob).then(|| "*/5 * * * *".into()),
            ..Default::default()
        };
        build(&img, &opts).unwrap()
    }

    fn annotate(w: &mut Workload, key: &str, value: &str) {
        let meta = match w {
            Workload::Deployment(o) => &mut o.metadata,
            Workload::Job(o) => &mut o.metadata,
            _ => unreachable!(),
        };
        meta.annotations
            .get_or_insert_with(Default::default)
            .insert(key.into(), value.into());
    }

    #[test]
    fn a_stopped_workload_starts_at_its_time_once() {
        let at = "2026-12-01T21:00:00Z";
        let before: Timestamp = "2026-12-01T20:59:59Z".parse().unwrap();
        let after: Timestamp = "2026-12-01T21:00:01Z".parse().unwrap();
        let mut d = stopped(Kind::Deployment, at);
        assert_eq!(start(&d, before).unwrap(), Start::At(at.parse().unwrap()));
        let Start::Apply(body) = start(&d, after).unwrap() else {
            panic!("due")
        };
        assert_eq!(body["spec"], json!({"replicas": 3}));
        assert_eq!(
            body["metadata"]["annotations"][STARTED],
            "2026-12-01T21:00:01Z"
        );
        assert_eq!(body["kind"], "Deployment");
        // Once started, never again.
        annotate(&mut d, STARTED, "2026-12-01T21:00:01Z");
        assert_eq!(start(&d, after).unwrap(), Start::Nothing);

        let job = stopped(Kind::Job, at);
        let Start::Apply(body) = start(&job, after).unwrap() else {
            panic!("due")
        };
        assert_eq!(body["spec"], json!({"suspend": false}));
        let cron = stopped(Kind::CronJob, at);
        let Start::Apply(body) = start(&cron, after).unwrap() else {
            panic!("due")
        };
        assert_eq!(body["spec"], json!({"suspend": false}));
    }

    #[test]
    fn a_later_start_at_waits_again_and_a_hand_start_is_only_recorded() {
        let after: Timestamp = "2026-12-01T21:00:01Z".parse().unwrap();
        let mut d = stopped(Kind::Deployment, "2026-12-01T21:00:00Z");
        annotate(&mut d, STARTED, "2026-12-01T21:00:01Z");
        assert_eq!(pending(&d).unwrap(), None);
        // `deploy --start-at` again, later: pending again.
        annotate(&mut d, START_AT, "2026-12-01T22:00:00Z");
        let later: Timestamp = "2026-12-01T22:00:00Z".parse().unwrap();
        assert_eq!(pending(&d).unwrap(), Some(later));
        assert_eq!(start(&d, after).unwrap(), Start::At(later));
        // A started-at that is not a time settles it: never started twice.
        annotate(&mut d, STARTED, "yesterday");
        assert_eq!(start(&d, later).unwrap(), Start::Nothing);

        // Scaled up by hand before its time: recorded, the user's replicas stay.
        let mut d = stopped(Kind::Deployment, "2026-12-01T21:00:00Z");
        if let Workload::Deployment(o) = &mut d {
            o.spec.as_mut().unwrap().replicas = Some(5);
        }
        assert!(running(&d));
        let Start::Record(body) = start(&d, after).unwrap() else {
            panic!("recorded only")
        };
        assert!(body.get("spec").is_none(), "{body}");
        assert_eq!(
            body["metadata"]["annotations"][STARTED],
            "2026-12-01T21:00:01Z"
        );
        let mut j = stopped(Kind::Job, "2026-12-01T21:00:00Z");
        assert!(!running(&j));
        if let Workload::Job(o) = &mut j {
            o.spec.as_mut().unwrap().suspend = Some(false);
        }
        assert!(matches!(start(&j, after).unwrap(), Start::Record(_)));
    }

    #[test]
    fn a_workload_without_a_start_or_with_a_bad_one() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/secretflow-image.yaml"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let img = manifest::appimages(path, &text).unwrap().remove(0);
        let plain = build(
            &img,
            &DeployOptions {
                namespace: "a".into(),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(start(&plain, Timestamp::now()).unwrap(), Start::Nothing);

        let mut d = stopped(Kind::Deployment, "2026-12-01T21:00:00Z");
        annotate(&mut d, START_REPLICAS, "-1");
        let e = start(&d, Timestamp::now()).unwrap_err().to_string();
        assert!(
            e.contains("start-replicas is \"-1\", not a replica count"),
            "{e}"
        );
        let mut j = stopped(Kind::Job, "2026-12-01T21:00:00Z");
        annotate(&mut j, START_AT, "soon");
        let e = start(&j, Timestamp::now()).unwrap_err().to_string();
        assert!(
            e.contains("start-at is \"soon\", not an RFC 3339 time"),
            "{e}"
        );
    }
}
