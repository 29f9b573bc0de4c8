//! What `deploy` is asked for, and the parsers for its flags' text.

use std::collections::BTreeMap;
use std::str::FromStr;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::jiff::Timestamp;

use super::WorkloadError;
use crate::naming;

/// The native workload kinds an AppImage can run as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, PartialOrd, Ord)]
pub enum Kind {
    #[default]
    Deployment,
    StatefulSet,
    DaemonSet,
    Job,
    CronJob,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Deployment,
        Kind::StatefulSet,
        Kind::DaemonSet,
        Kind::Job,
        Kind::CronJob,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Deployment => "Deployment",
            Kind::StatefulSet => "StatefulSet",
            Kind::DaemonSet => "DaemonSet",
            Kind::Job => "Job",
            Kind::CronJob => "CronJob",
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Job | Kind::CronJob => "batch/v1",
            _ => "apps/v1",
        }
    }

    /// kubectl's `resource.group` name, as `-o name` prints it (`deployment.apps`).
    pub fn resource(self) -> &'static str {
        match self {
            Kind::Deployment => "deployment.apps",
            Kind::StatefulSet => "statefulset.apps",
            Kind::DaemonSet => "daemonset.apps",
            Kind::Job => "job.batch",
            Kind::CronJob => "cronjob.batch",
        }
    }

    /// Pods that run to completion (restartPolicy Never or OnFailure).
    pub fn is_batch(self) -> bool {
        matches!(self, Kind::Job | Kind::CronJob)
    }
}

impl FromStr for Kind {
    type Err = WorkloadError;

    /// The kind, case-insensitive, or kubectl's short name (deploy, sts, ds, cj).
    fn from_str(s: &str) -> Result<Kind, WorkloadError> {
        let kind = match s.trim().to_ascii_lowercase().as_str() {
            "deployment" | "deploy" => Kind::Deployment,
            "statefulset" | "sts" => Kind::StatefulSet,
            "daemonset" | "ds" => Kind::DaemonSet,
            "job" => Kind::Job,
            "cronjob" | "cj" => Kind::CronJob,
            _ => {
                return Err(WorkloadError::UnknownKind {
                    given: s.to_string(),
                });
            }
        };
        Ok(kind)
    }
}

/// Whether a workload follows new revisions of its AppImage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum UpdatePolicy {
    #[default]
    Auto,
    Manual,
}

impl UpdatePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            UpdatePolicy::Auto => "Auto",
            UpdatePolicy::Manual => "Manual",
        }
    }
}

impl FromStr for UpdatePolicy {
    type Err = WorkloadError;

    fn from_str(s: &str) -> Result<UpdatePolicy, WorkloadError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(UpdatePolicy::Auto),
            "manual" => Ok(UpdatePolicy::Manual),
            _ => Err(WorkloadError::UnknownPolicy {
                given: s.to_string(),
            }),
        }
    }
}

/// Everything `deploy` takes besides the AppImage.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeployOptions {
    pub kind: Kind,
    /// Default: the AppImage's name, or `<appimage>-<role>` for a role (Kuscia's naming).
    pub name: Option<String>,
    pub namespace: String,
    pub role: String,
    pub template: Option<String>,
    /// Default: the deploy template's `replicas` as Kuscia reads it (unset 1, 0 none).
    pub replicas: Option<i32>,
    pub node_selector: BTreeMap<String, String>,
    /// CronJob only.
    pub schedule: Option<String>,
    /// Create the workload stopped; the controller starts it at this time.
    pub start_at: Option<Timestamp>,
    pub task_id: String,
    pub input_config: String,
    /// Extra render values (`--set`), written as the `values` option.
    pub values: BTreeMap<String, String>,
    /// A PodTemplateSpec fragment merged into the pod template (`--pod-template`).
    pub pod_template: Option<PodTemplateSpec>,
    pub host_network: bool,
    pub image_pull_secrets: Vec<String>,
    pub update_policy: UpdatePolicy,
}

/// `k=v,k2=v2` as a node selector; keys and values must be valid label keys and values.
pub fn parse_node_selector(text: &str) -> Result<BTreeMap<String, String>, WorkloadError> {
    let flag = |m: String| WorkloadError::flag("--node-selector", m);
    let mut out = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(flag(format!(
                "{pair:?} is not KEY=VALUE; write e.g. --node-selector disktype=ssd,zone=a"
            )));
        };
        let (key, value) = (key.trim(), value.trim());
        if let Some(why) = label_key_error(key) {
            return Err(flag(format!("label key {key:?} {why}")));
        }
        if let Some(why) = naming::label_value_error(value) {
            return Err(flag(format!("label value {value:?} of {key:?} {why}")));
        }
        out.insert(key.to_string(), value.to_string());
    }
    if out.is_empty() {
        // An empty selector would mean every node: say so rather than widen the placement.
        return Err(flag(
            "is empty; give at least one KEY=VALUE, or leave the flag out to allow every node"
                .into(),
        ));
    }
    Ok(out)
}

/// Why `key` is not a label key (`[prefix/]name`), or `None`.
fn label_key_error(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(why) = prefix.and_then(naming::dns1123_subdomain_error) {
        return Some(format!("has a bad prefix: it {why}"));
    }
    if name.is_empty() {
        return Some("has an empty name".into());
    }
    naming::label_value_error(name).map(|why| format!("has a bad name: it {why}"))
}

/// `--start-at`: an RFC 3339 time (`2026-12-01T21:00:00Z`) or `+DURATION` from `now`
/// (`+90s`, `+5m`). A time that has passed is an error: the workload would start at once.
pub fn parse_start_at(text: &str, now: Timestamp) -> Result<Timestamp, WorkloadError> {
    let flag = |m: String| WorkloadError::flag("--start-at", m);
    let text = text.trim();
    let at = if let Some(rel) = text.strip_prefix('+') {
        let d = crate::duration::parse(rel).map_err(flag)?;
        let span = k8s_openapi::jiff::SignedDuration::try_from(d)
            .map_err(|e| flag(format!("{text:?} is too far ahead: {e}")))?;
        now.checked_add(span)
            .map_err(|e| flag(format!("{text:?} is too far ahead: {e}")))?
    } else {
        text.parse::<Timestamp>().map_err(|e| {
            flag(format!(
                "{text:?} is not a time: {e}; write an RFC 3339 time such as 2026-12-01T21:00:00Z, or +DURATION such as +5m"
            ))
        })?
    };
    if at <= now {
        return Err(flag(format!(
            "{text:?} ({at}) is not in the future (now is {now}); give a later time, or leave the flag out to start now"
        )));
    }
    Ok(at)
}

/// Check a CronJob schedule as Kubernetes reads it: five fields or a `@descriptor`, and no
/// `TZ=` prefix (Kubernetes wants `spec.timeZone` for that).
pub fn validate_schedule(schedule: &str) -> Result<(), WorkloadError> {
    let flag = |m: String| WorkloadError::flag("--schedule", m);
    let s = schedule.trim();
    if s.starts_with("TZ=") || s.starts_with("CRON_TZ=") {
        return Err(flag(format!(
            "{schedule:?}: a time zone cannot be part of the schedule in Kubernetes; drop the {} prefix",
            s.split_once(' ').map_or(s, |(tz, _)| tz)
        )));
    }
    if let Some(every) = s.strip_prefix("@every ") {
        return crate::duration::parse(every)
            .map(drop)
            .map_err(|e| flag(format!("{schedule:?}: {e}")));
    }
    let parser = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .year(croner::parser::Year::Disallowed)
        .build();
    parser.parse(s).map(drop).map_err(|e| {
        flag(format!(
            "{schedule:?} is not a cron schedule ({e}); write five fields, minute hour day-of-month month day-of-week, e.g. \"*/5 * * * *\", or @hourly, @daily, @weekly"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_by_name_or_short_name_and_list_the_valid_ones() {
        for k in Kind::ALL {
            assert_eq!(k.as_str().parse::<Kind>().unwrap(), k);
            assert_eq!(k.as_str().to_lowercase().parse::<Kind>().unwrap(), k);
        }
        assert_eq!("sts".parse::<Kind>().unwrap(), Kind::StatefulSet);
        assert_eq!("cj".parse::<Kind>().unwrap(), Kind::CronJob);
        let err = "Pod".parse::<Kind>().unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown workload kind \"Pod\"; use one of: Deployment, StatefulSet, DaemonSet, Job, CronJob"
        );
        assert_eq!(Kind::CronJob.resource(), "cronjob.batch");
        assert_eq!(Kind::Job.api_version(), "batch/v1");
        assert_eq!(
            "manual".parse::<UpdatePolicy>().unwrap(),
            UpdatePolicy::Manual
        );
        assert!("sometimes".parse::<UpdatePolicy>().is_err());
    }

    #[test]
    fn node_selectors_are_label_pairs_and_never_empty() {
        let s = parse_node_selector("zone=a, kubernetes.io/os=linux").unwrap();
        assert_eq!(s["zone"], "a");
        assert_eq!(s["kubernetes.io/os"], "linux");
        for (bad, want) in [
            ("zone", "is not KEY=VALUE"),
            ("Zone A=x", "label key"),
            ("a/b/c=x", "bad name"),
            ("zone=a b", "label value"),
            ("", "is empty"),
            (" , ", "is empty"),
        ] {
            let err = parse_node_selector(bad).unwrap_err().to_string();
            assert!(err.starts_with("--node-selector: "), "{err}");
            assert!(err.contains(want), "{bad:?}: {err}");
        }
    }

    #[test]
    fn start_times_are_absolute_or_relative_and_in_the_future() {
        let now: Timestamp = "2026-12-01T20:00:00Z".parse().unwrap();
        assert_eq!(
            parse_start_at("2026-12-01T21:00:00Z", now)
                .unwrap()
                .to_string(),
            "2026-12-01T21:00:00Z"
        );
        assert_eq!(
            parse_start_at("+90s", now).unwrap().to_string(),
            "2026-12-01T20:01:30Z"
        );
        assert_eq!(
            parse_start_at("2026-12-01T22:00:00+01:00", now)
                .unwrap()
                .to_string(),
            "2026-12-01T21:00:00Z"
        );
        for (bad, want) in [
            ("tomorrow", "is not a time"),
            ("2026-12-01T19:00:00Z", "is not in the future"),
            ("+0s", "is not in the future"),
            ("+5x", "invalid duration"),
        ] {
            let err = parse_start_at(bad, now).unwrap_err().to_string();
            assert!(err.starts_with("--start-at: "), "{err}");
            assert!(err.contains(want), "{bad:?}: {err}");
        }
    }

    #[test]
    fn schedules_follow_kubernetes_cron() {
        for good in [
            "*/5 * * * *",
            "0 3 * * 1-5",
            "0 0 1 JAN *",
            "@hourly",
            "@daily",
            "@every 90m",
        ] {
            validate_schedule(good).unwrap_or_else(|e| panic!("{good:?}: {e}"));
        }
        for (bad, want) in [
            ("* * * *", "five fields"),
            ("0 0 * * * *", "five fields"),
            ("61 * * * *", "five fields"),
            ("often", "five fields"),
            ("TZ=UTC 0 * * * *", "time zone"),
            ("@every soon", "invalid duration"),
        ] {
            let err = validate_schedule(bad).unwrap_err().to_string();
            assert!(err.starts_with("--schedule: "), "{err}");
            assert!(err.contains(want), "{bad:?}: {err}");
        }
    }
}
