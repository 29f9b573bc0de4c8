//! `kubectl appimage set-image` (issue 19, section 2), the pure part: the AppImage after its
//! image changes, from the stored one and the flags. The plugin reads and writes; this decides.
//!
//! - `spec.image` gets the reference's name and tag (`latest` when none is given) and the
//!   image ID given with it as `id` (Kuscia's meaning: the config digest, [`crate::image_id`]);
//!   without one the old `id` goes, since it identified the old image. A reference with a
//!   manifest digest is refused: that digest is not an image ID, and writing it as one would
//!   make Kuscia's node agent refuse every Pod.
//! - The signature covers name, tag and id. With a signing key the new image is signed in the
//!   same write. Without one, a signed AppImage is refused (its signature would no longer
//!   verify and the webhook would deny its Pods) unless unsigned is allowed, which drops it.
//! - The change is recorded as the revisions controller reads it: `kubernetes.io/change-cause`
//!   and the task id annotation. A task id of an earlier change is removed, so a revision is
//!   never credited to the wrong task.
//! - A published AppImage's spec may not change: the stage rule the validating webhook applies
//!   ([`crate::stage::check_update`]) refuses it here first.

use crate::image_ref::ImageRef;
use crate::labels;
use crate::resource::{AppImage, ImageInfo};
use crate::revision::CHANGE_CAUSE;
use crate::signature::{self, SignatureError};
use crate::stage;

/// The AppImage annotation that records the task behind a change (read into revisions).
pub const TASK_ID: &str = labels::TASK_ID;

/// What the user asked for.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub image: &'a ImageRef,
    /// The image's ID (`sha256:…` config digest), written as `spec.image.id`.
    pub image_id: Option<&'a str>,
    /// A PEM private key to sign the new image with.
    pub signing_key: Option<&'a str>,
    /// Drop the signature of a signed AppImage instead of refusing.
    pub allow_unsigned: bool,
    /// `kubernetes.io/change-cause`; `None` records the command itself.
    pub change_cause: Option<&'a str>,
    pub task_id: Option<&'a str>,
}

#[derive(Debug, Clone)]
pub enum Outcome {
    /// The spec would not change: nothing to write.
    Unchanged,
    Updated(Box<AppImage>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetImageError {
    #[error("{0}")]
    Published(String),
    #[error(
        "AppImage {name:?} is signed, and its signature covers its name and whole spec (payload v2): after setting the image to {image} the old signature would no longer verify, and the webhook would deny its Pods; re-sign it in the same write with --key PRIVATE_KEY (the signer's key, whose public key the webhook trusts), or pass --allow-unsigned to drop the signature (only where the webhook does not require signatures)"
    )]
    WouldBreakSignature { name: String, image: String },
    #[error(
        "{image} names a manifest digest, and spec.image.id is the image ID (the config digest, as Kuscia's node agent compares it), not a manifest digest: give the tag and the image ID, e.g. kubectl appimage set-image {appimage} {name_tag} --image-id \"$(skopeo inspect --raw docker://{image} | jq -r .config.digest)\" (or the ID crictl inspecti shows); the webhook pins the manifest that has that ID"
    )]
    ManifestDigest {
        appimage: String,
        image: String,
        name_tag: String,
    },
    #[error(
        "spec.image.id {0:?} starts with sha256: but is not a digest: write sha256: followed by 64 lower-case hex digits"
    )]
    BadImageId(String),
    #[error("cannot sign the new image: {0}")]
    Sign(SignatureError),
}

/// The AppImage `old` becomes, or why it may not.
pub fn set_image(old: &AppImage, req: &Request) -> Result<Outcome, SetImageError> {
    if req.image.digest.is_some() {
        return Err(SetImageError::ManifestDigest {
            appimage: old.name().to_string(),
            image: req.image.to_string(),
            name_tag: format!("{}:{}", req.image.name, req.image.tag_or_default()),
        });
    }
    if let Some(id) = req.image_id
        && id.starts_with("sha256:")
        && !crate::resource::is_sha256_digest(id)
    {
        return Err(SetImageError::BadImageId(id.to_string()));
    }
    let mut new = old.clone();
    new.spec.image = image_info(&old.spec.image, req);
    if new.spec == old.spec {
        return Ok(Outcome::Unchanged);
    }
    // Signed after the change: payload v2 covers the AppImage's name and whole new spec.
    if let Some(pem) = req.signing_key {
        new.spec.image.sign = None;
        let sig = signature::sign(&signature::payload(&new), pem).map_err(SetImageError::Sign)?;
        new.spec.image.sign = Some(sig);
    }
    stage::check_update(old, &new).map_err(SetImageError::Published)?;
    if old.spec.image.sign.is_some() && new.spec.image.sign.is_none() && !req.allow_unsigned {
        return Err(SetImageError::WouldBreakSignature {
            name: old.name().to_string(),
            image: req.image.to_string(),
        });
    }
    record(&mut new, req);
    Ok(Outcome::Updated(Box::new(new)))
}

/// The new `spec.image`, unsigned: an unchanged image keeps its signature; a changed one loses
/// it (the caller signs it with a key, or refuses unless unsigned is allowed).
fn image_info(old: &ImageInfo, req: &Request) -> ImageInfo {
    let mut info = ImageInfo {
        name: req.image.name.clone(),
        tag: req.image.tag_or_default().to_string(),
        id: req.image_id.map(str::to_string),
        sign: None,
    };
    let same = info.name == old.name && info.tag == old.tag && info.id == old.id;
    if same {
        info.sign = old.sign.clone();
    }
    info
}

/// The change cause and task id, as the revisions controller records them.
fn record(new: &mut AppImage, req: &Request) {
    let cause = req.change_cause.map_or_else(
        || format!("kubectl appimage set-image {} {}", new.name(), req.image),
        str::to_string,
    );
    let annotations = new
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    annotations.insert(CHANGE_CAUSE.into(), cause);
    annotations.remove(labels::OPT_TASK_ID);
    match req.task_id {
        Some(id) => annotations.insert(TASK_ID.into(), id.to_string()),
        None => annotations.remove(TASK_ID),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image_ref::parse;
    use crate::signature::{TrustedKey, public_key_pem, verify};
    use serde_json::json;

    const KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgPLIyR0jvJ+Ezhv3s
hN0xk0U0wwsEXtHpamrmi+V6j/ahRANCAARaUWZtvOStU9E9U4DeUuzsEcJg9zu9
A++6nLxoZQAcm9bD+qzqEICxzjkKS3TIG3j5qaxa/4zlw6oKHkBv+x6L
-----END PRIVATE KEY-----
";
    const DIGEST: &str = "sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945";

    fn appimage(labels: serde_json::Value, sign: Option<&str>) -> AppImage {
        serde_json::from_value(json!({
            "apiVersion": "kuscia.secretflow/v1alpha1",
            "kind": "AppImage",
            "metadata": {
                "name": "app", "labels": labels,
                "annotations": {TASK_ID: "old-task", labels::OPT_TASK_ID: "older", "keep": "me"}
            },
            "spec": {
                "image": {"name": "team/app", "tag": "1", "id": "abc", "sign": sign},
                "deployTemplates": []
            }
        }))
        .unwrap()
    }

    fn request<'a>(image: &'a ImageRef) -> Request<'a> {
        Request {
            image,
            image_id: None,
            signing_key: None,
            allow_unsigned: false,
            change_cause: None,
            task_id: None,
        }
    }

    fn updated(outcome: Result<Outcome, SetImageError>) -> AppImage {
        match outcome {
            Ok(Outcome::Updated(img)) => *img,
            other => panic!("not updated: {other:?}"),
        }
    }

    fn annotation<'a>(img: &'a AppImage, key: &str) -> Option<&'a str> {
        img.metadata
            .annotations
            .as_ref()?
            .get(key)
            .map(String::as_str)
    }

    #[test]
    fn an_unsigned_appimage_gets_name_tag_and_the_image_id() {
        let old = appimage(json!({}), None);
        let r = parse("registry.example.com/team/app:2").unwrap();
        let req = Request {
            image_id: Some(DIGEST),
            ..request(&r)
        };
        let new = updated(set_image(&old, &req));
        let img = &new.spec.image;
        assert_eq!(img.name, "registry.example.com/team/app");
        assert_eq!(img.tag, "2");
        assert_eq!(img.id.as_deref(), Some(DIGEST));
        assert_eq!(img.sign, None);
        // Without a digest the old id goes, and no tag means latest.
        let new = updated(set_image(&old, &request(&parse("team/app2").unwrap())));
        assert_eq!(
            (new.spec.image.tag.as_str(), new.spec.image.id),
            ("latest", None)
        );
        // Only spec.image changed in the spec.
        assert_eq!(new.spec.deploy_templates, old.spec.deploy_templates);
    }

    #[test]
    fn the_change_is_recorded_and_an_old_task_id_goes() {
        let old = appimage(json!({}), None);
        let r = parse("team/app:2").unwrap();
        let new = updated(set_image(&old, &request(&r)));
        assert_eq!(
            annotation(&new, CHANGE_CAUSE),
            Some("kubectl appimage set-image app team/app:2")
        );
        assert_eq!(annotation(&new, TASK_ID), None);
        assert_eq!(annotation(&new, labels::OPT_TASK_ID), None);
        assert_eq!(annotation(&new, "keep"), Some("me"));
        let req = Request {
            change_cause: Some("release 2"),
            task_id: Some("cfthf85s99bgu9olqr50"),
            ..request(&r)
        };
        let new = updated(set_image(&old, &req));
        assert_eq!(annotation(&new, CHANGE_CAUSE), Some("release 2"));
        assert_eq!(annotation(&new, TASK_ID), Some("cfthf85s99bgu9olqr50"));
    }

    #[test]
    fn a_key_signs_the_new_image_in_the_same_write() {
        let old = appimage(json!({}), Some("b2xk"));
        let r = parse("team/app:2").unwrap();
        let req = Request {
            image_id: Some(DIGEST),
            signing_key: Some(KEY),
            ..request(&r)
        };
        let new = updated(set_image(&old, &req));
        let public = public_key_pem(KEY).unwrap();
        let keys = [TrustedKey::from_pem("k.pub", &public).unwrap()];
        let now = "2026-12-07T00:00:00Z".parse().unwrap();
        let ok = verify(&new, &keys, &Default::default(), now).unwrap();
        assert_eq!(ok.keys, ["k.pub"]);
        // The same request again changes nothing (signatures are deterministic).
        assert!(matches!(set_image(&new, &req), Ok(Outcome::Unchanged)));
        let bad = Request {
            signing_key: Some("not a key"),
            ..request(&r)
        };
        assert!(matches!(
            set_image(&old, &bad),
            Err(SetImageError::Sign(SignatureError::BadKey { .. }))
        ));
    }

    #[test]
    fn a_signed_appimage_refuses_a_change_that_would_break_its_signature() {
        let old = appimage(json!({}), Some("b2xk"));
        let r = parse("team/app:2").unwrap();
        let err = set_image(&old, &request(&r)).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("AppImage \"app\" is signed"), "{text}");
        assert!(text.contains("would no longer verify"), "{text}");
        assert!(
            text.contains("--key") && text.contains("--allow-unsigned"),
            "{text}"
        );
        let req = Request {
            allow_unsigned: true,
            ..request(&r)
        };
        assert_eq!(updated(set_image(&old, &req)).spec.image.sign, None);
        // Setting the image it already has keeps the signature and writes nothing.
        let same = ImageRef {
            name: "team/app".into(),
            tag: Some("1".into()),
            digest: None,
        };
        let mut pinned = old.clone();
        pinned.spec.image.id = None;
        assert!(matches!(
            set_image(&pinned, &request(&same)),
            Ok(Outcome::Unchanged)
        ));
    }

    #[test]
    fn a_manifest_digest_is_refused_as_an_image_id_with_the_way_to_the_image_id() {
        let old = appimage(json!({}), None);
        let r = parse(&format!("team/app:2@{DIGEST}")).unwrap();
        let text = set_image(&old, &request(&r)).unwrap_err().to_string();
        assert!(text.contains("names a manifest digest"), "{text}");
        assert!(
            text.contains("set-image app team/app:2 --image-id"),
            "{text}"
        );
        let tagged = parse("team/app:2").unwrap();
        let bad = Request {
            image_id: Some("sha256:short"),
            ..request(&tagged)
        };
        let text = set_image(&old, &bad).unwrap_err().to_string();
        assert!(text.contains("64 lower-case hex"), "{text}");
    }

    #[test]
    fn a_published_appimage_is_refused_with_the_stage_rules_message() {
        let old = appimage(json!({labels::STAGE: "published"}), None);
        let err = set_image(&old, &request(&parse("team/app:2").unwrap())).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("is published"), "{text}");
        assert!(text.contains("kubectl appimage draft app"), "{text}");
        // A deprecated or draft one may change.
        for stage in ["deprecated", "draft"] {
            let old = appimage(json!({labels::STAGE: stage}), None);
            updated(set_image(&old, &request(&parse("team/app:2").unwrap())));
        }
    }
}
