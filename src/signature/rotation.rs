//! What removing or revoking one trusted key would break, before it happens
//! (`kubectl appimage keys plan-rotation`): pure over the AppImages, revisions and keys given.

use std::path::Path;

use jiff::Timestamp;

use super::{Requirement, TrustedKey, accept, signers};
use crate::resource::AppImage;

/// One AppImage or revision that runs today and would not after the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breakage {
    /// What breaks, e.g. `appimage/x` or `revision/x-3`.
    pub subject: String,
    /// Whether it breaks when the key is removed from the trusted keys.
    pub if_removed: Option<String>,
    /// Whether it breaks when the key is revoked.
    pub if_revoked: Option<String>,
}

/// The trusted key `name` names: its name, or its file name when keys are named by path.
pub fn find<'k>(keys: &'k [TrustedKey], name: &str) -> Result<&'k TrustedKey, String> {
    let file = |k: &TrustedKey| {
        Path::new(&k.name)
            .file_name()
            .map(|f| f.to_string_lossy() == name)
    };
    keys.iter()
        .find(|k| k.name == name || file(k) == Some(true))
        .ok_or_else(|| {
            let names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
            format!(
                "no trusted key is named {name:?} (trusted: {}); pass one of those names to --remove",
                names.join(", ")
            )
        })
}

/// Each `(subject, image)` that verifies under `keys` today and would not without, or with a
/// revocation of, the key `remove`.
pub fn plan(
    subjects: &[(String, &AppImage)],
    keys: &[TrustedKey],
    remove: &str,
    requirement: &Requirement,
    now: Timestamp,
) -> Result<Vec<Breakage>, String> {
    let target = find(keys, remove)?.name.clone();
    let removed: Vec<TrustedKey> = keys.iter().filter(|k| k.name != target).cloned().collect();
    let mut revoked = keys.to_vec();
    for k in &mut revoked {
        k.revoked |= k.name == target;
    }
    let check = |image: &AppImage, keys: &[TrustedKey]| {
        signers(image, keys).and_then(|s| accept(&s, keys, requirement, now))
    };
    let mut out = Vec::new();
    for (subject, image) in subjects {
        if check(image, keys).is_err() {
            continue; // broken already: not this change's doing
        }
        let if_removed = check(image, &removed).err().map(|e| e.to_string());
        let if_revoked = check(image, &revoked).err().map(|e| e.to_string());
        if if_removed.is_some() || if_revoked.is_some() {
            out.push(Breakage {
                subject: subject.clone(),
                if_removed,
                if_revoked,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::tests::{EC_PRIVATE as EC, ED_PRIVATE as ED};
    use crate::signature::{join_signatures, payload, public_key_pem, sign};

    fn image(name: &str, by: &[&str]) -> AppImage {
        let mut img: AppImage = serde_json::from_value(serde_json::json!({
            "apiVersion": "kuscia.secretflow/v1alpha1", "kind": "AppImage",
            "metadata": {"name": name},
            "spec": {"image": {"name": "busybox", "tag": "1"}, "deployTemplates": []}
        }))
        .unwrap();
        for key in by {
            let sig = sign(&payload(&img), key).unwrap();
            img.spec.image.sign = Some(join_signatures(img.spec.image.sign.as_deref(), &sig));
        }
        img
    }

    #[test]
    fn lists_what_breaks_by_removal_and_by_revocation() {
        let keys: Vec<TrustedKey> = [("dir/a.pub", EC), ("dir/b.pub", ED)]
            .iter()
            .map(|(n, p)| TrustedKey::from_pem(n, &public_key_pem(p).unwrap()).unwrap())
            .collect();
        let (only_a, both, only_b, unsigned) = (
            image("only-a", &[EC]),
            image("both", &[EC, ED]),
            image("only-b", &[ED]),
            image("unsigned", &[]),
        );
        let subjects: Vec<(String, &AppImage)> = [&only_a, &both, &only_b, &unsigned]
            .into_iter()
            .map(|i| {
                (
                    format!("appimage/{}", i.metadata.name.as_deref().unwrap()),
                    i,
                )
            })
            .collect();
        let now = "2026-12-07T00:00:00Z".parse().unwrap();
        let plan = plan(&subjects, &keys, "a.pub", &Requirement::default(), now).unwrap();
        let names: Vec<&str> = plan.iter().map(|b| b.subject.as_str()).collect();
        assert_eq!(names, ["appimage/only-a", "appimage/both"]);
        assert!(plan[0].if_removed.is_some() && plan[0].if_revoked.is_some());
        // Another key still signs it: removal leaves it running, revocation does not.
        assert_eq!(plan[1].if_removed, None);
        assert!(
            plan[1]
                .if_revoked
                .as_deref()
                .unwrap()
                .contains("dir/a.pub, which is revoked")
        );
        let unknown = super::plan(&subjects, &keys, "c.pub", &Requirement::default(), now);
        assert!(
            unknown
                .unwrap_err()
                .contains("no trusted key is named \"c.pub\"")
        );
    }
}
