//! `batch describe`: the spec, the status, the conditions and a line per node, on the
//! describe page of `describe` ([`Doc`]).

use crate::describe::Doc;
use crate::output::human_duration;
use crate::output::or_none;
use appimage::batch::{BatchDeployment, NodeStatus, PullPhase, RestartPolicy};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// `batch describe`: the spec in words, the conditions, then a line per node with its reason.
pub fn describe(bd: &BatchDeployment, now: i64) -> String {
    let mut d = Doc::default();
    for (k, v) in spec_fields(bd).into_iter().chain(status_fields(bd, now)) {
        d.field(0, k, v);
    }
    let status = bd.status.clone().unwrap_or_default();
    let conditions: Vec<Vec<String>> = status
        .conditions
        .iter()
        .map(|c| {
            [&c.type_, &c.status, &c.reason, &c.message]
                .map(|s| s.clone())
                .to_vec()
        })
        .collect();
    let header = ["TYPE", "STATUS", "REASON", "MESSAGE"];
    d.table(0, "Conditions", &header, &conditions, "<none>");
    if status.pulls.is_some() {
        // Jobs that pre-pull: the nodes whose pull failed, with the pull's own reason.
        let header = ["NODE", "REASON", "MESSAGE"];
        let failed = pull_failures(&status.nodes);
        d.table(0, "Failed Pulls", &header, &failed, "<none>");
    }
    let header = ["NODE", "PHASE", "PODS", "ATTEMPTS", "REASON", "MESSAGE"];
    let nodes = node_rows(&status.nodes, bd.spec.instances.unwrap_or(1));
    d.table(0, "Nodes", &header, &nodes, "<none chosen yet>");
    d.finish()
}

fn pull_failures(nodes: &[NodeStatus]) -> Vec<Vec<String>> {
    nodes
        .iter()
        .filter_map(|n| {
            let p = n.pull.as_ref().filter(|p| p.phase == PullPhase::Failed)?;
            Some(vec![
                n.node.clone(),
                p.reason.clone().unwrap_or_default(),
                p.message.clone().unwrap_or_default(),
            ])
        })
        .collect()
}

/// `concurrency 3, timeout 5m, failure tolerance 1`
fn pre_pull_text(p: &appimage::batch::PrePull) -> String {
    let tolerance = match &p.failure_tolerance {
        None => "0".into(),
        Some(IntOrString::Int(n)) => n.to_string(),
        Some(IntOrString::String(t)) => t.clone(),
    };
    format!(
        "concurrency {}, timeout {}, failure tolerance {tolerance}",
        p.concurrency
            .map_or("<all nodes>".into(), |c| c.to_string()),
        p.timeout
            .as_deref()
            .unwrap_or(appimage::batch::DEFAULT_PULL_TIMEOUT)
    )
}

fn spec_fields(bd: &BatchDeployment) -> Vec<(&'static str, String)> {
    let s = &bd.spec;
    let selector: Vec<String> = s
        .node_selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let tolerance = match &s.failure_tolerance {
        None => "<any short of all>".into(),
        Some(IntOrString::Int(n)) => n.to_string(),
        Some(IntOrString::String(p)) => p.clone(),
    };
    let policy = s.restart_policy.unwrap_or(RestartPolicy::Always);
    let timeout = s.timeout.clone();
    let mut fields = vec![
        ("Name", bd.metadata.name.clone().unwrap_or_default()),
        (
            "Namespace",
            bd.metadata.namespace.clone().unwrap_or_default(),
        ),
        ("AppImage", s.app_image.clone()),
        (
            "Revision",
            s.revision.map_or("<current>".into(), |r| r.to_string()),
        ),
        ("Role", or_none(s.role.clone().unwrap_or_default())),
        ("Restart Policy", policy.as_str().into()),
        (
            "Instances",
            format!("{} per node", s.instances.unwrap_or(1)),
        ),
        ("Node Selector", or_none(selector.join(","))),
        ("Node Names", or_none(s.node_names.join(","))),
        (
            "Parallelism",
            s.parallelism
                .map_or("<all nodes>".into(), |p| p.to_string()),
        ),
        ("Failure Tolerance", tolerance),
        (
            "Timeout",
            timeout.unwrap_or_else(|| appimage::batch::DEFAULT_TIMEOUT.into()),
        ),
        ("Suspend", s.suspend.unwrap_or(false).to_string()),
    ];
    // Shown only when set, so that jobs without them read as before.
    if let Some(r) = s.retries {
        let backoff = s.retry_backoff.as_deref().unwrap_or("10s");
        fields.push((
            "Retries",
            format!("{r} per node, backoff {backoff} doubling"),
        ));
    }
    if s.mode == Some(appimage::batch::Mode::Continuous) {
        let grace = s
            .leave_grace
            .as_deref()
            .unwrap_or(appimage::batch::DEFAULT_LEAVE_GRACE);
        fields.push((
            "Mode",
            format!("Continuous (a node that stops matching keeps the app {grace})"),
        ));
    }
    for (i, o) in s.overrides.iter().enumerate() {
        fields.push(("Override", override_text(i, o)));
    }
    if let Some(p) = &s.pre_pull {
        fields.push(("Pre-Pull", pre_pull_text(p)));
    }
    fields
}

/// `[0] size=big: replicas=2 env=MODE=big set=k=v resources tolerations=1`
fn override_text(i: usize, o: &appimage::batch::Override) -> String {
    let pairs = |m: &std::collections::BTreeMap<String, String>| {
        m.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut parts = vec![format!("[{i}] {}:", pairs(&o.node_selector))];
    if let Some(r) = o.replicas {
        parts.push(format!("replicas={r}"));
    }
    if !o.env.is_empty() {
        parts.push(format!("env={}", pairs(&o.env)));
    }
    if !o.set.is_empty() {
        parts.push(format!("set={}", pairs(&o.set)));
    }
    if o.resources.is_some() {
        parts.push("resources".into());
    }
    if !o.tolerations.is_empty() {
        parts.push(format!("tolerations={}", o.tolerations.len()));
    }
    parts.join(" ")
}

fn status_fields(bd: &BatchDeployment, now: i64) -> Vec<(&'static str, String)> {
    let Some(status) = &bd.status else {
        return vec![("Phase", "<not seen by the controller yet>".into())];
    };
    let time = |t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| match t {
        None => "<none>".to_string(),
        Some(t) => format!("{} ({} ago)", t.0, human_duration(now - t.0.as_second())),
    };
    let c = &status.counts;
    let mut fields = vec![
        ("Phase", status.phase.as_str().into()),
        ("Succeeded", format!("{} of {} nodes", c.succeeded, c.total)),
        ("Failed", c.failed.to_string()),
        ("Attempts", status.attempts.to_string()),
        ("Start Time", time(&status.start_time)),
        ("Completion Time", time(&status.completion_time)),
    ];
    if c.waiting > 0 {
        // NotReady nodes to be caught up, or nodes waiting out a retry's backoff.
        fields.insert(3, ("Waiting", c.waiting.to_string()));
    }
    if let Some(p) = &status.pulls {
        let of = p.pending + p.pulling + p.pulled + p.failed;
        let text = format!(
            "{} of {of} pulled, {} failed, {} pulling, {} pending",
            p.pulled, p.failed, p.pulling, p.pending
        );
        fields.insert(1, ("Pulls", text));
    }
    fields
}

fn node_rows(nodes: &[NodeStatus], instances: i32) -> Vec<Vec<String>> {
    let row = |n: &NodeStatus| {
        vec![
            n.node.clone(),
            n.phase.as_str().into(),
            format!("{}/{instances}", n.pods),
            n.attempts.to_string(),
            n.reason.clone().unwrap_or_default(),
            n.message.clone().unwrap_or_else(|| left_out(n)),
        ]
    };
    nodes.iter().map(row).collect()
}

/// A failed node's message the status left out to stay under the object limit
/// (`appimage::batch::budget`).
fn left_out(n: &NodeStatus) -> String {
    if n.phase != appimage::batch::NodePhase::Failed {
        return String::new();
    }
    format!(
        "(message left out: the status keeps {} KiB of node messages in all)",
        appimage::batch::budget::MESSAGES_BUDGET / 1024
    )
}
