//! The AppImageRevisions the webhook knows (issue 17, section 3), kept current by a watch, so
//! that a Pod naming a revision (by number, or by the spec hash `deploy` stamps) gets that
//! revision's spec injected. Each valid revision is held as a [`Stored`] named after its
//! AppImage, so the catalog derives its templates and signature verdict exactly as for a
//! current AppImage.
//!
//! The revisions controller reads this index too (issue 25: no watch of its own), so it also
//! keeps what admission never reads: revisions that fail [`check_intrinsic`], as known but
//! invalid (their names are taken, and the controller reports them), and a readiness flag (the
//! initial list is in), without which the controller would record and prune on a cold index.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, PoisonError, RwLock};

use appimage::revision::{
    AppImageRevision, RESOURCE, REVISION, check_intrinsic, check_pin, owner_uid, revision_name,
};
use arc_swap::ArcSwapOption;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::watcher::Event;

use super::Stored;

/// One AppImageRevision as the catalog knows it, valid or not.
#[derive(Debug)]
pub struct Recorded {
    /// The object's name (`revision_name(appimage, number)` when valid).
    pub name: Box<str>,
    /// The AppImage it says it is a revision of (`spec.appImage`), and its number and hash.
    pub appimage: Box<str>,
    pub number: i64,
    pub hash: Box<str>,
    /// The object's UID and resourceVersion (a delete's precondition; a report's key).
    pub uid: Option<Box<str>>,
    pub resource_version: Box<str>,
    pub created: Option<Time>,
    /// The UID of the AppImage its controller owner reference names, if any.
    pub owner: Option<Box<str>>,
    /// Its spec as admission reads it, or why it is never read (not written by the
    /// controllers: [`check_intrinsic`]).
    pub read: Result<Arc<Stored>, Box<str>>,
}

impl Recorded {
    fn new(rev: AppImageRevision) -> Recorded {
        let checked = check_intrinsic(&rev);
        let owner = owner_uid(&rev).map(Into::into);
        let meta = rev.metadata;
        let spec = rev.spec;
        let read = checked.map(|()| {
            Arc::new(Stored {
                name: spec.app_image.as_str().into(),
                uid: owner.clone().unwrap_or_default(),
                resource_version: meta.resource_version.as_deref().unwrap_or_default().into(),
                // A revision's stage is its AppImage's current one, read by admission there.
                stage: None,
                replaced_by: None,
                // Also its AppImage's: admission tightens with the current one's.
                pod_overrides: None,
                notes: None,
                deleting: None,
                spec: Arc::new(spec.template),
                derived: ArcSwapOption::empty(),
            })
        });
        Recorded {
            name: meta.name.unwrap_or_default().into(),
            appimage: spec.app_image.into(),
            number: spec.revision,
            hash: spec.hash.into(),
            uid: meta.uid.map(Into::into),
            resource_version: meta.resource_version.unwrap_or_default().into(),
            created: meta.creation_timestamp,
            owner,
            read: read.map_err(Into::into),
        }
    }
}

/// (AppImage, owner UID, hash): what a Pod naming a revision by hash is looked up by.
type HashKey = (Box<str>, Box<str>, Box<str>);

#[derive(Default)]
struct Index {
    /// By object name.
    by_name: HashMap<Box<str>, Arc<Recorded>>,
    /// (AppImage, owner UID, hash) -> object name, of valid revisions only.
    by_hash: HashMap<HashKey, Box<str>>,
    /// AppImage (`spec.appImage`) -> the names of its revisions, valid or not.
    by_image: HashMap<Box<str>, BTreeSet<Box<str>>>,
    /// Whether the initial list is in.
    ready: bool,
}

impl Index {
    fn insert(&mut self, rev: AppImageRevision) {
        let name = rev.metadata.name.as_deref().unwrap_or_default();
        self.remove(name);
        let rec = Recorded::new(rev);
        match &rec.read {
            Ok(stored) => {
                let key = (rec.appimage.clone(), stored.uid.clone(), rec.hash.clone());
                self.by_hash.insert(key, rec.name.clone());
            }
            // The revisions controller, which has a client, reports it with a Warning Event.
            Err(why) => tracing::warn!("{why}"),
        }
        self.by_image
            .entry(rec.appimage.clone())
            .or_default()
            .insert(rec.name.clone());
        self.by_name.insert(rec.name.clone(), Arc::new(rec));
    }

    fn remove(&mut self, name: &str) {
        let Some(rec) = self.by_name.remove(name) else {
            return;
        };
        if let Ok(stored) = &rec.read {
            let key = (rec.appimage.clone(), stored.uid.clone(), rec.hash.clone());
            if self.by_hash.get(&key).is_some_and(|n| **n == *name) {
                self.by_hash.remove(&key);
            }
        }
        if let Some(names) = self.by_image.get_mut(&rec.appimage) {
            names.remove(name);
            if names.is_empty() {
                self.by_image.remove(&rec.appimage);
            }
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
    /// Revisions known, valid or not.
    pub fn len(&self) -> usize {
        self.read().by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the initial list is in (until then, a revision not held may exist).
    pub fn is_ready(&self) -> bool {
        self.read().ready
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The revision object `name`, valid or not.
    pub fn named(&self, name: &str) -> Option<Arc<Recorded>> {
        self.read().by_name.get(name).cloned()
    }

    /// Every revision that says it is one of AppImage `appimage`, valid or not.
    pub fn of(&self, appimage: &str) -> Vec<Arc<Recorded>> {
        let index = self.read();
        let names = index.by_image.get(appimage).into_iter().flatten();
        names
            .filter_map(|n| index.by_name.get(n).cloned())
            .collect()
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
        let found = index.by_name.get(name.as_str());
        let Some((rec, stored)) = found.and_then(|r| Some((r, r.read.as_ref().ok()?))) else {
            return Err(format!(
                "revision {number} of AppImage {appimage:?} not found: kubectl appimage history {appimage} lists its revisions; set the annotation {REVISION} to one of them, or remove it to run the current spec"
            ));
        };
        if &*stored.name != appimage || &*stored.uid != uid {
            return Err(format!(
                "revision {number} of AppImage {appimage:?} is not trusted: {RESOURCE} {name} belongs to another AppImage (UID {}), not to the current one (UID {uid}), so it is ignored: kubectl appimage history {appimage} lists the current revisions",
                stored.uid
            ));
        }
        if let Some(hash) = hash {
            check_pin(appimage, number, hash, &rec.hash)?;
        }
        Ok(stored.clone())
    }

    /// The revision of the AppImage `appimage` of UID `uid` whose spec hashes to `hash`.
    pub fn by_hash(&self, appimage: &str, uid: &str, hash: &str) -> Option<Arc<Stored>> {
        let index = self.read();
        let key: HashKey = (appimage.into(), uid.into(), hash.into());
        let name = index.by_hash.get(&key)?;
        index.by_name.get(name)?.read.as_ref().ok().cloned()
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
                let mut index = self.buffer.take().unwrap_or_default();
                index.ready = true;
                *self.revisions.write() = index;
            }
            Event::Apply(rev) => self.revisions.write().insert(rev),
            Event::Delete(rev) => {
                let name = rev.metadata.name.as_deref().unwrap_or_default();
                self.revisions.write().remove(name);
            }
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
        assert!(!revisions.is_ready());
        writer.apply(Event::InitDone);
        assert!(revisions.is_ready());
        // A relist keeps the index ready while it is received.
        writer.apply(Event::Init);
        assert!(revisions.is_ready());
        writer.apply(Event::InitApply(rev("a", 1, "1.0")));
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
    fn forged_revisions_are_never_read_but_known_as_invalid() {
        let revisions = Revisions::default();
        let mut writer = revisions.writer();
        let good = rev("a", 1, "1.0");
        let hash = good.spec.hash.clone();
        writer.apply(Event::Apply(good.clone()));
        // Another hash than the template's, replacing a good one: never read again.
        let mut tampered = good.clone();
        tampered.spec.template.image.tag = "evil".into();
        writer.apply(Event::Apply(tampered));
        assert!(revisions.by_number("a", "u1", 1, None).is_err());
        assert!(revisions.by_hash("a", "u1", &hash).is_none());
        // A squatted name, and an orphan: never read.
        let mut squat = rev("a", 1, "1.0");
        squat.metadata.name = Some("a-7".into());
        writer.apply(Event::Apply(squat));
        let mut orphan = rev("a", 2, "2.0");
        orphan.metadata.owner_references = None;
        writer.apply(Event::Apply(orphan));
        assert!(revisions.by_number("a", "u1", 2, None).is_err());
        assert!(revisions.by_number("a", "u1", 7, None).is_err());
        // Known, though, with why: their names are taken and the controller reports them.
        let names: Vec<(String, bool)> = revisions
            .of("a")
            .iter()
            .map(|r| (r.name.to_string(), r.read.is_err()))
            .collect();
        assert_eq!(
            names,
            [
                ("a-1".into(), true),
                ("a-2".into(), true),
                ("a-7".into(), true)
            ]
        );
        let why = revisions.named("a-7").unwrap().read.clone().unwrap_err();
        assert!(why.contains("must be named \"a-1\""), "{why}");
        writer.apply(Event::Delete(rev("a", 2, "2.0")));
        assert!(revisions.named("a-2").is_none());
        assert_eq!(revisions.len(), 2);
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
