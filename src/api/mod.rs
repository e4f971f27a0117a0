//! The HTTP API: the OpenFaaS Function Builder contract (`POST /build`,
//! `GET /healthz`), HMAC auth, safe tar intake and error mapping.

mod admin;
mod afterreply;
pub mod attached;
pub mod audit;
pub mod auth;
mod build;
pub mod contextfs;
pub mod distribution;
mod epoch;
pub mod error;
pub mod evidence;
mod failure;
pub mod fuzzing;
mod history;
mod image;
pub mod intake;
mod job;
pub mod legacy;
pub mod lifecycle;
pub mod limit;
pub mod logsink;
mod pipeline;
pub mod replylog;
mod state;
pub mod stream;
pub mod symlinks;
mod ui;
pub mod upload;

#[cfg(test)]
mod tests;

pub use state::{AppState, ServeConfig};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

/// The API router.
pub fn app(state: AppState) -> Router {
    let mut router = Router::new()
        .route("/build", post(build::handle))
        .route("/healthz", get(|| async { "OK" }))
        .route("/ready", get(ready))
        .route("/publickey", get(public_key));
    if state.cfg.serve_images {
        router = router
            .route("/v2", get(distribution::version))
            .route("/v2/", get(distribution::version))
            .route("/v2/{*rest}", get(distribution::pull));
    }
    router
        .route_layer(middleware::from_fn_with_state(state.clone(), count_requests))
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// The internal router for the second listener: metrics, the cache admin
/// endpoints, the build history and its page.
pub fn metrics_app(state: AppState) -> Router {
    let admin = Router::new()
        .route("/doctor", get(admin::doctor))
        .route("/cache", get(admin::list))
        .route("/cache/prune", post(admin::prune))
        .route("/cache/check", post(admin::check))
        .route_layer(middleware::from_fn_with_state(state.clone(), admin::require_signature));
    // Read by the history page too: a session cookie admits these GETs.
    let operator = Router::new()
        .route("/builds", get(history::list))
        .route("/builds/{id}", get(history::show))
        .route("/ui/", get(ui::index))
        .route("/ui/{file}", get(ui::asset))
        .route_layer(middleware::from_fn_with_state(state.clone(), ui::session_or_signature));
    Router::new()
        .route(
            "/metrics",
            get(|State(s): State<AppState>| async move {
                let in_flight = s.limiter.in_flight() as f64;
                let uploads = s.uploads.pending() as f64;
                let gauges = [("kiln_builds_in_flight", in_flight), ("kiln_pending_uploads", uploads)];
                ([("content-type", crate::metrics::Metrics::CONTENT_TYPE)], s.metrics.render(&gauges))
            }),
        )
        .route("/ui", get(ui::to_index))
        .route("/ui/login", get(ui::login))
        .merge(admin)
        .merge(operator)
        .with_state(state)
}

async fn count_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("other", |p| p.as_str()).to_string();
    let resp = next.run(req).await;
    state.metrics.inc("kiln_http_requests_total", &[("route", &route), ("code", resp.status().as_str())], 1.0);
    resp
}

/// The build-secrets public key (faas-cli fetches it before sealing).
async fn public_key(State(state): State<AppState>) -> (StatusCode, axum::Json<serde_json::Value>) {
    match &state.build_key {
        Some(k) => (StatusCode::OK, axum::Json(k.public_json())),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(
                serde_json::json!({"error": "build secrets are not enabled on this builder: set build_secrets_private_key_path"}),
            ),
        ),
    }
}

/// 200 while a build can be accepted; 503 while `max_inflight` builds run
/// or the server is shutting down.
async fn ready(State(state): State<AppState>) -> (StatusCode, String) {
    if state.lifecycle.is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, "Not ready: shutting down\n".into());
    }
    if state.limiter.saturated() {
        let msg = format!("Not ready: {} of {} build slots in use\n", state.limiter.in_flight(), state.limiter.max());
        return (StatusCode::SERVICE_UNAVAILABLE, msg);
    }
    (StatusCode::OK, "OK".into())
}
