//! The HTTP API: the OpenFaaS Function Builder contract (`POST /build`,
//! `GET /healthz`), HMAC auth, safe tar intake and error mapping.

pub mod auth;
mod build;
pub mod error;
pub mod intake;
mod pipeline;
mod state;

pub use state::{AppState, ServeConfig};

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

/// The API router.
pub fn app(state: AppState) -> Router {
    let limit = state.cfg.max_body_bytes;
    Router::new()
        .route("/build", post(build::handle))
        .route("/healthz", get(|| async { "OK" }))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}
