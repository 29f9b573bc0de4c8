//! Shared test helpers: real keys and certificates made by the `openssl` binary, AppImage and
//! AdmissionReview fixtures, an AppImage store, and a real TLS client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use appimage::labels;
use appimage::resource::AppImage;
use appimage::signature::{TrustedKey, payload};
use appimage_webhook::catalog::{AppImages, Writer, appimages};
use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use kube::runtime::watcher;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use tokio_rustls::TlsConnector;

pub const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[allow(unused_imports)]
pub use appimage_e2e::pki::{make_ca, make_leaf, openssl};
// Each test binary uses a different part of this module.
#[allow(unused_imports)]
pub use appimage_e2e::review::{APPIMAGE, POD, pod_review, review};

/// An ECDSA P-256 signing key `NAME.key` and its public key `NAME.pub`, as a trusted key.
pub fn make_signing_key(dir: &Path, name: &str) -> TrustedKey {
    let public = appimage_e2e::pki::make_signing_key(dir, name);
    let pem = std::fs::read_to_string(&public).expect("read pub");
    TrustedKey::from_pem(&format!("{name}.pub"), &pem).expect("openssl key parses")
}

/// Sign `image`'s payload with `openssl dgst -sha256 -sign` and store the base64 in it.
pub fn sign(dir: &Path, key: &str, image: &mut AppImage) {
    image.spec.image.sign = None;
    std::fs::write(dir.join("payload.bin"), payload(image)).expect("write payload");
    openssl(
        dir,
        &[
            "dgst",
            "-sha256",
            "-sign",
            &format!("{key}.key"),
            "-out",
            "sig.bin",
            "payload.bin",
        ],
    );
    let sig = std::fs::read(dir.join("sig.bin")).expect("read sig");
    image.spec.image.sign = Some(base64::engine::general_purpose::STANDARD.encode(sig));
}

/// A valid AppImage `name` with one template, a port, env and a config file.
pub fn appimage(name: &str, rv: &str) -> AppImage {
    serde_json::from_value(json!({
        "apiVersion": "kuscia.secretflow/v1alpha1",
        "kind": "AppImage",
        "metadata": {"name": name, "resourceVersion": rv},
        "spec": {
            "configTemplates": {
                "task.conf": "task_id={{.TASK_ID}}\ndomain={{.KUSCIA_DOMAIN_ID}}\n"
            },
            "deployTemplates": [{
                "name": "app",
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": "app",
                        "command": ["sh"],
                        "args": ["-c", "./app --config ./kuscia/task.conf"],
                        "workingDir": "/work",
                        "configVolumeMounts": [{"mountPath": "./kuscia/task.conf", "subPath": "task.conf"}],
                        "ports": [{"name": "global", "protocol": "GRPC", "scope": "Cluster"}],
                        "env": [{"name": "APP_NAME", "value": "demo"}]
                    }]
                }
            }],
            "image": {"name": "secretflow/app", "tag": "v1", "id": DIGEST}
        }
    }))
    .expect("fixture AppImage")
}

/// The webhook's AppImage store holding `images`, synced (InitDone) unless `synced` is false.
pub fn store(images: &[AppImage], synced: bool) -> (AppImages, Writer) {
    let (reader, mut writer) = appimages();
    writer.apply_watcher_event(&watcher::Event::Init);
    for image in images {
        writer.apply_watcher_event(&watcher::Event::InitApply(image.clone()));
    }
    if synced {
        writer.apply_watcher_event(&watcher::Event::InitDone);
    }
    (reader, writer)
}

/// A Pod as the apiserver sends it on CREATE, labelled with `image` when given.
pub fn pod(name: &str, namespace: &str, image: Option<&str>) -> Value {
    let mut labels = serde_json::Map::new();
    if let Some(image) = image {
        labels.insert(labels::APP_IMAGE.into(), json!(image));
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "busybox"}]}
    })
}

/// Files of a Kubernetes Secret volume: `dir/..DATA/{tls.crt,tls.key}`, `dir/..data` ->
/// `..DATA`, `dir/tls.crt` -> `..data/tls.crt`. Later calls swap `..data` atomically.
pub fn publish_secret(dir: &Path, version: &str, crt: &Path, key: &Path) {
    let data = dir.join(format!("..{version}"));
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::copy(crt, data.join("tls.crt")).expect("copy crt");
    std::fs::copy(key, data.join("tls.key")).expect("copy key");
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..{version}"), &tmp).expect("symlink");
    std::fs::rename(&tmp, dir.join("..data")).expect("swap ..data");
    for f in ["tls.crt", "tls.key"] {
        let link = dir.join(f);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{f}"), &link).expect("symlink file");
        }
    }
}

pub fn der(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).expect("PEM certificate")
}

/// A TLS client trusting `ca`, optionally presenting `client` (`NAME.crt`/`NAME.key`).
pub fn tls_client(dir: &Path, ca: &str, client: Option<&str>) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der(&dir.join(format!("{ca}.crt")))).expect("CA");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some(name) => {
            let certs = vec![der(&dir.join(format!("{name}.crt")))];
            let key = PrivateKeyDer::from_pem_file(dir.join(format!("{name}.key"))).expect("key");
            builder
                .with_client_auth_cert(certs, key)
                .expect("client cert")
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Full handshakes only: a resumed session would not show the certificate served now.
    config.resumption = rustls::client::Resumption::disabled();
    TlsConnector::from(Arc::new(config))
}

/// The answer to one HTTPS request.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    /// The leaf certificate the server presented.
    pub leaf: Option<CertificateDer<'static>>,
}

/// One request over a fresh TLS connection (so each call is a new handshake).
pub async fn https(
    connector: &TlsConnector,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> Result<Answer, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::IpAddress(addr.ip().into());
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first().cloned());
    let (status, body) = http1(TokioIo::new(tls), addr, method, path, body).await?;
    Ok(Answer { status, body, leaf })
}

/// One plain-HTTP request.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, String), String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    http1(TokioIo::new(tcp), addr, method, path, body).await
}

async fn http1<T>(
    io: T,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, String), String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

pub fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}
