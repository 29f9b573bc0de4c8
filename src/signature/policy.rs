//! Which verified signatures count: key validity windows, revocation, payload v1, and how many
//! distinct keys must have signed. The key policy is a YAML file beside the trusted keys
//! (`keys-policy.yaml`); the webhook reloads it with them, so a revocation needs no restart.
//!
//! ```yaml
//! keys:
//!   release-2026.pem: {notBefore: "2026-01-01T00:00:00Z", notAfter: "2027-01-01T00:00:00Z"}
//! revoked: [leaked.pem]
//! ```

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Deserialize;

use super::{PayloadVersion, SignatureError, Signer, TrustedKey};

/// The key policy's file name in a trusted-keys directory.
pub const FILE_NAME: &str = "keys-policy.yaml";

/// When a key may sign; both ends open by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub not_before: Option<Timestamp>,
    pub not_after: Option<Timestamp>,
}

impl Window {
    /// Why `now` is outside the window, if it is.
    fn outside(&self, now: Timestamp) -> Option<String> {
        if let Some(t) = self.not_before.filter(|t| now < *t) {
            return Some(format!("not valid before {t}"));
        }
        if let Some(t) = self.not_after.filter(|t| now > *t) {
            return Some(format!("expired at {t}"));
        }
        None
    }
}

/// The parsed key policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPolicy {
    pub windows: BTreeMap<String, Window>,
    pub revoked: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    keys: BTreeMap<String, WindowFile>,
    #[serde(default)]
    revoked: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct WindowFile {
    not_before: Option<String>,
    not_after: Option<String>,
}

impl KeyPolicy {
    /// Parse the policy file's text; errors name the key and field.
    pub fn parse(text: &str) -> Result<KeyPolicy, String> {
        let file: File = serde_yaml_ng::from_str(text).map_err(|e| {
            format!("{FILE_NAME}: {e}; expected `keys: {{NAME.pem: {{notBefore: RFC3339, notAfter: RFC3339}}}}` and `revoked: [NAME.pem]`")
        })?;
        let mut windows = BTreeMap::new();
        for (name, w) in file.keys {
            let time = |field: &str, v: Option<String>| -> Result<Option<Timestamp>, String> {
                v.map(|v| {
                    v.parse::<Timestamp>().map_err(|e| {
                        format!("{FILE_NAME}: keys.{name}.{field} {v:?} is not an RFC 3339 time such as 2027-01-01T00:00:00Z ({e})")
                    })
                })
                .transpose()
            };
            let window = Window {
                not_before: time("notBefore", w.not_before)?,
                not_after: time("notAfter", w.not_after)?,
            };
            windows.insert(name, window);
        }
        Ok(KeyPolicy {
            windows,
            revoked: file.revoked,
        })
    }

    /// Give each key its window and revocation.
    pub fn apply(&self, keys: &mut [TrustedKey]) {
        for key in keys {
            (key.window, key.revoked) = self.state(&key.name);
        }
    }

    /// The window and revocation of the key named `name`.
    pub fn state(&self, name: &str) -> (Window, bool) {
        let window = self.windows.get(name).copied().unwrap_or_default();
        (window, self.revoked.iter().any(|r| r == name))
    }
}

/// What verification asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requirement {
    /// Accept signatures over payload v1 (the image alone), with a warning.
    pub accept_v1: bool,
    /// Distinct valid keys needed (at least 1: zero never means "anything").
    pub min_signers: usize,
}

impl Default for Requirement {
    fn default() -> Requirement {
        Requirement {
            accept_v1: false,
            min_signers: 1,
        }
    }
}

/// Signatures that count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The keys whose signatures count, in key order.
    pub keys: Vec<String>,
    /// Set when the signatures that count cover only payload v1: admission warns.
    pub weaker: Option<String>,
}

/// Whether `signers` (see [`super::signers`]) are enough at `now`: a revoked key refuses
/// everything it signed; expired and not-yet-valid keys do not count; v1 counts only when
/// allowed; at least `min_signers` distinct keys must remain.
pub fn accept(
    signers: &[Signer],
    keys: &[TrustedKey],
    requirement: &Requirement,
    now: Timestamp,
) -> Result<Accepted, SignatureError> {
    let key_of = |name: &str| keys.iter().find(|k| k.name == name);
    if let Some(s) = signers
        .iter()
        .find(|s| key_of(&s.key).is_some_and(|k| k.revoked))
    {
        return Err(SignatureError::Revoked { key: s.key.clone() });
    }
    let mut outside = None;
    let mut only_v1 = None;
    let mut counted = Vec::new();
    for s in signers {
        let Some(key) = key_of(&s.key) else { continue };
        if let Some(why) = key.window.outside(now) {
            outside.get_or_insert((s.key.clone(), why));
        } else if s.version == PayloadVersion::V1 && !requirement.accept_v1 {
            only_v1.get_or_insert(s.key.clone());
        } else {
            counted.push(s);
        }
    }
    let need = requirement.min_signers.max(1);
    if counted.len() >= need {
        let weaker = counted
            .iter()
            .all(|s| s.version == PayloadVersion::V1)
            .then(|| {
                "its signature covers only payload v1 (the image name, tag and id), not the deploy and config templates: re-sign it with `kubectl appimage sign` (payload v2)".to_string()
            });
        let keys = counted.iter().map(|s| s.key.clone()).collect();
        return Ok(Accepted { keys, weaker });
    }
    match (counted.is_empty(), outside, only_v1) {
        (true, Some((key, why)), _) => Err(SignatureError::OutsideWindow { key, why }),
        (true, None, Some(key)) => Err(SignatureError::OnlyV1 { key }),
        _ => Err(SignatureError::TooFew {
            have: counted.len(),
            need,
            keys: counted
                .iter()
                .map(|s| s.key.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}
