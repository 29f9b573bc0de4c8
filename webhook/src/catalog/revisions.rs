//! The AppImageRevisions the webhook knows (issue 17, section 3), kept current by a watch, so
//! that a Pod naming a revision (by number, or by the spec hash `deploy` stamps) gets that
//! revision's spec injected. Each revision is held as a [`Stored`] named after its AppImage, so
//! the catalog derives its templates and signature verdict exactly as for a current AppImage.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use appimage::revision::{AppImageRevision, revision_name};
use arc_swap::ArcSwapOption;
use kube::runtime::watcher::Event;

use super::Stored;

#[derive(Default)]
struct Index {
    /// By object name (`revision_name(appimage, number)`).
    by_name: HashMap<String, Arc<Stored>>,
    /// (AppImage, hash) -> object name.
    by_hash: HashMap<(String, String), String>,
}

impl Index {
    fn insert(&mut self, rev: AppImageRevision) {
        let name = rev.metadata.name.clone().unwrap_or_default();
        let spec = rev.spec;
        let stored = Stored {
            name: spec.app_image.clone().into(),
            resource_version: rev.metadata.resource_version.unwrap_or_default().into(),
            // A revision's stage is its AppImage's current one, read by admission from there.
            stage: None,
            replaced_by: None,
            spec: Arc::new(spec.template),
            derived: ArcSwapOption::empty(),
        };
        self.by_hash
            .insert((spec.app_image, spec.hash), name.clone());
        self.by_name.insert(name, Arc::new(stored));
    }

    fn remove(&mut self, rev: &AppImageRevision) {
        let name = rev.metadata.name.as_deref().unwrap_or_default();
        self.by_name.remove(name);
        let key = (rev.spec.app_image.clone(), rev.spec.hash.clone());
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

    /// Revision `number` of `appimage`.
    pub fn by_number(&self, appimage: &str, number: i64) -> Option<Arc<Stored>> {
        self.read()
            .by_name
            .get(&revision_name(appimage, number))
            .cloned()
    }

    /// The revision of `appimage` whose spec hashes to `hash`.
    pub fn by_hash(&self, appimage: &str, hash: &str) -> Option<Arc<Stored>> {
        let index = self.read();
        let name = index
            .by_hash
            .get(&(appimage.to_string(), hash.to_string()))?;
        index.by_name.get(name).cloned()
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
        r
    }

    #[test]
    fn revisions_are_found_by_number_and_hash_and_forgotten_on_delete() {
        let revisions = Revisions::default();
        let mut writer = revisions.writer();
        writer.apply(Event::Init);
        writer.apply(Event::InitApply(rev("a", 1, "1.0")));
        assert!(revisions.by_number("a", 1).is_none());
        writer.apply(Event::InitDone);
        let two = rev("a", 2, "2.0");
        let hash = two.spec.hash.clone();
        writer.apply(Event::Apply(two.clone()));
        let found = revisions.by_hash("a", &hash).unwrap();
        assert_eq!(&*found.name, "a");
        assert_eq!(found.spec.image.tag, "2.0");
        assert_eq!(revisions.by_number("a", 1).unwrap().spec.image.tag, "1.0");
        assert!(revisions.by_number("b", 1).is_none());
        writer.apply(Event::Delete(two));
        assert!(revisions.by_hash("a", &hash).is_none());
        assert_eq!(revisions.len(), 1);
    }
}
