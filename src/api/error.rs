//! Maps errors to HTTP responses in one place. Every error body is JSON
//! with at least `status`, `image`, `error` and `log`, because real
//! clients (the Python and PHP examples) parse the body unconditionally.

use crate::errors::ErrorKind;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// The `/build` reply, success or failure.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct BuildReply {
    /// Log lines.
    pub log: Vec<String>,
    /// The image reference as requested.
    pub image: String,
    /// `success` or `failed`.
    pub status: String,
    /// What went wrong.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    /// The image manifest's digest, on success (clients ignore it; it
    /// lets callers pin `image@digest`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub digest: Option<String>,
    /// The provenance, SBOM and signature attached to the image
    /// (references by digest; additive fields clients ignore).
    #[serde(flatten)]
    pub evidence: super::attached::Evidence,
    /// Seconds since the request arrived, rounded to milliseconds.
    pub duration: f64,
}

/// HTTP status for an error kind.
pub fn status_for(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::OutOfSpace => StatusCode::INSUFFICIENT_STORAGE,
        ErrorKind::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::NotFound | ErrorKind::FailedPrecondition | ErrorKind::Unavailable | ErrorKind::Internal => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

/// HTTP status for a failure after the build started: 400 when the
/// request's content is at fault (Dockerfile, COPY sources), 507 when the
/// data directory is full, 503 when shutdown cancelled the build, 500
/// otherwise. Never 401, which clients would
/// read as a bad signature.
pub fn status_for_build_failure(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::OutOfSpace => StatusCode::INSUFFICIENT_STORAGE,
        ErrorKind::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An error before the build started (signature, tar, config).
#[derive(Debug)]
pub struct RequestError {
    /// Kind.
    pub kind: ErrorKind,
    /// Message.
    pub message: String,
    /// Image, when known.
    pub image: String,
    /// Seconds since the request arrived.
    pub duration: f64,
}

impl IntoResponse for RequestError {
    fn into_response(self) -> Response {
        let reply = BuildReply {
            evidence: Default::default(),
            log: Vec::new(),
            image: self.image,
            status: "failed".into(),
            error: Some(self.message),
            digest: None,
            duration: self.duration,
        };
        (status_for(self.kind), Json(reply)).into_response()
    }
}

/// Rounds seconds to milliseconds, as the pro-builder reports them.
pub fn round_ms(secs: f64) -> f64 {
    (secs * 1000.0).round() / 1000.0
}
