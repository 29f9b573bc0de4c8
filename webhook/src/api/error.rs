//! Why an HTTP request got no AdmissionReview answer: one type, its status and text, and its
//! response (the model is Kubewarden's `ApiError: IntoResponse`).

use axum::extract::rejection::BytesRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::admission::BadRequest;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body could not be read (too large, wrong content type, cut off).
    #[error("{0}")]
    Body(String, StatusCode),
    /// Not an AdmissionReview we can answer.
    #[error("{0}")]
    BadRequest(String),
    /// The AppImage watch has not synced; the API server retries.
    #[error(
        "not ready: the AppImage watch has not synced within {0:?}; the request can be retried"
    )]
    NotReady(std::time::Duration),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Body(_, status) => *status,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> ApiError {
        ApiError::Body(rejection.body_text(), rejection.status())
    }
}

impl From<BadRequest> for ApiError {
    fn from(e: BadRequest) -> ApiError {
        ApiError::BadRequest(e.0)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let content_type = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
        (self.status(), content_type, format!("{self}\n")).into_response()
    }
}
