//! Processes under test and their inputs: the control plane (kube-apiserver v1.33 + etcd),
//! openssl-made TLS and signing keys, and appimage-webhook processes. Everything listens on
//! 127.0.0.1 only, and every child is killed when its handle is dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::client::{HttpVersion, https_client, wait_ok};

/// Run openssl in `dir`; its stdout.
pub fn openssl(dir: &Path, args: &[&str]) -> anyhow::Result<Vec<u8>> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .context("running openssl (is it installed?)")?;
    if !out.status.success() {
        bail!(
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

/// A CA and a P-256 serving certificate for 127.0.0.1 / localhost.
#[derive(Debug, Clone)]
pub struct Tls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Tls {
    pub fn create(dir: &Path) -> anyhow::Result<Tls> {
        std::fs::create_dir_all(dir)?;
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509"];
        ca.extend_from_slice(&ec);
        ca.extend_from_slice(&[
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=appimage-bench-ca",
        ]);
        openssl(dir, &ca)?;
        let mut csr = vec!["req"];
        csr.extend_from_slice(&ec);
        csr.extend_from_slice(&[
            "-keyout",
            "tls.key",
            "-out",
            "tls.csr",
            "-subj",
            "/CN=appimage-webhook",
        ]);
        openssl(dir, &csr)?;
        std::fs::write(
            dir.join("san.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )?;
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "tls.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "tls.crt",
                "-days",
                "2",
                "-extfile",
                "san.ext",
            ],
        )?;
        Ok(Tls {
            ca: dir.join("ca.crt"),
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        })
    }

    /// The CA certificate, base64, for a webhook registration's caBundle.
    pub fn ca_bundle(&self) -> anyhow::Result<String> {
        Ok(STANDARD.encode(std::fs::read(&self.ca)?))
    }
}

/// An openssl ECDSA P-256 signing key; `trusted_dir` holds only its public key.
#[derive(Debug, Clone)]
pub struct Signer {
    pub private: PathBuf,
    pub trusted_dir: PathBuf,
}

impl Signer {
    pub fn create(dir: &Path) -> anyhow::Result<Signer> {
        let trusted_dir = dir.join("trusted");
        std::fs::create_dir_all(&trusted_dir)?;
        openssl(
            dir,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                "sign.key",
            ],
        )?;
        openssl(
            dir,
            &[
                "pkey",
                "-in",
                "sign.key",
                "-pubout",
                "-out",
                "trusted/bench.pub.pem",
            ],
        )?;
        Ok(Signer {
            private: dir.join("sign.key"),
            trusted_dir,
        })
    }

    /// `openssl dgst -sha256 -sign` over `payload`, base64 (what spec.image.sign holds).
    pub fn sign(&self, payload: &[u8]) -> anyhow::Result<String> {
        let dir = self.private.parent().context("key dir")?;
        let file = dir.join("payload.bin");
        std::fs::write(&file, payload)?;
        let signature = openssl(
            dir,
            &[
                "dgst",
                "-sha256",
                "-sign",
                &self.private.to_string_lossy(),
                &file.to_string_lossy(),
            ],
        )?;
        Ok(STANDARD.encode(signature))
    }
}

/// kube-apiserver + etcd (tests/controlplane), stopped when dropped or when we exit.
pub struct ControlPlane {
    child: Child,
    pub kubeconfig: PathBuf,
}

impl ControlPlane {
    pub fn start(binary: &Path, dir: &Path) -> anyhow::Result<ControlPlane> {
        std::fs::create_dir_all(dir)?;
        let log = std::fs::File::create(dir.join("controlplane.log"))?;
        let mut child = Command::new(binary)
            .arg("--dir")
            .arg(dir)
            .arg("--parent-pid")
            .arg(std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stdout = child.stdout.take().context("control plane stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(path) = line.strip_prefix("READY ") {
                    let _ = tx.send(PathBuf::from(path.trim()));
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(180)) {
            Ok(kubeconfig) => Ok(ControlPlane { child, kubeconfig }),
            Err(_) => {
                let _ = child.kill();
                let log = std::fs::read_to_string(dir.join("controlplane.log")).unwrap_or_default();
                let tail: String = log.lines().rev().take(20).collect::<Vec<_>>().join("\n");
                bail!("the control plane did not become ready:\n{tail}")
            }
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free port on 127.0.0.1.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// An appimage-webhook process on 127.0.0.1, killed when dropped.
pub struct Webhook {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Webhook {
    /// Start `binary` serving `tls` with `args` appended, and wait until /readyz answers 200
    /// (for a non-noop webhook: its AppImage watch has synced).
    pub async fn start(
        binary: &Path,
        tls: &Tls,
        args: &[String],
        log: PathBuf,
    ) -> anyhow::Result<Webhook> {
        let port = free_port()?;
        let out = std::fs::File::create(&log)?;
        let child = Command::new(binary)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--tls-cert-file")
            .arg(&tls.cert)
            .arg("--tls-key-file")
            .arg(&tls.key)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut hook = Webhook { child, port, log };
        let client = https_client(&tls.ca, HttpVersion::Http1, 1)?;
        let ready = wait_ok(&client, &hook.url("/readyz"), Duration::from_secs(120)).await;
        if let Err(e) = ready {
            let _ = hook.child.kill();
            bail!("{e:#}\nwebhook log:\n{}", hook.log_tail(30));
        }
        Ok(hook)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut tail: Vec<&str> = text.lines().rev().take(lines).collect();
        tail.reverse();
        tail.join("\n")
    }

    /// Resident and peak resident memory, KiB.
    pub fn memory_kib(&self) -> anyhow::Result<Memory> {
        memory_kib(self.pid())
    }

    /// Still running?
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// VmRSS and VmHWM of a process, KiB.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Memory {
    pub rss_kib: u64,
    pub peak_rss_kib: u64,
}

pub fn memory_kib(pid: u32) -> anyhow::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok(Memory {
        rss_kib: field("VmRSS:")?,
        peak_rss_kib: field("VmHWM:")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_memory() {
        let m = memory_kib(std::process::id()).unwrap();
        assert!(m.rss_kib > 0 && m.peak_rss_kib >= m.rss_kib);
    }
}
