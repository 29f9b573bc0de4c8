//! The one scan of a trusted-keys directory, shared by `kubectl appimage verify --keys-dir`
//! and the webhook's `--trusted-keys-dir`: which files count as keys, in which order. It reads
//! the local file system only; what to do with an unreadable or broken key is the caller's.

use std::io;
use std::path::{Path, PathBuf};

/// True for a file name that holds a trusted key: `*.pem` or `*.pub`, not hidden. Hidden
/// entries such as a Secret volume's `..data` are skipped; their files are reached through
/// the visible links.
pub fn is_key_file_name(name: &str) -> bool {
    !name.starts_with('.') && (name.ends_with(".pem") || name.ends_with(".pub"))
}

/// The key files directly in `dir` (symlinks followed, directories skipped), sorted by name.
pub fn key_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if is_key_file_name(&entry.file_name().to_string_lossy()) && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The key files of a directory with their text.
#[derive(Debug, Default)]
pub struct KeyFiles {
    /// File name and PEM text, sorted by name.
    pub files: Vec<(String, String)>,
    /// Files that matched but could not be read as text, for the caller to report.
    pub unreadable: Vec<(PathBuf, io::Error)>,
    /// The text of the key policy (`keys-policy.yaml`: windows, revocations), if present.
    pub policy: Option<String>,
}

/// [`key_files`] and their text. Only a directory that cannot be listed is an error.
pub fn read_key_files(dir: &Path) -> io::Result<KeyFiles> {
    let mut out = KeyFiles::default();
    for path in key_files(dir)? {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match std::fs::read_to_string(&path) {
            Ok(text) => out.files.push((name, text)),
            Err(e) => out.unreadable.push((path, e)),
        }
    }
    let policy = dir.join(crate::signature::policy::FILE_NAME);
    match std::fs::read_to_string(&policy) {
        Ok(text) => out.policy = Some(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        // Unreadable is not absent: a revocation list that cannot be read must not be skipped.
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("{}: {e}", policy.display()),
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_key_files() {
        for name in ["a.pem", "b.pub", "x.y.pem"] {
            assert!(is_key_file_name(name), "{name}");
        }
        for name in [".a.pem", "..data", "README", "a.key", "a.pem.bak", "pem"] {
            assert!(!is_key_file_name(name), "{name}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn scans_files_and_links_sorted_and_skips_the_rest() {
        use std::os::unix::fs::symlink;
        let dir =
            std::env::temp_dir().join(format!("appimage-trusted-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("..2026_01_01")).unwrap();
        std::fs::write(dir.join("..2026_01_01/a.pem"), "A").unwrap();
        symlink("..2026_01_01", dir.join("..data")).unwrap();
        symlink("..data/a.pem", dir.join("a.pem")).unwrap();
        std::fs::write(dir.join("c.pub"), "C").unwrap();
        std::fs::write(dir.join("b.pem"), [0xff, 0xfe]).unwrap();
        std::fs::write(dir.join("README"), "no").unwrap();
        std::fs::create_dir(dir.join("sub.pem")).unwrap();
        symlink("missing.pem", dir.join("dangling.pem")).unwrap();

        let names: Vec<String> = key_files(&dir)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.pem", "b.pem", "c.pub"]);
        let read = read_key_files(&dir).unwrap();
        assert_eq!(
            read.files,
            [("a.pem".into(), "A".into()), ("c.pub".into(), "C".into())]
        );
        assert_eq!(read.unreadable.len(), 1);
        assert!(read.unreadable[0].0.ends_with("b.pem"));
        assert!(key_files(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
