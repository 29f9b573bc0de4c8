//! Load with faults, on the real control plane.
//!
//! 1. Two webhook processes behind a small TCP proxy written here (round robin over the
//!    backends that accept a connection, with no readiness check, so a restarted process gets
//!    requests before its AppImage watch has synced; the apiserver's webhook URL is the proxy). 1,000
//!    labelled Pods are created by 20 threads running `kubectl create`, while every few
//!    seconds one webhook process (A and B in turn, so the one holding the apiserver's
//!    long-lived HTTP/2 connection is hit too) is SIGKILLed and started again. failurePolicy is Fail, so a
//!    Pod is either stored mutated or refused with the apiserver's webhook error; every
//!    refusal is accounted for, stored + failed = attempted, at least half the Pods are stored
//!    and at most 10 creates fail per kill, and afterwards the reconcilers (in the webhook
//!    processes) converge to 3 Services per stored Pod.
//! 2. Certificate rotation under load: the serving pair is swapped every second the way a
//!    Secret volume does it (a `..data` symlink) while clients make fresh TLS handshakes for
//!    15 s: no handshake and no request may fail, and the new certificates are served.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use appimage::labels;
use appimage::manifest;
use appimage::resource::AppImage;
use appimage::signature::payload;
use appimage_e2e::pki::make_leaf;
use appimage_e2e::review::{POD, review};
use appimage_e2e::webhook::{SigningKey, Tls, Webhook, free_port, pod_registration};
use appimage_e2e::{Cluster, cluster, repo_root, unique, wait_until, workspace_bin, write_json};
use serde_json::{Value, json};

const DIGEST: &str = "sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945";
const PODS: usize = 1000;
const CONCURRENCY: usize = 20;
const KILL_EVERY: Duration = Duration::from_secs(3);
/// The most creates one SIGKILL may fail (issue 25: the fault-load test gets a floor).
const FAILURES_PER_KILL: usize = 10;

/// The two tests are heavy; on two cores they run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn seed(name: &str, tag: &str, signer: &SigningKey) -> AppImage {
    let text = std::fs::read_to_string(repo_root().join("examples/secretflow-image.yaml")).unwrap();
    let mut img = manifest::appimages("seed", &text).unwrap().remove(0);
    img.metadata.name = Some(name.into());
    img.metadata.labels = Some([("appimage-e2e".to_string(), tag.to_string())].into());
    img.spec.image.id = Some(DIGEST.into());
    img.spec.image.sign = Some(signer.sign(&payload(&img)));
    img
}

/// A webhook process on a fixed port, so it can be started again where it was.
fn spawn_webhook(
    c: &Cluster,
    cert: &Path,
    key: &Path,
    keys_dir: &Path,
    port: u16,
    log: &Path,
) -> Child {
    let out = std::fs::File::options()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let err = out.try_clone().unwrap();
    c.command(&workspace_bin("appimage-webhook").to_string_lossy())
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--tls-cert-file")
        .arg(cert)
        .arg("--tls-key-file")
        .arg(key)
        .arg("--trusted-keys-dir")
        .arg(keys_dir)
        .arg("--kubeconfig")
        .arg(c.kubeconfig())
        // The replicas and their restarts share one seal key, as the chart's do.
        .arg("--seal-key-file")
        .arg(appimage_e2e::webhook::seal_key_file(c))
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .expect("start appimage-webhook")
}

/// A child process killed when dropped (also when a test panics).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Cleanup(Arc<AtomicBool>, Arc<Vec<Mutex<Proc>>>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        for p in self.1.iter() {
            let mut p = p.lock().unwrap_or_else(|e| e.into_inner());
            let _ = p.0.kill();
            let _ = p.0.wait();
        }
    }
}

fn ready(port: u16, ca: &Path) -> bool {
    Command::new("curl")
        .args(["-sf", "--max-time", "2", "--cacert"])
        .arg(ca)
        .arg(format!("https://127.0.0.1:{port}/readyz"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A TCP proxy: each new connection goes to the next backend in turn that accepts it; a
/// connection no backend takes is closed. There is deliberately no readiness check: endpoints
/// lag in real clusters too, and a webhook that has not synced must not deny valid Pods as
/// "AppImage not found" (it waits for the sync, or answers 503).
struct Proxy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
    unrouted: Arc<AtomicUsize>,
}

impl Proxy {
    fn start(backends: Vec<SocketAddr>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let unrouted = Arc::new(AtomicUsize::new(0));
        let (s, n, u) = (stop.clone(), connections.clone(), unrouted.clone());
        thread::spawn(move || {
            let mut next = 0usize;
            while !s.load(Ordering::Relaxed) {
                let client = match listener.accept() {
                    Ok((c, _)) => c,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    Err(_) => continue,
                };
                client.set_nonblocking(false).unwrap();
                n.fetch_add(1, Ordering::Relaxed);
                let backend = (0..backends.len()).find_map(|i| {
                    let b = backends[(next + i) % backends.len()];
                    TcpStream::connect_timeout(&b, Duration::from_millis(500)).ok()
                });
                next = next.wrapping_add(1);
                match backend {
                    Some(server) => pipe(client, server),
                    None => {
                        u.fetch_add(1, Ordering::Relaxed);
                        let _ = client.shutdown(Shutdown::Both);
                    }
                }
            }
        });
        Proxy {
            addr,
            stop,
            connections,
            unrouted,
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Copy both ways until either side closes, then close both.
fn pipe(client: TcpStream, server: TcpStream) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    for (mut from, mut to) in [
        (client.try_clone().unwrap(), server.try_clone().unwrap()),
        (server, client),
    ] {
        thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = to.shutdown(Shutdown::Both);
            let _ = from.shutdown(Shutdown::Both);
        });
    }
}

/// A mutating registration for Pods in namespaces labelled `appimage-e2e=<tag>`, at `url`.
fn register_url(c: &Cluster, url: &str, tls: &Tls, tag: &str) -> String {
    let name = unique("appimage-faults");
    let manifest = pod_registration(
        &name,
        url,
        tls,
        json!({"matchExpressions": [{"key": labels::APP_IMAGE, "operator": "Exists"}]}),
        json!({"matchLabels": {"appimage-e2e": tag}}),
    );
    let file = write_json(c.dir(), &manifest);
    c.kubectl_ok(&["apply", "-f", &file.to_string_lossy()]);
    name
}

fn labelled_pod(ns: &str, name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {labels::APP_IMAGE: image},
                     "annotations": {labels::OPT_TASK_ID: name}},
        // A Pod the apiserver would store as it is, were it not mutated.
        "spec": {"containers": [{"name": "secretflow", "image": "busybox"}]}
    })
}

fn get_items(c: &Cluster, args: &[&str]) -> Vec<Value> {
    let mut full = vec!["get"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["-o", "json"]);
    let out: Value = serde_json::from_str(&c.kubectl_ok(&full)).unwrap();
    out["items"].as_array().cloned().unwrap_or_default()
}

/// Why a Pod is not as the webhook makes it, if it is not.
fn injection_problem(pod: &Value, image: &str) -> Option<String> {
    let name = pod["metadata"]["name"].as_str().unwrap_or("?");
    let ann = &pod["metadata"]["annotations"];
    let status: Value = match ann[labels::STATUS].as_str().map(serde_json::from_str) {
        Some(Ok(s)) => s,
        _ => return Some(format!("{name}: no status annotation")),
    };
    if status["appImage"] != image {
        return Some(format!("{name}: status names {}", status["appImage"]));
    }
    // The image id is the image ID (Kuscia): carried, never in the reference (issue 27).
    if ann[labels::IMAGE_ID] != DIGEST {
        return Some(format!("{name}: image id {}", ann[labels::IMAGE_ID]));
    }
    let want = "secretflow/secretflow-lite-anolis8:latest";
    let containers = pod["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !containers
        .iter()
        .any(|c| c["name"] == "secretflow" && c["image"] == want)
    {
        return Some(format!("{name}: no injected container"));
    }
    let config = ann[format!("{}task-config.conf", labels::CONFIG_PREFIX)].as_str()?;
    let config: Value = serde_json::from_str(config).ok()?;
    if config["task_id"] != name {
        return Some(format!("{name}: config task_id {}", config["task_id"]));
    }
    if pod["metadata"]["labels"][labels::POD_IDENTITY] != name {
        return Some(format!("{name}: no identity label"));
    }
    None
}

#[derive(Debug, Default)]
struct Tally {
    stored: BTreeSet<String>,
    /// Pod name -> kubectl's stderr.
    failed: BTreeMap<String, String>,
}

#[test]
fn load_while_a_webhook_is_killed_and_restarted() {
    let _serial = serial();
    let c = cluster();
    let work = tempfile::tempdir().unwrap();
    let tls = Tls::new(&work.path().join("tls"), "appimage-webhook");
    let signer = SigningKey::new(work.path());
    let tag = unique("faults");
    let ns = c.namespace("faults");
    c.kubectl_ok(&["label", "namespace", &ns, &format!("appimage-e2e={tag}")]);
    let image = unique("faults-img");
    let file = write_json(
        work.path(),
        &serde_json::to_value(seed(&image, &tag, &signer)).unwrap(),
    );
    c.kubectl_ok(&["apply", "-f", &file.to_string_lossy()]);

    // Two webhook processes (A is the one that gets killed) behind the proxy.
    let ports = [free_port(), free_port()];
    let logs = [work.path().join("a.log"), work.path().join("b.log")];
    let hooks: Vec<Proc> = (0..2)
        .map(|i| {
            Proc(spawn_webhook(
                c,
                &tls.cert,
                &tls.key,
                &signer.pub_dir,
                ports[i],
                &logs[i],
            ))
        })
        .collect();
    for port in ports {
        assert!(
            wait_until(Duration::from_secs(60), || ready(port, &tls.ca)),
            "webhook on {port} not ready"
        );
    }
    let proxy = Proxy::start(
        ports
            .iter()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
            .collect(),
    );
    let reg = register_url(c, &format!("https://{}/mutate", proxy.addr), &tls, &tag);
    // The registration and the AppImage are in effect once a dry run is mutated.
    let probe = write_json(work.path(), &labelled_pod(&ns, "probe", &image));
    assert!(
        wait_until(Duration::from_secs(30), || {
            c.kubectl(&["create", "--dry-run=server", "-f", &probe.to_string_lossy()])
                .status
                .success()
        }),
        "the webhook never admitted a Pod through the proxy"
    );

    // The killer: every few seconds SIGKILL one process (A, B, A, ...) and start it again
    // on its port.
    let stop = Arc::new(AtomicBool::new(false));
    let restarts = Arc::new(AtomicUsize::new(0));
    let hooks: Arc<Vec<Mutex<Proc>>> = Arc::new(hooks.into_iter().map(Mutex::new).collect());
    // On any exit, panics included: stop the killer, then kill both processes.
    let _cleanup = Cleanup(stop.clone(), hooks.clone());
    let killer = {
        let (stop, restarts, hooks) = (stop.clone(), restarts.clone(), hooks.clone());
        let (cert, key, keys_dir, logs) = (
            tls.cert.clone(),
            tls.key.clone(),
            signer.pub_dir.clone(),
            logs.clone(),
        );
        thread::spawn(move || {
            let c = cluster();
            let mut turn = 0;
            while !stop.load(Ordering::Relaxed) {
                thread::sleep(KILL_EVERY);
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let i = turn % 2;
                turn += 1;
                let mut child = hooks[i].lock().unwrap();
                let _ = child.0.kill(); // SIGKILL
                let _ = child.0.wait();
                thread::sleep(Duration::from_millis(200));
                child.0 = spawn_webhook(c, &cert, &key, &keys_dir, ports[i], &logs[i]);
                restarts.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    // The load: 20 threads, each running kubectl create for the next Pod.
    let next = Arc::new(AtomicUsize::new(0));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (next, tally, ns, image) = (next.clone(), tally.clone(), ns.clone(), image.clone());
            let dir = work.path().to_path_buf();
            thread::spawn(move || {
                let c = cluster();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= PODS {
                        break;
                    }
                    let name = format!("load-{i}");
                    let file = write_json(&dir, &labelled_pod(&ns, &name, &image));
                    let out = c.kubectl(&["create", "-f", &file.to_string_lossy()]);
                    let mut t = tally.lock().unwrap();
                    if out.status.success() {
                        t.stored.insert(name);
                    } else {
                        t.failed
                            .insert(name, String::from_utf8_lossy(&out.stderr).into_owned());
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let load_time = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    killer.join().unwrap();
    let restarts = restarts.load(Ordering::Relaxed);
    for port in ports {
        assert!(
            wait_until(Duration::from_secs(60), || ready(port, &tls.ca)),
            "{port} not ready after the load"
        );
    }

    let tally = Arc::try_unwrap(tally).unwrap().into_inner().unwrap();
    let pods = get_items(c, &["pods", "-n", &ns]);
    let stored: BTreeSet<String> = pods
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
        .collect();
    let (mut webhook_errors, mut denials, mut other) = (0, Vec::new(), Vec::new());
    for (name, err) in &tally.failed {
        if err.contains("denied the request") {
            denials.push(format!("{name}: {}", err.trim()));
        } else if err.contains("failed calling webhook")
            || err.contains("context deadline exceeded")
            || err.contains("Timeout")
        {
            webhook_errors += 1;
        } else {
            other.push(format!("{name}: {}", err.trim()));
        }
    }
    let problems: Vec<String> = pods
        .iter()
        .filter_map(|p| injection_problem(p, &image))
        .collect();
    println!(
        "faults: attempted {PODS}, stored {}, failed {} (webhook call errors {webhook_errors}, denials {}, other {}), \
         load {:.1} s ({:.0} Pods/s), {restarts} SIGKILLs + restarts, proxy connections {} ({} unroutable)",
        tally.stored.len(),
        tally.failed.len(),
        denials.len(),
        other.len(),
        load_time.as_secs_f64(),
        PODS as f64 / load_time.as_secs_f64(),
        proxy.connections.load(Ordering::Relaxed),
        proxy.unrouted.load(Ordering::Relaxed),
    );
    for e in tally.failed.values().take(3) {
        println!("  e.g. {}", e.trim());
    }
    assert!(restarts >= 3, "only {restarts} restarts during the load");
    // A floor (issue 25, section 3): without it 1,000 failures out of 1,000 passed. A SIGKILL
    // may fail the requests in flight on the killed process, and the API server's next calls
    // to it until the proxy sees the port closed; no more than FAILURES_PER_KILL each.
    assert!(
        tally.stored.len() * 2 >= PODS,
        "only {} of {PODS} Pods stored (at least half must be): {} failed",
        tally.stored.len(),
        tally.failed.len()
    );
    assert!(
        tally.failed.len() <= FAILURES_PER_KILL * restarts,
        "{} creates failed for {restarts} kills (at most {FAILURES_PER_KILL} per kill)",
        tally.failed.len()
    );
    assert_eq!(
        tally.stored.len() + tally.failed.len(),
        PODS,
        "a create was lost"
    );
    assert_eq!(
        stored, tally.stored,
        "the stored Pods are not the ones kubectl created"
    );
    assert!(
        problems.is_empty(),
        "Pods stored unmutated or mis-mutated:\n{}",
        problems.join("\n")
    );
    assert!(
        other.is_empty(),
        "failures without a webhook error:\n{}",
        other.join("\n")
    );
    assert!(
        denials.is_empty(),
        "valid Pods denied:\n{}",
        denials.join("\n")
    );

    // The reconcilers converge: 3 Services (spu, fed, global) per stored Pod.
    let converge = Instant::now();
    let mut last = String::new();
    let converged = wait_until(Duration::from_secs(300), || {
        let services = get_items(
            c,
            &[
                "services",
                "-n",
                &ns,
                "-l",
                &format!("{}={}", labels::MANAGED_BY, labels::MANAGER),
            ],
        );
        let mut per_pod: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for s in &services {
            let pod = s["metadata"]["labels"][labels::POD_IDENTITY]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let port = s["metadata"]["labels"][labels::PORT_NAME]
                .as_str()
                .unwrap_or_default()
                .to_string();
            per_pod.entry(pod).or_default().insert(port);
        }
        let done = stored
            .iter()
            .filter(|p| per_pod.get(*p).is_some_and(|s| s.len() == 3))
            .count();
        last = format!(
            "{done}/{} Pods with 3 Services, {} Services",
            stored.len(),
            services.len()
        );
        done == stored.len() && services.len() == 3 * stored.len()
    });
    println!(
        "reconcile: {last} after {:.1} s",
        converge.elapsed().as_secs_f64()
    );
    assert!(converged, "the reconcilers did not converge: {last}");

    c.kubectl_ok(&["delete", "mutatingwebhookconfiguration", &reg]);
}

/// `dir/..<version>/{tls.crt,tls.key}`, `dir/..data` -> `..<version>`, `dir/tls.*` ->
/// `..data/tls.*`: a Secret volume. Later calls swap `..data` in one rename.
fn publish_secret(dir: &Path, version: usize, crt: &Path, key: &Path) {
    let data = dir.join(format!("..v{version}"));
    std::fs::create_dir_all(&data).unwrap();
    std::fs::copy(crt, data.join("tls.crt")).unwrap();
    std::fs::copy(key, data.join("tls.key")).unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..v{version}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for f in ["tls.crt", "tls.key"] {
        let link = dir.join(f);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{f}"), &link).unwrap();
        }
    }
    // As the kubelet does: the previous version goes away.
    if version >= 2 {
        let _ = std::fs::remove_dir_all(dir.join(format!("..v{}", version - 2)));
    }
}

fn metric(hook: &Webhook, ca: &Path, name: &str) -> f64 {
    let out = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(ca)
        .arg(hook.url("/metrics"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn certificate_rotation_under_load() {
    let _serial = serial();
    let c = cluster();
    let work = tempfile::tempdir().unwrap();
    let pki = work.path().join("pki");
    let tls = Tls::new(&pki, "leaf1");
    make_leaf(&pki, "ca", "leaf2", 2, true);
    make_leaf(&pki, "ca", "leaf3", 3, true);
    let pairs: Vec<(PathBuf, PathBuf)> = (1..=3)
        .map(|i| {
            (
                pki.join(format!("leaf{i}.crt")),
                pki.join(format!("leaf{i}.key")),
            )
        })
        .collect();
    let secret = work.path().join("secret");
    std::fs::create_dir_all(&secret).unwrap();
    publish_secret(&secret, 0, &pairs[0].0, &pairs[0].1);
    let served = Tls {
        ca: tls.ca.clone(),
        cert: secret.join("tls.crt"),
        key: secret.join("tls.key"),
    };
    let signer = SigningKey::new(work.path());
    let image = unique("rot-img");
    let file = write_json(
        work.path(),
        &serde_json::to_value(seed(&image, "none", &signer)).unwrap(),
    );
    c.kubectl_ok(&["apply", "-f", &file.to_string_lossy()]);
    let hook = Webhook::start(c, &served, &signer.pub_dir, &[]);

    let review = review(POD, "CREATE", "rot", labelled_pod("rot", "rot-0", &image));
    let body = write_json(work.path(), &review);
    // The AppImage must be in the webhook's cache before the clock starts.
    let post = || {
        Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(&tls.ca)
            .args(["-H", "Content-Type: application/json", "--data-binary"])
            .arg(format!("@{}", body.display()))
            .args(["-w", "\n%{http_code}\n%{certs}"])
            .arg(hook.url("/mutate"))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    assert!(wait_until(Duration::from_secs(20), || {
        String::from_utf8_lossy(&post().stdout).contains("\"patchType\":\"JSONPatch\"")
    }));

    let stop = Arc::new(AtomicBool::new(false));
    let rotations = Arc::new(AtomicUsize::new(0));
    let rotator = {
        let (stop, rotations, secret, pairs) = (
            stop.clone(),
            rotations.clone(),
            secret.clone(),
            pairs.clone(),
        );
        thread::spawn(move || {
            let mut v = 0;
            while !stop.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_secs(1));
                v += 1;
                let (crt, key) = &pairs[v % pairs.len()];
                publish_secret(&secret, v, crt, key);
                rotations.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let requests = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::<String>::new());
    let serials = Mutex::new(BTreeSet::<String>::new());
    let started = Instant::now();
    thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                while started.elapsed() < Duration::from_secs(15) {
                    let out = post();
                    requests.fetch_add(1, Ordering::Relaxed);
                    let text = String::from_utf8_lossy(&out.stdout).into_owned();
                    let ok = out.status.success()
                        && text.contains("\n200\n")
                        && text.contains("\"allowed\":true")
                        && text.contains("\"patchType\":\"JSONPatch\"");
                    if !ok {
                        failures.lock().unwrap().push(format!(
                            "curl {}: {} {}",
                            out.status,
                            String::from_utf8_lossy(&out.stderr).trim(),
                            text.lines().take(2).collect::<Vec<_>>().join(" ")
                        ));
                    }
                    // The leaf is the first certificate curl lists.
                    if let Some(serial) = text.lines().find(|l| l.starts_with("Serial Number:")) {
                        serials.lock().unwrap().insert(serial.trim().to_string());
                    }
                }
            });
        }
    });
    stop.store(true, Ordering::Relaxed);
    rotator.join().unwrap();
    let elapsed = started.elapsed();
    let failures = failures.into_inner().unwrap();
    let serials = serials.into_inner().unwrap();
    let reloads = metric(&hook, &tls.ca, "appimage_webhook_tls_reloads_total");
    let reload_failures = metric(&hook, &tls.ca, "appimage_webhook_tls_reload_failures_total");
    println!(
        "rotation: {} requests (fresh handshakes) in {:.1} s, {} failed; {} rotations, {reloads} reloads, \
         {reload_failures} reload failures; leaf serials served: {serials:?}",
        requests.load(Ordering::Relaxed),
        elapsed.as_secs_f64(),
        failures.len(),
        rotations.load(Ordering::Relaxed),
    );
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(rotations.load(Ordering::Relaxed) >= 12);
    assert!(
        serials.len() >= 2,
        "the rotated certificates were never served: {serials:?}"
    );
    assert!(
        reloads >= 10.0,
        "only {reloads} reloads for {rotations:?} rotations"
    );
}
