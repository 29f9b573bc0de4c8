//! Listener, TLS handshakes, HTTP serving and graceful shutdown; wiring of all parts.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use appimage::admitted::SealKey;
use appimage::overrides::PodOverrides;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use kube::Client;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::admission::{PodRules, Policy, SignaturePolicy};
use crate::api::{self, AppState, ClientCert, Limits};
use crate::catalog::{self, AppImages, Catalog, Revisions};
pub use crate::certs::TlsFiles;
use crate::certs::{self, Tls};
use crate::controllers;
use crate::leader::{self, Election, Leadership, LeaseConfig};
use crate::metrics::Metrics;
use crate::registry::{Registry, RegistryConfig};
use crate::trust::Trust;

/// A client gets this long to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything the server is configured with (the CLI builds one; tests build their own).
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// `None` serves plain HTTP (`--insecure-http`), unless `tls_in_memory` is set.
    pub tls: Option<TlsFiles>,
    /// A serving pair held in memory (`appimage-webhook dev`), used when `tls` is `None`.
    pub tls_in_memory: Option<rustls::sign::CertifiedKey>,
    pub trusted_keys_dir: Option<PathBuf>,
    pub require_signature: bool,
    pub signatures: SignaturePolicy,
    /// The secret that seals injected Pods; `None`: a random one per process.
    pub seal_key_file: Option<PathBuf>,
    /// What a Pod may override of its deploy template.
    pub pod_overrides: PodOverrides,
    /// Check image ids against registries (`--verify-image-ids`); `None`: off.
    pub registry: Option<RegistryConfig>,
    pub kubeconfig: Option<PathBuf>,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub shutdown_grace: Duration,
    pub noop: bool,
    /// `--noop` answers /mutate with this JSONPatch file's patch.
    pub noop_patch: Option<PathBuf>,
    /// Run the controllers (Services and NetworkPolicies) beside the admission server.
    pub reconcile: bool,
    /// Run the controllers only while holding this Lease; `None`: always (one replica).
    pub lease: Option<LeaseConfig>,
}

impl Config {
    /// Admission's policy, which the controllers share.
    pub fn policy(&self) -> Policy {
        Policy {
            require_signature: self.require_signature,
            signatures: self.signatures,
        }
    }

    /// Defaults as the CLI has them, serving `tls` on `listen`.
    pub fn new(listen: SocketAddr, tls: Option<TlsFiles>) -> Config {
        Config {
            listen,
            tls,
            tls_in_memory: None,
            trusted_keys_dir: None,
            require_signature: true,
            signatures: SignaturePolicy::default(),
            seal_key_file: None,
            pod_overrides: PodOverrides::default(),
            registry: None,
            kubeconfig: None,
            max_body_bytes: 3 * 1024 * 1024,
            request_timeout: Duration::from_secs(4),
            shutdown_grace: Duration::from_secs(20),
            noop: false,
            noop_patch: None,
            reconcile: true,
            lease: None,
        }
    }
}

/// A started server.
#[derive(Debug)]
pub struct Running {
    pub local_addr: SocketAddr,
    pub state: Arc<AppState>,
    /// The certificate resolver, when serving TLS (to see what is served).
    pub tls: Option<Arc<certs::CertResolver>>,
    handle: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Until the shutdown future fired and in-flight requests finished (or the grace ran out).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.handle.await.context("server task failed")?
    }
}

/// Serve until `shutdown` completes: the binary's entry point.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    start(config, shutdown).await?.wait().await
}

/// Start serving, watching AppImages with a kube client (unless `--noop`).
pub async fn start(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Running> {
    certs::install_default_provider();
    if config.noop {
        return start_inner(config, Source::Noop, shutdown).await;
    }
    let client = kube_client(config.kubeconfig.as_deref()).await?;
    let (reader, revisions, tasks) = catalog::watch(&client);
    let client = config.reconcile.then_some(client);
    let source = Source::Store(reader, tasks.into(), client, revisions);
    start_inner(config, source, shutdown).await
}

/// Start serving AppImages from a store the caller fills (tests, benchmarks).
pub async fn start_with_store(
    config: Config,
    store: AppImages,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Running> {
    certs::install_default_provider();
    start_inner(
        config,
        Source::Store(store, Vec::new(), None, Revisions::default()),
        shutdown,
    )
    .await
}

enum Source {
    Noop,
    /// AppImages, the tasks filling them, and a client for the controllers.
    Store(AppImages, Vec<JoinHandle<()>>, Option<Client>, Revisions),
}

pub(crate) async fn kube_client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .with_context(|| format!("loading kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("no cluster config: pass --kubeconfig, set KUBECONFIG, or run in-cluster")?,
    };
    Client::try_from(config).context("building the Kubernetes client")
}

/// The `--noop-patch` file, checked to be a JSONPatch so that a mistake fails at start.
fn noop_patch(path: &std::path::Path) -> anyhow::Result<Arc<[u8]>> {
    let text =
        std::fs::read(path).with_context(|| format!("reading --noop-patch {}", path.display()))?;
    serde_json::from_slice::<json_patch::Patch>(&text).with_context(|| {
        format!(
            "--noop-patch {}: not a JSONPatch (a JSON array of operations)",
            path.display()
        )
    })?;
    Ok(Arc::from(text.trim_ascii()))
}

/// The seal key: `--seal-key-file`, else random for this process (with a warning: replicas
/// and restarts then disagree about which Pods are sealed).
fn load_seal_key(config: &Config) -> anyhow::Result<SealKey> {
    if let Some(file) = &config.seal_key_file {
        let bytes = std::fs::read(file)
            .with_context(|| format!("reading --seal-key-file {}", file.display()))?;
        return SealKey::new(&bytes)
            .map_err(|e| anyhow::anyhow!("--seal-key-file {}: {e}", file.display()));
    }
    if !config.noop {
        tracing::warn!(
            "no --seal-key-file: injected Pods are sealed with a random key of this process; after a restart, or on another replica, the Services controller ignores them"
        );
    }
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .context("reading /dev/urandom for a seal key")?;
    let text = base64_simd::STANDARD.encode_to_string(bytes);
    SealKey::new(text.as_bytes()).map_err(|e| anyhow::anyhow!(e))
}

fn load_trust(config: &Config, metrics: &Metrics) -> anyhow::Result<Trust> {
    if let Some(dir) = &config.trusted_keys_dir {
        return Ok(Trust::watch_dir(dir, metrics.clone())?);
    }
    if config.require_signature && !config.noop {
        tracing::warn!(
            "no --trusted-keys-dir: every labelled Pod will be denied until keys are configured"
        );
    }
    Ok(Trust::fixed(Vec::new()))
}

async fn start_inner(
    config: Config,
    source: Source,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Running> {
    let metrics = Metrics::new();
    let trust = load_trust(&config, &metrics)?;
    let seal_key = load_seal_key(&config)?;
    let tls = match (&config.tls, &config.tls_in_memory) {
        (Some(files), _) => Some(certs::load(files, metrics.clone())?),
        (None, Some(key)) => Some(certs::fixed(key.clone())?),
        (None, None) => None,
    };
    let noop_patch = config.noop_patch.as_deref().map(noop_patch).transpose()?;
    let (catalog, watch_tasks, client) = match source {
        Source::Noop => (None, Vec::new(), None),
        Source::Store(store, task, client, revisions) => {
            log_when_synced(store.clone());
            let catalog = Catalog::new(store, trust.clone()).with_revisions(revisions);
            (Some(catalog), task, client)
        }
    };
    let controllers = match (client, &catalog) {
        (Some(client), Some(catalog)) => {
            let seal = seal_key.clone();
            Some(start_controllers(client, catalog.clone(), seal, &config, &metrics).await?)
        }
        _ => None,
    };
    let registry = match &config.registry {
        Some(registry) => Some(Arc::new(Registry::new(registry)?)),
        None => None,
    };
    let state = Arc::new(AppState {
        catalog,
        trust,
        policy: config.policy(),
        pod_rules: PodRules {
            seal_key: Some(seal_key),
            pod_overrides: config.pod_overrides,
            registry,
        },
        metrics,
        leader_identity: controllers.as_ref().and_then(Controllers::elected_identity),
        noop_patch,
        // Half the request timeout, so the 503 beats the timeout layer's 408.
        sync_wait: config.request_timeout / 2,
        require_client_cert: tls.as_ref().is_some_and(|t| t.client_auth),
    });
    let limits = Limits {
        max_body_bytes: config.max_body_bytes,
        request_timeout: config.request_timeout,
    };
    let app = api::router(state.clone(), limits);
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let local_addr = listener.local_addr()?;
    tracing::info!(
        tls = tls.is_some(),
        noop = config.noop,
        require_signature = config.require_signature,
        pod_overrides = %config.pod_overrides,
        "listening on {local_addr}"
    );
    let resolver = tls.as_ref().map(|t| t.resolver.clone());
    let grace = config.shutdown_grace;
    let handle = tokio::spawn(async move {
        let result = serve(listener, tls, app, grace, shutdown).await;
        if let Some(controllers) = controllers {
            controllers.stop().await;
        }
        for task in watch_tasks {
            task.abort();
        }
        result
    });
    Ok(Running {
        local_addr,
        state,
        tls: resolver,
        handle,
    })
}

fn log_when_synced(store: AppImages) {
    tokio::spawn(async move {
        store.wait_until_ready().await;
        tracing::info!(appimages = store.len(), "AppImage watch synced; ready");
    });
}

/// The controllers' task and the election it follows.
struct Controllers {
    task: JoinHandle<()>,
    election: Option<(Election, Leadership)>,
}

impl Controllers {
    /// This replica's name in the Lease, when an election decides who runs the controllers.
    fn elected_identity(&self) -> Option<String> {
        let (_, leadership) = self.election.as_ref()?;
        Some(leadership.identity().to_string())
    }

    /// Stop the controllers and give the Lease up, so a standby takes over at once.
    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
        if let Some((election, leadership)) = self.election {
            election.resign(leadership, Duration::from_secs(2)).await;
        }
    }
}

async fn start_controllers(
    client: Client,
    catalog: Catalog,
    seal_key: SealKey,
    config: &Config,
    metrics: &Metrics,
) -> anyhow::Result<Controllers> {
    let (leadership, election) = match &config.lease {
        Some(lease) => {
            let (leadership, election) =
                leader::campaign(client.clone(), lease, metrics.clone()).await?;
            (leadership, Some(election))
        }
        None => {
            metrics.set_leader(true);
            (Leadership::always(&leader::default_identity()), None)
        }
    };
    let identity = leadership.identity().to_string();
    let mut ctx = controllers::Context::new(client, catalog, metrics.clone(), &identity);
    ctx.seal_key = Some(seal_key);
    ctx.policy = config.policy();
    // With --verify-image-ids the batch controller's image pulls fetch the manifest the
    // webhook pins the app's Pods to (its own cache of the registry's answers).
    ctx.registry = match &config.registry {
        Some(registry) => Some(Arc::new(Registry::new(registry)?)),
        None => None,
    };
    let task = tokio::spawn(controllers::run_while_leading(ctx, leadership.clone()));
    Ok(Controllers {
        task,
        election: election.map(|e| (e, leadership)),
    })
}

async fn serve(
    listener: TcpListener,
    tls: Option<Tls>,
    app: Router,
    grace: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let acceptor = tls.as_ref().map(|t| TlsAcceptor::from(t.config.clone()));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let watcher = graceful.watcher();
        let (app, acceptor, builder) = (app.clone(), acceptor.clone(), builder.clone());
        tokio::spawn(async move {
            connection(tcp, peer, acceptor, app, builder, watcher).await;
        });
    }
    drop(listener);
    tracing::info!("shutting down: finishing in-flight requests (up to {grace:?})");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(grace) => tracing::warn!("shutdown grace elapsed; closing open connections"),
    }
    // `tls` (and its certificate watch) lives until here.
    drop(tls);
    Ok(())
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    app: Router,
    builder: auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let _ = tcp.set_nodelay(true);
    let Some(acceptor) = acceptor else {
        let service = TowerToHyperService::new(app);
        let conn = builder.serve_connection(TokioIo::new(tcp), service);
        if let Err(e) = watcher.watch(conn).await {
            tracing::debug!(%peer, "connection: {e}");
        }
        return;
    };
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%peer, "TLS handshake failed: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let client_cert = ClientCert(stream.get_ref().1.peer_certificates().is_some());
    let service = TowerToHyperService::new(app.map_request(
        move |mut request: axum::http::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(client_cert);
            request
        },
    ));
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(%peer, "connection: {e}");
    }
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for SIGINT: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}
