//! The cache index: cache key → the layer chain a step produced, and layer
//! diff id → unpacked snapshot, in redb (transactional, crash-safe).
//!
//! Records are committed without waiting for the disk and made durable
//! together at most [`SYNC_EVERY`] later (a group commit): concurrent
//! builds never queue behind each other's fsyncs. A crash loses at most
//! that window of records, whose steps then run again; forgetting (before
//! garbage collection deletes what the records named) is durable at once.

use kiln_snapshotter::{Digest, SnapshotId};
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// Longest a committed record waits to be made durable.
pub const SYNC_EVERY: Duration = Duration::from_millis(200);

const STEPS: TableDefinition<&str, &[u8]> = TableDefinition::new("steps_v1");
const UNPACKED: TableDefinition<&str, &str> = TableDefinition::new("unpacked_v1");
const HTTP: TableDefinition<&str, &[u8]> = TableDefinition::new("http_v1");
const USED: TableDefinition<&str, i64> = TableDefinition::new("used_v1");
const PUSHED: TableDefinition<&str, &str> = TableDefinition::new("pushed_v1");

/// What the last download of a URL returned, for conditional requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpRecord {
    /// The `ETag` header.
    pub etag: Option<String>,
    /// The `Last-Modified` header as sent.
    pub last_modified: Option<String>,
    /// SHA-256 of the body.
    pub digest: Digest,
    /// The file's mtime (Unix seconds).
    pub mtime: i64,
}

pub use crate::graph::LayerRecord;

/// What a cached step produced: its full layer chain, base first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Layers, base first.
    pub layers: Vec<LayerRecord>,
    /// The instruction that made it (for `kiln cache ls`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// Errors from the index.
#[derive(Debug, thiserror::Error)]
#[error("cache index: {0}")]
pub struct CacheError(String);

fn e(err: impl std::fmt::Display) -> CacheError {
    CacheError(err.to_string())
}

/// The persistent index.
pub struct CacheIndex {
    db: Arc<Database>,
    /// Set by a commit not yet durable.
    unsynced: Arc<AtomicBool>,
    /// Dropping it stops the syncing thread, which syncs once more.
    stop: Option<mpsc::Sender<()>>,
    syncer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for CacheIndex {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.syncer.take() {
            let _ = t.join();
        }
    }
}

/// Makes the commits since the last one durable (an empty commit with
/// immediate durability persists every commit before it).
fn sync(db: &Database, unsynced: &AtomicBool) {
    if unsynced.swap(false, Ordering::AcqRel) {
        let committed = db.begin_write().map_err(e).and_then(|tx| tx.commit().map_err(e));
        if let Err(err) = committed {
            unsynced.store(true, Ordering::Release);
            tracing::warn!(error = %err, "cache index: could not sync");
        }
    }
}

impl CacheIndex {
    /// Opens or creates the index file, and starts its group commits.
    pub fn open(path: &Path) -> Result<Self, CacheError> {
        let mut index = Self::open_unsynced(path)?;
        let (db, unsynced) = (index.db.clone(), index.unsynced.clone());
        let (stop, stopped) = mpsc::channel::<()>();
        let syncer = std::thread::Builder::new()
            .name("kiln-cache-sync".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(SYNC_EVERY) {
                    sync(&db, &unsynced);
                }
                sync(&db, &unsynced);
            })
            .map_err(e)?;
        (index.stop, index.syncer) = (Some(stop), Some(syncer));
        Ok(index)
    }

    fn open_unsynced(path: &Path) -> Result<Self, CacheError> {
        let db = Database::create(path).map_err(e)?;
        let tx = db.begin_write().map_err(e)?;
        tx.open_table(STEPS).map_err(e)?;
        tx.open_table(UNPACKED).map_err(e)?;
        tx.open_table(HTTP).map_err(e)?;
        tx.open_table(USED).map_err(e)?;
        tx.open_table(PUSHED).map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(Self { db: Arc::new(db), unsynced: Default::default(), stop: None, syncer: None })
    }

    /// A write transaction whose commit does not wait for the disk (the
    /// syncing thread makes it durable within [`SYNC_EVERY`]).
    fn begin_grouped(&self) -> Result<redb::WriteTransaction, CacheError> {
        let mut tx = self.db.begin_write().map_err(e)?;
        tx.set_durability(redb::Durability::Eventual);
        self.unsynced.store(true, Ordering::Release);
        Ok(tx)
    }

    /// Looks up a step by cache key.
    pub fn get_step(&self, key: &str) -> Result<Option<StepRecord>, CacheError> {
        let tx = self.db.begin_read().map_err(e)?;
        let table = tx.open_table(STEPS).map_err(e)?;
        let Some(v) = table.get(key).map_err(e)? else {
            return Ok(None);
        };
        Ok(serde_json::from_slice(v.value()).ok())
    }

    /// Records a step's result.
    pub fn put_step(&self, key: &str, record: &StepRecord) -> Result<(), CacheError> {
        let bytes = serde_json::to_vec(record).map_err(e)?;
        let tx = self.begin_grouped()?;
        tx.open_table(STEPS).map_err(e)?.insert(key, bytes.as_slice()).map_err(e)?;
        tx.commit().map_err(e)
    }

    /// The snapshot a layer (by diff id) was unpacked into.
    pub fn get_unpacked(&self, diff_id: &Digest) -> Result<Option<SnapshotId>, CacheError> {
        let tx = self.db.begin_read().map_err(e)?;
        let table = tx.open_table(UNPACKED).map_err(e)?;
        let v = table.get(diff_id.as_str()).map_err(e)?;
        Ok(v.and_then(|v| SnapshotId::try_from(v.value().to_string()).ok()))
    }

    /// Records where a layer was unpacked.
    pub fn put_unpacked(&self, diff_id: &Digest, snapshot: &SnapshotId) -> Result<(), CacheError> {
        let tx = self.begin_grouped()?;
        tx.open_table(UNPACKED).map_err(e)?.insert(diff_id.as_str(), snapshot.as_str()).map_err(e)?;
        tx.commit().map_err(e)
    }

    /// The last download of `url`.
    pub fn get_http(&self, url: &str) -> Result<Option<HttpRecord>, CacheError> {
        let tx = self.db.begin_read().map_err(e)?;
        let table = tx.open_table(HTTP).map_err(e)?;
        let v = table.get(url).map_err(e)?;
        Ok(v.and_then(|v| serde_json::from_slice(v.value()).ok()))
    }

    /// Records a download of `url`.
    pub fn put_http(&self, url: &str, record: &HttpRecord) -> Result<(), CacheError> {
        let bytes = serde_json::to_vec(record).map_err(e)?;
        let tx = self.begin_grouped()?;
        tx.open_table(HTTP).map_err(e)?.insert(url, bytes.as_slice()).map_err(e)?;
        tx.commit().map_err(e)
    }

    /// Records that `keys` were used at `now` (Unix seconds), for LRU
    /// eviction. Not waited for on disk: a lost timestamp only makes an
    /// entry look older.
    pub fn touch(&self, keys: &[String], now: i64) -> Result<(), CacheError> {
        if keys.is_empty() {
            return Ok(());
        }
        let tx = self.begin_grouped()?;
        {
            let mut t = tx.open_table(USED).map_err(e)?;
            for k in keys {
                t.insert(k.as_str(), now).map_err(e)?;
            }
        }
        tx.commit().map_err(e)
    }

    /// Every step with when it was last used (0 if never recorded).
    pub fn steps(&self) -> Result<Vec<(String, StepRecord, i64)>, CacheError> {
        let tx = self.db.begin_read().map_err(e)?;
        let (steps, used) = (tx.open_table(STEPS).map_err(e)?, tx.open_table(USED).map_err(e)?);
        let mut out = Vec::new();
        for row in steps.iter().map_err(e)? {
            let (k, v) = row.map_err(e)?;
            let Ok(rec) = serde_json::from_slice::<StepRecord>(v.value()) else { continue };
            let at = used.get(k.value()).map_err(e)?.map_or(0, |t| t.value());
            out.push((k.value().to_string(), rec, at));
        }
        Ok(out)
    }

    /// Every unpacked layer: diff id → snapshot.
    pub fn unpacked(&self) -> Result<Vec<(String, SnapshotId)>, CacheError> {
        let tx = self.db.begin_read().map_err(e)?;
        let t = tx.open_table(UNPACKED).map_err(e)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(e)? {
            let (k, v) = row.map_err(e)?;
            if let Ok(id) = SnapshotId::try_from(v.value().to_string()) {
                out.push((k.value().to_string(), id));
            }
        }
        Ok(out)
    }

    /// Forgets steps and unpacked layers (by diff id) in one transaction.
    pub fn forget(&self, steps: &[String], unpacked: &[String]) -> Result<(), CacheError> {
        let tx = self.db.begin_write().map_err(e)?;
        {
            let (mut st, mut used, mut up) = (
                tx.open_table(STEPS).map_err(e)?,
                tx.open_table(USED).map_err(e)?,
                tx.open_table(UNPACKED).map_err(e)?,
            );
            for k in steps {
                st.remove(k.as_str()).map_err(e)?;
                used.remove(k.as_str()).map_err(e)?;
            }
            for d in unpacked {
                up.remove(d.as_str()).map_err(e)?;
            }
        }
        tx.commit().map_err(e)
    }

    /// The repository (`registry/repo`) a blob was last pushed to.
    pub fn pushed_to(&self, digest: &Digest) -> Result<Option<String>, CacheError> {
        let tx = self.db.begin_read().map_err(e)?;
        let v = tx.open_table(PUSHED).map_err(e)?.get(digest.as_str()).map_err(e)?;
        Ok(v.map(|v| v.value().to_string()))
    }

    /// Remembers where blobs were pushed, for cross-repository mounts later.
    pub fn record_pushed(&self, digests: &[Digest], repo: &str) -> Result<(), CacheError> {
        let tx = self.begin_grouped()?;
        {
            let mut t = tx.open_table(PUSHED).map_err(e)?;
            for d in digests {
                t.insert(d.as_str(), repo).map_err(e)?;
            }
        }
        tx.commit().map_err(e)
    }
}

#[cfg(test)]
mod group_commit_tests {
    use super::*;

    fn record() -> StepRecord {
        StepRecord { layers: Vec::new(), description: "RUN true".into() }
    }

    #[test]
    fn records_are_made_durable_by_the_syncing_thread_and_on_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.redb");
        let index = CacheIndex::open(&path).unwrap();
        index.put_step("k1", &record()).unwrap();
        assert!(index.unsynced.load(Ordering::Acquire), "the commit did not wait for the disk");
        std::thread::sleep(SYNC_EVERY * 3);
        assert!(!index.unsynced.load(Ordering::Acquire), "the syncing thread made it durable");
        index.put_step("k2", &record()).unwrap();
        drop(index);
        let reopened = CacheIndex::open(&path).unwrap();
        for key in ["k1", "k2"] {
            assert_eq!(reopened.get_step(key).unwrap(), Some(record()), "{key} survived");
        }
    }
}
