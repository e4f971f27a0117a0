//! Operator endpoints on the internal (metrics) listener, never on the
//! client-facing API port: `GET /cache` lists cache entries, `POST
//! /cache/prune?keep_storage=SIZE` evicts least recently used entries until
//! the store fits (waiting for running builds first), `POST /cache/check`
//! verifies the store (also between builds). `kiln cache` calls them.
//! `GET /doctor[?image=REF]` is `kiln doctor`'s report for the running
//! server: its start-up checks, the in-namespace probes run now, disk,
//! cgroups, and optionally a registry.

use super::AppState;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// `GET /doctor[?image=REF]`: `{"can_build": bool, "checks": [...]}`,
/// 200 when a build can run, 503 otherwise.
pub async fn doctor(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    use crate::doctor::{self, Check};
    let mut checks: Vec<Check> = state.startup_checks.as_ref().clone();
    checks.push(doctor::data_dir_space(&state.cfg.data_dir));
    checks.extend(in_namespace_probes(&state.cfg.data_dir).await);
    checks.push(doctor::cgroup_check());
    let image = query.as_deref().unwrap_or("").split('&').find_map(|kv| kv.strip_prefix("image=")).map(percent_decode);
    if let Some(image) = image {
        checks.push(doctor::registry_check(state.solver.registry(), &image).await);
    }
    let can_build = doctor::can_build(&checks);
    let code = if can_build { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(serde_json::json!({"can_build": can_build, "checks": checks}))).into_response()
}

/// `kiln __doctor-probe` run by the server, so in its namespace.
async fn in_namespace_probes(data_dir: &std::path::Path) -> Vec<crate::doctor::Check> {
    use crate::doctor::Check;
    let out = tokio::process::Command::new("/proc/self/exe").arg("__doctor-probe").arg(data_dir).output().await;
    match out.map(|o| serde_json::from_slice::<Vec<Check>>(&o.stdout).map_err(|e| (e, o.stderr))) {
        Ok(Ok(checks)) => checks,
        Ok(Err((e, stderr))) => {
            let detail = format!("{e}: {}", String::from_utf8_lossy(&stderr).trim());
            vec![Check::fail("namespace probes", detail, "run kiln doctor on the host")]
        }
        Err(e) => vec![Check::fail("namespace probes", e.to_string(), "run kiln doctor on the host")],
    }
}

/// `%2F`-style escapes in a query value.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%' && i + 2 < bytes.len()).then(|| std::str::from_utf8(&bytes[i + 1..i + 3]).ok());
        match hex.flatten().and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

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
