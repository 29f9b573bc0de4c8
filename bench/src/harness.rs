//! Processes under test: the control plane (kube-apiserver v1.33 + etcd) and appimage-webhook
//! processes. Everything listens on
//! 127.0.0.1 only, and every child is killed when its handle is dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::client::{HttpVersion, https_client, wait_ok};

// TLS and signing keys come from the test support crate's openssl helpers, shared with the
// end-to-end tests.
pub use appimage_e2e::webhook::{SigningKey, Tls};

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

/// A client of the control plane whose kubeconfig is at `kubeconfig`.
pub async fn kube_client(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
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

/// CPU time (user + system) that process `pid` has used so far, all threads, in seconds.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; utime and stime are fields 14 and 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("/proc/{pid}/stat has no command name"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("/proc/{pid}/stat has no field {}", i + 3))
    };
    // Fields after the name are numbered from 3.
    let (utime, stime) = (ticks(14 - 3)?, ticks(15 - 3)?);
    // SAFETY: sysconf only reads a configuration value.
    #[allow(
        unsafe_code,
        reason = "the one libc call, no Rust API for the clock tick"
    )]
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    anyhow::ensure!(per_second > 0, "sysconf(_SC_CLK_TCK) failed");
    Ok((utime + stime) as f64 / per_second as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_time_grows() {
        let before = cpu_seconds(std::process::id()).unwrap();
        let spin = std::time::Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < Duration::from_millis(100) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let after = cpu_seconds(std::process::id()).unwrap();
        assert!(after - before >= 0.05, "{before} -> {after}");
    }

    #[test]
    fn own_memory() {
        let m = memory_kib(std::process::id()).unwrap();
        assert!(m.rss_kib > 0 && m.peak_rss_kib >= m.rss_kib);
    }
}
