//! Operator endpoints on the internal (metrics) listener, never on the
//! client-facing API port, each signed with the payload secret
//! ([`require_signature`]; `/metrics` stays open for Prometheus): `GET /cache` lists cache entries, `POST
//! /cache/prune?keep_storage=SIZE` evicts least recently used entries until
//! the store fits (waiting for running builds first), `POST /cache/check`
//! verifies the store (also between builds). `kiln cache` calls them.
//! `GET /doctor[?image=REF]` is `kiln doctor`'s report for the running
//! server: its start-up checks, the in-namespace probes run now, disk,
//! cgroups, and optionally a registry.

use super::AppState;
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::collections::HashMap;

/// Largest admin request body read for its signature.
const MAX_ADMIN_BODY: usize = 64 << 10;

/// Refuses an admin request unless it carries a fresh signature made with
/// the payload secret (see [`super::auth::verify_admin`]): anyone who can
/// reach the internal listener — a Prometheus scraper, a pod of the
/// cluster, a build step on the node — can otherwise prune the cache, list
/// every tenant's steps or make the server contact a registry.
pub async fn require_signature(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_ADMIN_BODY).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "admin request body too large\n").into_response();
    };
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let path = parts.uri.path_and_query().map_or(parts.uri.path(), |p| p.as_str());
    let now = crate::timefmt::now_secs();
    let verdict = super::auth::verify_admin(
        &state.secret,
        (parts.method.as_str(), path, &body),
        header(super::auth::ADMIN_TIMESTAMP_HEADER),
        header(super::auth::ADMIN_SIGNATURE_HEADER),
        now,
    );
    if let Err(e) = verdict {
        tracing::warn!(path, "refused admin request: {e}");
        return (StatusCode::UNAUTHORIZED, Json(serde_json::json!({"error": e.to_string()}))).into_response();
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(body))).await
}

/// `GET /doctor[?image=REF]`: `{"can_build": bool, "checks": [...]}`,
/// 200 when a build can run, 503 otherwise.
pub async fn doctor(State(state): State<AppState>, Query(query): Query<HashMap<String, String>>) -> Response {
    use crate::doctor::{self, Check};
    let mut checks: Vec<Check> = state.startup_checks.as_ref().clone();
    checks.push(doctor::data_dir_space(&state.cfg.data_dir));
    checks.extend(in_namespace_probes(&state.cfg.data_dir).await);
    checks.push(doctor::cgroup_check());
    if let Some(image) = query.get("image") {
        checks.push(doctor::registry_check(state.worker.registry(), image).await);
    }
    let can_build = doctor::can_build(&checks);
    let code = if can_build { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(serde_json::json!({"can_build": can_build, "checks": checks}))).into_response()
}

/// `kiln __doctor-probe` run by the server, so in its namespace.
async fn in_namespace_probes(data_dir: &std::path::Path) -> Vec<crate::doctor::Check> {
    use crate::doctor::Check;
    let out = tokio::process::Command::new("/proc/self/exe").arg("__doctor-probe").arg(data_dir).output().await;
    match out {
        Ok(out) => crate::doctor::probe_output(&out, "namespace probes").unwrap_or_else(|failed| vec![failed]),
        Err(e) => vec![Check::fail("namespace probes", e.to_string(), "run kiln doctor on the host")],
    }
}

/// `GET /cache`.
pub async fn list(State(state): State<AppState>) -> Response {
    match state.worker.cache_entries() {
        Ok(entries) => Json(entries).into_response(),
        Err(e) => worker_failure(&e),
    }
}

/// `POST /cache/prune[?keep_storage=SIZE]` (default `0`: remove every
/// entry).
pub async fn prune(State(state): State<AppState>, Query(query): Query<HashMap<String, String>>) -> Response {
    let budget = match query.get("keep_storage").map(|k| crate::units::parse_size(k)).transpose() {
        Ok(b) => b.unwrap_or(0),
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    match state.worker.prune(budget).await {
        Ok(report) => Json(report).into_response(),
        Err(e) => worker_failure(&e),
    }
}

/// `POST /cache/check`: 200 with the report when the store is consistent,
/// 409 with it when not.
pub async fn check(State(state): State<AppState>) -> Response {
    match state.worker.check_store().await {
        Ok(report) if report.ok => Json(report).into_response(),
        Ok(report) => (StatusCode::CONFLICT, Json(report)).into_response(),
        Err(e) => worker_failure(&e),
    }
}

/// A maintenance failure: its status from its kind (busy builds are 503),
/// its message as the body.
fn worker_failure(e: &crate::worker::WorkerError) -> Response {
    (super::error::status_for(e.kind()), e.to_string()).into_response()
}
