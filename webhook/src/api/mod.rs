//! HTTP routes: admission endpoints, probes and metrics.

pub mod error;
pub mod handlers;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware;
use axum::routing::{get, post};
use tower_http::timeout::TimeoutLayer;

use crate::admission::{PodRules, Policy};
use crate::catalog::Catalog;
use crate::metrics::Metrics;
use crate::trust::Trust;

/// Whether the TLS connection a request came on presented a verified client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientCert(pub bool);

impl AppState {
    pub fn is_ready(&self) -> bool {
        self.catalog.as_ref().is_none_or(Catalog::is_ready)
    }
}

/// Everything the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// `None` in `--noop` mode (always ready). Its store's initial list makes the webhook ready.
    pub catalog: Option<Catalog>,
    pub trust: Trust,
    pub policy: Policy,
    /// The seal on injected Pods.
    pub pod_rules: PodRules,
    pub metrics: Metrics,
    /// This replica's name in the controllers' Lease, when it runs an election.
    pub leader_identity: Option<String>,
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
        .route("/validate-pods", post(handlers::validate_pods))
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
