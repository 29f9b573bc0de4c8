//! Request handlers: thin adapters between HTTP and [`crate::admission`].

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::{AppState, ClientCert};
use crate::admission::{self, Outcome, Reply};

const MUTATE: &str = "mutate";
const VALIDATE: &str = "validate";
const VALIDATE_PODS: &str = "validate-pods";

pub async fn mutate(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let synced = match &state.catalog {
        Some(catalog) => catalog.wait_ready(state.sync_wait).await,
        None => true,
    };
    if !synced {
        let not_ready = Err(ApiError::NotReady(state.sync_wait));
        return finish(&state, MUTATE, started, not_ready);
    }
    let result = match (body, &state.catalog) {
        (Err(rejection), _) => Err(rejection.into()),
        (Ok(body), Some(catalog)) => mutate_checked(&state, catalog, &body).await,
        (Ok(body), None) => admission::noop(&body, state.noop_patch.as_deref()).map_err(Into::into),
    };
    finish(&state, MUTATE, started, result)
}

/// `/mutate`, asking the registry first when the Pod's image id has not been checked yet.
async fn mutate_checked(
    state: &AppState,
    catalog: &crate::catalog::Catalog,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let rules = &state.pod_rules;
    let reply = admission::mutate_with(body, catalog, state.policy, rules)?;
    match (&reply.unresolved, &rules.registry) {
        (Some(image), Some(registry)) => {
            registry.check(image).await;
            Ok(admission::mutate_with(body, catalog, state.policy, rules)?)
        }
        _ => Ok(reply),
    }
}

pub async fn validate(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let result = body.map_err(ApiError::from).and_then(|body| {
        if state.catalog.is_none() {
            return Ok(admission::noop(&body, None)?);
        }
        Ok(admission::validate(
            &body,
            &state.trust.snapshot(),
            state.policy,
        )?)
    });
    finish(&state, VALIDATE, started, result)
}

/// Pod UPDATEs and ephemeral containers: needs no AppImage, so it never waits for the watch.
pub async fn validate_pods(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let result = body.map_err(ApiError::from).and_then(|body| {
        if state.catalog.is_none() {
            return Ok(admission::noop(&body, None)?);
        }
        Ok(admission::validate_pod(&body)?)
    });
    finish(&state, VALIDATE_PODS, started, result)
}

/// Count, log one line, and turn the result into a response.
fn finish(
    state: &AppState,
    endpoint: &'static str,
    started: Instant,
    result: Result<Reply, ApiError>,
) -> Response {
    let elapsed = started.elapsed();
    let outcome = match &result {
        Ok(reply) => reply.outcome,
        Err(_) => Outcome::Error,
    };
    state.metrics.observe(endpoint, outcome.as_str(), elapsed);
    let duration_ms = elapsed.as_secs_f64() * 1000.0;
    match result {
        Ok(reply) => answer(state, endpoint, &reply, duration_ms),
        Err(e) => {
            tracing::info!(endpoint, status = e.status().as_u16(), outcome = outcome.as_str(),
                duration_ms, error = %e, "admission request rejected");
            e.into_response()
        }
    }
}

/// The AdmissionReview answer, logged.
fn answer(state: &AppState, endpoint: &'static str, reply: &Reply, duration_ms: f64) -> Response {
    if reply.signature_failed {
        state.metrics.signature_failure();
    }
    // The denial reason; absent when allowed.
    let reason = reply.response().status.message.as_str();
    let reason = (!reason.is_empty()).then_some(reason);
    tracing::info!(endpoint, uid = %reply.uid(), namespace = %reply.namespace, name = %reply.name,
        appimage = reply.appimage.as_deref().unwrap_or(""), outcome = reply.outcome.as_str(),
        duration_ms, reason, "admission");
    match reply.to_json() {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => {
            tracing::error!(uid = %reply.uid(), "cannot encode the AdmissionReview: {e}");
            let text = "cannot encode the AdmissionReview answer\n";
            (StatusCode::INTERNAL_SERVER_ERROR, text).into_response()
        }
    }
}

/// With `--client-ca-file`, admission paths answer only verified clients.
pub async fn require_client_cert(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let verified = request.extensions().get::<ClientCert>() == Some(&ClientCert(true));
    if state.require_client_cert && !verified {
        return (
            StatusCode::FORBIDDEN,
            "a client certificate signed by --client-ca-file is required\n",
        )
            .into_response();
    }
    next.run(request).await
}

pub async fn healthz() -> &'static str {
    "ok"
}

/// Ready once the AppImage watch has synced. With an election, the body also says whether
/// this replica leads (runs the controllers); standbys serve admission and are ready too.
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.is_ready() {
        match &state.leader_identity {
            None => "ok".into_response(),
            Some(identity) if state.metrics.is_leader() => {
                format!("ok: {identity} leads (runs the controllers)").into_response()
            }
            Some(identity) => format!("ok: {identity} stands by").into_response(),
        }
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the AppImage watch has not synced yet",
        )
            .into_response()
    }
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    if let Some(catalog) = &state.catalog {
        state.metrics.set_appimages(catalog.len());
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}
