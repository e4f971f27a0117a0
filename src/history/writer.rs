//! The history's writer thread: builds hand their entries over without
//! waiting, and the thread appends whatever has queued up in one
//! transaction that does not wait for the disk; it syncs once the queue
//! has been idle for [`SYNC_IDLE`], at least every [`SYNC_EVERY`] under
//! load, and when it stops. A killed process loses no committed entry; a
//! machine crash loses at most that window.

use super::{BuildEntry, HistoryError, HistoryStore, Page};
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Entries waiting for the writer at most; past it an entry is dropped
/// (and logged) rather than hold a build up.
const QUEUE: usize = 1024;
/// Entries appended in one transaction at most.
const BATCH: usize = 128;
/// A quiet queue for this long is synced.
const SYNC_IDLE: Duration = Duration::from_millis(200);
/// Appends wait at most this long to be synced under steady load.
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// The build history of this server.
pub struct History {
    store: Arc<HistoryStore>,
    queue: Mutex<Option<SyncSender<BuildEntry>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl History {
    /// Opens `path` (kept to `size` builds) and starts its writer.
    pub fn open(path: &Path, size: u64) -> Result<Self, HistoryError> {
        let store = Arc::new(HistoryStore::open(path, size)?);
        let (tx, rx) = sync_channel(QUEUE);
        let for_writer = store.clone();
        let writer = std::thread::Builder::new()
            .name("kiln-history".into())
            .spawn(move || write_all(&for_writer, rx))
            .map_err(|e| HistoryError::from_io(&e))?;
        Ok(History { store, queue: Mutex::new(Some(tx)), writer: Mutex::new(Some(writer)) })
    }

    /// Hands `entry` to the writer without waiting.
    pub fn record(&self, entry: BuildEntry) {
        let queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let Some(tx) = queue.as_ref() else { return };
        match tx.try_send(entry) {
            Ok(()) => {}
            Err(TrySendError::Full(e)) => {
                tracing::warn!(request_id = e.facts.request_id, "build history: queue full, entry dropped")
            }
            Err(TrySendError::Disconnected(_)) => tracing::warn!("build history: writer gone, entry dropped"),
        }
    }

    /// A page of the history (blocking: call it off the async threads).
    pub fn list(&self, filter: &super::Filter) -> Result<Page, HistoryError> {
        self.store.list(filter)
    }

    /// One build by position or request id (blocking).
    pub fn get(&self, id: &str) -> Result<Option<BuildEntry>, HistoryError> {
        self.store.get(id)
    }

    /// Writes what is queued and stops the writer (at shutdown).
    pub fn close(&self) {
        drop(self.queue.lock().unwrap_or_else(|p| p.into_inner()).take());
        if let Some(writer) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = writer.join();
        }
    }
}

impl Drop for History {
    fn drop(&mut self) {
        self.close();
    }
}

fn write_all(store: &HistoryStore, rx: Receiver<BuildEntry>) {
    let mut unsynced: Option<Instant> = None;
    loop {
        let first = match rx.recv_timeout(SYNC_IDLE) {
            Ok(entry) => entry,
            Err(RecvTimeoutError::Timeout) => {
                sync(store, &mut unsynced);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(entry) => batch.push(entry),
                Err(_) => break,
            }
        }
        match store.append_eventually(batch) {
            Ok(()) if unsynced.is_none() => unsynced = Some(Instant::now()),
            Ok(()) => {}
            Err(e) => tracing::error!("{e}"),
        }
        if unsynced.is_some_and(|since| since.elapsed() >= SYNC_EVERY) {
            sync(store, &mut unsynced);
        }
    }
    sync(store, &mut unsynced);
}

fn sync(store: &HistoryStore, unsynced: &mut Option<Instant>) {
    if unsynced.is_some() {
        match store.sync() {
            Ok(()) => *unsynced = None,
            Err(e) => tracing::error!("{e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_entries_are_written_by_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.redb");
        let history = History::open(&path, 100).unwrap();
        for i in 0..50 {
            let facts =
                super::super::BuildFacts { request_id: format!("r{i}"), image: "fn".into(), ..Default::default() };
            history.record(BuildEntry { facts, ..Default::default() });
        }
        history.close();
        let page = history.list(&super::super::Filter { limit: Some(500), ..Default::default() }).unwrap();
        assert_eq!(page.total, 50);
        assert_eq!(history.get("r49").unwrap().unwrap().facts.seq, 50, "in the order recorded");
    }
}
