//! The AppImages the webhook knows, kept current by a watch (never an API call per request).
//! Like kube-runtime's reflector store, but each entry is compacted on the way in and carries
//! the verdicts derived from it, so that 10,000 AppImages cost one map entry each.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock, RwLockWriteGuard};
use std::time::Duration;

use appimage::labels;
use appimage::resource::{AppImage, AppImageSpec};
use arc_swap::ArcSwapOption;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::runtime::watcher::Event;
use tokio::sync::{broadcast, watch};

use super::Derived;
use super::interner::Compactor;

/// One stored AppImage (one resourceVersion: an update replaces the entry, and with it what was
/// derived from the old one). Only the name, resourceVersion and spec are kept: an
/// `ObjectMeta`, even empty, would be most of the entry.
#[derive(Debug)]
pub struct Stored {
    pub name: Box<str>,
    /// The AppImage's UID (for a revision: its owner's), so a revision of an earlier AppImage
    /// of the same name is never read as this one's (issue 24).
    pub uid: Box<str>,
    pub resource_version: Box<str>,
    /// The stage label and the replaced-by annotation (`appimage::stage`): admission warns for a
    /// deprecated AppImage, so these two are kept while the rest of the metadata is not.
    pub stage: Option<Box<str>>,
    pub replaced_by: Option<Box<str>>,
    /// The pod-overrides annotation (`appimage::overrides`): it tightens what the AppImage's
    /// Pods may override.
    pub pod_overrides: Option<Box<str>>,
    /// The annotations the revisions controller reads (history limit, change cause, task id),
    /// when any is set: the controllers read AppImages from the catalog only (issue 25).
    pub notes: Option<Notes>,
    /// When the AppImage's deletion started, if it did (the controllers then leave it alone).
    pub deleting: Option<Time>,
    /// Shared by every stored AppImage with an equal spec.
    pub spec: Arc<AppImageSpec>,
    /// What the catalog derives from the AppImage, filled on first use.
    pub derived: ArcSwapOption<Derived>,
}

impl Stored {
    /// The AppImage as the core takes it.
    pub fn appimage(&self) -> AppImage {
        let mut image = self.without_config_templates();
        image.spec.config_templates = self.spec.config_templates.clone();
        image
    }

    /// The AppImage with its configTemplates left out: injection takes them parsed (the
    /// catalog's `Derived`), so admission does not copy their text on every lookup.
    pub fn without_config_templates(&self) -> AppImage {
        let spec = AppImageSpec {
            config_templates: Default::default(),
            deploy_templates: self.spec.deploy_templates.clone(),
            image: self.spec.image.clone(),
        };
        AppImage {
            metadata: self.metadata(),
            spec,
        }
    }

    /// The AppImage's kept metadata and `spec.image`, without its templates: all that
    /// admission reads of an AppImage once its plan is built (issue 31).
    pub fn head(&self) -> AppImage {
        let mut image = self.marks();
        image.spec.image = self.spec.image.clone();
        image
    }

    /// The AppImage's name and stage marks alone (an empty spec): what the stage rules read,
    /// without copying the templates.
    pub fn marks(&self) -> AppImage {
        let spec = AppImageSpec {
            config_templates: Default::default(),
            deploy_templates: Vec::new(),
            image: Default::default(),
        };
        AppImage {
            metadata: self.metadata(),
            spec,
        }
    }

    /// What the controllers key on: the metadata the catalog keeps, with the UID, the
    /// revision notes and the deletion mark, and an empty spec.
    pub fn controlled(&self) -> AppImage {
        let mut image = self.marks();
        let meta = &mut image.metadata;
        meta.uid = (!self.uid.is_empty()).then(|| self.uid.to_string());
        meta.deletion_timestamp = self.deleting.clone();
        if let Some(notes) = &self.notes {
            meta.annotations
                .get_or_insert_with(BTreeMap::new)
                .extend(notes.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        }
        image
    }

    fn metadata(&self) -> ObjectMeta {
        ObjectMeta {
            name: Some(self.name.to_string()),
            resource_version: (!self.resource_version.is_empty())
                .then(|| self.resource_version.to_string()),
            labels: self
                .stage
                .as_ref()
                .map(|s| BTreeMap::from([(labels::STAGE.to_string(), s.to_string())])),
            annotations: annotations(&[
                (labels::REPLACED_BY, &self.replaced_by),
                (labels::POD_OVERRIDES, &self.pod_overrides),
            ]),
            ..ObjectMeta::default()
        }
    }
}

/// The kept annotations that are set, or none.
fn annotations(kept: &[(&str, &Option<Box<str>>)]) -> Option<BTreeMap<String, String>> {
    let map: BTreeMap<String, String> = kept
        .iter()
        .filter_map(|(k, v)| Some((k.to_string(), v.as_deref()?.to_string())))
        .collect();
    (!map.is_empty()).then_some(map)
}

/// The value of `key` in a label or annotation map, if any.
fn kept(map: Option<&BTreeMap<String, String>>, key: &str) -> Option<Box<str>> {
    map.and_then(|m| m.get(key)).map(|v| v.as_str().into())
}

/// Annotations kept as (key, value), in a box the size of a pointer pair.
pub type Notes = Box<[(Box<str>, Box<str>)]>;

/// The annotations of [`Stored::notes`] that are set, or none.
fn notes(map: Option<&BTreeMap<String, String>>) -> Option<Notes> {
    const NOTES: [&str; 4] = [
        appimage::revision::HISTORY_LIMIT,
        appimage::revision::CHANGE_CAUSE,
        labels::TASK_ID,
        labels::OPT_TASK_ID,
    ];
    let kept: Notes = NOTES
        .iter()
        .filter_map(|k| Some(((*k).into(), map?.get(*k)?.as_str().into())))
        .collect();
    (!kept.is_empty()).then_some(kept)
}

type Map = HashMap<Box<str>, Arc<Stored>>;

struct Shared {
    map: RwLock<Map>,
    /// True once the initial list is in: the webhook's one readiness flag.
    ready: watch::Sender<bool>,
    /// What changed, for the controllers (nothing is kept when none listens).
    changes: broadcast::Sender<Change>,
}

/// A change of the catalog, as its listeners see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The AppImage of this name (or one of its revisions) was written or deleted.
    One(Arc<str>),
    /// A new initial list (or a listener fell behind): anything may have changed.
    All,
}

/// Changes buffered per listener before it falls behind (and is told [`Change::All`]).
const CHANGES: usize = 4096;

/// Read side; cheap to clone.
#[derive(Clone)]
pub struct AppImages {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for AppImages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppImages")
            .field("len", &self.len())
            .field("ready", &self.is_ready())
            .finish()
    }
}

impl AppImages {
    pub fn get(&self, name: &str) -> Option<Arc<Stored>> {
        let map = self
            .shared
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(name).cloned()
    }

    pub fn len(&self) -> usize {
        let map = self
            .shared
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the initial list is in.
    pub fn is_ready(&self) -> bool {
        *self.shared.ready.borrow()
    }

    /// Completes once the initial list is in; every waiter is woken.
    pub async fn wait_until_ready(&self) {
        let mut rx = self.shared.ready.subscribe();
        // The sender lives in `shared`, which this reader holds: the wait cannot fail.
        let _ = rx.wait_for(|ready| *ready).await;
    }

    /// The names of every AppImage stored.
    pub fn names(&self) -> Vec<Arc<str>> {
        let map = self
            .shared
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        map.keys().map(|k| Arc::from(&**k)).collect()
    }

    /// Listen to what changes from now on.
    pub fn changes(&self) -> broadcast::Receiver<Change> {
        self.shared.changes.subscribe()
    }

    /// Tell the listeners that revisions of `name` changed (or, `None`, all of them).
    pub(crate) fn tell(&self, name: Option<&str>) {
        let change = name.map_or(Change::All, |n| Change::One(n.into()));
        let _ = self.shared.changes.send(change);
    }

    /// Whether ready, waiting up to `limit` for it.
    pub async fn wait(&self, limit: Duration) -> bool {
        self.is_ready()
            || tokio::time::timeout(limit, self.wait_until_ready())
                .await
                .is_ok()
    }
}

impl Shared {
    fn map(&self) -> RwLockWriteGuard<'_, Map> {
        self.map.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Write side: applies watch events.
pub struct Writer {
    shared: Arc<Shared>,
    compactor: Compactor,
    /// The initial list being received (between `Init` and `InitDone`).
    buffer: Option<Map>,
}

/// An empty store, not ready until its first `InitDone`.
pub fn store() -> (AppImages, Writer) {
    let shared = Arc::new(Shared {
        map: RwLock::new(HashMap::new()),
        ready: watch::Sender::new(false),
        changes: broadcast::Sender::new(CHANGES),
    });
    let writer = Writer {
        shared: shared.clone(),
        compactor: Compactor::default(),
        buffer: None,
    };
    (AppImages { shared }, writer)
}

impl Writer {
    /// Apply one watch event, as the reflector's writer does.
    pub fn apply(&mut self, event: Event<AppImage>) {
        match event {
            Event::Init => self.buffer = Some(HashMap::new()),
            Event::InitApply(image) => {
                let (name, stored) = self.entry(image);
                self.buffer
                    .get_or_insert_with(HashMap::new)
                    .insert(name, stored);
            }
            Event::InitDone => {
                let list = self.buffer.take().unwrap_or_default();
                *self.shared.map() = list;
                self.shared.ready.send_replace(true);
                let _ = self.shared.changes.send(Change::All);
            }
            Event::Apply(image) => {
                let (name, stored) = self.entry(image);
                self.shared.map().insert(name.clone(), stored);
                let _ = self.shared.changes.send(Change::One(Arc::from(name)));
            }
            Event::Delete(image) => {
                let name = image.metadata.name.unwrap_or_default();
                self.shared.map().remove(name.as_str());
                let _ = self.shared.changes.send(Change::One(name.into()));
            }
        }
    }

    /// [`Writer::apply`] for a borrowed event (tests replaying fixtures).
    pub fn apply_watcher_event(&mut self, event: &Event<AppImage>) {
        self.apply(event.clone());
    }

    fn entry(&mut self, image: AppImage) -> (Box<str>, Arc<Stored>) {
        let name: Box<str> = image.metadata.name.unwrap_or_default().into();
        let stored = Stored {
            name: name.clone(),
            uid: image.metadata.uid.unwrap_or_default().into(),
            resource_version: image.metadata.resource_version.unwrap_or_default().into(),
            stage: kept(image.metadata.labels.as_ref(), labels::STAGE),
            replaced_by: kept(image.metadata.annotations.as_ref(), labels::REPLACED_BY),
            pod_overrides: kept(image.metadata.annotations.as_ref(), labels::POD_OVERRIDES),
            notes: notes(image.metadata.annotations.as_ref()),
            deleting: image.metadata.deletion_timestamp,
            spec: self.compactor.compact(image.spec),
            derived: ArcSwapOption::empty(),
        };
        (name, Arc::new(stored))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::seed as image;

    #[tokio::test]
    async fn the_initial_list_replaces_the_map_and_makes_it_ready() {
        let (shared, mut writer) = store();
        writer.apply(Event::Apply(image("stale", "1")));
        writer.apply(Event::Init);
        writer.apply(Event::InitApply(image("a", "2")));
        // Not visible, and not ready, before InitDone.
        assert!(shared.get("a").is_none() && !shared.is_ready());
        writer.apply(Event::InitDone);
        shared.wait_until_ready().await;
        assert!(shared.get("stale").is_none());
        let a = shared.get("a").unwrap();
        assert_eq!(&*a.resource_version, "2");
        let image = a.appimage();
        assert_eq!(image.metadata.name.as_deref(), Some("a"));
        assert_eq!(image.metadata.resource_version.as_deref(), Some("2"));
        assert_eq!(image.spec, self::image("a", "2").spec);
    }

    #[test]
    fn updates_replace_and_deletes_remove() {
        let (shared, mut writer) = store();
        writer.apply(Event::Init);
        writer.apply(Event::InitDone);
        writer.apply(Event::Apply(image("a", "1")));
        let first = shared.get("a").unwrap();
        first.derived.store(Some(Arc::new(Derived::empty())));
        writer.apply(Event::Apply(image("a", "2")));
        let second = shared.get("a").unwrap();
        // A new resourceVersion starts with nothing derived.
        assert!(second.derived.load().is_none());
        assert_eq!(&*second.resource_version, "2");
        writer.apply(Event::Delete(image("a", "2")));
        assert!(shared.get("a").is_none());
        assert_eq!(shared.len(), 0);
    }
}
