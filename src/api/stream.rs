//! The NDJSON reply: one compact JSON object per line, flushed as produced.
//! Log lines are batched (whatever arrived since the last write, up to a
//! byte budget) so every line stays far below faas-cli's 64 KiB scanner
//! limit; the last line says `success` or `failed` (never `failure`). If
//! the client goes away, the build is cancelled: dropping the body drops
//! the build task, which kills its helper processes.

use super::job::{log_outcome, AcceptedBuild};
use super::logsink::LogStream;
use super::pipeline;
use super::state::AppState;
use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use tokio::sync::mpsc;

/// Most bytes of log text per NDJSON line.
pub const BATCH_BYTES: usize = 16 * 1024;
/// Longest error text in the final line.
const MAX_ERROR: usize = 8 * 1024;

#[derive(Serialize)]
struct Progress<'a> {
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    log: &'a [String],
    status: &'static str,
    duration: f64,
}

#[derive(Serialize)]
struct Final<'a> {
    image: &'a str,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
    #[serde(flatten)]
    evidence: super::attached::Evidence,
    duration: f64,
}

fn line(value: &impl Serialize) -> Bytes {
    let mut v = serde_json::to_vec(value).expect("serializes");
    v.push(b'\n');
    Bytes::from(v)
}

/// Aborts the build task when the response body is dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts the build and returns the streaming response.
pub fn respond(state: AppState, job: AcceptedBuild) -> Response {
    let (tx, rx) = mpsc::channel::<Bytes>(32);
    let after = job.after_reply.clone();
    let task = tokio::spawn(run(state, job, tx));
    let guard = AbortOnDrop(task.abort_handle());
    let body = futures_util::stream::unfold((rx, guard), |(mut rx, guard)| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), (rx, guard)))
    });
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/x-ndjson")], after.wrap(Body::from_stream(body)))
        .into_response()
}

async fn run(state: AppState, mut job: AcceptedBuild, out: mpsc::Sender<Bytes>) {
    job.audit.record.status = StatusCode::OK.as_u16();
    let (log_tx, mut log_rx) = super::logsink::log_channel(state.cfg.max_reply_log);
    let log_tx = log_tx.tapped(job.audit.trace.clone());
    let result = {
        let build = pipeline::run_until_cancelled(&state, &job, &log_tx);
        tokio::pin!(build);
        loop {
            tokio::select! {
                result = &mut build => break result,
                Some(first) = log_rx.recv() => {
                    if !send_batches(&out, first, &mut log_rx, &job).await {
                        return;
                    }
                }
            }
        }
    };
    drop(log_tx);
    if let Some(first) = log_rx.recv().await {
        if !send_batches(&out, first, &mut log_rx, &job).await {
            return;
        }
    }
    let duration = job.elapsed();
    log_outcome(&state, &job.intake.config.image, &result, duration);
    job.audit.settle(&result, StatusCode::OK.as_u16());
    let image = &job.intake.config.image;
    let (status, error, digest) = match result {
        Ok(d) => ("success", None, Some(d.to_string())),
        Err(f) => ("failed", Some(truncate(f.message, MAX_ERROR)), None),
    };
    let evidence = match digest {
        Some(_) => job.audit.evidence.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        None => Default::default(),
    };
    let last = line(&Final { image, status, error, digest, evidence, duration });
    job.audit.bytes_out.fetch_add(last.len() as u64, Ordering::Relaxed);
    let _ = out.send(last).await;
    job.release().await;
}

/// Sends `first` and everything already queued, framed by
/// [`progress_frames`]. Returns false when the client is gone.
async fn send_batches(out: &mpsc::Sender<Bytes>, first: String, rx: &mut LogStream, job: &AcceptedBuild) -> bool {
    let mut pending = vec![first];
    while let Some(l) = rx.try_recv() {
        pending.push(l);
    }
    for frame in progress_frames(pending, job.elapsed()) {
        job.audit.bytes_out.fetch_add(frame.len() as u64, Ordering::Relaxed);
        if out.send(frame).await.is_err() {
            return false;
        }
    }
    true
}

/// Frames log lines as `in_progress` NDJSON lines carrying at most
/// [`BATCH_BYTES`] of log text each (a longer line is cut to that size), in
/// order; every frame is one compact JSON object ending in its only `\n`.
pub fn progress_frames(lines: Vec<String>, duration: f64) -> Vec<Bytes> {
    let mut frames = Vec::new();
    let mut batch: Vec<String> = Vec::new();
    let mut size = 0;
    for l in lines {
        let l = truncate(l, BATCH_BYTES);
        if size + l.len() > BATCH_BYTES && !batch.is_empty() {
            frames.push(line(&Progress { log: &batch, status: "in_progress", duration }));
            batch.clear();
            size = 0;
        }
        size += l.len();
        batch.push(l);
    }
    frames.push(line(&Progress { log: &batch, status: "in_progress", duration }));
    frames
}

fn truncate(mut s: String, max: usize) -> String {
    crate::text::truncate_with(&mut s, max, " […]");
    s
}
