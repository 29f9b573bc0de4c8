//! Running `appimage-webhook` against the test control plane: openssl-made TLS and signing
//! keys, the webhook process, and its admission registrations.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

pub use crate::pki::openssl;
use crate::pki::{make_ca, make_leaf, make_signing_key};
use crate::{Cluster, unique, wait_until, workspace_bin};

/// A CA and a serving certificate for 127.0.0.1, made by openssl in `dir`.
pub struct Tls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Tls {
    pub fn new(dir: &Path, cn: &str) -> Tls {
        std::fs::create_dir_all(dir).expect("tls dir");
        make_ca(dir, "ca");
        make_leaf(dir, "ca", cn, 1, true);
        Tls {
            ca: dir.join("ca.crt"),
            cert: dir.join(format!("{cn}.crt")),
            key: dir.join(format!("{cn}.key")),
        }
    }

    pub fn ca_bundle(&self) -> String {
        STANDARD.encode(std::fs::read(&self.ca).expect("ca"))
    }
}

/// An ECDSA P-256 signing key pair made by openssl; `pub_dir` holds only the public key.
pub struct SigningKey {
    pub private: PathBuf,
    pub pub_dir: PathBuf,
}

impl SigningKey {
    pub fn new(dir: &Path) -> SigningKey {
        let pub_dir = dir.join("trusted");
        std::fs::create_dir_all(&pub_dir).expect("trusted dir");
        make_signing_key(&pub_dir, "sign");
        // Only public keys stay in the trusted directory.
        let private = dir.join("sign.key");
        std::fs::rename(pub_dir.join("sign.key"), &private).expect("move private key");
        SigningKey { private, pub_dir }
    }

    /// `openssl dgst -sha256 -sign` over the payload bytes, base64.
    pub fn sign(&self, payload: &[u8]) -> String {
        let dir = self.private.parent().expect("dir");
        let file = dir.join(format!("{}.payload", unique("p")));
        std::fs::write(&file, payload).expect("payload");
        let sig = openssl(
            dir,
            &[
                "dgst",
                "-sha256",
                "-sign",
                &self.private.to_string_lossy(),
                &file.to_string_lossy(),
            ],
        );
        STANDARD.encode(sig)
    }
}

/// The seal key file every test webhook of `cluster` uses (the same bytes each time, so
/// parallel writers agree; renamed into place, so no reader sees half of it).
pub fn seal_key_file(cluster: &Cluster) -> PathBuf {
    let file = cluster.dir().join("seal.key");
    if !file.exists() {
        let tmp = cluster.dir().join(unique("seal.key"));
        std::fs::write(&tmp, "e2e-seal-key-0123456789abcdefghijklmnopqrstuv\n").expect("seal key");
        std::fs::rename(&tmp, &file).expect("seal key in place");
    }
    file
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The webhook process; killed when dropped.
pub struct Webhook {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Webhook {
    pub fn start(cluster: &Cluster, tls: &Tls, keys: &Path, extra: &[&str]) -> Webhook {
        let port = free_port();
        let log = cluster.dir().join(format!("{}.log", unique("webhook")));
        let child = cluster
            .command(&workspace_bin("appimage-webhook").to_string_lossy())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--tls-cert-file")
            .arg(&tls.cert)
            .arg("--tls-key-file")
            .arg(&tls.key)
            .arg("--trusted-keys-dir")
            .arg(keys)
            .arg("--kubeconfig")
            .arg(cluster.kubeconfig())
            // A Lease of its own, so webhooks of parallel tests each run their controllers;
            // `extra` may name a shared one (later flags win).
            .arg(format!("--lease-name={}", unique("lease")))
            // One seal key for every webhook on the cluster, as the chart's replicas share one:
            // whichever holds the Lease must accept the seals of the others.
            .arg("--seal-key-file")
            .arg(seal_key_file(cluster))
            .args(extra)
            .stdout(Stdio::from(std::fs::File::create(&log).expect("log")))
            .stderr(Stdio::from(
                std::fs::File::options()
                    .append(true)
                    .open(&log)
                    .expect("log"),
            ))
            .spawn()
            .expect("start appimage-webhook");
        let hook = Webhook { child, port, log };
        let ca = tls.ca.to_string_lossy().into_owned();
        let ready = wait_until(Duration::from_secs(60), || {
            Command::new("curl")
                .args(["-sf", "--cacert", &ca, &hook.url("/readyz")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        assert!(ready, "webhook not ready:\n{}", hook.logs());
        hook
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A MutatingWebhookConfiguration for Pod creates, as the chart registers it, calling `url`
/// for the objects `object_selector` and `namespace_selector` pick.
pub fn pod_registration(
    name: &str,
    url: &str,
    tls: &Tls,
    object_selector: serde_json::Value,
    namespace_selector: serde_json::Value,
) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [{
            "name": "pods.appimage.kuscia.secretflow",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "reinvocationPolicy": "IfNeeded",
            "timeoutSeconds": 5,
            "clientConfig": {"url": url, "caBundle": tls.ca_bundle()},
            "objectSelector": object_selector,
            "namespaceSelector": namespace_selector,
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]
        }]
    })
}

/// Mutating (Pods) and validating (AppImages) registrations pointing at `hook`, limited to
/// namespaces labelled `appimage-e2e=<tag>` so other tests' Pods are never affected.
pub fn register(cluster: &Cluster, hook: &Webhook, tls: &Tls, tag: &str) -> String {
    let name = unique("appimage-webhook");
    let ca = tls.ca_bundle();
    let manifest = format!(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: {name}
webhooks:
- name: pods.appimage.kuscia.secretflow
  admissionReviewVersions: ["v1"]
  sideEffects: None
  failurePolicy: Fail
  reinvocationPolicy: IfNeeded
  timeoutSeconds: 5
  clientConfig:
    url: "{mutate}"
    caBundle: {ca}
  objectSelector:
    matchExpressions:
    - {{key: kuscia.secretflow/app-image, operator: Exists}}
  namespaceSelector:
    matchLabels: {{appimage-e2e: "{tag}"}}
  rules:
  - operations: ["CREATE"]
    apiGroups: [""]
    apiVersions: ["v1"]
    resources: ["pods"]
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: {name}
webhooks:
- name: appimages.appimage.kuscia.secretflow
  admissionReviewVersions: ["v1"]
  sideEffects: None
  failurePolicy: Fail
  timeoutSeconds: 5
  clientConfig:
    url: "{validate}"
    caBundle: {ca}
  objectSelector:
    matchLabels: {{appimage-e2e: "{tag}"}}
  rules:
  - operations: ["CREATE", "UPDATE"]
    apiGroups: ["kuscia.secretflow"]
    apiVersions: ["v1alpha1"]
    resources: ["appimages"]
- name: pods.validate.appimage.kuscia.secretflow
  admissionReviewVersions: ["v1"]
  sideEffects: None
  failurePolicy: Fail
  timeoutSeconds: 5
  clientConfig:
    url: "{validate_pods}"
    caBundle: {ca}
  objectSelector:
    matchExpressions:
    - {{key: kuscia.secretflow/app-image, operator: Exists}}
  namespaceSelector:
    matchLabels: {{appimage-e2e: "{tag}"}}
  rules:
  - operations: ["UPDATE"]
    apiGroups: [""]
    apiVersions: ["v1"]
    resources: ["pods", "pods/ephemeralcontainers"]
"#,
        mutate = hook.url("/mutate"),
        validate = hook.url("/validate"),
        validate_pods = hook.url("/validate-pods"),
    );
    let file = cluster.dir().join(format!("{name}.yaml"));
    std::fs::write(&file, manifest).expect("write registration");
    cluster.kubectl_ok(&["apply", "-f", &file.to_string_lossy()]);
    name
}
