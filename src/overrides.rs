//! What a Pod may override on top of its AppImage's signed deploy template: a policy, not an
//! accident of the merge. Kuscia's merge lets a Pod's same-named container replace the
//! command and args and keep extra containers, so a Pod could carry AppImage X's identity
//! (labels, Services, NetworkPolicy peers) while running something X never signed.
//!
//! - `all`: Kuscia's merge, as before;
//! - `env`: env and resources only (the default);
//! - `none`: nothing.
//!
//! The webhook's `--pod-overrides` sets it (and `render --pod-overrides`), and an AppImage's
//! annotation [`labels::POD_OVERRIDES`] can only tighten it. The check compares the container
//! the merge makes of the Pod's with the one it makes of the template alone, so a field equal
//! to the template's (a reinvoked Pod) and what the apiserver and its admission plugins add on
//! their own (defaults, the ServiceAccount token's mount) are no override.

use std::fmt;
use std::str::FromStr;

use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{Map, Value};

use crate::labels;
use crate::resource::AppImage;

/// What a Pod may override; ordered from the tightest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PodOverrides {
    None,
    #[default]
    Env,
    All,
}

impl PodOverrides {
    pub const VALUES: [&'static str; 3] = ["all", "env", "none"];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Env => "env",
            Self::All => "all",
        }
    }

    /// What the setting lets a Pod change, for messages.
    pub fn allows(self) -> &'static str {
        match self {
            Self::None => "nothing",
            Self::Env => "env and resources only",
            Self::All => "anything (Kuscia's merge)",
        }
    }

    /// `self`, tightened by `image`'s annotation (which never loosens it).
    pub fn for_image(self, image: &AppImage) -> Result<PodOverrides, String> {
        let annotations = image.metadata.annotations.as_ref();
        let Some(given) = annotations.and_then(|a| a.get(labels::POD_OVERRIDES)) else {
            return Ok(self);
        };
        let theirs = given.parse::<PodOverrides>().map_err(|e| {
            format!(
                "AppImage {:?}: annotation {}: {e}",
                image.name(),
                labels::POD_OVERRIDES
            )
        })?;
        Ok(self.min(theirs))
    }
}

impl fmt::Display for PodOverrides {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PodOverrides {
    type Err = String;

    fn from_str(s: &str) -> Result<PodOverrides, String> {
        match s.trim() {
            "all" => Ok(Self::All),
            "env" => Ok(Self::Env),
            "none" => Ok(Self::None),
            other => Err(format!(
                "must be one of {}, not {other:?}",
                Self::VALUES.join(", ")
            )),
        }
    }
}

/// The first field of `merged` (the template's container merged with the Pod's) that differs
/// from `alone` (the template's container merged with nothing) and `policy` refuses, as its
/// JSON name. `pod` tells which volumes are the ServiceAccount token's.
pub fn overridden(
    policy: PodOverrides,
    alone: &Container,
    merged: &Container,
    pod: &Pod,
) -> Option<String> {
    if policy == PodOverrides::All {
        return None;
    }
    let (Ok(Value::Object(alone)), Ok(Value::Object(mut merged))) =
        (serde_json::to_value(alone), serde_json::to_value(merged))
    else {
        return Some("(unencodable container)".into());
    };
    tolerate_added(&mut merged, pod);
    let keys = alone.keys().chain(merged.keys());
    let mut fields: Vec<&String> = keys.collect();
    // A Pod's command or args replace the template's command and args together: name the one
    // the Pod wrote (its command, when it has one), not the one it dropped.
    let own_command = meaningful(merged.get("command")).is_some();
    fields.sort_by_key(|k| (!(own_command && k.as_str() == "command"), *k));
    fields.dedup();
    fields
        .into_iter()
        .filter(|k| !allowed(policy, k))
        .find(|k| meaningful(alone.get(*k)) != meaningful(merged.get(*k)))
        .cloned()
}

/// Fields a policy lets differ; `terminationMessagePolicy` only says where a log goes.
fn allowed(policy: PodOverrides, key: &str) -> bool {
    match key {
        "terminationMessagePolicy" => true,
        "env" | "resources" => policy == PodOverrides::Env,
        _ => false,
    }
}

/// An empty object or list is no value (the API writes `resources: {}`).
fn meaningful(value: Option<&Value>) -> Option<&Value> {
    value.filter(|v| match v {
        Value::Null => false,
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => true,
    })
}

/// Drop from `merged` what the apiserver adds before admission: the default termination
/// message path, and the mount of the ServiceAccount token's projected volume.
fn tolerate_added(merged: &mut Map<String, Value>, pod: &Pod) {
    if merged.get("terminationMessagePath") == Some(&Value::from("/dev/termination-log")) {
        merged.remove("terminationMessagePath");
    }
    let Some(Value::Array(mounts)) = merged.get_mut("volumeMounts") else {
        return;
    };
    mounts.retain(|m| {
        let name = m.get("name").and_then(Value::as_str).unwrap_or_default();
        !is_token_volume(pod, name)
    });
}

/// Whether `name` is a projected volume of the ServiceAccount token (`kube-api-access-*`).
fn is_token_volume(pod: &Pod, name: &str) -> bool {
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    volumes.into_iter().flatten().any(|v| {
        v.name == name
            && v.projected.as_ref().is_some_and(|p| {
                let sources = p.sources.iter().flatten();
                sources.clone().any(|s| s.service_account_token.is_some())
            })
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements, VolumeMount};

    use super::*;

    fn alone() -> Container {
        Container {
            name: "main".into(),
            image: Some("signed:1".into()),
            command: Some(vec!["run".into()]),
            ..Default::default()
        }
    }

    fn pod_with_token() -> Pod {
        serde_json::from_value(serde_json::json!({
            "spec": {"containers": [], "volumes": [
                {"name": "kube-api-access-x", "projected": {"sources": [
                    {"serviceAccountToken": {"path": "token"}}]}},
                {"name": "data", "hostPath": {"path": "/"}}
            ]}
        }))
        .unwrap()
    }

    fn check(policy: PodOverrides, f: impl FnOnce(&mut Container)) -> Option<String> {
        let mut merged = alone();
        f(&mut merged);
        overridden(policy, &alone(), &merged, &pod_with_token())
    }

    #[test]
    fn env_allows_env_and_resources_only() {
        let env = |c: &mut Container| {
            c.env = Some(vec![EnvVar {
                name: "A".into(),
                value: Some("1".into()),
                value_from: None,
            }]);
            c.resources = Some(ResourceRequirements {
                limits: Some([("cpu".to_string(), Default::default())].into()),
                ..Default::default()
            });
        };
        assert_eq!(check(PodOverrides::Env, env), None);
        assert_eq!(check(PodOverrides::None, env), Some("env".into()));
        assert_eq!(
            check(PodOverrides::Env, |c| c.command = Some(vec!["sh".into()])),
            Some("command".into())
        );
        assert_eq!(
            check(PodOverrides::Env, |c| c.args = Some(vec!["x".into()])),
            Some("args".into())
        );
        assert_eq!(check(PodOverrides::All, |c| c.command = None), None);
    }

    #[test]
    fn what_the_apiserver_adds_is_no_override() {
        let added = |c: &mut Container| {
            c.termination_message_path = Some("/dev/termination-log".into());
            c.termination_message_policy = Some("File".into());
            c.resources = Some(ResourceRequirements::default());
            c.volume_mounts = Some(vec![VolumeMount {
                name: "kube-api-access-x".into(),
                mount_path: "/var/run/secrets/kubernetes.io/serviceaccount".into(),
                ..Default::default()
            }]);
        };
        assert_eq!(check(PodOverrides::None, added), None);
        // A mount of any other volume is the Pod's own.
        let host = |c: &mut Container| {
            c.volume_mounts = Some(vec![VolumeMount {
                name: "data".into(),
                mount_path: "/host".into(),
                ..Default::default()
            }]);
        };
        assert_eq!(check(PodOverrides::Env, host), Some("volumeMounts".into()));
    }

    #[test]
    fn an_annotation_only_tightens() {
        let mut image: AppImage = serde_json::from_value(serde_json::json!({
            "apiVersion": "kuscia.secretflow/v1alpha1", "kind": "AppImage",
            "metadata": {"name": "img"},
            "spec": {"image": {"name": "x", "tag": "1"}, "deployTemplates": []}
        }))
        .unwrap();
        assert_eq!(PodOverrides::Env.for_image(&image), Ok(PodOverrides::Env));
        for (given, from_env, from_all) in [
            ("none", PodOverrides::None, PodOverrides::None),
            ("all", PodOverrides::Env, PodOverrides::All),
            ("env", PodOverrides::Env, PodOverrides::Env),
        ] {
            image.metadata.annotations =
                Some([(labels::POD_OVERRIDES.to_string(), given.to_string())].into());
            assert_eq!(PodOverrides::Env.for_image(&image), Ok(from_env));
            assert_eq!(PodOverrides::All.for_image(&image), Ok(from_all));
        }
        image.metadata.annotations =
            Some([(labels::POD_OVERRIDES.to_string(), "some".to_string())].into());
        let err = PodOverrides::All.for_image(&image).unwrap_err();
        assert!(err.contains("must be one of all, env, none"), "{err}");
        assert_eq!(PodOverrides::default(), PodOverrides::Env);
    }
}
