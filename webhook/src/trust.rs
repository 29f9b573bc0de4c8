//! Trusted public keys from a directory (`*.pem`, `*.pub`) and their policy
//! (`keys-policy.yaml`: validity windows, revocations), reloaded when it changes.
//! Each change of either bumps a generation, which invalidates cached verdicts.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use appimage::signature::{KeyPolicy, TrustedKey};
use arc_swap::ArcSwap;

use crate::metrics::Metrics;
use crate::watch::{DirWatch, watch_dirs};

/// One consistent set of keys.
#[derive(Debug, Default)]
pub struct TrustSnapshot {
    pub keys: Vec<TrustedKey>,
    /// Changes whenever `keys` change.
    pub generation: u64,
    /// What was read, to tell a real change from a touch.
    source: Source,
}

/// The key files (name, content) and the key policy's text.
type Source = (Vec<(String, String)>, Option<String>);

struct Inner {
    current: ArcSwap<TrustSnapshot>,
    next_generation: AtomicU64,
}

/// Shared handle to the current trusted keys; the directory watch lives while any clone does.
#[derive(Clone)]
pub struct Trust {
    inner: Arc<Inner>,
    _watch: Option<Arc<DirWatch>>,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let snap = self.snapshot();
        f.debug_struct("Trust")
            .field("keys", &snap.keys.len())
            .field("generation", &snap.generation)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("trusted keys directory {dir}: {source}")]
    Dir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("trusted keys directory {dir}: {message}")]
    Policy { dir: PathBuf, message: String },
    #[error("watching trusted keys directory {dir}: {source}")]
    Watch {
        dir: PathBuf,
        #[source]
        source: notify::Error,
    },
}

impl Trust {
    /// A fixed key set (tests, or no `--trusted-keys-dir`).
    pub fn fixed(keys: Vec<TrustedKey>) -> Trust {
        Trust {
            inner: Arc::new(Inner {
                current: ArcSwap::from_pointee(TrustSnapshot {
                    keys,
                    generation: 0,
                    source: Source::default(),
                }),
                next_generation: AtomicU64::new(1),
            }),
            _watch: None,
        }
    }

    /// Load `dir` now and reload it on every change. Needs a tokio runtime.
    pub fn watch_dir(dir: &Path, metrics: Metrics) -> Result<Trust, TrustError> {
        let snapshot = snapshot_of(read_dir(dir)?, 0).map_err(|message| TrustError::Policy {
            dir: dir.to_path_buf(),
            message,
        })?;
        metrics.trusted_keys_loaded(snapshot.keys.len(), false);
        tracing::info!(dir = %dir.display(), keys = snapshot.keys.len(), "loaded trusted keys");
        let inner = Arc::new(Inner {
            current: ArcSwap::from_pointee(snapshot),
            next_generation: AtomicU64::new(1),
        });
        // A weak handle: the watch must not keep the keys alive by itself.
        let weak = Arc::downgrade(&inner);
        let owned = dir.to_path_buf();
        let watch = watch_dirs(vec![dir.to_path_buf()], move || {
            if let Some(inner) = weak.upgrade() {
                reload(&inner, &owned, &metrics);
            }
        })
        .map_err(|source| TrustError::Watch {
            dir: dir.to_path_buf(),
            source,
        })?;
        Ok(Trust {
            inner,
            _watch: Some(Arc::new(watch)),
        })
    }

    pub fn snapshot(&self) -> Arc<TrustSnapshot> {
        self.inner.current.load_full()
    }

    /// Replace the key set (and bump the generation).
    pub fn replace(&self, keys: Vec<TrustedKey>) {
        let generation = self.inner.next_generation.fetch_add(1, Ordering::Relaxed);
        self.inner.current.store(Arc::new(TrustSnapshot {
            keys,
            generation,
            source: Source::default(),
        }));
    }
}

fn reload(inner: &Inner, dir: &Path, metrics: &Metrics) {
    let source = match read_dir(dir) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(
                "{e}; keeping the {} loaded key(s)",
                inner.current.load().keys.len()
            );
            return;
        }
    };
    if source == inner.current.load().source {
        return;
    }
    let generation = inner.next_generation.fetch_add(1, Ordering::Relaxed);
    let snapshot = match snapshot_of(source, generation) {
        Ok(s) => s,
        // Never an open door: a broken policy (say, a half-written revocation) keeps the last.
        Err(e) => {
            let kept = inner.current.load().keys.len();
            tracing::error!(dir = %dir.display(), "{e}; keeping the {kept} loaded key(s) and their policy");
            return;
        }
    };
    metrics.trusted_keys_loaded(snapshot.keys.len(), true);
    tracing::info!(dir = %dir.display(), keys = snapshot.keys.len(), generation, "reloaded trusted keys");
    inner.current.store(Arc::new(snapshot));
}

fn snapshot_of(source: Source, generation: u64) -> Result<TrustSnapshot, String> {
    let policy = match &source.1 {
        Some(text) => KeyPolicy::parse(text)?,
        None => KeyPolicy::default(),
    };
    let mut keys: Vec<TrustedKey> = source
        .0
        .iter()
        .filter_map(|(name, pem)| match TrustedKey::from_pem(name, pem) {
            Ok(k) => Some(k),
            Err(e) => {
                tracing::error!("skipping trusted key: {e}");
                None
            }
        })
        .collect();
    policy.apply(&mut keys);
    Ok(TrustSnapshot {
        keys,
        generation,
        source,
    })
}

/// The key files and their text, through the scan the plugin's `verify --keys-dir` shares.
fn read_dir(dir: &Path) -> Result<Source, TrustError> {
    let found = appimage::trusted_keys::read_key_files(dir).map_err(|source| TrustError::Dir {
        dir: dir.to_path_buf(),
        source,
    })?;
    for (path, e) in &found.unreadable {
        tracing::error!("skipping trusted key {}: {e}", path.display());
    }
    Ok((found.files, found.policy))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::process::Command;
    use std::time::Duration;

    /// A real ECDSA public key made by openssl, as PEM.
    fn public_pem(dir: &Path) -> String {
        let run = |args: &[&str]| {
            let ok = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "openssl {args:?}");
        };
        run(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "k.key",
        ]);
        run(&["pkey", "-in", "k.key", "-pubout", "-out", "k.pub"]);
        std::fs::read_to_string(dir.join("k.pub")).expect("pub")
    }

    #[test]
    fn reads_pem_and_pub_through_symlinks_and_skips_the_rest() {
        let tmp = tempfile::tempdir().expect("tmp");
        let work = tempfile::tempdir().expect("tmp");
        let pem = public_pem(work.path());
        let dir = tmp.path();
        std::fs::create_dir(dir.join("..2026_01_01")).expect("mkdir");
        std::fs::write(dir.join("..2026_01_01/a.pem"), &pem).expect("write");
        symlink("..2026_01_01", dir.join("..data")).expect("link");
        symlink("..data/a.pem", dir.join("a.pem")).expect("link");
        std::fs::write(dir.join("b.pub"), &pem).expect("write");
        std::fs::write(dir.join("bad.pem"), "garbage").expect("write");
        std::fs::write(dir.join("README"), "not a key").expect("write");
        std::fs::create_dir(dir.join("sub.pem")).expect("mkdir");

        let source = read_dir(dir).expect("readable");
        let names: Vec<&str> = source.0.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a.pem", "b.pub", "bad.pem"]);
        let snap = snapshot_of(source, 3).expect("no policy");
        let keys: Vec<&str> = snap.keys.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(keys, ["a.pem", "b.pub"]);
        assert!(read_dir(&dir.join("missing")).is_err());
    }

    #[tokio::test]
    async fn reloads_on_change_and_bumps_the_generation() {
        let tmp = tempfile::tempdir().expect("tmp");
        let work = tempfile::tempdir().expect("tmp");
        let pem = public_pem(work.path());
        let trust = Trust::watch_dir(tmp.path(), Metrics::new()).expect("watch");
        let before = trust.snapshot();
        assert!(before.keys.is_empty());
        std::fs::write(tmp.path().join("k.pem"), &pem).expect("write");
        let mut now = trust.snapshot();
        for _ in 0..100 {
            now = trust.snapshot();
            if !now.keys.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(now.keys.len(), 1);
        assert_ne!(now.generation, before.generation);
    }

    #[tokio::test]
    async fn a_revocation_applies_without_restart_and_a_broken_policy_keeps_the_last() {
        let tmp = tempfile::tempdir().expect("tmp");
        let work = tempfile::tempdir().expect("tmp");
        std::fs::write(tmp.path().join("k.pem"), public_pem(work.path())).expect("write");
        let trust = Trust::watch_dir(tmp.path(), Metrics::new()).expect("watch");
        assert!(!trust.snapshot().keys[0].revoked);
        let policy = tmp.path().join(appimage::signature::policy::FILE_NAME);
        std::fs::write(&policy, "revoked: [k.pem]\n").expect("write");
        let revoked = |t: &Trust| t.snapshot().keys.first().is_some_and(|k| k.revoked);
        for _ in 0..100 {
            if revoked(&trust) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(revoked(&trust), "the revocation was not reloaded");
        let generation = trust.snapshot().generation;
        std::fs::write(&policy, "revoked: [k.pem\n").expect("write");
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            revoked(&trust),
            "a broken policy must not lift the revocation"
        );
        assert_eq!(trust.snapshot().generation, generation);
        // At start, a broken policy is an error, not an empty one.
        assert!(matches!(
            Trust::watch_dir(tmp.path(), Metrics::new()),
            Err(TrustError::Policy { .. })
        ));
    }
}
