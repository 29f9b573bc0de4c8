//! What `spec.image.id` means, and the manifest a Pod is pinned to (issue 27).
//!
//! Kuscia's `image.id` is the **image ID**: the config digest that `crictl inspecti` or
//! `docker images --no-trunc` show, which Kuscia's node agent compares with the runtime's image
//! (when the id starts with `sha256:`). It is not a manifest digest, so `name@<id>` names a
//! manifest that does not exist. Containers therefore run `name:tag`
//! ([`crate::resource::ImageInfo::reference`]) and carry the id in an annotation, as in Kuscia.
//!
//! The webhook does what Kuscia's node agent does, before the Pod exists: it reads the manifest
//! `name:tag` has in its registry (once per image and id) and [`pin`]s the Pod to that manifest
//! when its config digest is the signed image id; otherwise the Pod is denied, so a tag that
//! holds other bytes than were signed (Kuscia issue #774) never runs. This module decides; the
//! webhook's registry shell reads.

use crate::resource::{ImageInfo, is_sha256_digest};

/// What the registry serves for `name:tag` on the node's platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The manifest's digest (what `name@sha256:…` pulls).
    pub manifest: String,
    /// Its config digest: the image ID.
    pub config: String,
}

/// The reference a Pod runs after the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinned {
    /// `name@<manifest digest>`.
    pub reference: String,
    /// Said on every Pod admitted this way.
    pub warning: Option<String>,
}

/// The image id to check: a sha256 digest, as Kuscia's node agent checks only those.
pub fn checked_id(image: &ImageInfo) -> Option<&str> {
    image.id.as_deref().filter(|id| is_sha256_digest(id))
}

/// The reference to run for `image`, whose `name:tag` the registry says is `found`; or why
/// no Pod of it may run. Only for an image with a [`checked_id`].
pub fn pin(image: &ImageInfo, found: &Found) -> Result<Pinned, String> {
    let id = checked_id(image).unwrap_or_default();
    let name_tag = format!("{}:{}", image.name, image.tag);
    let reference = format!("{}@{}", image.name, found.manifest);
    if id == found.config {
        return Ok(Pinned {
            reference,
            warning: None,
        });
    }
    if id == found.manifest {
        // This project's earlier meaning: still the signed bytes, but Kuscia refuses it.
        let warning = format!(
            "spec.image.id {id} is the manifest digest of {name_tag}, not its image ID {config}: Kuscia's node agent compares image.id with the image ID and would refuse this Pod; set image.id to {config} (kubectl appimage set-image NAME {name_tag} --image-id {config}) and sign again",
            config = found.config
        );
        return Ok(Pinned {
            reference,
            warning: Some(warning),
        });
    }
    Err(format!(
        "spec.image.id {id} is not the image ID of {name_tag}: its registry serves image ID {config} (manifest {manifest}), so the tag holds other bytes than were signed (moved or rebuilt, as in Kuscia issue #774); push the signed image under that tag again, or point the AppImage at the new image (kubectl appimage set-image NAME {name_tag} --image-id {config}) and sign it",
        config = found.config,
        manifest = found.manifest
    ))
}

/// What offline output (`render`, `deploy --dry-run=client`) cannot know about `image`.
pub fn offline_note(image: &ImageInfo) -> Option<String> {
    let id = checked_id(image)?;
    Some(format!(
        "spec.image.id {id} is the image ID (as in Kuscia), checked against the registry by the webhook (--verify-image-ids), which then pins the Pod to the manifest of {name}:{tag} that has it; offline that cannot be known, so this output names {name}:{tag}",
        name = image.name,
        tag = image.tag
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn image(id: Option<String>) -> ImageInfo {
        ImageInfo {
            name: "registry.local/app".into(),
            tag: "1.0".into(),
            id,
            sign: None,
        }
    }

    fn found() -> Found {
        Found {
            manifest: digest('f'),
            config: digest('c'),
        }
    }

    #[test]
    fn an_image_id_pins_the_manifest_that_has_it() {
        let pinned = pin(&image(Some(digest('c'))), &found()).unwrap();
        assert_eq!(
            pinned.reference,
            format!("registry.local/app@{}", digest('f'))
        );
        assert_eq!(pinned.warning, None);
    }

    #[test]
    fn a_manifest_digest_as_id_still_pins_but_warns_that_kuscia_would_refuse_it() {
        let pinned = pin(&image(Some(digest('f'))), &found()).unwrap();
        assert_eq!(
            pinned.reference,
            format!("registry.local/app@{}", digest('f'))
        );
        let warning = pinned.warning.unwrap();
        assert!(warning.contains("not its image ID"), "{warning}");
        assert!(warning.contains(&digest('c')), "{warning}");
    }

    #[test]
    fn another_image_under_the_tag_is_refused_naming_both_ids() {
        let e = pin(&image(Some(digest('a'))), &found()).unwrap_err();
        assert!(e.contains(&digest('a')) && e.contains(&digest('c')), "{e}");
        assert!(e.contains("registry.local/app:1.0"), "{e}");
        assert!(e.contains("#774"), "{e}");
    }

    #[test]
    fn only_sha256_ids_are_checked_as_in_kuscia() {
        assert_eq!(checked_id(&image(Some("d4ffa123aa45mnkj".into()))), None);
        assert_eq!(checked_id(&image(None)), None);
        assert_eq!(offline_note(&image(Some("abc".into()))), None);
        let note = offline_note(&image(Some(digest('c')))).unwrap();
        assert!(note.contains("registry.local/app:1.0"), "{note}");
    }
}
