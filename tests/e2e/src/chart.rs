//! The Helm chart rendered by the real helm (built once, cached, by scripts/tools.sh), for the
//! tests that install parts of it into the test cluster (controller_rights.rs).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

use crate::{repo_root, text};

pub const CHART: &str = "charts/appimage-webhook";

/// The helm binary scripts/tools.sh builds (the last line it prints).
pub fn helm() -> PathBuf {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        let out = Command::new(repo_root().join("scripts/tools.sh"))
            .arg("helm")
            .current_dir(repo_root())
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/tools.sh");
        let (stdout, stderr) = text(&out);
        assert!(
            out.status.success(),
            "scripts/tools.sh helm failed:\n{stderr}"
        );
        let path = PathBuf::from(stdout.lines().last().expect("a path").trim());
        assert!(path.is_file(), "scripts/tools.sh helm printed {path:?}");
        path
    })
    .clone()
}

/// `helm template RELEASE charts/appimage-webhook -n NS [extra...]`, offline.
pub fn render(release: &str, namespace: &str, extra: &[&str]) -> String {
    let home = tempfile::tempdir().expect("helm home");
    let out = Command::new(helm())
        .args(["template", release, CHART, "--namespace", namespace])
        .args(extra)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        // helm template never talks to a cluster; make sure of it.
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .output()
        .expect("run helm");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "helm template failed:\n{stderr}");
    stdout
}

/// The documents of a YAML stream (split at `---` lines), empty ones left out.
pub fn docs(yaml: &str) -> Vec<Value> {
    let mut chunks = vec![String::new()];
    for line in yaml.lines() {
        if line == "---" || line.starts_with("--- ") {
            chunks.push(String::new());
        } else {
            let last = chunks.last_mut().expect("a chunk");
            last.push_str(line);
            last.push('\n');
        }
    }
    chunks
        .iter()
        .map(|c| serde_yaml_ng::from_str::<Value>(c).unwrap_or_else(|e| panic!("{e}:\n{c}")))
        .filter(|v| !v.is_null())
        .collect()
}
