//! Listener, TLS handshakes, HTTP serving and graceful shutdown; wiring of all parts.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use appimage::resource::AppImage;
use axum::Router;
use futures::StreamExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::admission::Policy;
use crate::api::{self, AppState, ClientCert, Limits, Readiness};
use crate::cache::{AppImages, Catalog, appimages};
pub use crate::certs::TlsFiles;
use crate::certs::{self, Tls};
use crate::metrics::Metrics;
use crate::trust::Trust;

/// A client gets this long to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything the server is configured with (the CLI builds one; tests build their own).
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// `None` serves plain HTTP (`--insecure-http`).
    pub tls: Option<TlsFiles>,
    pub trusted_keys_dir: Option<PathBuf>,
    pub require_signature: bool,
    pub kubeconfig: Option<PathBuf>,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub shutdown_grace: Duration,
    pub noop: bool,
    /// `--noop` answers /mutate with this JSONPatch file's patch.
    pub noop_patch: Option<PathBuf>,
    /// Run the Service/NetworkPolicy reconciler beside the admission server.
    pub reconcile: bool,
}

impl Config {
    /// Defaults as the CLI has them, serving `tls` on `listen`.
    pub fn new(listen: SocketAddr, tls: Option<TlsFiles>) -> Config {
        Config {
            listen,
            tls,
            trusted_keys_dir: None,
            require_signature: true,
            kubeconfig: None,
            max_body_bytes: 3 * 1024 * 1024,
            request_timeout: Duration::from_secs(4),
            shutdown_grace: Duration::from_secs(20),
            noop: false,
            noop_patch: None,
            reconcile: true,
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
    let (reader, mut writer) = appimages();
    let reconciler = config.reconcile.then(|| client.clone());
    let stream =
        watcher(Api::<AppImage>::all(client), watcher::Config::default()).default_backoff();
    let task = tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => writer.apply(event),
                Err(e) => tracing::warn!("AppImage watch: {e} (retrying)"),
            }
        }
    });
    start_inner(
        config,
        Source::Store(reader, Some(task), reconciler),
        shutdown,
    )
    .await
}

/// Start serving AppImages from a store the caller fills (tests, benchmarks).
pub async fn start_with_store(
    config: Config,
    store: AppImages,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Running> {
    certs::install_default_provider();
    start_inner(config, Source::Store(store, None, None), shutdown).await
}

enum Source {
    Noop,
    /// AppImages, the task filling them, and a client for the reconciler.
    Store(AppImages, Option<JoinHandle<()>>, Option<Client>),
}

async fn kube_client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<Client> {
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

async fn start_inner(
    config: Config,
    source: Source,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Running> {
    let metrics = Metrics::new();
    let trust = match &config.trusted_keys_dir {
        Some(dir) => Trust::watch_dir(dir, metrics.clone())?,
        None => {
            if config.require_signature && !config.noop {
                tracing::warn!(
                    "no --trusted-keys-dir: every labelled Pod will be denied until keys are configured"
                );
            }
            Trust::fixed(Vec::new())
        }
    };
    let tls = match &config.tls {
        Some(files) => Some(certs::load(files, metrics.clone())?),
        None => None,
    };
    let noop_patch = match &config.noop_patch {
        Some(path) => Some(noop_patch(path)?),
        None => None,
    };
    let ready = Readiness::default();
    let mut reconciler_client = None;
    let (catalog, reflector_task) = match source {
        Source::Noop => {
            ready.set();
            (None, None)
        }
        Source::Store(store, task, client) => {
            reconciler_client = client.map(|c| (c, store.clone()));
            let flag = ready.clone();
            let waiter = store.clone();
            tokio::spawn(async move {
                waiter.wait_until_ready().await;
                tracing::info!(appimages = waiter.len(), "AppImage watch synced; ready");
                flag.set();
            });
            (Some(Catalog::new(store, trust.clone())), task)
        }
    };
    let state = Arc::new(AppState {
        catalog,
        trust,
        policy: Policy {
            require_signature: config.require_signature,
        },
        metrics,
        ready,
        noop_patch,
        // Half the request timeout, so the 503 beats the timeout layer's 408.
        sync_wait: config.request_timeout / 2,
        require_client_cert: tls.as_ref().is_some_and(|t| t.client_auth),
    });
    let app = api::router(
        state.clone(),
        Limits {
            max_body_bytes: config.max_body_bytes,
            request_timeout: config.request_timeout,
        },
    );
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let local_addr = listener.local_addr()?;
    tracing::info!(
        tls = tls.is_some(),
        noop = config.noop,
        require_signature = config.require_signature,
        "listening on {local_addr}"
    );
    let reconciler_task = reconciler_client.map(|(client, store)| {
        tokio::spawn(crate::reconciler::run(
            client,
            store,
            state.metrics.clone(),
            std::future::pending(),
        ))
    });
    let resolver = tls.as_ref().map(|t| t.resolver.clone());
    let grace = config.shutdown_grace;
    let handle = tokio::spawn(async move {
        let result = serve(listener, tls, app, grace, shutdown).await;
        for task in [reflector_task, reconciler_task].into_iter().flatten() {
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
