//! `max_inflight`: at most N builds at once (0 = unlimited). Over the limit
//! `/build` answers exactly as OpenFaaS's concurrency limiter does, and
//! `/ready` reports not-ready until a slot frees up.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Counts builds in flight.
#[derive(Debug, Clone, Default)]
pub struct Limiter {
    max: usize,
    current: Arc<AtomicUsize>,
}

/// A held slot; released on drop (when the build, not the request, ends).
#[derive(Debug)]
pub struct InflightGuard(Arc<AtomicUsize>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Limiter {
    /// A limiter allowing `max` builds (0 = unlimited).
    pub fn new(max: usize) -> Self {
        Self { max, current: Arc::new(AtomicUsize::new(0)) }
    }

    /// The configured maximum.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Builds in flight.
    pub fn in_flight(&self) -> usize {
        self.current.load(Ordering::SeqCst)
    }

    /// Whether a new build would be refused.
    pub fn saturated(&self) -> bool {
        self.max > 0 && self.in_flight() >= self.max
    }

    /// Takes a slot, or `None` when at the limit.
    pub fn try_acquire(&self) -> Option<InflightGuard> {
        let taken = self
            .current
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (self.max == 0 || n < self.max).then_some(n + 1));
        taken.ok().map(|_| InflightGuard(self.current.clone()))
    }
}

/// The 429 reply, byte for byte as faas-middleware's limiter sends it.
pub fn too_many(max: usize) -> Response {
    let body = format!("Concurrent request limit exceeded. Max concurrent requests: {max}\n");
    (StatusCode::TOO_MANY_REQUESTS, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_and_released() {
        let l = Limiter::new(2);
        let a = l.try_acquire().unwrap();
        let _b = l.try_acquire().unwrap();
        assert!(l.saturated() && l.try_acquire().is_none());
        drop(a);
        assert!(!l.saturated() && l.try_acquire().is_some());
        let unlimited = Limiter::new(0);
        let held: Vec<_> = (0..100).map(|_| unlimited.try_acquire().unwrap()).collect();
        assert_eq!(unlimited.in_flight(), held.len());
    }
}
