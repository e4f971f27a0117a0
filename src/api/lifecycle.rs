//! Graceful shutdown: on SIGTERM the server stops accepting connections,
//! `/ready` turns 503, builds in flight get up to the drain timeout to
//! finish, and whatever is still running then is cancelled cleanly (its
//! helpers killed, its uncommitted snapshots removed) and answered with 503.
//! Work builds left for after their replies (exporting caches) is waited
//! for as well, within the same timeout.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The server's shutdown state, shared by every request.
#[derive(Clone)]
pub struct Lifecycle {
    draining: Arc<AtomicBool>,
    cancel: Arc<watch::Sender<bool>>,
    deferred: Arc<AtomicUsize>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self { draining: Arc::default(), cancel: Arc::new(watch::channel(false).0), deferred: Arc::default() }
    }
}

impl Lifecycle {
    /// Runs `work` in the background, counted until it ends (shutdown
    /// waits for it).
    pub fn spawn_deferred(&self, work: impl Future<Output = ()> + Send + 'static) {
        let count = self.deferred.clone();
        count.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            work.await;
            count.fetch_sub(1, Ordering::SeqCst);
        });
    }

    /// Deferred work still running.
    pub fn deferred(&self) -> usize {
        self.deferred.load(Ordering::SeqCst)
    }

    /// Waits up to `timeout` for the deferred work to end; how much is left.
    pub async fn wait_deferred(&self, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.deferred() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.deferred()
    }

    /// Whether shutdown has begun (new builds are refused).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Starts draining.
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Cancels every build still running.
    pub fn cancel_all(&self) {
        self.cancel.send_replace(true);
    }

    /// Resolves when running builds must stop.
    pub fn cancelled(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.cancel.subscribe();
        async move {
            let _ = rx.wait_for(|cancelled| *cancelled).await;
        }
    }

    /// Waits until `in_flight()` is zero or `timeout` passes; then cancels
    /// what is left. Returns how many builds were cancelled.
    pub async fn drain(&self, timeout: Duration, in_flight: impl Fn() -> usize) -> usize {
        self.begin_drain();
        let deadline = tokio::time::Instant::now() + timeout;
        while in_flight() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let left = in_flight();
        if left > 0 {
            self.cancel_all();
        }
        left
    }
}

/// The message a build cancelled by shutdown fails with.
pub const CANCELLED: &str = "kiln is shutting down: the build was cancelled after the drain timeout (retry it)";

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_waits_for_builds_then_cancels_the_rest() {
        let life = Lifecycle::default();
        let cancelled = tokio::spawn(life.cancelled());
        assert_eq!(life.drain(Duration::from_millis(120), || 1).await, 1);
        assert!(life.is_draining());
        tokio::time::timeout(Duration::from_secs(1), cancelled).await.unwrap().unwrap();

        let quiet = Lifecycle::default();
        let waiter = tokio::spawn(quiet.cancelled());
        assert_eq!(quiet.drain(Duration::from_secs(5), || 0).await, 0);
        assert!(tokio::time::timeout(Duration::from_millis(100), waiter).await.is_err(), "nothing was cancelled");
    }
}
