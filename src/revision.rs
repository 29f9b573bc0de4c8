//! AppImage revisions (issue 17, section 3): every distinct spec of an AppImage becomes an
//! immutable, numbered, cluster-scoped `AppImageRevision`, and workloads run the revision their
//! pod template names. The pure rules live here: the revision's name, the next number, which
//! revisions to prune, which revision a pod template names, and what the rollout controller
//! does with a workload when the AppImage moves to a new revision.
//!
//! - **Numbered names** `<appimage>-<number>`: numbers are what `history`, `diff` and
//!   `rollback --to-revision N` speak, and what a BatchDeployment pins; the hash is kept in the
//!   spec. An equal spec (a rollback) is the same revision again, not a new number.
//! - A name too long for 253 characters keeps a prefix of the AppImage's name and a short hash
//!   of the whole name, so that two long names never share revisions.

use std::collections::{BTreeMap, BTreeSet};

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use crate::labels::{CHANGE_CAUSE, HISTORY_LIMIT, LATEST, REVISION, REVISION_HASH};
use crate::resource::AppImageSpec;

/// `appimagerevisions.appimage.kuscia.secretflow`, as kubectl names the resource.
pub const RESOURCE: &str = "appimagerevisions.appimage.kuscia.secretflow";
/// Kept revisions when the AppImage does not say.
pub const DEFAULT_HISTORY_LIMIT: usize = 10;
/// Longest object name (a DNS subdomain).
const MAX_NAME: usize = 253;

/// One immutable revision of an AppImage's spec.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "appimage.kuscia.secretflow",
    version = "v1alpha1",
    kind = "AppImageRevision",
    plural = "appimagerevisions",
    shortname = "air",
    doc = "AppImageRevision is an immutable copy of one spec of an AppImage, numbered; workloads run the revision their pod template names.",
    validation = kube::core::Rule::new("!has(oldSelf.spec) || self.spec == oldSelf.spec")
        .message("an AppImageRevision is immutable: change the AppImage instead"),
    selectable = ".spec.appImage",
    printcolumn = r#"{"name":"AppImage","type":"string","jsonPath":".spec.appImage"}"#,
    printcolumn = r#"{"name":"Revision","type":"integer","jsonPath":".spec.revision"}"#,
    printcolumn = r#"{"name":"Hash","type":"string","jsonPath":".spec.hash"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AppImageRevisionSpec {
    /// The AppImage this is a revision of.
    pub app_image: String,
    /// 1 for the first spec, one more for each new distinct spec.
    pub revision: i64,
    /// `revision_hash` of `template`.
    pub hash: String,
    /// The AppImage's kubernetes.io/change-cause annotation when this spec was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_cause: Option<String>,
    /// The AppImage's task id annotation when this spec was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// The AppImage spec, as it was.
    pub template: AppImageSpec,
}

/// The CRD, as generated from the type.
pub fn crd()
-> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    use kube::CustomResourceExt;
    AppImageRevision::crd()
}

/// The CRD as YAML, committed under charts/appimage-webhook/crds/.
pub fn crd_yaml() -> String {
    crate::resource::crd_yaml_of(&crd(), "appimage::revision")
}

/// The object name of revision `number` of AppImage `appimage`.
pub fn revision_name(appimage: &str, number: i64) -> String {
    let suffix = format!("-{number}");
    if appimage.len() + suffix.len() <= MAX_NAME {
        return format!("{appimage}{suffix}");
    }
    let short = crate::naming::short_hash(appimage, 8);
    let keep = MAX_NAME - suffix.len() - short.len() - 1;
    let mut cut = keep;
    while !appimage.is_char_boundary(cut) {
        cut -= 1;
    }
    let prefix = appimage[..cut].trim_end_matches(['-', '.']);
    format!("{prefix}-{short}{suffix}")
}

/// The number a new spec gets: one more than the highest recorded (1 for the first).
pub fn next_number(recorded: &[i64]) -> i64 {
    recorded.iter().copied().max().unwrap_or(0) + 1
}

/// The number a new spec gets: [`next_number`], moved past every name another object holds,
/// so a squatted `<appimage>-N` is skipped rather than fought over forever (issue 24).
pub fn next_free(recorded: &[i64], taken: impl Fn(i64) -> bool) -> i64 {
    let mut number = next_number(recorded);
    while taken(number) {
        number += 1;
    }
    number
}

/// The history limit an AppImage's annotations ask for; a bad value is an error that says how
/// to fix it (and the caller keeps everything meanwhile).
pub fn history_limit(annotations: Option<&BTreeMap<String, String>>) -> Result<usize, String> {
    match annotations.and_then(|a| a.get(HISTORY_LIMIT)) {
        None => Ok(DEFAULT_HISTORY_LIMIT),
        Some(v) => v.trim().parse::<usize>().map_err(|_| {
            format!("annotation {HISTORY_LIMIT}={v:?} is not a count: set it to a whole number such as 10")
        }),
    }
}

/// The revisions to delete: beyond the newest `limit`, never `current` nor one in use.
pub fn to_prune(
    recorded: &[i64],
    limit: usize,
    current: Option<i64>,
    in_use: &BTreeSet<i64>,
) -> Vec<i64> {
    let mut numbers: Vec<i64> = recorded.to_vec();
    numbers.sort_unstable_by(|a, b| b.cmp(a));
    numbers.dedup();
    numbers
        .into_iter()
        .skip(limit)
        .filter(|n| Some(*n) != current && !in_use.contains(n))
        .collect()
}

/// How a pod template (or a Pod) names its revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Named {
    /// No revision annotation: the AppImage's current spec.
    Current,
    Number(i64),
    /// Both a number and a hash (what a rollout writes): the number's revision must have that
    /// hash, so a number reused for another spec never changes what the Pod runs (issue 24).
    Pinned {
        number: i64,
        hash: String,
    },
    Hash(String),
}

/// The revision that annotations name; a malformed number is an error saying how to fix it.
pub fn named(annotations: Option<&BTreeMap<String, String>>) -> Result<Named, String> {
    match annotations {
        None => Ok(Named::Current),
        Some(a) => named_by(|key| a.get(key).map(String::as_str)),
    }
}

/// [`named`] over an annotation lookup (admission reads them borrowed from the request).
pub fn named_by<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Named, String> {
    if let Some(v) = get(REVISION) {
        let hash = get(REVISION_HASH).map(str::trim).filter(|h| !h.is_empty());
        return match (v.trim().parse::<i64>(), hash) {
            (Ok(n), Some(h)) if n > 0 => Ok(Named::Pinned {
                number: n,
                hash: h.to_string(),
            }),
            (Ok(n), None) if n > 0 => Ok(Named::Number(n)),
            _ => Err(format!(
                "annotation {REVISION}={v:?} is not a revision number: set it to one that kubectl appimage history lists, or remove it to run the current spec"
            )),
        };
    }
    Ok(get(REVISION_HASH).map_or(Named::Current, |h| Named::Hash(h.to_string())))
}

/// The API group and kind a revision's owner reference names.
const OWNER_GROUP: &str = "kuscia.secretflow";
const OWNER_KIND: &str = "AppImage";

/// The UID of the AppImage that owns `rev`: its controller owner reference of kind AppImage
/// named `spec.appImage` (the one the revisions controller writes).
pub fn owner_uid(rev: &AppImageRevision) -> Option<&str> {
    rev.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| {
            o.controller == Some(true)
                && o.kind == OWNER_KIND
                && o.api_version.split('/').next() == Some(OWNER_GROUP)
                && o.name == rev.spec.app_image
        })
        .map(|o| o.uid.as_str())
}

/// What a revision says about itself (issue 24): its name is `<appimage>-<number>`, its hash
/// is its template's, and it names an owning AppImage. A revision failing this was not written
/// by the controllers, so nothing reads it.
pub fn check_intrinsic(rev: &AppImageRevision) -> Result<(), String> {
    let name = rev.metadata.name.as_deref().unwrap_or_default();
    let spec = &rev.spec;
    let forged = |why: String| {
        Err(format!(
            "AppImageRevision {name:?} is ignored: {why}; the controllers did not write it (only they may), so delete it: kubectl delete {RESOURCE} {name}"
        ))
    };
    let expected = revision_name(&spec.app_image, spec.revision);
    if spec.revision < 1 || name != expected {
        return forged(format!(
            "revision {} of AppImage {:?} must be named {expected:?}",
            spec.revision, spec.app_image
        ));
    }
    let actual = crate::workload::revision_hash(&spec.template);
    if actual != spec.hash {
        return forged(format!(
            "its hash {:?} is not its template's ({actual:?})",
            spec.hash
        ));
    }
    if owner_uid(rev).is_none() {
        return forged(format!(
            "it has no controller owner reference to AppImage {:?}",
            spec.app_image
        ));
    }
    Ok(())
}

/// [`check_intrinsic`], and the owner is the AppImage of UID `appimage_uid` (not an earlier
/// AppImage of the same name, whose revisions the garbage collector is yet to remove).
pub fn check(rev: &AppImageRevision, appimage_uid: &str) -> Result<(), String> {
    check_intrinsic(rev)?;
    let name = rev.metadata.name.as_deref().unwrap_or_default();
    let owner = owner_uid(rev).unwrap_or_default();
    check_owner(name, &rev.spec.app_image, owner, appimage_uid)
}

/// The owner half of [`check`], for a revision known by its name, AppImage and owner UID.
pub fn check_owner(
    name: &str,
    appimage: &str,
    owner: &str,
    appimage_uid: &str,
) -> Result<(), String> {
    if owner == appimage_uid {
        return Ok(());
    }
    Err(format!(
        "AppImageRevision {name:?} is ignored: it belongs to an AppImage {appimage:?} of UID {owner}, not to the current one (UID {appimage_uid}); the garbage collector removes it, or delete it: kubectl delete {RESOURCE} {name}"
    ))
}

/// A Pod pinned to revision `number` with `hash` gets that spec or nothing: when the number now
/// has another hash (the AppImage was deleted and re-created, so numbers started again), the
/// error says so.
pub fn check_pin(appimage: &str, number: i64, hash: &str, recorded: &str) -> Result<(), String> {
    if hash == recorded {
        return Ok(());
    }
    Err(format!(
        "the Pod pins revision {number} of AppImage {appimage:?} with hash {hash}, but revision {number} now has hash {recorded} (the AppImage was re-created, or the revision replaced), so the spec the Pod was made for is gone: roll the workload to a revision that kubectl appimage history {appimage} lists, or remove the annotations {REVISION} and {REVISION_HASH} to run the current spec"
    ))
}

/// A revision as the rollout rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub number: i64,
    pub hash: String,
}

/// The number a [`Named`] resolves to among `recorded`; `None` for [`Named::Current`] and for
/// what no recorded revision matches.
pub fn resolve(named: &Named, recorded: &[Known]) -> Option<i64> {
    match named {
        Named::Current => None,
        Named::Number(n) => recorded.iter().any(|k| k.number == *n).then_some(*n),
        Named::Pinned { number, hash } => recorded
            .iter()
            .any(|k| k.number == *number && &k.hash == hash)
            .then_some(*number),
        Named::Hash(h) => recorded.iter().find(|k| &k.hash == h).map(|k| k.number),
    }
}

/// The revisions in use, which are never pruned: each one that a pod template or a Pod names
/// (`annotations`: every workload's template, Auto or Manual, a BatchDeployment's per-node
/// workloads', the old ReplicaSets' that `kubectl rollout undo` goes back to, and live Pods'),
/// and each number a BatchDeployment pins (`pins`). Only recorded revisions count; a malformed
/// annotation names none.
pub fn in_use<'a>(
    annotations: impl IntoIterator<Item = Option<&'a BTreeMap<String, String>>>,
    pins: impl IntoIterator<Item = i64>,
    recorded: &[Known],
) -> BTreeSet<i64> {
    let named = annotations
        .into_iter()
        .filter_map(|a| named(a).ok())
        .filter_map(|n| resolve(&n, recorded));
    let pinned = pins
        .into_iter()
        .filter(|n| recorded.iter().any(|k| k.number == *n));
    named.chain(pinned).collect()
}

/// Whether a workload follows new revisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Auto,
    Manual,
}

/// What the rollout controller does with one workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// It already acted on the current revision (a user's `rollout undo` stays).
    Nothing,
    /// Note the current revision as acted on; the template already runs it.
    Record,
    /// Point the pod template at the current revision (from the one it runs, if known).
    Roll { from: Option<i64> },
    /// Manual: note it and report the workload outdated.
    Outdated { runs: Option<i64> },
}

/// The rollout rule: act only on a revision not yet acted on, so a user's change stays until
/// the AppImage changes again.
pub fn step(policy: Policy, acted: Option<i64>, runs: Option<i64>, current: i64) -> Step {
    if acted == Some(current) {
        return Step::Nothing;
    }
    if runs == Some(current) {
        return Step::Record;
    }
    match policy {
        Policy::Auto => Step::Roll { from: runs },
        Policy::Manual => Step::Outdated { runs },
    }
}

/// The policy an update-policy annotation value names (absent: Auto).
pub fn policy(value: Option<&str>) -> Result<Policy, String> {
    match value.map(str::trim) {
        None | Some("" | "Auto") => Ok(Policy::Auto),
        Some("Manual") => Ok(Policy::Manual),
        Some(other) => Err(format!(
            "annotation {}={other:?}: use Auto or Manual",
            crate::workload::UPDATE_POLICY
        )),
    }
}

// Every distinct AppImage spec is identified by the sha256 of its canonical JSON, so equal
// specs share a revision whatever their key order or formatting.

/// Lower-case hex sha256 of the spec's [`canonical_json`].
pub fn revision_hash(spec: &AppImageSpec) -> String {
    let value = serde_json::to_value(spec).unwrap_or(Value::Null);
    base16ct::lower::encode_string(&Sha256::digest(canonical_json(&value).as_bytes()))
}

/// Compact JSON with every object's keys sorted, whatever order the map kept them in.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write(value, &mut out);
    out
}

fn write(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_numbered_and_fit() {
        assert_eq!(revision_name("secretflow-image", 3), "secretflow-image-3");
        let long = "a".repeat(253);
        let name = revision_name(&long, 12);
        assert_eq!(name.len(), 253);
        assert!(name.ends_with("-12"));
        let other = format!("{}b", "a".repeat(252));
        assert_ne!(revision_name(&other, 12), name);
        let dotted = format!("{}.{}", "a".repeat(239), "b".repeat(20));
        assert!(revision_name(&dotted, 1).len() <= 253);
    }

    #[test]
    fn next_number_is_one_more_than_the_highest() {
        assert_eq!(next_number(&[]), 1);
        assert_eq!(next_number(&[1, 3, 2]), 4);
    }

    #[test]
    fn prune_keeps_the_newest_the_current_and_those_in_use() {
        let recorded: Vec<i64> = (1..=14).collect();
        let in_use = BTreeSet::from([2]);
        assert_eq!(to_prune(&recorded, 10, Some(1), &in_use), vec![4, 3]);
        assert_eq!(to_prune(&recorded, 20, None, &in_use), Vec::<i64>::new());
        assert_eq!(to_prune(&[1, 2], 0, None, &BTreeSet::new()), vec![2, 1]);
    }

    #[test]
    fn history_limit_defaults_and_refuses_nonsense() {
        assert_eq!(history_limit(None), Ok(10));
        let a = BTreeMap::from([(HISTORY_LIMIT.to_string(), "3".to_string())]);
        assert_eq!(history_limit(Some(&a)), Ok(3));
        let bad = BTreeMap::from([(HISTORY_LIMIT.to_string(), "-1".to_string())]);
        assert!(
            history_limit(Some(&bad))
                .unwrap_err()
                .contains("whole number")
        );
    }

    #[test]
    fn a_template_names_a_revision_by_number_then_hash() {
        let known = [
            Known {
                number: 1,
                hash: "aa".into(),
            },
            Known {
                number: 2,
                hash: "bb".into(),
            },
        ];
        let ann = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        // Both: the number's revision must have the hash (1 is "aa", 2 is not).
        let both = ann(&[(REVISION, "2"), (REVISION_HASH, "aa")]);
        let pinned = named(Some(&both)).unwrap();
        assert_eq!(resolve(&pinned, &known), None);
        let both = ann(&[(REVISION, "2"), (REVISION_HASH, "bb")]);
        assert_eq!(resolve(&named(Some(&both)).unwrap(), &known), Some(2));
        assert_eq!(named(Some(&ann(&[(REVISION, "2")]))), Ok(Named::Number(2)));
        assert_eq!(resolve(&Named::Number(2), &known), Some(2));
        let hash = named(Some(&ann(&[(REVISION_HASH, "aa")]))).unwrap();
        assert_eq!(resolve(&hash, &known), Some(1));
        assert_eq!(resolve(&Named::Hash("cc".into()), &known), None);
        assert_eq!(resolve(&Named::Number(7), &known), None);
        assert_eq!(named(None), Ok(Named::Current));
        assert!(
            named(Some(&ann(&[(REVISION, "x")])))
                .unwrap_err()
                .contains("history")
        );
        assert!(named(Some(&ann(&[(REVISION, "0")]))).is_err());
    }

    #[test]
    fn the_rollout_rule_acts_once_per_new_revision() {
        use Policy::*;
        // Already acted on 2: a user's undo to 1 stays.
        assert_eq!(step(Auto, Some(2), Some(1), 2), Step::Nothing);
        assert_eq!(
            step(Auto, Some(1), Some(1), 2),
            Step::Roll { from: Some(1) }
        );
        assert_eq!(step(Auto, None, Some(2), 2), Step::Record);
        assert_eq!(step(Auto, None, None, 2), Step::Roll { from: None });
        assert_eq!(
            step(Manual, Some(1), Some(1), 2),
            Step::Outdated { runs: Some(1) }
        );
        // A Manual workload rolled by hand records the revision, no report.
        assert_eq!(step(Manual, Some(1), Some(2), 2), Step::Record);
        // A rollback to an older spec is a new revision to act on.
        assert_eq!(
            step(Auto, Some(2), Some(2), 1),
            Step::Roll { from: Some(2) }
        );
    }

    #[test]
    fn in_use_counts_templates_old_replicasets_pods_and_batch_pins() {
        let known: Vec<Known> = (1..=6)
            .map(|n| Known {
                number: n,
                hash: format!("h{n}"),
            })
            .collect();
        let ann = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        // A Manual workload left on 1, an old ReplicaSet (an undo target) on 2 by hash, a Pod
        // pinned to 3, a template with no revision (the current spec), a malformed one.
        let manual = ann(&[(REVISION, "1"), (REVISION_HASH, "h1")]);
        let old_rs = ann(&[(REVISION_HASH, "h2")]);
        let pod = ann(&[(REVISION, "3")]);
        let current = ann(&[]);
        let bad = ann(&[(REVISION, "x")]);
        let stale = ann(&[(REVISION, "4"), (REVISION_HASH, "other")]);
        let templates = [
            Some(&manual),
            Some(&old_rs),
            Some(&pod),
            Some(&current),
            Some(&bad),
            Some(&stale),
            None,
        ];
        // A BatchDeployment pins 5; another pins 9, never recorded.
        let used = in_use(templates, [5, 9], &known);
        assert_eq!(used, BTreeSet::from([1, 2, 3, 5]));
        assert_eq!(to_prune(&[1, 2, 3, 4, 5, 6], 1, Some(6), &used), vec![4]);
        assert!(in_use([None], [], &known).is_empty());
    }

    #[test]
    fn policies_default_to_auto() {
        assert_eq!(policy(None), Ok(Policy::Auto));
        assert_eq!(policy(Some("Manual")), Ok(Policy::Manual));
        assert!(
            policy(Some("manual"))
                .unwrap_err()
                .contains("Auto or Manual")
        );
    }

    fn recorded(app: &str, number: i64, owner: &str) -> AppImageRevision {
        let template: AppImageSpec = serde_json::from_value(serde_json::json!({
            "image": {"name": "x", "tag": "1"}, "deployTemplates": []
        }))
        .unwrap();
        let mut rev = AppImageRevision::new(
            &revision_name(app, number),
            AppImageRevisionSpec {
                app_image: app.into(),
                revision: number,
                hash: crate::workload::revision_hash(&template),
                change_cause: None,
                task_id: None,
                template,
            },
        );
        rev.metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "kuscia.secretflow/v1alpha1".into(),
                kind: "AppImage".into(),
                name: app.into(),
                uid: owner.into(),
                controller: Some(true),
                block_owner_deletion: None,
            },
        ]);
        rev
    }

    #[test]
    fn a_revision_is_trusted_only_as_the_controllers_write_it() {
        let good = recorded("a", 3, "u1");
        assert_eq!(check(&good, "u1"), Ok(()));
        let err = check(&good, "u2").unwrap_err();
        assert!(
            err.contains("not to the current one") && err.contains("u1"),
            "{err}"
        );

        let mut hash = good.clone();
        hash.spec.template.image.tag = "evil".into();
        let err = check_intrinsic(&hash).unwrap_err();
        assert!(
            err.contains("is not its template's") && err.contains("kubectl delete"),
            "{err}"
        );

        let mut squat = good.clone();
        squat.spec.revision = 1;
        let err = check_intrinsic(&squat).unwrap_err();
        assert!(err.contains("must be named \"a-1\""), "{err}");

        let mut orphan = good.clone();
        orphan.metadata.owner_references = None;
        assert!(
            check_intrinsic(&orphan)
                .unwrap_err()
                .contains("no controller owner")
        );
        let mut other = good.clone();
        other.metadata.owner_references.as_mut().unwrap()[0].name = "b".into();
        assert!(check_intrinsic(&other).is_err());
        let mut not_controller = good;
        not_controller.metadata.owner_references.as_mut().unwrap()[0].controller = None;
        assert!(check_intrinsic(&not_controller).is_err());
    }

    #[test]
    fn a_number_and_a_hash_must_agree() {
        let ann = BTreeMap::from([
            (REVISION.to_string(), "3".to_string()),
            (REVISION_HASH.to_string(), "hh".to_string()),
        ]);
        let pinned = named(Some(&ann)).unwrap();
        assert_eq!(
            pinned,
            Named::Pinned {
                number: 3,
                hash: "hh".into()
            }
        );
        let known = |hash: &str| {
            [Known {
                number: 3,
                hash: hash.into(),
            }]
        };
        assert_eq!(resolve(&pinned, &known("hh")), Some(3));
        assert_eq!(resolve(&pinned, &known("other")), None);
        assert_eq!(check_pin("a", 3, "hh", "hh"), Ok(()));
        let err = check_pin("a", 3, "hh", "other").unwrap_err();
        assert!(
            err.contains("re-created") && err.contains("history a"),
            "{err}"
        );
    }

    #[test]
    fn a_squatted_name_is_skipped() {
        assert_eq!(next_free(&[1, 2], |_| false), 3);
        assert_eq!(next_free(&[1, 2], |n| n == 3 || n == 4), 5);
        assert_eq!(next_free(&[], |n| n == 1), 2);
    }
}
