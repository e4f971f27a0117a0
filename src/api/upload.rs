//! Receiving a `/build` body before it is trusted. The body streams to a
//! file in the build's scratch directory while its MAC is computed, so a
//! request holds one chunk in memory however large it is; nothing is
//! unpacked until the signature matches. How many bodies are received at
//! once is bounded ([`UploadGate`]), so the memory held by requests that
//! are not yet authenticated is bounded across all of them.

use super::auth::Expected;
use axum::body::Body;
use futures_util::StreamExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Default bodies received at once (`--max-pending-uploads`).
pub const DEFAULT_MAX_PENDING: usize = 16;
/// How long a request waits for an upload slot before a 429.
pub const QUEUE_WAIT: Duration = Duration::from_secs(30);
/// Longest pause between two parts of a body before a 408.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes buffered on the way to the spool file.
const WRITE_BUFFER: usize = 64 << 10;

/// Why a body was not received.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// Over `--max-body-mb`.
    #[error("request body rejected: larger than the limit {0} bytes (--max-body-mb)")]
    TooLarge(usize),
    /// The client paused too long.
    #[error("request body rejected: no data for {}s", IDLE_TIMEOUT.as_secs())]
    Idle,
    /// The connection failed mid-body.
    #[error("request body rejected: {0}")]
    Client(String),
    /// Writing the spool file failed.
    #[error("spool request body: {0}")]
    Io(#[from] std::io::Error),
}

/// Bounds the bodies received at once.
#[derive(Debug, Clone)]
pub struct UploadGate {
    max: usize,
    slots: Arc<Semaphore>,
}

impl UploadGate {
    /// A gate letting `max` bodies in at once (at least one).
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        Self { max, slots: Arc::new(Semaphore::new(max)) }
    }

    /// The configured maximum.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Bodies being received now.
    pub fn pending(&self) -> usize {
        self.max - self.slots.available_permits()
    }

    /// Waits up to `wait` for a slot; `None` when none freed up.
    pub async fn enter(&self, wait: Duration) -> Option<OwnedSemaphorePermit> {
        tokio::time::timeout(wait, self.slots.clone().acquire_owned()).await.ok()?.ok()
    }
}

/// Streams `body` into a new file at `spool`, feeding `mac` on the way;
/// returns the body's length.
pub async fn receive(body: Body, spool: &Path, max: usize, mut mac: Option<&mut Expected>) -> Result<u64, UploadError> {
    let mut file = tokio::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(spool).await?;
    file.set_max_buf_size(WRITE_BUFFER);
    let mut chunks = body.into_data_stream();
    let mut len = 0u64;
    loop {
        let data = match tokio::time::timeout(IDLE_TIMEOUT, chunks.next()).await {
            Err(_) => return Err(UploadError::Idle),
            Ok(None) => break,
            Ok(Some(chunk)) => chunk.map_err(|e| UploadError::Client(e.to_string()))?,
        };
        len += data.len() as u64;
        if len > max as u64 {
            return Err(UploadError::TooLarge(max));
        }
        if let Some(mac) = mac.as_deref_mut() {
            mac.update(&data);
        }
        file.write_all(&data).await?;
    }
    file.flush().await?;
    Ok(len)
}
