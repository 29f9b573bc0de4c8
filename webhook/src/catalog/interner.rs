//! Equal values held once: the webhook keeps every AppImage in memory, and AppImages that are
//! copies of one application repeat their spec. A hash finds a candidate and equality confirms
//! it, so a collision costs only the sharing.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Weak};

use appimage::resource::AppImageSpec;

/// Extra entries tolerated before those whose values are gone are dropped.
const SLACK: usize = 64;

/// Values by hash, held weakly: an entry lives as long as some AppImage uses its value.
pub struct Interner<T: ?Sized> {
    by_hash: HashMap<u64, Weak<T>>,
    /// Length at which dead entries are next swept (doubling, so sweeps stay amortized O(1)).
    sweep_at: usize,
}

impl<T: ?Sized> Default for Interner<T> {
    fn default() -> Self {
        Interner {
            by_hash: HashMap::new(),
            sweep_at: SLACK,
        }
    }
}

impl<T: ?Sized + PartialEq> Interner<T> {
    /// The shared copy of `value` (whose hash is `hash`), or `value` itself, now shared.
    pub fn intern(&mut self, hash: u64, value: Arc<T>) -> Arc<T> {
        if let Some(existing) = self.by_hash.get(&hash).and_then(Weak::upgrade) {
            if existing == value {
                return existing;
            }
            return value;
        }
        self.by_hash.insert(hash, Arc::downgrade(&value));
        if self.by_hash.len() >= self.sweep_at {
            self.by_hash.retain(|_, v| v.strong_count() > 0);
            self.sweep_at = (2 * self.by_hash.len()).max(SLACK);
        }
        value
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

/// Shares equal specs between the AppImages entering the store (the core's types are plain;
/// the sharing is the catalog's).
#[derive(Default)]
pub struct Compactor {
    hasher: RandomState,
    specs: Interner<AppImageSpec>,
}

impl Compactor {
    pub fn compact(&mut self, mut spec: AppImageSpec) -> Arc<AppImageSpec> {
        shrink(&mut spec);
        // Kubernetes' types have no Hash: hash the JSON form instead.
        let hash = match serde_json::to_vec(&spec) {
            Ok(json) => self.hasher.hash_one(&json),
            Err(_) => return Arc::new(spec),
        };
        self.specs.intern(hash, Arc::new(spec))
    }
}

/// Drop the spare capacity a decoder leaves in lists (a list of one env var may hold four):
/// the spec is kept as long as the AppImage is.
fn shrink(spec: &mut AppImageSpec) {
    spec.deploy_templates.shrink_to_fit();
    for template in &mut spec.deploy_templates {
        template.spec.containers.shrink_to_fit();
        if let Some(policy) = &mut template.network_policy {
            policy.ingresses.shrink_to_fit();
        }
        for c in &mut template.spec.containers {
            c.command.shrink_to_fit();
            c.args.shrink_to_fit();
            c.config_volume_mounts.shrink_to_fit();
            c.ports.shrink_to_fit();
            c.env_from.shrink_to_fit();
            c.env.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(name: &str) -> appimage::resource::AppImage {
        crate::testing::seed(name, "1")
    }

    #[test]
    fn equal_specs_are_shared_and_different_ones_are_not() {
        let mut compactor = Compactor::default();
        let (a, b, mut c) = (seed("a"), seed("b"), seed("c"));
        c.spec.deploy_templates[0].name = "other".into();
        let (a, b, c) = (
            compactor.compact(a.spec),
            compactor.compact(b.spec),
            compactor.compact(c.spec),
        );
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(c.deploy_templates[0].name, "other");
    }

    #[test]
    fn a_hash_collision_keeps_each_value() {
        let mut interner = Interner::default();
        let one = interner.intern(1, Arc::new("one".to_string()));
        let two = interner.intern(1, Arc::new("two".to_string()));
        assert_eq!((one.as_str(), two.as_str()), ("one", "two"));
    }

    #[test]
    fn entries_of_dropped_values_are_swept() {
        let mut interner = Interner::default();
        for i in 0..10 * SLACK as u64 {
            interner.intern(i, Arc::new(i));
        }
        assert!(interner.len() < 2 * SLACK, "{}", interner.len());
    }
}
