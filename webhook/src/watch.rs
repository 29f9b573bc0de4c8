//! Watch directories (not files): Kubernetes Secret and ConfigMap volumes publish updates by
//! swapping a `..data` symlink, which no watch on the files themselves would see.

use std::path::PathBuf;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Bursts of events (a symlink swap is several) become one reload.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// Stops the watch when dropped.
#[derive(Debug)]
pub(crate) struct DirWatch {
    task: JoinHandle<()>,
}

impl Drop for DirWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Relevant: anything but reads, so our own reloads do not trigger reloads.
fn relevant(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Call `on_change` (debounced) after any change in any of `dirs`, non-recursively.
/// Must be called inside a tokio runtime.
pub(crate) fn watch_dirs<F>(dirs: Vec<PathBuf>, mut on_change: F) -> notify::Result<DirWatch>
where
    F: FnMut() + Send + 'static,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let mut watcher: RecommendedWatcher =
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(event) if relevant(&event.kind) => {
                let _ = tx.send(());
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("file watch error: {e}"),
        })?;
    for dir in &dirs {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
    }
    let task = tokio::spawn(async move {
        // The watcher lives as long as this task.
        let _watcher = watcher;
        while rx.recv().await.is_some() {
            loop {
                match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            on_change();
        }
    });
    Ok(DirWatch { task })
}

/// The directory holding `path` (`.` for a bare file name).
pub(crate) fn parent_dir(path: &std::path::Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, ModifyKind, RenameMode};

    #[test]
    fn reads_do_not_count_as_changes() {
        assert!(!relevant(&EventKind::Access(AccessKind::Open(
            AccessMode::Read
        ))));
        assert!(!relevant(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(relevant(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(relevant(&EventKind::Create(CreateKind::File)));
        assert!(relevant(&EventKind::Modify(ModifyKind::Name(
            RenameMode::To
        ))));
    }

    #[test]
    fn parent_of_a_bare_name_is_the_current_dir() {
        assert_eq!(
            parent_dir(std::path::Path::new("tls.crt")),
            PathBuf::from(".")
        );
        assert_eq!(
            parent_dir(std::path::Path::new("/a/tls.crt")),
            PathBuf::from("/a")
        );
    }
}
