//! The AppImages the webhook knows, kept current by a watch (never an API call per request).
//! Like kube-runtime's reflector store, but each entry is compacted on the way in and carries
//! the verdicts derived from it, so that 10,000 AppImages cost one map entry each.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use appimage::resource::{AppImage, AppImageSpec};
use arc_swap::ArcSwapOption;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher::Event;
use tokio::sync::watch;

use crate::intern::Compactor;

/// One stored AppImage (one resourceVersion: an update replaces the entry, and with it what was
/// derived from the old one). Only the name, resourceVersion and spec are kept: an
/// `ObjectMeta`, even empty, would be most of the entry.
#[derive(Debug)]
pub struct Stored<D> {
    pub name: Box<str>,
    pub resource_version: Box<str>,
    pub spec: AppImageSpec,
    /// What the catalog derives from the AppImage, filled on first use.
    pub derived: ArcSwapOption<D>,
}

impl<D> Stored<D> {
    /// The AppImage as the core takes it: its template sets are shared, not copied.
    pub fn appimage(&self) -> AppImage {
        let metadata = ObjectMeta {
            name: Some(self.name.to_string()),
            resource_version: (!self.resource_version.is_empty())
                .then(|| self.resource_version.to_string()),
            ..ObjectMeta::default()
        };
        AppImage {
            metadata,
            spec: self.spec.clone(),
        }
    }
}

struct Shared<D> {
    map: RwLock<HashMap<Box<str>, Arc<Stored<D>>>>,
    /// True once the initial list is in.
    ready: watch::Sender<bool>,
}

/// Read side; cheap to clone.
pub struct Reader<D> {
    shared: Arc<Shared<D>>,
}

impl<D> Clone for Reader<D> {
    fn clone(&self) -> Self {
        Reader {
            shared: self.shared.clone(),
        }
    }
}

impl<D> std::fmt::Debug for Reader<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("appimages", &self.len())
            .finish()
    }
}

/// Write side: applies watch events.
pub struct Writer<D> {
    shared: Arc<Shared<D>>,
    compactor: Compactor,
    /// The initial list being received (between `Init` and `InitDone`).
    buffer: Option<HashMap<Box<str>, Arc<Stored<D>>>>,
}

/// An empty store, not ready until its first `InitDone`.
pub fn store<D>() -> (Reader<D>, Writer<D>) {
    let shared = Arc::new(Shared {
        map: RwLock::new(HashMap::new()),
        ready: watch::Sender::new(false),
    });
    let reader = Reader {
        shared: shared.clone(),
    };
    let writer = Writer {
        shared,
        compactor: Compactor::default(),
        buffer: None,
    };
    (reader, writer)
}

impl<D> Reader<D> {
    pub fn get(&self, name: &str) -> Option<Arc<Stored<D>>> {
        let map = self
            .shared
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(name).cloned()
    }

    pub fn len(&self) -> usize {
        self.shared
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_ready(&self) -> bool {
        *self.shared.ready.borrow()
    }

    /// Completes once the initial list is in; every waiter is woken.
    pub async fn wait_until_ready(&self) {
        let mut rx = self.shared.ready.subscribe();
        // The sender lives in `shared`, which this reader holds: the wait cannot fail.
        let _ = rx.wait_for(|ready| *ready).await;
    }
}

impl<D> Writer<D> {
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
                *self.map() = list;
                self.shared.ready.send_replace(true);
            }
            Event::Apply(image) => {
                let (name, stored) = self.entry(image);
                self.map().insert(name, stored);
            }
            Event::Delete(image) => {
                self.map()
                    .remove(image.metadata.name.as_deref().unwrap_or_default());
            }
        }
    }

    /// [`Writer::apply`] for a borrowed event (tests replaying fixtures).
    pub fn apply_watcher_event(&mut self, event: &Event<AppImage>) {
        self.apply(event.clone());
    }

    fn entry(&mut self, mut image: AppImage) -> (Box<str>, Arc<Stored<D>>) {
        self.compactor.compact(&mut image.spec);
        let name: Box<str> = image.metadata.name.unwrap_or_default().into();
        let stored = Stored {
            name: name.clone(),
            resource_version: image.metadata.resource_version.unwrap_or_default().into(),
            spec: image.spec,
            derived: ArcSwapOption::empty(),
        };
        (name, Arc::new(stored))
    }

    fn map(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Box<str>, Arc<Stored<D>>>> {
        self.shared
            .map
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::seed as image;

    #[tokio::test]
    async fn the_initial_list_replaces_the_map_and_makes_it_ready() {
        let (reader, mut writer) = store::<()>();
        writer.apply(Event::Apply(image("stale", "1")));
        writer.apply(Event::Init);
        writer.apply(Event::InitApply(image("a", "2")));
        // Not visible, and not ready, before InitDone.
        assert!(reader.get("a").is_none() && !reader.is_ready());
        writer.apply(Event::InitDone);
        reader.wait_until_ready().await;
        assert!(reader.get("stale").is_none());
        let a = reader.get("a").unwrap();
        assert_eq!(&*a.resource_version, "2");
        let image = a.appimage();
        assert_eq!(image.metadata.name.as_deref(), Some("a"));
        assert_eq!(image.metadata.resource_version.as_deref(), Some("2"));
        assert_eq!(image.spec, self::image("a", "2").spec);
    }

    #[test]
    fn updates_replace_and_deletes_remove() {
        let (reader, mut writer) = store::<u8>();
        writer.apply(Event::Init);
        writer.apply(Event::InitDone);
        writer.apply(Event::Apply(image("a", "1")));
        let first = reader.get("a").unwrap();
        first.derived.store(Some(Arc::new(7)));
        writer.apply(Event::Apply(image("a", "2")));
        let second = reader.get("a").unwrap();
        // A new resourceVersion starts with nothing derived.
        assert!(second.derived.load().is_none());
        assert_eq!(&*second.resource_version, "2");
        writer.apply(Event::Delete(image("a", "2")));
        assert!(reader.get("a").is_none());
        assert_eq!(reader.len(), 0);
    }
}
