//! What every scenario stands on: the paths, the control plane's client, TLS and signing key,
//! webhook processes, kubectl, and the AppImages the scenarios look up.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use appimage::resource::AppImage;
use appimage::signature::payload;
use appimage_bench::client::{HttpVersion, https_client, send};
use appimage_bench::fixtures;
use appimage_bench::harness::{SigningKey, Tls, Webhook, kube_client};
use appimage_bench::review;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use hyper::{Method, StatusCode};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};

use crate::Args;
use crate::results::Results;

/// The seed AppImage (examples/), the one most scenarios look up.
pub(crate) const SEED: &str = "secretflow-image";
/// The large AppImage of scenario 3 (`fixtures::large`).
pub(crate) const LARGE: &str = "large-image";

pub(crate) fn log(message: impl AsRef<str>) {
    eprintln!("[bench] {}", message.as_ref());
}

fn absolute(root: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        root.join(p)
    }
}

/// The arguments' paths, absolute.
pub(crate) struct Paths {
    pub(crate) root: PathBuf,
    /// The release binaries.
    pub(crate) bins: PathBuf,
    /// The scratch directory.
    pub(crate) work: PathBuf,
    /// The results file.
    pub(crate) out: PathBuf,
}

impl Paths {
    /// Resolves `args`' paths against the repository root, checks that the release binaries
    /// are built, empties the scratch directory and makes the results file's directory.
    pub(crate) fn prepare(args: &Args) -> anyhow::Result<Paths> {
        let root = args.root.canonicalize().context("repository root")?;
        let bins = absolute(&root, &args.bin_dir);
        for b in ["appimage-webhook", "appimage-loadgen", "kubectl-appimage"] {
            if !bins.join(b).exists() {
                bail!(
                    "{} is missing: build with `cargo build --release --workspace --bins`",
                    bins.join(b).display()
                );
            }
        }
        let work = absolute(&root, &args.work);
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(work.join("home"))?;
        let out = absolute(&root, &args.out);
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        Ok(Paths {
            root,
            bins,
            work,
            out,
        })
    }

    /// Where the profiles of `--perf` go.
    pub(crate) fn perf_dir(&self) -> PathBuf {
        absolute(&self.root, Path::new("target/bench"))
    }
}

pub(crate) struct Bench {
    pub(crate) args: Args,
    pub(crate) paths: Paths,
    pub(crate) tls: Tls,
    pub(crate) signer: SigningKey,
    pub(crate) client: Client,
    pub(crate) kubeconfig: PathBuf,
    pub(crate) results: Results,
    /// The seed's signature with `signer`, given to every copy of the seed.
    seed_sign: String,
}

impl Bench {
    /// Connects to the control plane at `kubeconfig` and makes the TLS files and signing key.
    pub(crate) async fn new(
        args: Args,
        paths: Paths,
        kubeconfig: &Path,
        mut results: Results,
    ) -> anyhow::Result<Bench> {
        let client = kube_client(kubeconfig).await?;
        let tls = Tls::new(&paths.work.join("tls"), "appimage-bench");
        let signer = SigningKey::new(&paths.work.join("keys"));
        let seed = fixtures::seed(&paths.root, SEED)?;
        let seed_sign = signer.sign(&payload(&seed));
        results.args = Some(args.clone());
        Ok(Bench {
            args,
            paths,
            tls,
            signer,
            client,
            kubeconfig: kubeconfig.to_path_buf(),
            results,
            seed_sign,
        })
    }

    /// Installs the chart's CRD and waits until the AppImage API answers.
    pub(crate) async fn install_crd(&self) -> anyhow::Result<()> {
        let crd = self
            .paths
            .root
            .join("charts/appimage-webhook/crds/appimages.kuscia.secretflow.yaml");
        self.kubectl(&["apply", "-f", &crd.to_string_lossy()])
            .await?;
        self.kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/appimages.kuscia.secretflow",
        ])
        .await?;
        let appimages: Api<AppImage> = Api::all(self.client.clone());
        let t = Instant::now();
        while appimages
            .list(&ListParams::default().limit(1))
            .await
            .is_err()
        {
            if t.elapsed() > Duration::from_secs(30) {
                bail!("the AppImage API never became available");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }

    /// The seed (signed, as is) and the large AppImage (signed with the same key).
    pub(crate) async fn create_fixtures(&self) -> anyhow::Result<()> {
        let seed = self.signed(fixtures::seed(&self.paths.root, SEED)?);
        let mut large = fixtures::large(LARGE);
        large.spec.image.sign = Some(self.signer.sign(&payload(&large)));
        self.create_appimages(vec![seed, large], 2).await?;
        Ok(())
    }

    /// Is scenario `n` asked for (`--only`)?
    pub(crate) fn want(&self, n: u8) -> bool {
        self.args.only.is_empty() || self.args.only.contains(&n)
    }

    /// A release binary.
    pub(crate) fn bin(&self, name: &str) -> PathBuf {
        self.paths.bins.join(name)
    }

    /// A webhook process: `--noop`, or mutating with signature verification on.
    pub(crate) async fn webhook(&self, tag: &str, noop: bool) -> anyhow::Result<Webhook> {
        self.webhook_with(tag, noop, Vec::new()).await
    }

    /// A `--noop` webhook answering every request with the patch `hook` answers `review` with:
    /// the same answer on the wire, without our handler's work behind it.
    pub(crate) async fn replaying(
        &self,
        tag: &str,
        hook: &Webhook,
        review: Bytes,
    ) -> anyhow::Result<Webhook> {
        let client = https_client(&self.tls.ca, HttpVersion::Http1, 1)?;
        let (status, answer) = send(&client, Method::POST, &hook.url("/mutate"), review).await?;
        anyhow::ensure!(status == StatusCode::OK, "HTTP {status} from the webhook");
        let patch = review::patch(&answer).map_err(|e| anyhow::anyhow!("{e}"))?;
        let file = self.paths.work.join(format!("{tag}-patch.json"));
        std::fs::write(&file, patch)?;
        let args = vec!["--noop-patch".into(), file.to_string_lossy().into()];
        self.webhook_with(tag, true, args).await
    }

    /// [`Self::webhook`] with `extra` arguments.
    pub(crate) async fn webhook_with(
        &self,
        tag: &str,
        noop: bool,
        extra: Vec<String>,
    ) -> anyhow::Result<Webhook> {
        let mut args: Vec<String> = extra;
        if noop {
            args.push("--noop".into());
        } else {
            args.push("--trusted-keys-dir".into());
            args.push(self.signer.pub_dir.to_string_lossy().into());
            args.push("--require-signature".into());
            args.push("--kubeconfig".into());
            args.push(self.kubeconfig.to_string_lossy().into());
            // The Service/NetworkPolicy reconciler is not on the admission path; kept off so
            // its apiserver traffic does not load the two cores during measurements.
            args.push("--reconcile=false".into());
        }
        let log_file = self.paths.work.join(format!("webhook-{tag}.log"));
        let started = Instant::now();
        let hook =
            Webhook::start(&self.bin("appimage-webhook"), &self.tls, &args, log_file).await?;
        log(format!(
            "webhook {tag} (pid {}) ready on port {} in {:.1}s",
            hook.pid(),
            hook.port,
            started.elapsed().as_secs_f64()
        ));
        Ok(hook)
    }

    async fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = tokio::process::Command::new(&self.args.kubectl)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.paths.work.join("home"))
            .current_dir(&self.paths.root)
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| format!("running {}", self.args.kubectl.display()))?;
        if !out.status.success() {
            bail!(
                "kubectl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `image` signed as the seed is (copies of the seed, same spec.image).
    pub(crate) fn signed(&self, mut image: AppImage) -> AppImage {
        image.spec.image.sign = Some(self.seed_sign.clone());
        image
    }

    /// Create AppImages `concurrency` at a time; returns how long it took.
    pub(crate) async fn create_appimages(
        &self,
        images: Vec<AppImage>,
        concurrency: usize,
    ) -> anyhow::Result<Duration> {
        let api: Api<AppImage> = Api::all(self.client.clone());
        let started = Instant::now();
        futures::stream::iter(images)
            .map(|image| {
                let api = api.clone();
                async move {
                    let name = image.metadata.name.clone().unwrap_or_default();
                    api.create(&PostParams::default(), &image)
                        .await
                        .with_context(|| format!("creating AppImage {name}"))
                }
            })
            .buffer_unordered(concurrency)
            .try_for_each(|_| async { Ok(()) })
            .await?;
        Ok(started.elapsed())
    }
}
