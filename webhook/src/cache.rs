//! The AppImages the webhook knows: a reflector store (kept current by a watch, never an API
//! call per request), plus per-(name, resourceVersion) parsed templates and signature verdicts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use appimage::appimage::AppImage;
use appimage::injection::{Templates, parse_templates};
use appimage::signature::{SignatureError, verify};
use kube::runtime::reflector::{ObjectRef, Store};

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
                    None => parse_templates(&image)
                        .map(Arc::new)
                        .map_err(|e| e.to_string()),
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

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Entry>>> {
        // A panic elsewhere while holding the lock leaves a usable map: recover it.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn insert(&self, name: &str, entry: Arc<Entry>) {
        let mut map = self.entries();
        map.insert(name.to_string(), entry);
        if map.len() > self.store.len() + SLACK {
            map.retain(|n, _| self.store.get(&ObjectRef::new(n)).is_some());
        }
    }
}
