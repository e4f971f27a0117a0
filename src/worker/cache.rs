//! The cache index: cache key → the layer chain a step produced, and layer
//! diff id → unpacked snapshot, in redb (transactional, crash-safe).

use kiln_snapshotter::{Digest, SnapshotId};
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::path::Path;

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
    db: Database,
}

impl CacheIndex {
    /// Opens or creates the index file.
    pub fn open(path: &Path) -> Result<Self, CacheError> {
        let db = Database::create(path).map_err(e)?;
        let tx = db.begin_write().map_err(e)?;
        tx.open_table(STEPS).map_err(e)?;
        tx.open_table(UNPACKED).map_err(e)?;
        tx.open_table(HTTP).map_err(e)?;
        tx.open_table(USED).map_err(e)?;
        tx.open_table(PUSHED).map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(Self { db })
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
        let tx = self.db.begin_write().map_err(e)?;
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
        let tx = self.db.begin_write().map_err(e)?;
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
        let tx = self.db.begin_write().map_err(e)?;
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
        let mut tx = self.db.begin_write().map_err(e)?;
        tx.set_durability(redb::Durability::Eventual);
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
        let mut tx = self.db.begin_write().map_err(e)?;
        tx.set_durability(redb::Durability::Eventual);
        {
            let mut t = tx.open_table(PUSHED).map_err(e)?;
            for d in digests {
                t.insert(d.as_str(), repo).map_err(e)?;
            }
        }
        tx.commit().map_err(e)
    }
}
