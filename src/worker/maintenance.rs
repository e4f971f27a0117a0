//! When the store's upkeep runs: builds hold the garbage-collection lock
//! shared from their first step to their push; a collection, a prune or a
//! check holds it exclusively, taken only at a moment no build holds it.

use super::{GcReport, Worker, WorkerError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Seconds between collections triggered by finished builds.
const GC_INTERVAL: Duration = Duration::from_secs(30);

/// Longest a prune or check waits for a moment without builds.
const MAINTENANCE_WAIT: Duration = Duration::from_secs(600);

/// The lock and clock of the store's upkeep.
pub(super) struct Maintenance {
    /// Builds hold it shared; garbage collection holds it exclusively.
    gc_lock: tokio::sync::RwLock<()>,
    last_gc: std::sync::Mutex<Instant>,
}

impl Default for Maintenance {
    fn default() -> Self {
        Self { gc_lock: tokio::sync::RwLock::new(()), last_gc: std::sync::Mutex::new(Instant::now()) }
    }
}

impl Worker {
    /// Held by a build from its first step to its push, so garbage
    /// collection never removes what the build uses.
    pub async fn build_guard(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.maintenance.gc_lock.read().await
    }

    /// The GC lock for maintenance, taken only at a moment when no build
    /// holds it: polled rather than queued for, so a waiting prune or
    /// check never makes a new build wait behind it (a queued writer would
    /// hold back every later reader). Gives up after [`MAINTENANCE_WAIT`].
    pub(super) async fn maintenance_lock(&self) -> Result<tokio::sync::RwLockWriteGuard<'_, ()>, WorkerError> {
        let deadline = Instant::now() + MAINTENANCE_WAIT;
        loop {
            if let Ok(guard) = self.maintenance.gc_lock.try_write() {
                return Ok(guard);
            }
            if Instant::now() >= deadline {
                return Err(WorkerError::Busy(MAINTENANCE_WAIT.as_secs()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Collects garbage down to `budget` bytes now, once no build runs
    /// (`kiln cache prune`).
    pub async fn prune(self: &Arc<Self>, budget: u64) -> Result<GcReport, WorkerError> {
        let _exclusive = self.maintenance_lock().await?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.collect_garbage(Some(budget))).await?
    }

    /// After a build: collects garbage when the last collection is older
    /// than the interval and no build is running.
    pub async fn after_build(self: &Arc<Self>) {
        {
            let mut last = self.maintenance.last_gc.lock().expect("gc clock");
            if last.elapsed() < GC_INTERVAL {
                return;
            }
            *last = Instant::now();
        }
        let Ok(_exclusive) = self.maintenance.gc_lock.try_write() else { return };
        let this = self.clone();
        match tokio::task::spawn_blocking(move || this.collect_garbage(this.cfg.cache_budget)).await {
            Ok(Ok(report)) => tracing::info!(?report, "garbage collection"),
            Ok(Err(e)) => tracing::warn!(error = %e, "garbage collection failed"),
            Err(e) => tracing::warn!(error = %e, "garbage collection panicked"),
        }
    }
}
