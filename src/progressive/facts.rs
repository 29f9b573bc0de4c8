//! What the rollout reads of a workload and its Pods, as the machine's [`WorkloadFact`]:
//! pure, so that the controller only gathers objects and the rules are tested here.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use super::machine::{Health, WorkloadFact};
use crate::labels::{APP_IMAGE, WORKLOAD};
use crate::revision::{Known, named, resolve};
use crate::workload::Workload;

/// The fact of workload `w` of AppImage `image`, from the Pods of its namespace.
pub fn fact<'a>(
    w: &Workload,
    image: &str,
    pods: impl Iterator<Item = &'a Pod>,
    known: &[Known],
) -> WorkloadFact {
    let template = w.pod_template();
    let runs = template
        .and_then(|t| named(t.metadata.as_ref().and_then(|m| m.annotations.as_ref())).ok())
        .and_then(|n| resolve(&n, known));
    let mut health = Health {
        desired: desired(w),
        denied: denied(w),
        ..Health::default()
    };
    for pod in pods.filter(|p| of(p, w, image)) {
        let on = named(pod.metadata.annotations.as_ref())
            .ok()
            .and_then(|n| resolve(&n, known));
        if on.is_none() || on != runs {
            health.others += 1;
            continue;
        }
        if let Some(since) = ready_since(pod) {
            health.ready_since.push(since);
        }
        let restarts = pod
            .status
            .iter()
            .flat_map(|s| s.container_statuses.iter().flatten())
            .map(|c| c.restart_count)
            .max()
            .unwrap_or(0);
        health.restarts = health.restarts.max(restarts);
    }
    WorkloadFact {
        kind: w.kind().as_str().into(),
        namespace: w.namespace().into(),
        name: w.name().into(),
        labels: w.metadata().labels.clone().unwrap_or_default(),
        runs,
        health,
    }
}

/// Whether `pod` is a live Pod of workload `w` of AppImage `image`.
fn of(pod: &Pod, w: &Workload, image: &str) -> bool {
    let labels = pod.metadata.labels.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    let done = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed");
    pod.metadata.namespace.as_deref() == Some(w.namespace())
        && label(WORKLOAD) == Some(w.name())
        && label(APP_IMAGE) == Some(image)
        && pod.metadata.deletion_timestamp.is_none()
        && !done
}

/// When `pod` became Ready, if it is.
fn ready_since(pod: &Pod) -> Option<Timestamp> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let ready = conditions
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?;
    Some(
        ready
            .last_transition_time
            .as_ref()
            .map_or(Timestamp::UNIX_EPOCH, |t| t.0),
    )
}

/// The Pods the workload wants; a CronJob's runs come and go, so it wants none to be Ready.
fn desired(w: &Workload) -> i64 {
    let n = match w {
        Workload::Deployment(d) => d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        Workload::StatefulSet(s) => s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        Workload::DaemonSet(d) => d.status.as_ref().map_or(0, |s| s.desired_number_scheduled),
        Workload::Job(_) | Workload::CronJob(_) => 0,
    };
    i64::from(n)
}

/// The denial that keeps a Deployment's Pods from being created: its controller copies the
/// ReplicaSet's FailedCreate, with admission's words, into a ReplicaFailure condition. Only
/// an admission webhook's verdict counts: a webhook that cannot be reached, or a quota, is a
/// passing trouble that the wave's deadline judges, not a verdict on the revision.
fn denied(w: &Workload) -> Option<String> {
    let Workload::Deployment(d) = w else {
        return None;
    };
    let conditions = d.status.as_ref()?.conditions.as_ref()?;
    conditions
        .iter()
        .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
        .and_then(|c| c.message.clone())
        .filter(|m| m.contains("denied the request"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::{REVISION, REVISION_HASH};
    use serde_json::json;

    fn known() -> Vec<Known> {
        [1, 2]
            .map(|n| Known {
                number: n,
                hash: format!("h{n}"),
            })
            .to_vec()
    }

    fn pod(name: &str, revision: i64, ready: bool, restarts: i32) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns",
                "labels": {WORKLOAD: "web", APP_IMAGE: "app"},
                "annotations": {REVISION: revision.to_string(), REVISION_HASH: format!("h{revision}")}},
            "status": {"phase": "Running",
                "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}, "lastTransitionTime": "2026-12-07T10:00:00Z"}],
                "containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": ready, "restartCount": restarts}]}
        }))
        .unwrap()
    }

    fn deployment(revision: i64, replicas: i32, denied: Option<&str>) -> Workload {
        let conditions: Vec<serde_json::Value> = denied
            .map(|m| json!({"type": "ReplicaFailure", "status": "True", "message": m}))
            .into_iter()
            .collect();
        Workload::Deployment(Box::new(serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "labels": {"tier": "canary"}},
            "spec": {"replicas": replicas, "selector": {},
                "template": {"metadata": {"annotations": {REVISION: revision.to_string(), REVISION_HASH: format!("h{revision}")}}}},
            "status": {"conditions": conditions}
        })).unwrap()))
    }

    #[test]
    fn pods_on_the_template_revision_count_and_the_others_hold_the_gate() {
        let pods = [
            pod("a", 2, true, 0),
            pod("b", 2, false, 4),
            pod("c", 1, true, 0),
        ];
        let f = fact(&deployment(2, 2, None), "app", pods.iter(), &known());
        assert_eq!(f.runs, Some(2));
        assert_eq!(f.health.desired, 2);
        assert_eq!(f.health.ready_since.len(), 1);
        assert_eq!(f.health.others, 1);
        assert_eq!(f.health.restarts, 4);
        assert_eq!(f.labels.get("tier").map(String::as_str), Some("canary"));
        // Another AppImage's or workload's Pods are not this workload's.
        let mut foreign = pod("d", 1, true, 9);
        foreign
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(WORKLOAD.into(), "other".into());
        let f = fact(&deployment(2, 2, None), "app", [foreign].iter(), &known());
        assert_eq!((f.health.others, f.health.restarts), (0, 0));
    }

    #[test]
    fn a_denial_is_read_from_the_deployment() {
        let words = "admission webhook \"pods.appimage.kuscia.secretflow\" denied the request: no signature";
        let f = fact(&deployment(2, 1, Some(words)), "app", [].iter(), &known());
        assert_eq!(f.health.denied.as_deref(), Some(words));
        // A webhook that cannot be reached is no verdict: the deadline judges it.
        let down = "Internal error occurred: failed calling webhook: connection refused";
        let f = fact(&deployment(2, 1, Some(down)), "app", [].iter(), &known());
        assert_eq!(f.health.denied, None);
    }
}
