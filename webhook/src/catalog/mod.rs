//! The catalog: the AppImages the webhook knows (a store a watch fills), the equal values they
//! share, what is derived from each (parsed templates and the signature verdict, cached per
//! resourceVersion and trust generation), and the one readiness flag (the initial list is in).
//!
//! **The freshness rule** (issue 25): the controllers read AppImages from the catalog only,
//! never by a GET or a watch of their own. The catalog is as fresh as its watch, so:
//! - an AppImage it holds is read as held; a controller that saw the AppImage elsewhere at
//!   another resourceVersion requeues shortly ([`Catalog::fresh`]);
//! - an AppImage it lacks counts as absent only for an object written more than [`LAG`] ago
//!   ([`Catalog::settled`]): a younger one may name an AppImage the watch has not brought yet;
//! - revisions likewise: nothing is read of them before their initial list is in
//!   ([`Revisions::is_ready`]), and a revision a controller wrote and the catalog lacks is
//!   waited for up to [`LAG`] ([`Catalog::revision_seen`]), so its number is not taken twice.

mod interner;
mod plans;
mod revisions;
mod store;
mod watch;

use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use appimage::injection::{Templates, parse_templates};
use appimage::resource::AppImage;
use appimage::revision::Named;
use appimage::signature::{self, Accepted, Requirement, SignatureError, Signer, signers};
use appimage::workload::revision_hash;

pub use interner::{Compactor, Interner};
pub use plans::Plans;
pub use revisions::{Recorded, RevisionWriter, Revisions};
pub use store::{AppImages, Change, Stored, Writer};
pub use watch::{PAGE, watch};

use crate::trust::Trust;

/// Derived from one stored AppImage under one set of trusted keys.
#[derive(Debug)]
pub struct Derived {
    /// Trust generation the verdict was computed under.
    generation: u64,
    /// Parsed config templates, or the parse error's text.
    pub templates: Result<Arc<Templates>, String>,
    /// The trusted keys whose signatures verify (before windows, revocation and thresholds,
    /// which admission applies per request), or why none does.
    pub signature: Result<Vec<Signer>, SignatureError>,
    /// The AppImage's kept metadata and `spec.image` ([`Stored::head`]): what admission reads
    /// of a Pod its plan covers. Not the deploy templates: a copy of them per stored AppImage
    /// cost 3.4 KB each (issue 31); they are copied to build a plan, or for a Pod no plan covers.
    pub head: Arc<AppImage>,
    /// Injection plans, built per role and template as Pods come (issue 31).
    pub plans: Plans,
}

#[cfg(test)]
impl Derived {
    pub(crate) fn empty() -> Derived {
        Derived {
            generation: 0,
            templates: Err(String::new()),
            signature: Ok(Vec::new()),
            head: Arc::new(crate::testing::seed("empty", "0")),
            plans: Plans::default(),
        }
    }
}

/// An empty AppImage store and its writer; the store is ready after its first initial list.
pub fn appimages() -> (AppImages, Writer) {
    store::store()
}

/// An AppImage with what is derived from it.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The stored AppImage (or revision), whose spec equal ones share.
    entry: Arc<Stored>,
    pub derived: Arc<Derived>,
    /// Set when a Pod named a revision hash that no revision records and the current spec has
    /// another: it runs the current spec, and admission says so (never silently).
    pub fallback: Option<String>,
}

impl Prepared {
    /// The AppImage's kept metadata and `spec.image`, with no templates.
    pub fn head(&self) -> &AppImage {
        &self.derived.head
    }

    /// The AppImage without its configTemplates (which `derived.templates` holds parsed),
    /// copied from the store on each call.
    pub fn image(&self) -> AppImage {
        self.entry.without_config_templates()
    }
}

/// Cheap to clone; clones share the store and the shared parses.
#[derive(Clone)]
pub struct Catalog {
    store: AppImages,
    trust: Trust,
    /// AppImages with equal configTemplates (versions of one app) share one parse.
    parses: Arc<Mutex<SharedParses>>,
    /// Revisions of AppImages (empty unless a watch fills them).
    revisions: Revisions,
}

/// Parsed templates by a hash of their source, and plans' pre-encoded spec operations by a hash
/// of their bytes; a hit is used only when the values are equal.
#[derive(Default)]
struct SharedParses {
    hasher: RandomState,
    parsed: Interner<Templates>,
    spec_ops: Interner<[u8]>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("appimages", &self.store)
            .field("trust", &self.trust)
            .finish()
    }
}

/// How long the catalog's watch may take to bring an AppImage written to the API server.
pub const LAG: Duration = Duration::from_secs(10);

impl Catalog {
    /// Whether an object written at `written` (its creationTimestamp) is old enough that an
    /// AppImage it names and the catalog lacks is absent, not merely not watched yet.
    pub fn settled(
        &self,
        written: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    ) -> bool {
        let Some(written) = written else {
            return true;
        };
        let age = jiff::Timestamp::now().duration_since(written.0);
        self.is_ready() && age >= jiff::SignedDuration::try_from(LAG).unwrap_or_default()
    }

    /// Whether the catalog holds AppImage `name` at `resource_version` (the version a
    /// controller saw), so that what it derives matches what the controller acts on.
    pub fn fresh(&self, name: &str, resource_version: Option<&str>) -> bool {
        self.store
            .get(name)
            .is_some_and(|e| resource_version.is_none_or(|rv| *e.resource_version == *rv))
    }

    /// Whether revision `name`, which a controller wrote at `written`, is as the catalog
    /// holds it: held, or written more than [`LAG`] ago (gone since, say pruned or collected).
    pub fn revision_seen(&self, name: &str, written: std::time::Instant) -> bool {
        written.elapsed() >= LAG || self.revisions.named(name).is_some()
    }

    pub fn new(store: AppImages, trust: Trust) -> Catalog {
        Catalog {
            store,
            trust,
            parses: Arc::default(),
            revisions: Revisions::default(),
        }
    }

    /// Whether `prepared` may run now: its cached signers under the current keys' windows and
    /// revocations (checked per call, as windows pass with time).
    pub fn verdict(
        &self,
        prepared: &Prepared,
        requirement: &Requirement,
    ) -> Result<Accepted, SignatureError> {
        let signers = prepared.derived.signature.as_ref().map_err(Clone::clone)?;
        let trust = self.trust.snapshot();
        signature::accept(signers, &trust.keys, requirement, jiff::Timestamp::now())
    }

    /// Whether `image` (read elsewhere than the store) may run now, verified afresh.
    pub fn verify(
        &self,
        image: &AppImage,
        requirement: &Requirement,
    ) -> Result<Accepted, SignatureError> {
        let trust = self.trust.snapshot();
        signature::verify(image, &trust.keys, requirement, jiff::Timestamp::now())
    }

    /// The catalog with the revisions a watch fills.
    pub fn with_revisions(mut self, revisions: Revisions) -> Catalog {
        self.revisions = revisions;
        self
    }

    pub fn revisions(&self) -> &Revisions {
        &self.revisions
    }

    pub fn store(&self) -> &AppImages {
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

    /// Whether the initial list is in.
    pub fn is_ready(&self) -> bool {
        self.store.is_ready()
    }

    /// Whether ready, waiting up to `limit` for it.
    pub async fn wait_ready(&self, limit: Duration) -> bool {
        self.store.wait(limit).await
    }

    /// Listen to what changes from now on: AppImages, and AppImages whose revisions changed.
    pub fn changes(&self) -> tokio::sync::broadcast::Receiver<Change> {
        self.store.changes()
    }

    /// The names of every AppImage stored.
    pub fn names(&self) -> Vec<Arc<str>> {
        self.store.names()
    }

    /// The AppImage `name` as the controllers key on it (its kept metadata with its UID, an
    /// empty spec); `None` when the store lacks it.
    pub fn controlled(&self, name: &str) -> Option<AppImage> {
        self.store.get(name).map(|entry| entry.controlled())
    }

    /// The AppImage `name` as stored; `None` when the store lacks it.
    pub fn appimage(&self, name: &str) -> Option<AppImage> {
        self.store.get(name).map(|entry| entry.appimage())
    }

    /// The current AppImage `name`'s stage marks (name, stage label, replaced-by) with an
    /// empty spec; `None` when the store lacks it.
    pub fn marks(&self, name: &str) -> Option<AppImage> {
        self.store.get(name).map(|entry| entry.marks())
    }

    /// The AppImage `name` with its templates and verdict; `None` when the store lacks it.
    pub fn lookup(&self, name: &str) -> Option<Prepared> {
        Some(self.prepare(&self.store.get(name)?))
    }

    /// The AppImage `name` as the revision `named` was (see [`appimage::revision::named`]):
    /// `Ok(None)` when the AppImage is unknown, an error saying how to fix it when the revision
    /// is. A hash that no revision records is the current spec.
    pub fn lookup_named(&self, name: &str, named: &Named) -> Result<Option<Prepared>, String> {
        let Some(current) = self.store.get(name) else {
            return Ok(None);
        };
        let entry = match named {
            Named::Current => current,
            // Only a revision owned by this AppImage (its UID), and of the hash a template
            // names with the number (issue 24).
            Named::Number(n) => self.revisions.by_number(name, &current.uid, *n, None)?,
            Named::Pinned { number, hash } => {
                self.revisions
                    .by_number(name, &current.uid, *number, Some(hash))?
            }
            Named::Hash(hash) => match self.revisions.by_hash(name, &current.uid, hash) {
                Some(entry) => entry,
                // A hash no revision records (none recorded yet, or the revisions CRD is not
                // installed) runs the current spec, as a Pod naming no revision does: denying
                // would stop every Pod of a workload deployed before revisions were recorded.
                // When the current spec is another one (say, the AppImage was re-created), the
                // Pod is told.
                None => {
                    let mut prepared = self.prepare(&current);
                    if revision_hash(&current.spec) != *hash {
                        prepared.fallback = Some(format!(
                            "the Pod names revision hash {hash} of AppImage {name:?}, which no revision of it records (re-created, or pruned): it runs the current spec instead; kubectl appimage history {name} lists the revisions, and kubectl appimage rollout {name} moves the workload on"
                        ));
                    }
                    return Ok(Some(prepared));
                }
            },
        };
        Ok(Some(self.prepare(&entry)))
    }

    /// The injection plan of `prepared` for `req`, kept with its revision's derived state.
    pub fn plan(
        &self,
        prepared: &Prepared,
        templates: &Templates,
        req: &appimage::injection::Request,
    ) -> Result<Arc<appimage::injection::Plan>, appimage::injection::InjectionError> {
        // Copies of one application share their plans' spec operations.
        let share = |plan: &mut appimage::injection::Plan| {
            let mut shared = self.parses.lock().unwrap_or_else(|p| p.into_inner());
            let shared = &mut *shared;
            plan.share_spec(|ops| {
                let key = shared.hasher.hash_one(&*ops);
                shared.spec_ops.intern(key, ops)
            });
        };
        prepared
            .derived
            .plans
            .get(|| prepared.image(), templates, req, share)
    }

    /// `entry` with its templates and verdict, cached on the entry.
    fn prepare(&self, entry: &Arc<Stored>) -> Prepared {
        let trust = self.trust.snapshot();
        let cached = entry.derived.load_full();
        let derived = match cached {
            Some(d) if d.generation == trust.generation => d,
            previous => {
                // A new key set needs a new verdict, not a new parse. Payload v2 covers the
                // whole spec, config templates included.
                let whole = entry.appimage();
                let (templates, head) = match previous {
                    Some(d) => (d.templates.clone(), d.head.clone()),
                    None => (self.parse(&whole), Arc::new(entry.head())),
                };
                let signature = signers(&whole, &trust.keys);
                let derived = Arc::new(Derived {
                    generation: trust.generation,
                    templates,
                    signature,
                    head,
                    plans: Plans::default(),
                });
                entry.derived.store(Some(derived.clone()));
                derived
            }
        };
        Prepared {
            entry: entry.clone(),
            derived,
            fallback: None,
        }
    }

    /// `image`'s parsed templates, shared with an earlier AppImage's when they parse equal.
    fn parse(&self, image: &AppImage) -> Result<Arc<Templates>, String> {
        let parsed = parse_templates(image).map_err(|e| e.to_string())?;
        let mut shared = self.parses.lock().unwrap_or_else(|p| p.into_inner());
        let key = shared.hasher.hash_one(&image.spec.config_templates);
        // Equal parses render alike, so a hash collision can only cost the sharing.
        Ok(shared.parsed.intern(key, Arc::new(parsed)))
    }
}

#[cfg(test)]
mod tests {
    use kube::runtime::watcher::Event;

    use super::*;

    fn image(name: &str, template: &str) -> AppImage {
        let mut image = crate::testing::seed(name, "1");
        image.spec.config_templates = [("task-config.conf".into(), template.into())].into();
        image
    }

    #[test]
    fn equal_templates_are_parsed_into_one_shared_value() {
        let (reader, mut writer) = appimages();
        writer.apply_watcher_event(&Event::Init);
        for (name, template) in [("a", "x {{.TASK_ID}}"), ("b", "x {{.TASK_ID}}"), ("c", "y")] {
            writer.apply_watcher_event(&Event::InitApply(image(name, template)));
        }
        writer.apply_watcher_event(&Event::InitDone);
        let catalog = Catalog::new(reader, Trust::fixed(Vec::new()));
        let templates = |name| {
            catalog
                .lookup(name)
                .unwrap()
                .derived
                .templates
                .clone()
                .unwrap()
        };
        let (a, b, c) = (templates("a"), templates("b"), templates("c"));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_ne!(a, c);
        // Cached per name too: a second lookup reuses the first parse.
        assert!(Arc::ptr_eq(&templates("c"), &c));
    }

    /// Issue 31's memory: what a looked-up AppImage keeps holds no deploy templates, and
    /// copies of one application (equal specs, other names) share their plans' spec bytes.
    #[test]
    fn copies_share_their_plans_spec_and_keep_no_template_copy() {
        let (reader, mut writer) = appimages();
        writer.apply_watcher_event(&Event::Init);
        for name in ["a", "b"] {
            writer.apply_watcher_event(&Event::InitApply(crate::testing::seed(name, "1")));
        }
        writer.apply_watcher_event(&Event::InitDone);
        let catalog = Catalog::new(reader, Trust::fixed(Vec::new()));
        let plan = |name: &str| {
            let prepared = catalog.lookup(name).unwrap();
            assert!(prepared.head().spec.deploy_templates.is_empty());
            assert_eq!(prepared.head().spec.image, prepared.image().spec.image);
            assert!(!prepared.image().spec.deploy_templates.is_empty());
            let templates = prepared.derived.templates.clone().unwrap();
            let req = appimage::injection::Request::default();
            catalog.plan(&prepared, &templates, &req).unwrap()
        };
        let (a, b) = (plan("a"), plan("b"));
        let (a, b) = (a.spec_ops().unwrap(), b.spec_ops().unwrap());
        assert_eq!(a, b);
        assert!(
            std::ptr::eq(a.as_ptr(), b.as_ptr()),
            "one copy of equal spec bytes"
        );
    }
}
