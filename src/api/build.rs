//! `POST /build`: verify the signature on the raw body, unpack the tar,
//! run the build, and answer with one JSON object or, when the client's
//! `Accept` asks for `application/x-ndjson`, an NDJSON stream. Errors found
//! before the build starts are always plain non-2xx replies, so that
//! streaming clients see them before any NDJSON byte.

use super::auth::{verify, SIGNATURE_HEADER};
use super::error::{round_ms, status_for_build_failure, BuildReply, RequestError};
use super::intake::{unpack, Intake, Limits};
use super::limit::InflightGuard;
use super::pipeline::{self, BuildFailure};
use super::state::AppState;
use super::stream;
use crate::errors::ErrorKind;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::path::PathBuf;
use std::time::Instant;

/// Removes a build's scratch directory when the build ends, however it ends.
pub struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A verified, unpacked request ready to build.
pub struct Job {
    /// The unpacked request.
    pub intake: Intake,
    /// When the request arrived.
    pub started: Instant,
    /// Unsealed build secrets.
    pub secrets: pipeline::Secrets,
    /// Keeps the scratch dir until the build ends (dropped with the job).
    pub _scratch: ScratchDir,
    /// Holds an in-flight slot until the build ends (dropped with the job).
    pub _slot: InflightGuard,
}

impl Job {
    /// Seconds since the request arrived, rounded to milliseconds.
    pub fn elapsed(&self) -> f64 {
        round_ms(self.started.elapsed().as_secs_f64())
    }
}

fn request_error(kind: ErrorKind, message: String, started: Instant) -> Response {
    let duration = round_ms(started.elapsed().as_secs_f64());
    RequestError { kind, message, image: String::new(), duration }.into_response()
}

fn wants_ndjson(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).any(|v| v.contains("application/x-ndjson"))
}

/// The handler.
pub async fn handle(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let Some(slot) = state.limiter.try_acquire() else {
        return super::limit::too_many(state.limiter.max());
    };
    let body = match axum::body::to_bytes(body, state.cfg.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => {
            let msg = format!("request body rejected (limit {} bytes): {e}", state.cfg.max_body_bytes);
            let mut resp = request_error(ErrorKind::InvalidArgument, msg, started);
            *resp.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
            return resp;
        }
    };
    if !state.cfg.disable_hmac {
        let header = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
        if let Err(e) = verify(&state.secret, &body, header) {
            tracing::warn!("rejected /build request: {e}");
            return request_error(ErrorKind::Unauthenticated, e.to_string(), started);
        }
    }
    let id = kiln_snapshotter::SnapshotId::random();
    let dir = state.cfg.data_dir.join("builds").join(id.as_str());
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return request_error(ErrorKind::Internal, format!("create build dir: {e}"), started);
    }
    let scratch = ScratchDir(dir.clone());
    let limits = Limits { max_entries: state.cfg.max_entries, max_bytes: state.cfg.max_unpacked_bytes };
    let intake = match tokio::task::spawn_blocking(move || unpack(&body, &dir, limits)).await {
        Ok(Ok(i)) => i,
        Ok(Err(e)) => {
            let (kind, message) = crate::errors::storage_failure(e.to_string(), ErrorKind::InvalidArgument);
            return request_error(kind, message, started);
        }
        Err(e) => return request_error(ErrorKind::Internal, e.to_string(), started),
    };
    let secrets = match unseal(&state, intake.secrets.as_deref()) {
        Ok(s) => s,
        Err(e) => return request_error(ErrorKind::InvalidArgument, e, started),
    };
    tracing::info!(image = intake.config.image, secrets = secrets.len(), "build started");
    let job = Job { intake, started, secrets, _scratch: scratch, _slot: slot };
    if wants_ndjson(&headers) {
        stream::respond(state, job)
    } else {
        respond_json(state, job).await
    }
}

/// Logs the outcome of a build and records its duration.
pub fn log_outcome(
    state: &AppState,
    image: &str,
    result: &Result<kiln_snapshotter::Digest, BuildFailure>,
    duration: f64,
) {
    let outcome = match result {
        Ok(digest) => {
            tracing::info!(image, %digest, duration, "build succeeded");
            "success"
        }
        Err(f) => {
            tracing::warn!(image, error = %f.message, duration, "build failed");
            "failed"
        }
    };
    state.metrics.observe("kiln_build_duration_seconds", &[("result", outcome)], duration);
}

/// Opens `com.openfaas.secrets` with the builder's key.
fn unseal(state: &AppState, raw: Option<&[u8]>) -> Result<pipeline::Secrets, String> {
    let Some(raw) = raw else { return Ok(Default::default()) };
    let key = state.build_key.as_ref().ok_or_else(|| {
        "the request carries build secrets (com.openfaas.secrets) but this builder has no key: set build_secrets_private_key_path".to_string()
    })?;
    key.unseal(raw).map_err(|e| format!("com.openfaas.secrets: {e}"))
}

async fn respond_json(state: AppState, job: Job) -> Response {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let result = pipeline::run(&state, &job.intake, &job.secrets, &tx).await;
    drop(tx);
    let mut log = Vec::new();
    while let Ok(line) = rx.try_recv() {
        log.push(line);
    }
    let duration = job.elapsed();
    let image = job.intake.config.image.clone();
    log_outcome(&state, &image, &result, duration);
    let (code, status, error, digest) = match result {
        Ok(d) => (StatusCode::OK, "success", None, Some(d.to_string())),
        Err(f) => (status_for_build_failure(f.kind), "failed", Some(f.message), None),
    };
    (code, Json(BuildReply { log, image, status: status.into(), error, digest, duration })).into_response()
}
