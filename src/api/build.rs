//! `POST /build`: verify the signature on the raw body, unpack the tar,
//! run the build, and answer with one JSON object or, when the client's
//! `Accept` asks for `application/x-ndjson`, an NDJSON stream. Errors found
//! before the build starts are always plain non-2xx replies, so that
//! streaming clients see them before any NDJSON byte.

use super::audit::Audit;
use super::audit::ClientApi;
use super::auth::{verify, SIGNATURE_HEADER};
use super::error::{status_for_build_failure, BuildReply, RequestError};
use super::intake::{unpack, Intake, Limits, Shape};
use super::legacy;
use super::limit::InflightGuard;
use super::pipeline::{self, BuildFailure};
use super::state::AppState;
use super::stream;
use crate::errors::ErrorKind;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::path::PathBuf;

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
    /// Unsealed build secrets.
    pub secrets: pipeline::Secrets,
    /// The request's audit record, written when the job ends.
    pub audit: Audit,
    /// Keeps the scratch dir until the build ends (dropped with the job).
    pub _scratch: ScratchDir,
    /// Holds an in-flight slot until the build ends (dropped with the job).
    pub _slot: InflightGuard,
}

impl Job {
    /// Seconds since the request arrived, rounded to milliseconds.
    pub fn elapsed(&self) -> f64 {
        self.audit.elapsed()
    }
}

fn request_error(kind: ErrorKind, message: String, duration: f64) -> Response {
    RequestError { kind, message, image: String::new(), duration }.into_response()
}

fn wants_ndjson(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).any(|v| v.contains("application/x-ndjson"))
}

/// The handler: every request, however it ends, leaves one audit record.
pub async fn handle(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let client = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let audit = Audit::begin(state.audit.clone(), client, &parts.headers);
    let request_id = audit.record.request_id.clone();
    let mut resp = match accept(&state, &parts.headers, body, audit).await {
        Ok(job) if matches!(job.intake.shape, Shape::Legacy { .. }) => respond_legacy(state, job).await,
        Ok(job) if wants_ndjson(&parts.headers) => stream::respond(state, job),
        Ok(job) => respond_json(state, job).await,
        Err(resp) => resp,
    };
    if let Ok(id) = axum::http::HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-request-id", id);
    }
    resp
}

/// Refuses a request before its build: the reply (of-builder's for a
/// legacy request), with the audit record saying why.
fn refuse(audit: &mut Audit, kind: ErrorKind, message: String) -> Response {
    let resp = match audit.record.client_api {
        ClientApi::OfBuilder => legacy::unexpected_failure(&message),
        ClientApi::ProBuilder => request_error(kind, message.clone(), audit.elapsed()),
    };
    audit.reject(resp.status().as_u16(), &message);
    resp
}

/// Verifies the request's signature: `X-Build-Signature` (sha256) when
/// present, else of-builder's `X-Cloud-Signature` (sha1 or sha256), which
/// also marks the request as legacy. Returns the audit verdict.
fn check_signature(state: &AppState, headers: &HeaderMap, body: &[u8], audit: &mut Audit) -> Result<(), String> {
    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let verdict = match (value(SIGNATURE_HEADER), value(legacy::SIGNATURE_HEADER)) {
        (None, Some(cloud)) => {
            audit.record.client_api = ClientApi::OfBuilder;
            legacy::verify(&state.secret, body, cloud)
        }
        (header, _) => verify(&state.secret, body, header).map_err(|e| e.to_string()),
    };
    audit.record.signature = match &verdict {
        Ok(()) => "valid",
        Err(_) if value(SIGNATURE_HEADER).or(value(legacy::SIGNATURE_HEADER)).is_none() => "missing",
        Err(_) => "invalid",
    };
    verdict
}

/// Checks and unpacks a request into a job, or answers it (the audit
/// record is then written as it is dropped).
async fn accept(state: &AppState, headers: &HeaderMap, body: Body, mut audit: Audit) -> Result<Job, Response> {
    let (intake, secrets, scratch, slot) = accept_into(state, headers, body, &mut audit).await?;
    Ok(Job { intake, secrets, audit, _scratch: scratch, _slot: slot })
}

/// The checks of [`accept`], in order.
async fn accept_into(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    audit: &mut Audit,
) -> Result<(Intake, pipeline::Secrets, ScratchDir, InflightGuard), Response> {
    if state.lifecycle.is_draining() {
        return Err(refuse(audit, ErrorKind::ShuttingDown, "kiln is shutting down: send the build again".into()));
    }
    let Some(slot) = state.limiter.try_acquire() else {
        audit.reject(StatusCode::TOO_MANY_REQUESTS.as_u16(), "concurrent request limit exceeded");
        return Err(super::limit::too_many(state.limiter.max()));
    };
    let body = match axum::body::to_bytes(body, state.cfg.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => {
            let msg = format!("request body rejected (limit {} bytes): {e}", state.cfg.max_body_bytes);
            audit.reject(StatusCode::PAYLOAD_TOO_LARGE.as_u16(), &msg);
            let mut resp = request_error(ErrorKind::InvalidArgument, msg, audit.elapsed());
            *resp.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
            return Err(resp);
        }
    };
    audit.record.bytes_in = body.len() as u64;
    audit.record.signature = "not checked";
    if !state.cfg.disable_hmac {
        if let Err(e) = check_signature(state, headers, &body, audit) {
            tracing::warn!("rejected /build request: {e}");
            return Err(refuse(audit, ErrorKind::Unauthenticated, e));
        }
    }
    let id = kiln_snapshotter::SnapshotId::random();
    let dir = state.cfg.data_dir.join("builds").join(id.as_str());
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return Err(refuse(audit, ErrorKind::Internal, format!("create build dir: {e}")));
    }
    let scratch = ScratchDir(dir.clone());
    let limits = Limits { max_entries: state.cfg.max_entries, max_bytes: state.cfg.max_unpacked_bytes };
    let intake = match tokio::task::spawn_blocking(move || unpack(&body, &dir, limits)).await {
        Ok(Ok(i)) => {
            let legacy = matches!(i.shape, Shape::Legacy { .. });
            audit.record.client_api = if legacy { ClientApi::OfBuilder } else { ClientApi::ProBuilder };
            i
        }
        Ok(Err(e)) => {
            if matches!(e, super::intake::IntakeError::InvalidLegacy(_)) {
                audit.record.client_api = ClientApi::OfBuilder;
            }
            let (kind, message) = crate::errors::storage_failure(e.to_string(), ErrorKind::InvalidArgument);
            return Err(refuse(audit, kind, message));
        }
        Err(e) => return Err(refuse(audit, ErrorKind::Internal, e.to_string())),
    };
    describe_request(&intake, audit);
    let secrets = match unseal(state, intake.secrets.as_deref()) {
        Ok(s) => s,
        Err(e) => return Err(refuse(audit, ErrorKind::InvalidArgument, e)),
    };
    audit.record.secret_ids = secrets.keys().cloned().collect();
    tracing::info!(image = intake.config.image, secrets = secrets.len(), "build started");
    Ok((intake, secrets, scratch, slot))
}

/// What the audit record says about the request itself.
fn describe_request(intake: &Intake, audit: &mut Audit) {
    let config = &intake.config;
    audit.record.image = config.image.clone();
    audit.record.pushed = !config.skip_push.unwrap_or(false);
    audit.record.platforms = config.platforms.clone().unwrap_or_default();
    audit.record.build_arg_names = config.build_args.iter().flat_map(|m| m.keys().cloned()).collect();
    let dockerfile = std::fs::read(intake.context.join("Dockerfile")).ok();
    audit.record.dockerfile_digest = dockerfile.map(|d| kiln_snapshotter::Digest::of(&d).to_string());
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

/// Runs the build to its end; its result and every log line.
async fn run_to_end(state: &AppState, job: &Job) -> (Result<kiln_snapshotter::Digest, BuildFailure>, Vec<String>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let result = pipeline::run_until_cancelled(state, job, &tx).await;
    drop(tx);
    let mut log = Vec::new();
    while let Ok(line) = rx.try_recv() {
        log.push(line);
    }
    log_outcome(state, &job.intake.config.image, &result, job.elapsed());
    (result, log)
}

/// of-builder's reply to a legacy request: always one JSON object.
async fn respond_legacy(state: AppState, mut job: Job) -> Response {
    let (result, log) = run_to_end(&state, &job).await;
    let Shape::Legacy { given_ref } = &job.intake.shape else { unreachable!("only legacy requests come here") };
    let resp = match &result {
        Ok(_) => legacy::success(&log, given_ref),
        Err(f) => legacy::failure(&log, given_ref, &f.message),
    };
    job.audit.settle(&result, resp.status().as_u16());
    resp
}

async fn respond_json(state: AppState, mut job: Job) -> Response {
    let (result, log) = run_to_end(&state, &job).await;
    let duration = job.elapsed();
    let image = job.intake.config.image.clone();
    let code = match &result {
        Ok(_) => StatusCode::OK,
        Err(f) => status_for_build_failure(f.kind),
    };
    job.audit.settle(&result, code.as_u16());
    let (status, error, digest) = match result {
        Ok(d) => ("success", None, Some(d.to_string())),
        Err(f) => ("failed", Some(f.message), None),
    };
    let reply = serde_json::to_vec(&BuildReply { log, image, status: status.into(), error, digest, duration })
        .expect("reply serializes");
    job.audit.bytes_out.store(reply.len() as u64, std::sync::atomic::Ordering::Relaxed);
    (code, [(header::CONTENT_TYPE, "application/json")], reply).into_response()
}
