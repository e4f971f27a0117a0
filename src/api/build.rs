//! `POST /build`: verify the signature on the raw body, unpack the tar,
//! run the build, and answer with one JSON object or, when the client's
//! `Accept` asks for `application/x-ndjson`, an NDJSON stream. Errors found
//! before the build starts are always plain non-2xx replies, so that
//! streaming clients see them before any NDJSON byte.

use super::audit::Audit;
use super::audit::ClientApi;
use super::auth::{Expected, SignatureError, SIGNATURE_HEADER};
use super::error::{status_for_build_failure, BuildReply, RequestError};
use super::failure::BuildFailure;
use super::intake::{unpack_from, Intake, IntakeError, Limits, Shape};
use super::job::{log_outcome, AcceptedBuild, ScratchDir, Secrets};
use super::legacy;
use super::limit::InflightGuard;
use super::pipeline;
use super::replylog::ReplyLog;
use super::state::AppState;
use super::stream;
use super::upload::{self, UploadError};
use crate::errors::ErrorKind;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Sets a flag when dropped: the request's future went away (its client
/// left), so blocking work done for it should stop.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
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
    let audit = Audit::begin(state.audit.clone(), client, &parts.headers).with_history(state.history.clone());
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

/// The signature the request's headers promise: `X-Build-Signature`
/// (sha256) when present, else of-builder's `X-Cloud-Signature` (sha1 or
/// sha256), which also marks the request as legacy. `None` when
/// `disable_hmac` is set. A missing or malformed header is refused here,
/// before the body is read.
fn expected_signature(
    state: &AppState,
    headers: &HeaderMap,
    audit: &mut Audit,
) -> Result<Option<Expected>, SignatureError> {
    if state.cfg.disable_hmac {
        audit.record.signature = "not checked";
        return Ok(None);
    }
    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let expected = match (value(SIGNATURE_HEADER), value(legacy::SIGNATURE_HEADER)) {
        (None, Some(cloud)) => {
            audit.record.client_api = ClientApi::OfBuilder;
            Expected::cloud_signature(&state.secret, cloud)
        }
        (header, _) => Expected::build_signature(&state.secret, header),
    };
    if expected.is_err() {
        let missing = value(SIGNATURE_HEADER).or(value(legacy::SIGNATURE_HEADER)).is_none();
        audit.record.signature = if missing { "missing" } else { "invalid" };
    }
    expected.map(Some)
}

/// Checks and unpacks a request into a job, or answers it (the audit
/// record is then written as it is dropped).
async fn accept(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    mut audit: Audit,
) -> Result<AcceptedBuild, Response> {
    let (intake, secrets, scratch, slot) = accept_into(state, headers, body, &mut audit).await?;
    let after_reply = super::afterreply::AfterReply::new(state.lifecycle.clone());
    Ok(AcceptedBuild { intake, secrets, audit, _scratch: scratch, _slot: slot, after_reply })
}

/// The checks of [`accept`], in order: draining, `max_inflight` (which
/// counts requests from their first byte), the signature header, an upload
/// slot, the body (streamed to disk while its MAC is computed), the
/// signature, then unpacking off the async threads.
async fn accept_into(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    audit: &mut Audit,
) -> Result<(Intake, Secrets, Arc<ScratchDir>, InflightGuard), Response> {
    if state.lifecycle.is_draining() {
        return Err(refuse(audit, ErrorKind::ShuttingDown, "kiln is shutting down: send the build again".into()));
    }
    let Some(slot) = state.limiter.try_acquire() else {
        audit.reject(StatusCode::TOO_MANY_REQUESTS.as_u16(), "concurrent request limit exceeded");
        return Err(super::limit::too_many(state.limiter.max()));
    };
    let expected = match expected_signature(state, headers, audit) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!("rejected /build request: {e}");
            return Err(refuse(audit, ErrorKind::Unauthenticated, e.to_string()));
        }
    };
    let cloud_signed = expected.is_some() && audit.record.client_api == ClientApi::OfBuilder;
    let (dir, scratch) = scratch_dir(state).map_err(|e| {
        let (kind, message) = crate::errors::storage_error(Some("create build dir"), &e, ErrorKind::Internal);
        refuse(audit, kind, message)
    })?;
    match admit(state, body, expected, cloud_signed, (&dir, &scratch), audit).await {
        Ok((intake, secrets)) => Ok((intake, secrets, scratch, slot)),
        Err(resp) => {
            ScratchDir::remove(scratch).await;
            Err(resp)
        }
    }
}

/// Everything after the scratch directory exists: the body, the
/// signature, unpacking, the signature's fit with the request's shape and
/// the build secrets.
async fn admit(
    state: &AppState,
    body: Body,
    expected: Option<Expected>,
    cloud_signed: bool,
    (dir, scratch): (&std::path::Path, &Arc<ScratchDir>),
    audit: &mut Audit,
) -> Result<(Intake, Secrets), Response> {
    let intake = receive_and_unpack(state, body, expected, dir, scratch, audit).await?;
    if let Err(e) = check_signature_fits_shape(state, &intake, cloud_signed) {
        audit.record.signature = "refused";
        return Err(refuse(audit, ErrorKind::Unauthenticated, e.into()));
    }
    describe_request(&intake, audit);
    let secrets = unseal(state, intake.secrets.as_deref())
        .map_err(|e| refuse(audit, ErrorKind::InvalidArgument, e.to_string()))?;
    audit.record.secret_ids = secrets.keys().cloned().collect();
    tracing::info!(image = intake.config.image, secrets = secrets.len(), "build started");
    Ok((intake, secrets))
}

/// The body into `dir`, its signature checked, then unpacked.
async fn receive_and_unpack(
    state: &AppState,
    body: Body,
    mut expected: Option<Expected>,
    dir: &std::path::Path,
    scratch: &Arc<ScratchDir>,
    audit: &mut Audit,
) -> Result<Intake, Response> {
    let spool = dir.join("request.tar");
    receive_body(state, body, &spool, expected.as_mut(), audit).await?;
    if let Some(expected) = expected {
        if let Err(e) = expected.verify() {
            audit.record.signature = "invalid";
            tracing::warn!("rejected /build request: {e}");
            return Err(refuse(audit, ErrorKind::Unauthenticated, e.to_string()));
        }
        audit.record.signature = "valid";
    }
    unpack_spooled(state, dir, spool, scratch, audit).await
}

/// A new scratch directory under `builds/`.
fn scratch_dir(state: &AppState) -> std::io::Result<(PathBuf, Arc<ScratchDir>)> {
    let id = kiln_snapshotter::SnapshotId::random();
    let dir = state.cfg.data_dir.join("builds").join(id.as_str());
    std::fs::create_dir_all(&dir)?;
    Ok((dir.clone(), Arc::new(ScratchDir(dir))))
}

/// Streams the body to `spool` through an upload slot.
async fn receive_body(
    state: &AppState,
    body: Body,
    spool: &std::path::Path,
    expected: Option<&mut Expected>,
    audit: &mut Audit,
) -> Result<(), Response> {
    let Some(_permit) = state.uploads.enter(upload::QUEUE_WAIT).await else {
        let msg = format!(
            "too many request bodies are being received ({} at once): send the build again",
            state.uploads.max()
        );
        return Err(refuse(audit, ErrorKind::ResourceExhausted, msg));
    };
    let max = state.cfg.max_body_bytes;
    match upload::receive(body, spool, max, expected).await {
        Ok(len) => {
            audit.record.bytes_in = len;
            Ok(())
        }
        Err(e) => {
            let (kind, message) = match &e {
                UploadError::Io(_) => crate::errors::storage_error(None, &e, ErrorKind::Internal),
                _ => (ErrorKind::InvalidArgument, e.to_string()),
            };
            let mut resp = refuse(audit, kind, message);
            let code = match e {
                UploadError::TooLarge(_) => Some(StatusCode::PAYLOAD_TOO_LARGE),
                UploadError::Idle => Some(StatusCode::REQUEST_TIMEOUT),
                _ => None,
            };
            if let (Some(code), ClientApi::ProBuilder) = (code, audit.record.client_api) {
                *resp.status_mut() = code;
                audit.record.status = code.as_u16();
            }
            Err(resp)
        }
    }
}

/// Unpacks the spooled body off the async threads; the spool file is
/// removed once read. If the client leaves, unpacking stops at its next
/// read, and the scratch directory goes when the unpacking ends.
async fn unpack_spooled(
    state: &AppState,
    dir: &std::path::Path,
    spool: PathBuf,
    scratch: &Arc<ScratchDir>,
    audit: &mut Audit,
) -> Result<Intake, Response> {
    let limits = Limits { max_entries: state.cfg.max_entries, max_bytes: state.cfg.max_unpacked_bytes };
    let cancel = Arc::new(AtomicBool::new(false));
    let _cancel_on_drop = CancelOnDrop(cancel.clone());
    let (dir, held) = (dir.to_path_buf(), scratch.clone());
    let unpacked = tokio::task::spawn_blocking(move || {
        let _held = held;
        let file = std::fs::File::open(&spool)?;
        let result = unpack_from(file, &dir, limits, &cancel);
        let _ = std::fs::remove_file(&spool);
        result
    })
    .await;
    match unpacked {
        Ok(Ok(i)) => {
            let legacy = matches!(i.shape, Shape::Legacy { .. });
            audit.record.client_api = if legacy { ClientApi::OfBuilder } else { ClientApi::ProBuilder };
            Ok(i)
        }
        Ok(Err(e)) => {
            if matches!(e, IntakeError::InvalidLegacy(_)) {
                audit.record.client_api = ClientApi::OfBuilder;
            }
            let (kind, message) = crate::errors::storage_error(None, &e, ErrorKind::InvalidArgument);
            Err(refuse(audit, kind, message))
        }
        Err(e) => Err(refuse(audit, ErrorKind::Internal, e.to_string())),
    }
}

/// `X-Cloud-Signature` belongs to of-builder's request shape: a
/// pro-builder request signed only with it is refused, unless the operator
/// allows it (`--allow-cloud-signature`).
fn check_signature_fits_shape(state: &AppState, intake: &Intake, cloud_signed: bool) -> Result<(), &'static str> {
    if !cloud_signed || !matches!(intake.shape, Shape::ProBuilder) || state.cfg.allow_cloud_signature {
        return Ok(());
    }
    Err("a com.openfaas.docker.config request must be signed with X-Build-Signature: sha256=…; \
         X-Cloud-Signature is accepted only on of-builder requests (a config entry)")
}

/// What the audit record says about the request itself.
fn describe_request(intake: &Intake, audit: &mut Audit) {
    let config = &intake.config;
    audit.record.image = config.image.clone();
    audit.record.pushed = !config.skip_push.unwrap_or(false);
    audit.record.platforms = config.platforms.clone().unwrap_or_default();
    audit.record.build_arg_names = config.build_args.iter().flat_map(|m| m.keys().cloned()).collect();
    audit.record.dockerfile_digest =
        intake.dockerfile.as_ref().ok().map(|d| kiln_snapshotter::Digest::of(d).to_string());
}

/// Why a request's build secrets cannot be opened.
#[derive(Debug, thiserror::Error)]
enum UnsealError {
    /// Secrets sent to a builder without a key.
    #[error(
        "the request carries build secrets (com.openfaas.secrets) but this builder has no key: set \
         build_secrets_private_key_path"
    )]
    NoKey,
    /// The envelope does not open.
    #[error("com.openfaas.secrets: {0}")]
    Envelope(#[from] crate::buildsecrets::SecretsError),
}

/// Opens `com.openfaas.secrets` with the builder's key.
fn unseal(state: &AppState, raw: Option<&[u8]>) -> Result<Secrets, UnsealError> {
    let Some(raw) = raw else { return Ok(Default::default()) };
    let key = state.build_key.as_ref().ok_or(UnsealError::NoKey)?;
    Ok(key.unseal(raw)?)
}

/// Runs the build to its end; its result and its log, collected while the
/// build runs into a [`ReplyLog`] (bounded by `--max-reply-log`).
async fn run_to_end(
    state: &AppState,
    job: &AcceptedBuild,
) -> (Result<kiln_snapshotter::Digest, BuildFailure>, Vec<String>) {
    let (tx, mut rx) = super::logsink::log_channel(state.cfg.max_reply_log);
    let tx = tx.tapped(job.audit.trace.clone());
    let mut log = ReplyLog::new(state.cfg.max_reply_log);
    let result = {
        let build = pipeline::run_until_cancelled(state, job, &tx);
        tokio::pin!(build);
        loop {
            tokio::select! {
                result = &mut build => break result,
                Some(line) = rx.recv() => log.push(line),
            }
        }
    };
    drop(tx);
    while let Some(line) = rx.try_recv() {
        log.push(line);
    }
    log_outcome(state, &job.intake.config.image, &result, job.elapsed());
    (result, log.into_lines())
}

/// of-builder's reply to a legacy request: always one JSON object.
async fn respond_legacy(state: AppState, mut job: AcceptedBuild) -> Response {
    let (result, log) = run_to_end(&state, &job).await;
    let Shape::Legacy { given_ref } = &job.intake.shape else { unreachable!("only legacy requests come here") };
    let resp = match &result {
        Ok(_) => legacy::success(&log, given_ref),
        Err(f) => legacy::failure(&log, given_ref, &f.message),
    };
    job.audit.settle(&result, resp.status().as_u16());
    let after = job.after_reply.clone();
    job.release().await;
    resp.map(|body| after.wrap(body))
}

async fn respond_json(state: AppState, mut job: AcceptedBuild) -> Response {
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
    let evidence = match digest {
        Some(_) => job.audit.evidence.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        None => Default::default(),
    };
    let reply = BuildReply { log, image, status: status.into(), error, digest, evidence, duration };
    let reply = serde_json::to_vec(&reply).expect("reply serializes");
    job.audit.bytes_out.store(reply.len() as u64, std::sync::atomic::Ordering::Relaxed);
    let after = job.after_reply.clone();
    job.release().await;
    let resp = (code, [(header::CONTENT_TYPE, "application/json")], reply).into_response();
    resp.map(|body| after.wrap(body))
}
