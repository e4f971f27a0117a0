//! Work a build leaves for after its reply (exporting cache mounts): it
//! starts when the reply's body has been handed to the connection in full
//! — or dropped, when the client went away — so it never adds to the
//! latency a client sees.

use axum::body::{Body, Bytes};
use futures_util::future::BoxFuture;
use http_body::Frame;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// The deferred work of one request, started through the server's
/// lifecycle (so shutdown waits for it).
#[derive(Clone, Default)]
pub struct AfterReply(Arc<Mutex<Vec<BoxFuture<'static, ()>>>>, super::lifecycle::Lifecycle);

impl AfterReply {
    /// Deferred work counted by `lifecycle`.
    pub fn new(lifecycle: super::lifecycle::Lifecycle) -> Self {
        Self(Default::default(), lifecycle)
    }

    /// Runs `work` once the reply is out.
    pub fn defer(&self, work: BoxFuture<'static, ()>) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(work);
    }

    /// Spawns everything deferred so far.
    fn start(&self) {
        for work in self.0.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            self.1.spawn_deferred(work);
        }
    }

    /// `body`, which starts the deferred work when it is dropped (after
    /// its last frame was taken, or with the connection).
    pub fn wrap(&self, body: Body) -> Body {
        Body::new(ThenBody { inner: body, after: self.clone() })
    }
}

/// A body that starts its request's deferred work when dropped; sizes
/// and frames pass through unchanged (a JSON reply keeps its
/// `Content-Length`).
struct ThenBody {
    inner: Body,
    after: AfterReply,
}

impl Drop for ThenBody {
    fn drop(&mut self) {
        self.after.start();
    }
}

impl http_body::Body for ThenBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn deferred_work_starts_once_the_body_is_read_and_the_size_is_kept() {
        let lifecycle = super::super::lifecycle::Lifecycle::default();
        let after = AfterReply::new(lifecycle.clone());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        after.defer(Box::pin(async move {
            let _ = tx.send("ran");
        }));
        let body = after.wrap(Body::from("{\"status\":\"success\"}"));
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(20), "Content-Length survives");
        assert!(rx.try_recv().is_err(), "nothing runs before the reply is out");
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"{\"status\":\"success\"}");
        assert_eq!(rx.recv().await, Some("ran"));
        assert_eq!(lifecycle.wait_deferred(std::time::Duration::from_secs(5)).await, 0, "and is counted until done");
    }
}
