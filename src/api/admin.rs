//! Operator endpoints on the internal (metrics) listener, never on the
//! client-facing API port: `GET /cache` lists cache entries, `POST
//! /cache/prune?keep_storage=SIZE` evicts least recently used entries until
//! the store fits (waiting for running builds first), `POST /cache/check`
//! verifies the store (also between builds). `kiln cache` calls them.

use super::AppState;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// `GET /cache`.
pub async fn list(State(state): State<AppState>) -> Response {
    match state.solver.cache_entries() {
        Ok(entries) => Json(entries).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}

/// `POST /cache/prune[?keep_storage=SIZE]` (default `0`: remove every
/// entry).
pub async fn prune(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let keep = query.as_deref().unwrap_or("").split('&').find_map(|kv| kv.strip_prefix("keep_storage="));
    let budget = match keep.map(crate::units::parse_size).transpose() {
        Ok(b) => b.unwrap_or(0),
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    match state.solver.prune(budget).await {
        Ok(report) => Json(report).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}

/// `POST /cache/check`: 200 with the report when the store is consistent,
/// 409 with it when not.
pub async fn check(State(state): State<AppState>) -> Response {
    match state.solver.check_store().await {
        Ok(report) if report.ok => Json(report).into_response(),
        Ok(report) => (StatusCode::CONFLICT, Json(report)).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}
