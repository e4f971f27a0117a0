//! `POST /build`: verify the signature on the raw body, unpack the tar,
//! run the build, answer with one JSON object.

use super::auth::{verify, SIGNATURE_HEADER};
use super::error::{round_ms, status_for_build_failure, BuildReply, RequestError};
use super::intake::{unpack, Limits};
use super::pipeline;
use super::state::AppState;
use crate::errors::ErrorKind;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::path::PathBuf;
use std::time::Instant;

/// Removes a build's scratch directory when the request ends, however it ends.
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn request_error(kind: ErrorKind, message: String, started: Instant) -> Response {
    let duration = round_ms(started.elapsed().as_secs_f64());
    RequestError {
        kind,
        message,
        image: String::new(),
        duration,
    }
    .into_response()
}

/// The handler.
pub async fn handle(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let started = Instant::now();
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
    let limits = Limits {
        max_entries: state.cfg.max_entries,
        max_bytes: state.cfg.max_unpacked_bytes,
    };
    let intake = match tokio::task::spawn_blocking(move || unpack(&body, &dir, limits)).await {
        Ok(Ok(i)) => i,
        Ok(Err(e)) => return request_error(ErrorKind::InvalidArgument, e.to_string(), started),
        Err(e) => return request_error(ErrorKind::Internal, e.to_string(), started),
    };
    let image = intake.config.image.clone();
    tracing::info!(image, "build started");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let result = pipeline::run(&state, &intake, &tx).await;
    drop(tx);
    drop(scratch);
    let mut log = Vec::new();
    while let Ok(line) = rx.try_recv() {
        log.push(line);
    }
    let duration = round_ms(started.elapsed().as_secs_f64());
    let (code, status, error) = match result {
        Ok(digest) => {
            tracing::info!(image, %digest, duration, "build succeeded");
            (StatusCode::OK, "success", None)
        }
        Err(f) => {
            tracing::warn!(image, error = %f.message, "build failed");
            (status_for_build_failure(f.kind), "failed", Some(f.message))
        }
    };
    let reply = BuildReply {
        log,
        image,
        status: status.into(),
        error,
        duration,
    };
    (code, Json(reply)).into_response()
}
