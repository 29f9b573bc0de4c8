//! HTTP routes: admission endpoints, probes and metrics.

pub mod handlers;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware;
use axum::routing::{get, post};
use tokio::sync::watch;
use tower_http::timeout::TimeoutLayer;

use crate::admission::Policy;
use crate::cache::Catalog;
use crate::metrics::Metrics;
use crate::trust::Trust;

/// Set once the AppImage store has its initial list (always, in `--noop` mode); `/readyz`
/// reports it and early /mutate requests wait on it.
#[derive(Debug, Clone)]
pub struct Readiness(Arc<watch::Sender<bool>>);

impl Default for Readiness {
    fn default() -> Readiness {
        Readiness(Arc::new(watch::Sender::new(false)))
    }
}

impl Readiness {
    pub fn ready() -> Readiness {
        let r = Readiness::default();
        r.set();
        r
    }

    pub fn set(&self) {
        self.0.send_replace(true);
    }

    pub fn is_ready(&self) -> bool {
        *self.0.borrow()
    }

    /// Whether ready, waiting up to `limit` for it.
    pub async fn wait(&self, limit: Duration) -> bool {
        if self.is_ready() {
            return true;
        }
        let mut rx = self.0.subscribe();
        matches!(
            tokio::time::timeout(limit, rx.wait_for(|ready| *ready)).await,
            Ok(Ok(_))
        )
    }
}

/// Whether the TLS connection a request came on presented a verified client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientCert(pub bool);

/// Everything the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// `None` in `--noop` mode.
    pub catalog: Option<Catalog>,
    pub trust: Trust,
    pub policy: Policy,
    pub metrics: Metrics,
    pub ready: Readiness,
    /// `--noop-patch`: the patch `--noop` answers /mutate with.
    pub noop_patch: Option<Arc<[u8]>>,
    /// How long a /mutate that arrives before the AppImage watch has synced waits for it before
    /// answering 503; an empty store would otherwise deny every Pod as "not found".
    pub sync_wait: Duration,
    /// Admission paths need a verified client certificate (`--client-ca-file`).
    pub require_client_cert: bool,
}

/// Limits applied to every request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
}

pub fn router(state: Arc<AppState>, limits: Limits) -> Router {
    let admission = Router::new()
        .route("/mutate", post(handlers::mutate))
        .route("/validate", post(handlers::validate))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            handlers::require_client_cert,
        ));
    Router::new()
        .merge(admission)
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .route("/metrics", get(handlers::metrics))
        .with_state(state)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
}
