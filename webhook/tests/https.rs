//! The server in-process over real TLS: certificate rotation through a Secret-style `..data`
//! symlink swap, mTLS, /metrics, /readyz, and graceful shutdown.

// Tests unwrap: a panic is their failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use appimage_webhook::{Config, Running, TlsFiles, start_with_store};
use common::*;
use serde_json::Value;
use tokio::sync::oneshot;

struct Server {
    running: Running,
    stop: oneshot::Sender<()>,
}

async fn serve(
    config: Config,
    images: &[appimage::resource::AppImage],
    synced: bool,
) -> (Server, appimage_webhook::catalog::Writer) {
    let (reader, writer) = store(images, synced);
    let (stop, stopped) = oneshot::channel::<()>();
    let running = start_with_store(config, reader, async move {
        let _ = stopped.await;
    })
    .await
    .expect("server starts");
    (Server { running, stop }, writer)
}

/// CA `ca`, server certs `server1` (serial 1001) and `server2` (serial 1002), a client cert
/// `client`, and a client cert `rogue` from another CA; the serving pair published as a Secret.
fn pki(dir: &Path) {
    make_ca(dir, "ca");
    make_ca(dir, "other-ca");
    make_leaf(dir, "ca", "server1", 1001, true);
    make_leaf(dir, "ca", "server2", 1002, true);
    make_leaf(dir, "ca", "client", 2001, false);
    make_leaf(dir, "other-ca", "rogue", 3001, false);
    let secret = dir.join("secret");
    std::fs::create_dir(&secret).expect("mkdir");
    publish_secret(
        &secret,
        "2026_01_01_00_00_00.1",
        &dir.join("server1.crt"),
        &dir.join("server1.key"),
    );
}

fn config(dir: &Path, client_ca: bool) -> Config {
    let secret = dir.join("secret");
    let tls = TlsFiles {
        cert: secret.join("tls.crt"),
        key: secret.join("tls.key"),
        client_ca: client_ca.then(|| dir.join("ca.crt")),
    };
    let mut config = Config::new("127.0.0.1:0".parse().expect("addr"), Some(tls));
    config.shutdown_grace = Duration::from_secs(5);
    config
}

/// The served certificate's serial, as `openssl x509` prints it.
fn serial(dir: &Path, leaf: &rustls::pki_types::CertificateDer<'_>) -> String {
    std::fs::write(dir.join("served.der"), leaf.as_ref()).expect("write");
    let out = std::process::Command::new("openssl")
        .args([
            "x509",
            "-inform",
            "DER",
            "-in",
            "served.der",
            "-noout",
            "-serial",
            "-subject",
        ])
        .current_dir(dir)
        .output()
        .expect("openssl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn certificate_rotation_via_secret_symlink_swap_needs_no_restart() {
    let tmp = temp_dir();
    let dir = tmp.path();
    pki(dir);
    let (server, _writer) = serve(config(dir, false), &[], true).await;
    let addr = server.running.local_addr;
    let client = tls_client(dir, "ca", None);

    let first = https(&client, addr, "GET", "/healthz", "")
        .await
        .expect("served");
    assert_eq!((first.status, first.body.as_str()), (200, "ok"));
    let leaf = first.leaf.expect("a certificate");
    assert_eq!(leaf, der(&dir.join("server1.crt")));
    let printed = serial(dir, &leaf);
    assert!(
        printed.contains("serial=03E9") && printed.contains("CN = server1"),
        "{printed}"
    );

    // Rotate as the kubelet does: new timestamped dir, then an atomic swap of `..data`.
    let secret = dir.join("secret");
    publish_secret(
        &secret,
        "2026_01_02_00_00_00.2",
        &dir.join("server2.crt"),
        &dir.join("server2.key"),
    );
    let want = der(&dir.join("server2.crt"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut served = leaf;
    while served != want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        served = https(&client, addr, "GET", "/healthz", "")
            .await
            .expect("served")
            .leaf
            .expect("cert");
    }
    assert_eq!(
        served, want,
        "the new certificate is served without a restart"
    );
    assert!(serial(dir, &served).contains("serial=03EA"));

    // A broken pair is refused and the current one kept.
    std::fs::write(dir.join("junk.crt"), "not a certificate").expect("write");
    publish_secret(
        &secret,
        "2026_01_03_00_00_00.3",
        &dir.join("junk.crt"),
        &dir.join("server1.key"),
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let still = https(&client, addr, "GET", "/healthz", "")
        .await
        .expect("served");
    assert_eq!(still.leaf.expect("cert"), want);
    let metrics = https(&client, addr, "GET", "/metrics", "")
        .await
        .expect("metrics")
        .body;
    assert!(
        metrics.contains("appimage_webhook_tls_reloads_total 1"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("appimage_webhook_tls_reload_failures_total 0"),
        "{metrics}"
    );

    let _ = server.stop.send(());
    server.running.wait().await.expect("clean exit");
}

#[tokio::test]
async fn mtls_refuses_clients_without_a_ca_signed_certificate() {
    let tmp = temp_dir();
    let dir = tmp.path();
    pki(dir);
    let (server, _writer) = serve(config(dir, true), &[], true).await;
    let addr = server.running.local_addr;
    let review = serde_json::to_string(&pod_review(pod("web", "alice", None))).expect("json");

    // No client certificate: probes work, admission is refused.
    let anonymous = tls_client(dir, "ca", None);
    let probe = https(&anonymous, addr, "GET", "/healthz", "")
        .await
        .expect("probe");
    assert_eq!(probe.status, 200);
    let refused = https(&anonymous, addr, "POST", "/mutate", &review)
        .await
        .expect("answer");
    assert_eq!(refused.status, 403, "{}", refused.body);

    // A certificate from another CA fails the handshake.
    let rogue = tls_client(dir, "ca", Some("rogue"));
    assert!(
        https(&rogue, addr, "POST", "/mutate", &review)
            .await
            .is_err()
    );

    // A CA-signed client certificate is served.
    let trusted = tls_client(dir, "ca", Some("client"));
    let served = https(&trusted, addr, "POST", "/mutate", &review)
        .await
        .expect("served");
    assert_eq!(served.status, 200, "{}", served.body);
    let v: Value = serde_json::from_str(&served.body).expect("review");
    assert_eq!(v["response"]["allowed"], true);

    let _ = server.stop.send(());
    server.running.wait().await.expect("clean exit");
}

/// `dir/ca.crt` as a ConfigMap volume publishes it: `..data` swapped to a new directory.
fn publish_ca(dir: &Path, version: &str, bundle: &Path) {
    let data = dir.join(format!("..{version}"));
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::copy(bundle, data.join("ca.crt")).expect("copy CA");
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..{version}"), &tmp).expect("symlink");
    std::fs::rename(&tmp, dir.join("..data")).expect("swap ..data");
    if std::fs::symlink_metadata(dir.join("ca.crt")).is_err() {
        std::os::unix::fs::symlink("..data/ca.crt", dir.join("ca.crt")).expect("symlink file");
    }
}

#[tokio::test]
async fn client_ca_rotation_needs_no_restart() {
    let tmp = temp_dir();
    let dir = tmp.path();
    pki(dir);
    let ca_dir = dir.join("client-ca");
    std::fs::create_dir(&ca_dir).expect("mkdir");
    publish_ca(&ca_dir, "1", &dir.join("other-ca.crt"));
    let mut config = config(dir, true);
    if let Some(tls) = config.tls.as_mut() {
        tls.client_ca = Some(ca_dir.join("ca.crt"));
    }
    let (server, _writer) = serve(config, &[], true).await;
    let addr = server.running.local_addr;
    let review = serde_json::to_string(&pod_review(pod("web", "alice", None))).expect("json");
    let client = tls_client(dir, "ca", Some("client"));
    let rogue = tls_client(dir, "ca", Some("rogue"));
    let status = |answer: Result<Answer, String>| answer.map(|a| a.status).ok();

    // The first bundle trusts the other CA only.
    assert_eq!(
        status(https(&rogue, addr, "POST", "/mutate", &review).await),
        Some(200)
    );
    assert_eq!(
        status(https(&client, addr, "POST", "/mutate", &review).await),
        None
    );

    // Rotated in place: the new bundle decides, without a restart.
    publish_ca(&ca_dir, "2", &dir.join("ca.crt"));
    let started = Instant::now();
    let mut accepted = None;
    while started.elapsed() < Duration::from_secs(10) {
        accepted = status(https(&client, addr, "POST", "/mutate", &review).await);
        if accepted.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(accepted, Some(200), "the client CA was not reloaded");
    assert_eq!(
        status(https(&rogue, addr, "POST", "/mutate", &review).await),
        None
    );
    let metrics = https(&client, addr, "GET", "/metrics", "")
        .await
        .expect("metrics");
    assert!(
        metrics
            .body
            .contains("appimage_webhook_tls_reloads_total 1"),
        "{}",
        metrics.body
    );

    let _ = server.stop.send(());
    server.running.wait().await.expect("clean exit");
}

#[tokio::test]
async fn end_to_end_over_https_with_trusted_keys_dir_readiness_and_shutdown() {
    let tmp = temp_dir();
    let dir = tmp.path();
    pki(dir);
    let keys = dir.join("keys");
    std::fs::create_dir(&keys).expect("mkdir");
    make_signing_key(dir, "signer");
    let mut image = appimage("demo", "7");
    sign(dir, "signer", &mut image);

    let mut config = config(dir, false);
    config.trusted_keys_dir = Some(keys.clone());
    config.max_body_bytes = 16 * 1024;
    let (server, mut writer) = serve(config, &[image], false).await;
    let addr = server.running.local_addr;
    let client = tls_client(dir, "ca", None);

    let not_ready = https(&client, addr, "GET", "/readyz", "")
        .await
        .expect("answer");
    assert_eq!(not_ready.status, 503);
    writer.apply_watcher_event(&kube::runtime::watcher::Event::InitDone);
    let mut status = 0;
    for _ in 0..100 {
        status = https(&client, addr, "GET", "/readyz", "")
            .await
            .expect("answer")
            .status;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, 200);

    let review =
        serde_json::to_string(&pod_review(pod("job-0", "alice", Some("demo")))).expect("json");
    // No keys yet: denied.
    let answer = https(&client, addr, "POST", "/mutate", &review)
        .await
        .expect("answer");
    let v: Value = serde_json::from_str(&answer.body).expect("review");
    assert_eq!(v["response"]["allowed"], false, "{v}");

    // Drop the public key in: the directory reload lets the Pod through.
    std::fs::copy(dir.join("signer.pub"), keys.join("signer.pub")).expect("copy key");
    let mut allowed = Value::Null;
    for _ in 0..100 {
        let answer = https(&client, addr, "POST", "/mutate", &review)
            .await
            .expect("answer");
        let v: Value = serde_json::from_str(&answer.body).expect("review");
        allowed = v["response"]["allowed"].clone();
        if allowed == true {
            assert!(v["response"]["patch"].is_string(), "patch is base64");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(allowed, true);

    let big = "x".repeat(20 * 1024);
    let too_big = https(&client, addr, "POST", "/mutate", &big)
        .await
        .expect("answer");
    assert_eq!(too_big.status, 413);

    let metrics = https(&client, addr, "GET", "/metrics", "")
        .await
        .expect("metrics")
        .body;
    for name in [
        "appimage_webhook_requests_total",
        "appimage_webhook_request_duration_seconds",
        "appimage_webhook_appimages_cached 1",
        "appimage_webhook_signature_failures_total",
        "appimage_webhook_trusted_keys 1",
    ] {
        assert!(metrics.contains(name), "missing {name} in\n{metrics}");
    }

    // Graceful shutdown: stops accepting and returns Ok well within the grace period.
    let started = Instant::now();
    let _ = server.stop.send(());
    server.running.wait().await.expect("clean exit");
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(https(&client, addr, "GET", "/healthz", "").await.is_err());
}
