//! The AppImageRevisions the webhook knows (issue 17, section 3), kept current by a watch, so
//! that a Pod naming a revision (by number, or by the spec hash `deploy` stamps) gets that
//! revision's spec injected. Each revision is held as a [`Stored`] named after its AppImage, so
//! the catalog derives its templates and signature verdict exactly as for a current AppImage.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use appimage::revision::{
    AppImageRevision, RESOURCE, REVISION, check_intrinsic, check_pin, owner_uid, revision_name,
};
use arc_swap::ArcSwapOption;
use kube::runtime::watcher::Event;

use super::Stored;

/// A revision that passed [`check_intrinsic`]: its hash is its template's, its name is
/// `<appimage>-<number>`, and it names its owning AppImage (`stored.uid`).
struct Entry {
    stored: Arc<Stored>,
    hash: String,
}

#[derive(Default)]
struct Index {
    /// By object name (`revision_name(appimage, number)`).
    by_name: HashMap<String, Entry>,
    /// (AppImage, owner UID, hash) -> object name.
    by_hash: HashMap<(String, String, String), String>,
}

impl Index {
    fn insert(&mut self, rev: AppImageRevision) {
        // A revision the controllers did not write is never read (issue 24); the revisions
        // controller, which has a client, reports it with a Warning Event.
        if let Err(why) = check_intrinsic(&rev) {
            tracing::warn!("{why}");
            self.remove(&rev);
            return;
        }
        let name = rev.metadata.name.clone().unwrap_or_default();
        let owner = owner_uid(&rev).unwrap_or_default().to_string();
        let spec = rev.spec;
        let stored = Stored {
            name: spec.app_image.clone().into(),
            uid: owner.clone().into(),
            resource_version: rev.metadata.resource_version.unwrap_or_default().into(),
            // A revision's stage is its AppImage's current one, read by admission from there.
            stage: None,
            replaced_by: None,
            // Also its AppImage's: admission tightens with the current one's.
            pod_overrides: None,
            notes: None,
            deleting: None,
            spec: Arc::new(spec.template),
            derived: ArcSwapOption::empty(),
        };
        self.by_hash
            .insert((spec.app_image, owner, spec.hash.clone()), name.clone());
        let entry = Entry {
            stored: Arc::new(stored),
            hash: spec.hash,
        };
        self.by_name.insert(name, entry);
    }

    fn remove(&mut self, rev: &AppImageRevision) {
        let name = rev.metadata.name.as_deref().unwrap_or_default();
        let Some(entry) = self.by_name.remove(name) else {
            return;
        };
        let key = (
            entry.stored.name.to_string(),
            entry.stored.uid.to_string(),
            entry.hash,
        );
        if self.by_hash.get(&key).is_some_and(|n| n == name) {
            self.by_hash.remove(&key);
        }
    }
}

/// Read side; cheap to clone. Empty until a watch fills it.
#[derive(Clone, Default)]
pub struct Revisions {
    index: Arc<RwLock<Index>>,
}

impl std::fmt::Debug for Revisions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revisions")
            .field("len", &self.len())
            .finish()
    }
}

impl Revisions {
    pub fn len(&self) -> usize {
        self.read().by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Revision `number` of the AppImage `appimage` of UID `uid`; with `hash`, only when the
    /// revision has that hash (a template that names both). The error says what is wrong and
    /// how to fix it.
    pub fn by_number(
        &self,
        appimage: &str,
        uid: &str,
        number: i64,
        hash: Option<&str>,
    ) -> Result<Arc<Stored>, String> {
        let name = revision_name(appimage, number);
        let index = self.read();
        let Some(entry) = index.by_name.get(&name) else {
            return Err(format!(
                "revision {number} of AppImage {appimage:?} not found: kubectl appimage history {appimage} lists its revisions; set the annotation {REVISION} to one of them, or remove it to run the current spec"
            ));
        };
        if &*entry.stored.name != appimage || &*entry.stored.uid != uid {
            return Err(format!(
                "revision {number} of AppImage {appimage:?} is not trusted: {RESOURCE} {name} belongs to another AppImage (UID {}), not to the current one (UID {uid}), so it is ignored: kubectl appimage history {appimage} lists the current revisions",
                entry.stored.uid
            ));
        }
        if let Some(hash) = hash {
            check_pin(appimage, number, hash, &entry.hash)?;
        }
        Ok(entry.stored.clone())
    }

    /// The revision of the AppImage `appimage` of UID `uid` whose spec hashes to `hash`.
    pub fn by_hash(&self, appimage: &str, uid: &str, hash: &str) -> Option<Arc<Stored>> {
        let index = self.read();
        let key = (appimage.to_string(), uid.to_string(), hash.to_string());
        let name = index.by_hash.get(&key)?;
        index.by_name.get(name).map(|e| e.stored.clone())
    }

    /// The write side: applies watch events to this store.
    pub fn writer(&self) -> RevisionWriter {
        RevisionWriter {
            revisions: self.clone(),
            buffer: None,
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Applies watch events, as the reflector's writer does.
pub struct RevisionWriter {
    revisions: Revisions,
    /// The initial list being received (between `Init` and `InitDone`).
    buffer: Option<Index>,
}

impl RevisionWriter {
    pub fn apply(&mut self, event: Event<AppImageRevision>) {
        match event {
            Event::Init => self.buffer = Some(Index::default()),
            Event::InitApply(rev) => self.buffer.get_or_insert_with(Index::default).insert(rev),
            Event::InitDone => {
                *self.revisions.write() = self.buffer.take().unwrap_or_default();
            }
            Event::Apply(rev) => self.revisions.write().insert(rev),
            Event::Delete(rev) => self.revisions.write().remove(&rev),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use appimage::revision::AppImageRevisionSpec;
    use appimage::workload::revision_hash;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn rev(appimage: &str, number: i64, tag: &str) -> AppImageRevision {
        let mut template = crate::testing::seed(appimage, "1").spec;
        template.image.tag = tag.into();
        let hash = revision_hash(&template);
        let mut r = AppImageRevision::new(
            &revision_name(appimage, number),
            AppImageRevisionSpec {
                app_image: appimage.into(),
                revision: number,
                hash,
                change_cause: None,
                task_id: None,
                template,
            },
        );
        r.metadata.resource_version = Some("7".into());
        r.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "kuscia.secretflow/v1alpha1".into(),
            kind: "AppImage".into(),
            name: appimage.into(),
            uid: "u1".into(),
            controller: Some(true),
            block_owner_deletion: None,
        }]);
        r
    }

    #[test]
    fn revisions_are_found_by_number_and_hash_and_forgotten_on_delete() {
        let revisions = Revisions::default();
        let mut writer = revisions.writer();
        writer.apply(Event::Init);
        writer.apply(Event::InitApply(rev("a", 1, "1.0")));
        assert!(revisions.by_number("a", "u1", 1, None).is_err());
        writer.apply(Event::InitDone);
        let two = rev("a", 2, "2.0");
        let hash = two.spec.hash.clone();
        writer.apply(Event::Apply(two.clone()));
        let found = revisions.by_hash("a", "u1", &hash).unwrap();
        assert_eq!(&*found.name, "a");
        assert_eq!(found.spec.image.tag, "2.0");
        let one = revisions.by_number("a", "u1", 1, None).unwrap();
        assert_eq!(one.spec.image.tag, "1.0");
        assert!(revisions.by_number("b", "u1", 1, None).is_err());
        writer.apply(Event::Delete(two));
        assert!(revisions.by_hash("a", "u1", &hash).is_none());
        assert_eq!(revisions.len(), 1);
    }

    #[test]
    fn forged_revisions_are_never_read() {
        let revisions = Revisions::default();
        let mut writer = revisions.writer();
        let good = rev("a", 1, "1.0");
        writer.apply(Event::Apply(good.clone()));
        // Another hash than the template's, replacing a good one: forgotten.
        let mut tampered = good.clone();
        tampered.spec.template.image.tag = "evil".into();
        writer.apply(Event::Apply(tampered));
        assert!(revisions.is_empty());
        // A squatted name, and an orphan: never stored.
        let mut squat = rev("a", 1, "1.0");
        squat.metadata.name = Some("a-7".into());
        writer.apply(Event::Apply(squat));
        let mut orphan = rev("a", 2, "2.0");
        orphan.metadata.owner_references = None;
        writer.apply(Event::Apply(orphan));
        assert!(revisions.is_empty());
    }

    #[test]
    fn a_revision_of_an_earlier_appimage_or_another_hash_is_refused() {
        let revisions = Revisions::default();
        let mut writer = revisions.writer();
        let three = rev("a", 3, "3.0");
        let hash = three.spec.hash.clone();
        writer.apply(Event::Apply(three));
        // The AppImage was deleted and re-created: a new UID.
        let err = revisions.by_number("a", "u2", 3, None).unwrap_err();
        assert!(err.contains("not to the current one"), "{err}");
        assert!(revisions.by_hash("a", "u2", &hash).is_none());
        // A template naming both: the number's hash must be the one named.
        assert!(revisions.by_number("a", "u1", 3, Some(&hash)).is_ok());
        let err = revisions
            .by_number("a", "u1", 3, Some("other"))
            .unwrap_err();
        assert!(err.contains("now has hash"), "{err}");
    }
}
