//! A build request the server accepted (verified, unpacked, holding its
//! slot), what it owns until it ends, and how its outcome is logged.

use super::audit::Audit;
use super::failure::BuildFailure;
use super::intake::Intake;
use super::limit::InflightGuard;
use super::state::AppState;
use std::path::PathBuf;
use std::sync::Arc;

/// Unsealed build secrets by id.
pub type Secrets = std::collections::BTreeMap<String, Vec<u8>>;

/// Removes a build's scratch directory when the last holder drops it (the
/// request, or an unpacking it left behind), off the async threads.
pub struct ScratchDir(pub(super) PathBuf);

impl ScratchDir {
    /// Removes the directory before returning (off the async threads),
    /// unless an unpacking still holds it (it then goes when that ends).
    pub(super) async fn remove(this: Arc<ScratchDir>) {
        if let Ok(mut scratch) = Arc::try_unwrap(this) {
            let dir = std::mem::take(&mut scratch.0);
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
        }
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let dir = std::mem::take(&mut self.0);
        if dir.as_os_str().is_empty() {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(move || std::fs::remove_dir_all(dir))),
            Err(_) => drop(std::fs::remove_dir_all(dir)),
        }
    }
}

/// A verified, unpacked request ready to build.
pub struct AcceptedBuild {
    /// The unpacked request.
    pub intake: Intake,
    /// Unsealed build secrets.
    pub secrets: Secrets,
    /// The request's audit record, written when the job ends.
    pub audit: Audit,
    /// Keeps the scratch dir until the build ends (dropped with the job).
    pub _scratch: Arc<ScratchDir>,
    /// Holds an in-flight slot until the build ends (dropped with the job).
    pub _slot: InflightGuard,
    /// What the build leaves for after its reply is out.
    pub after_reply: super::afterreply::AfterReply,
}

impl AcceptedBuild {
    /// Ends the job: its scratch directory is removed (off the async
    /// threads) before the caller answers; the audit record is written and
    /// the build slot freed as the rest drops.
    pub async fn release(self) {
        let AcceptedBuild { _scratch: scratch, .. } = self;
        ScratchDir::remove(scratch).await;
    }

    /// Seconds since the request arrived, rounded to milliseconds.
    pub fn elapsed(&self) -> f64 {
        self.audit.elapsed()
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
            state.metrics.inc("kiln_build_failures_total", &[("reason", f.kind.reason())], 1.0);
            "failed"
        }
    };
    state.metrics.observe("kiln_build_duration_seconds", &[("result", outcome)], duration);
}
