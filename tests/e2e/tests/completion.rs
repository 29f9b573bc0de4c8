//! Shell completion of `kubectl appimage`, as kubectl 1.26+ does it: the real kubectl, with the
//! plugin and `krew/kubectl_complete-appimage` on PATH, answers `kubectl __complete appimage
//! WORDS…` (what the shell's completion script calls on TAB) by running the completion script.
//! Subcommands, flags and flag values come from the plugin's clap definition; AppImage names
//! from the cluster.

use std::path::PathBuf;
use std::sync::OnceLock;

use appimage_e2e::{Cluster, cluster, repo_root, text};

/// A directory holding only the completion script, as a user installs it.
fn script_dir() -> &'static PathBuf {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let script = repo_root().join("krew/kubectl_complete-appimage");
        std::os::unix::fs::symlink(&script, dir.path().join("kubectl_complete-appimage")).unwrap();
        let path = dir.path().to_path_buf();
        (dir, path)
    })
    .1
}

/// `kubectl __complete appimage WORDS…`: the candidates and the directive line.
fn complete(c: &Cluster, words: &[&str]) -> (Vec<String>, String) {
    let mut args = vec!["__complete", "appimage"];
    args.extend_from_slice(words);
    let out = c
        .command("kubectl")
        .env(
            "PATH",
            format!("{}:{}", script_dir().display(), c.path_env()),
        )
        .args(&args)
        .output()
        .unwrap();
    let (o, e) = text(&out);
    assert!(out.status.success(), "{args:?}: {o}{e}");
    let mut lines: Vec<String> = o.lines().map(String::from).collect();
    let directive = lines.pop().unwrap_or_default();
    (lines, directive)
}

fn values(lines: &[String]) -> Vec<&str> {
    lines
        .iter()
        .map(|l| l.split('\t').next().unwrap())
        .collect()
}

#[test]
fn subcommands_complete_with_their_help() {
    let c = cluster();
    let (lines, directive) = complete(c, &[""]);
    assert_eq!(directive, ":4", "no file names among subcommands");
    let v = values(&lines);
    for name in [
        "create",
        "apply",
        "get",
        "describe",
        "render",
        "validate",
        "deploy",
        "batch",
        "history",
        "diff",
        "rollback",
        "rollout",
        "status",
        "set-image",
        "completion",
        "version",
    ] {
        assert!(v.contains(&name), "{name} missing: {v:?}");
    }
    assert!(!v.iter().any(|n| n.starts_with("__")), "{v:?}");
    assert!(
        lines.contains(&"get\tList AppImages, or show some by name".to_string()),
        "{lines:?}"
    );
    let (lines, _) = complete(c, &["batch", "s"]);
    assert_eq!(values(&lines), ["stop"]);
}

#[test]
fn flags_and_their_values_complete() {
    let c = cluster();
    let (lines, directive) = complete(c, &["get", "--no"]);
    assert_eq!(
        (values(&lines), directive.as_str()),
        (vec!["--no-headers"], ":4")
    );
    let (lines, _) = complete(c, &["get", "-o", ""]);
    assert_eq!(
        values(&lines),
        [
            "yaml",
            "json",
            "name",
            "wide",
            "jsonpath=",
            "custom-columns=",
            "go-template="
        ]
    );
    let (lines, _) = complete(c, &["keygen", "--algorithm", ""]);
    assert_eq!(values(&lines), ["ecdsa-p256", "ed25519"]);
    let (lines, _) = complete(
        c,
        &["--context", "x", "batch", "create", "--restart-policy", "O"],
    );
    assert_eq!(values(&lines), ["OnFailure"]);
    // A file flag leaves the shell to complete file names (cobra's default directive).
    let (lines, directive) = complete(c, &["validate", "-f", ""]);
    assert!(lines.is_empty(), "{lines:?}");
    assert_eq!(directive, ":0");
}

#[test]
fn appimage_names_come_from_the_cluster() {
    let c = cluster();
    c.kubectl_ok(&["apply", "-f", "examples/secretflow-image.yaml"]);
    let (lines, directive) = complete(c, &["describe", "secretflow-"]);
    assert_eq!(directive, ":4");
    assert!(lines.contains(&"secretflow-image".to_string()), "{lines:?}");
    let (lines, _) = complete(c, &["get", "nothing-starts-like-this"]);
    assert!(lines.is_empty(), "{lines:?}");
    // An unreachable cluster gives no names, and no error, quickly.
    let started = std::time::Instant::now();
    let (lines, directive) = complete(c, &["--kubeconfig", "/nonexistent", "status", ""]);
    assert!(
        lines.is_empty() && directive == ":4",
        "{lines:?} {directive}"
    );
    assert!(started.elapsed().as_secs() < 5, "{:?}", started.elapsed());
}
