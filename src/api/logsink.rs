//! A build's log on its way to the reply. Lines are sent without waiting
//! (a step's output must never stall on a slow client), so the bytes not
//! yet read are bounded instead: past the bound a line is dropped and
//! counted, and the reader gets one line saying how much went missing
//! before the next line it reads.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

#[derive(Debug, Default)]
struct Shared {
    queued: AtomicUsize,
    dropped_lines: AtomicU64,
    dropped_bytes: AtomicU64,
}

/// The sending side: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct LogSink {
    tx: UnboundedSender<String>,
    shared: Arc<Shared>,
    max_queued: usize,
    /// Also gets every line (the build history's copy of the log).
    tap: Option<Arc<crate::history::BuildTrace>>,
}

/// The reading side.
#[derive(Debug)]
pub struct LogStream {
    rx: UnboundedReceiver<String>,
    shared: Arc<Shared>,
}

/// A log whose unread lines hold at most `max_queued` bytes.
pub fn log_channel(max_queued: usize) -> (LogSink, LogStream) {
    let (tx, rx) = unbounded_channel();
    let shared = Arc::new(Shared::default());
    (LogSink { tx, shared: shared.clone(), max_queued, tap: None }, LogStream { rx, shared })
}

impl LogSink {
    /// This sink, also copying every line to `trace` (lines the reply's
    /// reader was too slow for included).
    pub fn tapped(mut self, trace: Arc<crate::history::BuildTrace>) -> Self {
        self.tap = Some(trace);
        self
    }

    /// Queues `line`, or counts it as dropped when the reader is too far
    /// behind. The first line queued after a drop is preceded by a note
    /// saying how much is missing there.
    pub fn send(&self, line: String) {
        if let Some(trace) = &self.tap {
            trace.log_line(&line);
        }
        let len = line.len();
        let queued = self.shared.queued.fetch_add(len, Ordering::AcqRel) + len;
        if queued > self.max_queued {
            self.shared.queued.fetch_sub(len, Ordering::AcqRel);
            self.shared.dropped_lines.fetch_add(1, Ordering::Relaxed);
            self.shared.dropped_bytes.fetch_add(len as u64, Ordering::Relaxed);
            return;
        }
        if let Some(note) = self.shared.take_note() {
            self.shared.queued.fetch_add(note.len(), Ordering::AcqRel);
            let _ = self.tx.send(note);
        }
        let _ = self.tx.send(line);
    }
}

impl Shared {
    /// A line about the lines dropped since the last note, if any.
    fn take_note(&self) -> Option<String> {
        let lines = self.dropped_lines.swap(0, Ordering::Relaxed);
        if lines == 0 {
            return None;
        }
        let bytes = self.dropped_bytes.swap(0, Ordering::Relaxed);
        Some(format!(
            "{} [kiln] {lines} lines ({bytes} bytes) of the build log were dropped here: the reply was read more \
             slowly than the build wrote",
            crate::timefmt::now()
        ))
    }
}

impl LogStream {
    /// The next line; `None` once every sink is gone and all is read.
    pub async fn recv(&mut self) -> Option<String> {
        let line = self.rx.recv().await;
        self.received(line)
    }

    /// The next line if one is waiting.
    pub fn try_recv(&mut self) -> Option<String> {
        let line = self.rx.try_recv().ok();
        self.received(line)
    }

    fn received(&mut self, line: Option<String>) -> Option<String> {
        match line {
            Some(l) => {
                self.shared.queued.fetch_sub(l.len(), Ordering::AcqRel);
                Some(l)
            }
            // Lines dropped at the very end get their note last.
            None => self.shared.take_note(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unread_bytes_are_bounded_and_the_gap_is_reported() {
        let (sink, mut stream) = log_channel(100);
        for i in 0..10 {
            sink.send(format!("{i:019}"));
        }
        let first: Vec<String> = (0..5).map_while(|_| stream.try_recv()).collect();
        assert_eq!(first.len(), 5, "100 bytes hold five 19-byte lines: {first:?}");
        assert!(first.iter().all(|l| l.len() == 19), "{first:?}");
        sink.send("after".into());
        let next = stream.try_recv().unwrap();
        assert!(next.contains("5 lines (95 bytes) of the build log were dropped"), "{next}");
        assert_eq!(stream.try_recv().as_deref(), Some("after"));
        sink.send("x".repeat(200));
        drop(sink);
        let last = stream.try_recv().unwrap();
        assert!(last.contains("1 lines (200 bytes)"), "a drop at the end is reported last: {last}");
    }
}
