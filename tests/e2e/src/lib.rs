//! Test support shared by the end-to-end test binaries: one real cluster per test binary
//! (kube-apiserver v1.33 + etcd, kube-controller-manager, kube-scheduler and [`NODES`] kwok
//! nodes, see tests/controlplane), the real `kubectl` with our plugin on PATH, the CRD
//! installed, and unique names per test.
//!
//! Teardown: the control plane is started with `--parent-pid`, so it stops by itself when the
//! test binary exits, whether its tests passed, failed or panicked.

pub mod chart;
pub mod leaders;
pub mod pki;
pub mod policies;
pub mod review;
pub mod waves;
pub mod webhook;
pub mod world;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const CRD_FILE: &str = "charts/appimage-webhook/crds/appimages.kuscia.secretflow.yaml";

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

/// Cargo's target directory (honours CARGO_TARGET_DIR).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                repo_root().join(p)
            }
        })
        .unwrap_or_else(|| repo_root().join("target"))
}

/// A binary of this workspace, built by `cargo build --workspace --bins` before the tests.
pub fn workspace_bin(name: &str) -> PathBuf {
    let path = target_dir().join("debug").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// The kubectl matching the test apiserver: `$KUBECTL`, else a `kubectl.1.33` next to the
/// `kubectl` on PATH (installs that ship several versions keep them side by side, and
/// `kubectl` may be a symlink into that directory), else `kubectl` from PATH.
pub fn kubectl_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("KUBECTL") {
        return PathBuf::from(p);
    }
    let Some(found) = which(Path::new("kubectl")) else {
        return PathBuf::from("kubectl");
    };
    let real = std::fs::canonicalize(&found).unwrap_or_else(|_| found.clone());
    [&found, &real]
        .into_iter()
        .filter_map(|p| p.parent())
        .map(|dir| dir.join("kubectl.1.33"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("kubectl"))
}

/// Simulated nodes of every test cluster: `kwok-node-0` .. `kwok-node-{NODES-1}`, each labelled
/// [`NODE_LABEL`]=its name and [`POOL_LABEL`]=`e2e`.
pub const NODES: usize = 3;
/// The per-node label kube-controlplane sets: `appimage.test/node=kwok-node-<i>`.
pub const NODE_LABEL: &str = "appimage.test/node";
/// The label every node of the test cluster gets through `--node-labels`.
pub const POOL_LABEL: &str = "appimage.test/pool";

/// The name of the i-th simulated node.
pub fn node_name(i: usize) -> String {
    format!("kwok-node-{i}")
}

pub struct Cluster {
    _child: Child,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    bin_dir: PathBuf,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// Set by [`real_node`] before the cluster starts: the cluster then also runs
/// `--real-node` (see tests/controlplane/README.md, "The real node").
static WITH_REAL_NODE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The real node of this test binary's cluster and the app image in its local registry.
pub struct RealNode {
    /// The registry, `127.0.0.1:PORT` (plain HTTP).
    pub registry: String,
    /// The app image's name in the registry, without tag: `127.0.0.1:PORT/appimage-test/app`.
    pub app_name: String,
    /// Its tag.
    pub app_tag: String,
    /// Its manifest digest, `sha256:…`.
    pub app_manifest_digest: String,
    /// Its image ID (the config digest, what the CRI reports), `sha256:…`.
    pub app_image_id: String,
}

/// A notice that the real-node tests did not run, written to the process's stderr directly:
/// the test harness captures `eprintln!` of passing tests, and a skip must never be silent.
fn skipped(why: &str) {
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED (real node): {why}\n*** the real-node tests did not run\n"
    );
}

/// The node name, label and taint of the real node (kube-controlplane --real-node).
pub const REAL_NODE_NAME: &str = "real-node-0";
pub const REAL_NODE_LABEL: &str = "appimage.kuscia.secretflow/real-node";

/// The cluster of this test binary with a real node (`kube-controlplane --real-node`): must be
/// called before anything else starts the cluster. Builds what the node needs first
/// (`scripts/controlplane.sh build-real-node`: Debian packages when missing, the kubelet, the
/// images), then pushes the app image to the cluster's registry. `None`, after a loud notice on
/// stderr, only when a documented prerequisite cannot be had on this machine: not root, or the
/// Debian packages missing with no apt-get to install them.
pub fn real_node() -> Option<&'static RealNode> {
    static NODE: OnceLock<Option<RealNode>> = OnceLock::new();
    NODE.get_or_init(|| {
        let uid = Command::new("id").arg("-u").output().expect("id -u");
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            skipped(
                "not root; kube-controlplane --real-node runs containerd and a kubelet, which need root",
            );
            return None;
        }
        let root = repo_root();
        let build = Command::new("bash")
            .arg(root.join("scripts/controlplane.sh"))
            .arg("build-real-node")
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/controlplane.sh build-real-node");
        let stderr = String::from_utf8_lossy(&build.stderr);
        if !build.status.success() && stderr.contains("and no apt-get") {
            skipped(stderr.trim());
            return None;
        }
        assert!(
            build.status.success(),
            "scripts/controlplane.sh build-real-node failed:\n{stderr}"
        );
        assert!(
            CLUSTER.get().is_none(),
            "real_node() must be called before the cluster is started"
        );
        WITH_REAL_NODE.store(true, Ordering::SeqCst);
        let c = cluster();
        let registry = std::fs::read_to_string(c.dir().join("registry.addr"))
            .expect("DIR/registry.addr")
            .trim()
            .to_string();
        let env_file = c.dir().join("images.env");
        let push = Command::new("bash")
            .arg(root.join("scripts/images.sh"))
            .args(["push", &registry])
            .arg(&env_file)
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/images.sh push");
        assert!(
            push.status.success(),
            "scripts/images.sh push failed:\n{}",
            String::from_utf8_lossy(&push.stderr)
        );
        let env = std::fs::read_to_string(&env_file).expect("images.env");
        let get = |key: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .unwrap_or_else(|| panic!("{key} missing in {}", env_file.display()))
                .to_string()
        };
        let image = get("APP_IMAGE");
        let (name, tag) = image.rsplit_once(':').expect("APP_IMAGE is name:tag");
        Some(RealNode {
            registry,
            app_name: name.to_string(),
            app_tag: tag.to_string(),
            app_manifest_digest: get("APP_MANIFEST_DIGEST"),
            app_image_id: get("APP_IMAGE_ID"),
        })
    })
    .as_ref()
}

/// The kube-controlplane binary: `CONTROLPLANE_BIN`, or the one `scripts/controlplane.sh build`
/// puts in the target directory.
pub fn controlplane_binary() -> PathBuf {
    std::env::var_os("CONTROLPLANE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("controlplane/kube-controlplane"))
}

/// The control plane of this test binary, started on first use, with the CRD Established.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(Cluster::start)
}

impl Cluster {
    fn start() -> Cluster {
        let root = repo_root();
        let binary = controlplane_binary();
        assert!(
            binary.exists(),
            "{} is missing: run `scripts/controlplane.sh build` first (scripts/test.sh does)",
            binary.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("appimage-e2e-")
            .tempdir()
            .expect("temp dir");
        let mut child = Command::new(&binary)
            .arg("--dir")
            .arg(dir.path())
            .arg("--nodes")
            .arg(NODES.to_string())
            .arg("--node-labels")
            .arg(format!("{POOL_LABEL}=e2e"))
            .arg("--parent-pid")
            .arg(std::process::id().to_string())
            // The static `Cluster` is never dropped, so its TempDir never deletes itself:
            // the control plane deletes it once this test process is gone.
            .arg("--remove-dir")
            .args(
                WITH_REAL_NODE
                    .load(Ordering::SeqCst)
                    .then_some("--real-node"),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("controlplane.stderr")).expect("log"),
            ))
            .spawn()
            .expect("start the control plane");
        let stdout = child.stdout.take().expect("stdout");
        let mut kubeconfig = None;
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("read control plane stdout");
            if let Some(path) = line.strip_prefix("READY ") {
                kubeconfig = Some(PathBuf::from(path.trim()));
                break;
            }
        }
        let kubeconfig = kubeconfig.unwrap_or_else(|| {
            let log =
                std::fs::read_to_string(dir.path().join("controlplane.stderr")).unwrap_or_default();
            panic!("the control plane exited before it was ready:\n{log}")
        });

        // kubectl and our plugin on one PATH, as a user has them.
        let bin_dir = dir.path().join("bin");
        std::fs::create_dir_all(&bin_dir).expect("bin dir");
        let kubectl = kubectl_binary();
        let kubectl = if kubectl.is_absolute() {
            kubectl
        } else {
            which(&kubectl).expect("kubectl on PATH")
        };
        std::os::unix::fs::symlink(&kubectl, bin_dir.join("kubectl")).expect("link kubectl");
        for bin in ["kubectl-appimage", "appimage-webhook"] {
            let path = target_dir().join("debug").join(bin);
            if path.exists() {
                std::os::unix::fs::symlink(&path, bin_dir.join(bin)).expect("link bin");
            }
        }
        let cluster = Cluster {
            _child: child,
            dir,
            kubeconfig,
            bin_dir,
        };
        cluster.kubectl_ok(&["apply", "-f", &root.join(CRD_FILE).to_string_lossy()]);
        // Polled rather than `kubectl wait`, which fails outright while the new CRD has no
        // status conditions yet.
        let established = wait_until(Duration::from_secs(60), || {
            cluster
                .kubectl(&[
                    "get",
                    "crd/appimages.kuscia.secretflow",
                    "-o",
                    r#"jsonpath={.status.conditions[?(@.type=="Established")].status}"#,
                ])
                .stdout
                == b"True"
        });
        assert!(established, "the AppImage CRD was not Established in 60 s");
        // Discovery can lag the Established condition by a moment.
        wait_until(Duration::from_secs(30), || {
            cluster.kubectl(&["get", "appimages"]).status.success()
        });
        cluster
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// PATH with kubectl and our binaries first.
    pub fn path_env(&self) -> String {
        format!(
            "{}:{}",
            self.bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    /// A command with this cluster's kubeconfig and PATH, run from the repo root.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env("PATH", self.path_env())
            .env_remove("KUBECTL_PLUGINS_PATH")
            .current_dir(repo_root())
            .stdin(Stdio::null());
        cmd
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.command("kubectl")
            .args(args)
            .output()
            .expect("run kubectl")
    }

    /// Run kubectl, fail the test with its output unless it succeeds; return stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A namespace of its own for one test, usable for Pods: the ServiceAccount admission
    /// plugin refuses Pods until the controller-manager has made the `default` ServiceAccount.
    pub fn namespace(&self, prefix: &str) -> String {
        let ns = unique(prefix);
        self.kubectl_ok(&["create", "namespace", &ns]);
        let ready = wait_until(Duration::from_secs(60), || {
            self.kubectl(&["get", "serviceaccount", "default", "-n", &ns])
                .status
                .success()
        });
        assert!(
            ready,
            "namespace {ns}: no `default` ServiceAccount after 60 s (is the controller-manager running? see {}/controller-manager.log)",
            self.dir().display()
        );
        ns
    }
}

/// `prefix-<pid>-<n>`, unique within and across test binaries.
pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Poll `f` every 100 ms until it holds or `limit` passes; returns whether it held.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if f() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn which(name: &Path) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// stdout and stderr as text, for assertions.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Write `text` to a file named `name` in a fresh temp dir; the dir lives as long as the result.
pub fn temp_file(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write temp file");
    (dir, path)
}

/// Write `value` as JSON to a uniquely named file in `dir`, for `kubectl apply -f`.
pub fn write_json(dir: &Path, value: &serde_json::Value) -> PathBuf {
    let file = dir.join(format!("{}.json", unique("obj")));
    std::fs::write(&file, serde_json::to_vec(value).expect("JSON")).expect("write JSON file");
    file
}
