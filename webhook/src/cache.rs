//! The AppImages the webhook knows: a reflector store (kept current by a watch, never an API
//! call per request), plus per-(name, resourceVersion) parsed templates and signature verdicts.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};

use appimage::appimage::AppImage;
use appimage::injection::{Templates, parse_templates};
use appimage::signature::{SignatureError, verify};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::intern::Interner;
use crate::trust::Trust;

/// An AppImage with what is derived from it.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub image: Arc<AppImage>,
    /// Parsed config templates, or the parse error's text.
    pub templates: Result<Arc<Templates>, String>,
    /// The name of the key that verified the signature, or why none did.
    pub signature: Result<String, SignatureError>,
}

#[derive(Debug)]
struct Entry {
    resource_version: String,
    templates: Result<Arc<Templates>, String>,
    /// Trust generation the verdict was computed under.
    generation: u64,
    signature: Result<String, SignatureError>,
}

/// Cheap to clone; clones share the store and the derived cache.
#[derive(Clone)]
pub struct Catalog {
    store: Store<AppImage>,
    trust: Trust,
    entries: Arc<Mutex<HashMap<String, Arc<Entry>>>>,
    /// AppImages with equal configTemplates (copies, versions of one app) share one parse:
    /// about 2 KB each for the seed's single file, the bulk of an entry.
    shared: Arc<Mutex<SharedTemplates>>,
}

/// Parsed templates by a hash of their source; a hit is used only when the parse is equal.
#[derive(Default)]
struct SharedTemplates {
    hasher: RandomState,
    parsed: Interner<Templates>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("appimages", &self.store.len())
            .field("trust", &self.trust)
            .finish()
    }
}

/// Extra entries tolerated before those of deleted AppImages are dropped.
const SLACK: usize = 64;

impl Catalog {
    pub fn new(store: Store<AppImage>, trust: Trust) -> Catalog {
        Catalog {
            store,
            trust,
            entries: Arc::default(),
            shared: Arc::default(),
        }
    }

    pub fn store(&self) -> &Store<AppImage> {
        &self.store
    }

    pub fn trust(&self) -> &Trust {
        &self.trust
    }

    /// AppImages in the store.
    pub fn len(&self) -> usize {
        self.store.len()
    }

    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }

    /// The AppImage `name` with its templates and verdict; `None` when the store lacks it.
    pub fn lookup(&self, name: &str) -> Option<Prepared> {
        let image = self.store.get(&ObjectRef::new(name))?;
        let rv = image.metadata.resource_version.clone().unwrap_or_default();
        let trust = self.trust.snapshot();
        let cached = self.entries().get(name).cloned();
        // Without a resourceVersion there is no safe key: compute afresh.
        let cached = cached.filter(|e| !rv.is_empty() && e.resource_version == rv);
        let entry = match cached {
            Some(e) if e.generation == trust.generation => e,
            previous => {
                let templates = match previous {
                    Some(e) => e.templates.clone(),
                    None => self.parse(&image),
                };
                let signature = verify(&image.spec.image, &trust.keys).map(str::to_string);
                let entry = Arc::new(Entry {
                    resource_version: rv.clone(),
                    templates,
                    generation: trust.generation,
                    signature,
                });
                if !rv.is_empty() {
                    self.insert(name, entry.clone());
                }
                entry
            }
        };
        Some(Prepared {
            image,
            templates: entry.templates.clone(),
            signature: entry.signature.clone(),
        })
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<String, Arc<Entry>>> {
        // A panic elsewhere while holding the lock leaves a usable map: recover it.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `image`'s parsed templates, shared with an earlier AppImage's when they parse equal.
    fn parse(&self, image: &AppImage) -> Result<Arc<Templates>, String> {
        let parsed = parse_templates(image).map_err(|e| e.to_string())?;
        let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        let key = shared.hasher.hash_one(&*image.spec.config_templates);
        // Equal parses render alike, so a hash collision can only cost the sharing.
        Ok(shared.parsed.intern(key, Arc::new(parsed)))
    }

    fn insert(&self, name: &str, entry: Arc<Entry>) {
        let mut map = self.entries();
        map.insert(name.to_string(), entry);
        if map.len() > self.store.len() + SLACK {
            map.retain(|n, _| self.store.get(&ObjectRef::new(n)).is_some());
        }
    }
}

#[cfg(test)]
mod tests {
    use kube::runtime::reflector;
    use kube::runtime::watcher::Event;

    use super::*;

    fn image(name: &str, template: &str) -> AppImage {
        let text = include_str!("../../examples/secretflow-image.yaml");
        let mut image = appimage::manifest::appimages("seed", text)
            .unwrap()
            .remove(0);
        image.metadata.name = Some(name.into());
        image.metadata.resource_version = Some("1".into());
        image.spec.config_templates =
            Arc::new([("task-config.conf".into(), template.into())].into());
        image
    }

    #[test]
    fn equal_templates_are_parsed_into_one_shared_value() {
        let (reader, mut writer) = reflector::store::<AppImage>();
        writer.apply_watcher_event(&Event::Init);
        for (name, template) in [("a", "x {{.TASK_ID}}"), ("b", "x {{.TASK_ID}}"), ("c", "y")] {
            writer.apply_watcher_event(&Event::InitApply(image(name, template)));
        }
        writer.apply_watcher_event(&Event::InitDone);
        let catalog = Catalog::new(reader, Trust::fixed(Vec::new()));
        let templates = |name| catalog.lookup(name).unwrap().templates.unwrap();
        let (a, b, c) = (templates("a"), templates("b"), templates("c"));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_ne!(a, c);
        // Cached per name too: a second lookup reuses the first parse.
        assert!(Arc::ptr_eq(&templates("c"), &c));
    }
}
