//! The webhook's container image (scripts/release.sh image): built with umoci, no container
//! engine and no registry, as an OCI archive; checked with the real tools. skopeo reads the
//! archive as a push to a registry would, GNU tar lists every layer, umoci unpacks it as a
//! runtime would, the unpacked binary answers over TLS with the test control plane behind it,
//! and podman runs the image as a container, as the chart's Deployment would.
//!
//! umoci, skopeo, podman and runc come from Debian's packages (scripts/test.sh installs them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use appimage_e2e::webhook::{Tls, free_port};
use appimage_e2e::{cluster, repo_root, text, unique, wait_until};
use serde_json::Value;

/// The labels' source: the workspace's `repository`.
const SOURCE: &str = "https://github.com/kuscia-appimage/kubectl-appimage";
const VERSION: &str = env!("CARGO_PKG_VERSION");
const ENTRYPOINT: &str = "/appimage-webhook";
const USER: &str = "65532:65532";
/// The budget for the compressed image.
const MAX_BYTES: u64 = 20 * 1024 * 1024;

/// The image built once per test run by `scripts/release.sh image`, and its OCI layout.
struct Image {
    archive: PathBuf,
    /// `repository:tag`, as the script prints it.
    reference: String,
    /// The archive extracted: an OCI image layout.
    layout: tempfile::TempDir,
}

/// Run `program args`, failing the test with its output unless it succeeds; its stdout.
#[track_caller]
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}); scripts/test.sh installs it"));
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

fn image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let script = repo_root().join("scripts/release.sh");
        let out = run(script.to_str().unwrap(), &["image"]);
        let line = |prefix: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(prefix))
                .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{out}"))
                .trim()
                .to_string()
        };
        let archive = PathBuf::from(line("image:"));
        let reference = line("reference:");
        eprintln!("{out}");
        let layout = tempfile::Builder::new()
            .prefix("oci-layout-")
            .tempdir()
            .unwrap();
        let dir = layout.path().to_str().unwrap();
        run("tar", &["-xf", archive.to_str().unwrap(), "-C", dir]);
        Image {
            archive,
            reference,
            layout,
        }
    })
}

impl Image {
    fn blob(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        self.layout.path().join("blobs/sha256").join(hex)
    }

    fn json(&self, path: &Path) -> Value {
        serde_json::from_slice(&std::fs::read(path).expect("read blob")).expect("JSON blob")
    }

    /// The image's one manifest (index.json names it with the reference).
    fn manifest(&self) -> Value {
        let index = self.json(&self.layout.path().join("index.json"));
        let manifests = index["manifests"].as_array().expect("manifests");
        assert_eq!(manifests.len(), 1, "one image in the archive: {index}");
        let m = &manifests[0];
        assert_eq!(
            m["annotations"]["org.opencontainers.image.ref.name"], self.reference,
            "index.json names the image as the script tagged it"
        );
        self.json(&self.blob(m["digest"].as_str().expect("digest")))
    }

    /// `oci-archive:PATH`, the transport `skopeo copy` pushes from.
    fn transport(&self) -> String {
        format!("oci-archive:{}", self.archive.display())
    }

    /// The image unpacked by umoci as an OCI runtime bundle (rootfs/ and config.json).
    fn bundle(&self) -> PathBuf {
        static BUNDLE: OnceLock<tempfile::TempDir> = OnceLock::new();
        let parent = BUNDLE.get_or_init(|| {
            let parent = tempfile::Builder::new()
                .prefix("bundle-")
                .tempdir()
                .unwrap();
            let bundle = parent.path().join("bundle");
            let layout = format!("{}:{}", self.layout.path().display(), self.reference);
            let mut args = vec!["unpack"];
            if !is_root() {
                args.push("--rootless");
            }
            args.extend(["--image", &layout, bundle.to_str().unwrap()]);
            run("umoci", &args);
            parent
        });
        parent.path().join("bundle")
    }
}

fn is_root() -> bool {
    run("id", &["-u"]).trim() == "0"
}

/// The commit the tree is at, as `git` says.
fn head_revision() -> String {
    run("git", &["rev-parse", "HEAD"]).trim().to_string()
}

// ---------------------------------------------------------------------------------------------
// The archive
// ---------------------------------------------------------------------------------------------

#[test]
fn config_has_the_entrypoint_the_user_and_the_labels() {
    let image = image();
    // skopeo reads the archive as `skopeo copy oci-archive:... docker://...` does.
    let config: Value =
        serde_json::from_str(&run("skopeo", &["inspect", "--config", &image.transport()]))
            .expect("config JSON");
    let c = &config["config"];
    assert_eq!(c["Entrypoint"], serde_json::json!([ENTRYPOINT]), "{config}");
    assert!(c["Cmd"].is_null(), "no default arguments: {config}");
    assert_eq!(c["User"], USER, "{config}");
    assert!(c["ExposedPorts"]["8443/tcp"].is_object(), "{config}");
    assert_eq!(config["os"], "linux");
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    assert_eq!(config["architecture"], arch);

    let labels = &c["Labels"];
    assert_eq!(
        labels["org.opencontainers.image.version"], VERSION,
        "{labels}"
    );
    assert_eq!(
        labels["org.opencontainers.image.source"], SOURCE,
        "{labels}"
    );
    let revision = labels["org.opencontainers.image.revision"]
        .as_str()
        .unwrap_or_else(|| panic!("no revision label: {labels}"));
    let head = head_revision();
    assert!(
        revision == head || revision == format!("{head}-dirty"),
        "revision label {revision}, HEAD is {head}"
    );

    // The reference the script printed is the one the archive carries.
    let manifest = image.manifest();
    let config_digest = manifest["config"]["digest"].as_str().expect("digest");
    assert_eq!(image.json(&image.blob(config_digest)), config);
}

#[test]
fn layers_hold_only_the_binary_owned_by_root_and_no_shell() {
    let image = image();
    let manifest = image.manifest();
    let mut files = BTreeMap::new();
    for layer in manifest["layers"].as_array().expect("layers") {
        assert_eq!(
            layer["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip",
            "{layer}"
        );
        let blob = image.blob(layer["digest"].as_str().expect("digest"));
        // `-rwxr-xr-x 0/0 12345 2026-01-01 00:00 appimage-webhook`
        let listing = run("tar", &["--numeric-owner", "-tvzf", blob.to_str().unwrap()]);
        for line in listing.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert!(fields.len() >= 6, "tar listing line {line:?}");
            files.insert(
                fields[5..].join(" "),
                (fields[0].to_string(), fields[1].to_string()),
            );
        }
    }
    for shell in ["bin/sh", "bin/bash", "bin/busybox", "usr/bin/sh"] {
        assert!(
            !files.keys().any(|f| f.trim_start_matches("./") == shell),
            "{shell} in the image: {files:?}"
        );
    }
    let expected = BTreeMap::from([(
        "appimage-webhook".to_string(),
        ("-rwxr-xr-x".to_string(), "0/0".to_string()),
    )]);
    assert_eq!(files, expected, "the image holds only the binary");
}

#[test]
fn archive_is_within_the_size_budget() {
    let image = image();
    let size = std::fs::metadata(&image.archive).expect("archive").len();
    let manifest = image.manifest();
    let layers: u64 = manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["size"].as_u64().expect("size"))
        .sum();
    eprintln!(
        "image archive: {size} bytes ({:.1} MiB), compressed layers {layers} bytes",
        size as f64 / 1048576.0
    );
    assert!(size <= MAX_BYTES, "{size} bytes > {MAX_BYTES} bytes");
    assert!(layers <= size, "layers {layers} > archive {size}");
}

#[test]
fn chart_default_image_is_the_scripts_tag() {
    let image = image();
    let root = repo_root();
    let values: serde_yaml_ng::Value = serde_yaml_ng::from_slice(
        &std::fs::read(root.join("charts/appimage-webhook/values.yaml")).expect("values.yaml"),
    )
    .expect("values YAML");
    let chart: serde_yaml_ng::Value = serde_yaml_ng::from_slice(
        &std::fs::read(root.join("charts/appimage-webhook/Chart.yaml")).expect("Chart.yaml"),
    )
    .expect("Chart YAML");
    // _helpers.tpl: repository, then the tag or else the chart's appVersion.
    let repository = values["image"]["repository"].as_str().expect("repository");
    let tag = match values["image"]["tag"].as_str() {
        Some(t) if !t.is_empty() => t,
        _ => chart["appVersion"].as_str().expect("appVersion"),
    };
    assert_eq!(format!("{repository}:{tag}"), image.reference);
    assert_eq!(image.reference.rsplit(':').next(), Some(VERSION));
}

#[test]
fn same_binary_and_revision_give_the_same_archive_bytes() {
    let image = image();
    let binary = image.bundle().join("rootfs/appimage-webhook");
    let script = repo_root().join("scripts/release.sh");
    let archive = |dir: &Path| {
        let out = Command::new(&script)
            .args(["image", "--binary", binary.to_str().unwrap(), "--out-dir"])
            .arg(dir)
            .env("REVISION", "0123456789abcdef0123456789abcdef01234567")
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .current_dir(repo_root())
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/release.sh");
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        std::fs::read(dir.join(format!("appimage-webhook-{VERSION}.oci.tar"))).expect("archive")
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = archive(a.path());
    // A second later: nothing may depend on the clock.
    std::thread::sleep(Duration::from_millis(1100));
    assert!(
        first == archive(b.path()),
        "two builds of one binary differ"
    );
}

// ---------------------------------------------------------------------------------------------
// Running it
// ---------------------------------------------------------------------------------------------

/// ELF program header type of a dynamic executable's loader.
const PT_INTERP: u32 = 3;

/// Whether the ELF64 little-endian executable `bytes` asks for a program interpreter.
fn has_interpreter(bytes: &[u8]) -> bool {
    assert!(bytes.len() > 64 && &bytes[..4] == b"\x7fELF", "not ELF");
    assert_eq!((bytes[4], bytes[5]), (2, 1), "not ELF64 little-endian");
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(bytes[32..40].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    (0..phnum).any(|i| {
        let o = phoff + i * phentsize;
        u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap()) == PT_INTERP
    })
}

/// A running process; killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `curl --cacert CA https://127.0.0.1:PORT/PATH` until it answers 2xx; its body.
fn get_when_up(ca: &Path, port: u16, path: &str) -> Option<String> {
    let url = format!("https://127.0.0.1:{port}{path}");
    let mut body = None;
    wait_until(Duration::from_secs(60), || {
        let out = Command::new("curl")
            .args(["-sSf", "--max-time", "5", "--cacert"])
            .arg(ca)
            .arg(&url)
            .output()
            .expect("run curl");
        body = out
            .status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned());
        body.is_some()
    });
    body
}

#[test]
fn unpacked_binary_is_static_and_answers_healthz_over_tls() {
    let image = image();
    let bundle = image.bundle();
    // The runtime spec umoci derives from the image config.
    let spec = image.json(&bundle.join("config.json"));
    assert_eq!(
        spec["process"]["args"],
        serde_json::json!([ENTRYPOINT]),
        "{spec}"
    );
    assert_eq!(spec["process"]["user"]["uid"], 65532, "{spec}");
    assert_eq!(spec["process"]["user"]["gid"], 65532, "{spec}");

    let binary = bundle.join("rootfs/appimage-webhook");
    let bytes = std::fs::read(&binary).expect("the binary in the rootfs");
    assert!(
        !has_interpreter(&bytes),
        "dynamically linked: the image has no loader"
    );
    let version = run(binary.to_str().unwrap(), &["--version"]);
    assert_eq!(version.trim(), format!("appimage-webhook {VERSION}"));

    let cluster = cluster();
    let tls = Tls::new(&cluster.dir().join(unique("image-tls")), "webhook");
    let port = free_port();
    let log = cluster
        .dir()
        .join(format!("{}.log", unique("image-webhook")));
    let child = cluster
        .command(binary.to_str().unwrap())
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--reconcile=false",
        ])
        .arg("--tls-cert-file")
        .arg(&tls.cert)
        .arg("--tls-key-file")
        .arg(&tls.key)
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
        .stderr(Stdio::from(
            std::fs::File::options().append(true).open(&log).unwrap(),
        ))
        .spawn()
        .expect("start the image's appimage-webhook");
    let _running = Running(child);
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    let health = get_when_up(&tls.ca, port, "/healthz");
    assert_eq!(health.as_deref().map(str::trim), Some("ok"), "{}", logs());
    // Ready: it reached the API server (rustls and ring in the static binary) and synced.
    assert!(
        get_when_up(&tls.ca, port, "/readyz").is_some(),
        "{}",
        logs()
    );
}

/// podman with its own storage in `dir`. The flags suit a root-run VM without systemd: vfs
/// storage, cgroupfs, runc (crun refuses this VM's hybrid cgroups), no event log.
fn podman(dir: &Path) -> Command {
    let mut cmd = Command::new("podman");
    cmd.arg("--root")
        .arg(dir.join("root"))
        .arg("--runroot")
        .arg(dir.join("run"))
        .args([
            "--storage-driver",
            "vfs",
            "--cgroup-manager",
            "cgroupfs",
            "--runtime",
            "runc",
            "--events-backend",
            "none",
        ])
        .stdin(Stdio::null());
    cmd
}

#[track_caller]
fn podman_ok(dir: &Path, args: &[&str]) -> String {
    let out = podman(dir)
        .args(args)
        .output()
        .expect("run podman (scripts/test.sh installs it)");
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "podman {args:?} failed:\n{stdout}\n{stderr}"
    );
    stdout
}

/// Removes the container and podman's storage when dropped.
struct Container<'a> {
    dir: &'a Path,
    name: String,
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = podman(self.dir)
            .args(["rm", "-f", "-t", "0", &self.name])
            .output();
    }
}

#[test]
fn podman_runs_the_image_as_65532_without_a_shell() {
    let image = image();
    let cluster = cluster();
    let storage = tempfile::Builder::new()
        .prefix("podman-")
        .tempdir()
        .unwrap();
    let dir = storage.path();
    let loaded = podman_ok(dir, &["load", "-q", "-i", image.archive.to_str().unwrap()]);
    assert!(loaded.contains(&image.reference), "podman loaded {loaded}");
    let reference = format!("localhost/{}", image.reference);

    // Files for user 65532: a test key, readable by all, and the kubeconfig (token inline).
    let files = tempfile::Builder::new()
        .prefix("image-files-")
        .tempdir()
        .unwrap();
    let tls = Tls::new(&files.path().join("tls"), "webhook");
    std::fs::copy(cluster.kubeconfig(), files.path().join("kubeconfig")).unwrap();
    run("chmod", &["-R", "a+rX", files.path().to_str().unwrap()]);

    let port = free_port();
    let name = unique("appimage-webhook");
    let volume = format!("{}:/files:ro", files.path().display());
    // As the chart runs it: read-only root, no capabilities, no privilege escalation.
    // Explicit ulimits: podman's defaults raise them, which this VM refuses.
    let listen = format!("127.0.0.1:{port}");
    let container = Container {
        dir,
        name: name.clone(),
    };
    podman_ok(
        dir,
        &[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "host",
            "--read-only",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
            "-v",
            &volume,
            &reference,
            "--listen",
            &listen,
            "--reconcile=false",
            "--tls-cert-file",
            "/files/tls/webhook.crt",
            "--tls-key-file",
            "/files/tls/webhook.key",
            "--kubeconfig",
            "/files/kubeconfig",
        ],
    );
    let logs = || {
        let out = podman(dir)
            .args(["logs", &name])
            .output()
            .expect("podman logs");
        let (o, e) = text(&out);
        format!("{o}{e}")
    };
    let health = get_when_up(&tls.ca, port, "/healthz");
    assert_eq!(health.as_deref().map(str::trim), Some("ok"), "{}", logs());
    assert!(
        get_when_up(&tls.ca, port, "/readyz").is_some(),
        "{}",
        logs()
    );

    // The process runs as the image's user, as the kernel sees it.
    let pid = podman_ok(dir, &["inspect", "--format", "{{.State.Pid}}", &name]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).expect("status");
    let uid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .expect("Uid line");
    assert_eq!(uid.split_whitespace().nth(1), Some("65532"), "{uid}");
    drop(container);

    // No shell to run.
    let out = podman(dir)
        .args([
            "run",
            "--rm",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
        ])
        .args(["--entrypoint", "/bin/sh", &reference, "-c", "true"])
        .output()
        .expect("podman run");
    let (_, stderr) = text(&out);
    assert!(!out.status.success(), "/bin/sh ran in the image");
    assert!(stderr.contains("/bin/sh"), "{stderr}");
}
