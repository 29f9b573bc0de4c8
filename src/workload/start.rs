//! Delayed start (`deploy --start-at`): a workload stored stopped, with [`START_AT`] and
//! [`START_REPLICAS`], is started once at that time, and marked [`STARTED`] so that the
//! controller never acts on it again (a later `kubectl scale` stays).

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

/// The next step for `w` at `now`. The apply body sets the intended replicas (Deployment,
/// StatefulSet) or unsuspends (Job, CronJob), and records [`STARTED`] as `now`.
pub fn start(w: &Workload, now: Timestamp) -> Result<Start, StartError> {
    let annotations = w.metadata().annotations.clone().unwrap_or_default();
    let Some(at) = annotations.get(START_AT) else {
        return Ok(Start::Nothing);
    };
    if annotations.contains_key(STARTED) {
        return Ok(Start::Nothing);
    }
    let err = |key, message: String| StartError {
        kind: w.kind().as_str(),
        name: w.name().into(),
        key,
        message,
    };
    let at: Timestamp = at.parse().map_err(|e| {
        err(
            START_AT,
            format!("is {at:?}, not an RFC 3339 time ({e}); fix or remove it"),
        )
    })?;
    if now < at {
        return Ok(Start::At(at));
    }
    let mut spec = json!({});
    match w.kind() {
        Kind::Deployment | Kind::StatefulSet => {
            let raw = annotations
                .get(START_REPLICAS)
                .map(String::as_str)
                .unwrap_or("1");
            let replicas: i32 = raw.parse().ok().filter(|r| *r >= 0).ok_or_else(|| {
                err(
                    START_REPLICAS,
                    format!("is {raw:?}, not a replica count (0 or more)"),
                )
            })?;
            spec["replicas"] = json!(replicas);
        }
        Kind::Job | Kind::CronJob => spec["suspend"] = json!(false),
        Kind::DaemonSet => return Ok(Start::Nothing),
    }
    Ok(Start::Apply(json!({
        "apiVersion": w.kind().api_version(),
        "kind": w.kind().as_str(),
        "metadata": {
            "name": w.name(),
            "namespace": w.namespace(),
            "annotations": {STARTED: now.to_string()},
        },
        "spec": spec,
    })))
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
