//! The history's storage: a redb file of entries (gzip'd JSON) and their
//! summaries, keyed by position, holding at most `size` builds.

use super::{BuildEntry, BuildSummary, Filter, Page};
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::io::{Read, Write};
use std::path::Path;

const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("entries_v1");
const SUMMARIES: TableDefinition<u64, &[u8]> = TableDefinition::new("summaries_v1");
const BY_ID: TableDefinition<&str, u64> = TableDefinition::new("by_request_id_v1");

/// Largest stored entry read back (compressed).
const MAX_STORED_ENTRY: usize = 16 << 20;

/// A history storage failure.
#[derive(Debug, thiserror::Error)]
#[error("build history: {0}")]
pub struct HistoryError(String);

impl HistoryError {
    pub(super) fn from_io(err: &std::io::Error) -> Self {
        HistoryError(err.to_string())
    }
}

fn e(err: impl std::fmt::Display) -> HistoryError {
    HistoryError(err.to_string())
}

/// The history file.
pub struct HistoryStore {
    db: Database,
    size: u64,
}

impl HistoryStore {
    /// Opens or creates the file, keeping at most `size` builds (older ones
    /// go first, also when `size` shrank since the last run).
    pub fn open(path: &Path, size: u64) -> Result<Self, HistoryError> {
        let db = Database::create(path).map_err(e)?;
        let tx = db.begin_write().map_err(e)?;
        tx.open_table(ENTRIES).map_err(e)?;
        tx.open_table(SUMMARIES).map_err(e)?;
        tx.open_table(BY_ID).map_err(e)?;
        tx.commit().map_err(e)?;
        let store = HistoryStore { db, size };
        store.append(Vec::new())?;
        Ok(store)
    }

    /// Appends `entries` (their `seq` is assigned here, in order) in one
    /// transaction and trims the history to its size, durably.
    pub fn append(&self, entries: Vec<BuildEntry>) -> Result<(), HistoryError> {
        self.append_with(entries, redb::Durability::Immediate)
    }

    /// [`HistoryStore::append`] without waiting for the disk: durable at
    /// the next [`HistoryStore::sync`] or durable append.
    pub fn append_eventually(&self, entries: Vec<BuildEntry>) -> Result<(), HistoryError> {
        self.append_with(entries, redb::Durability::Eventual)
    }

    /// Makes every append before it durable.
    pub fn sync(&self) -> Result<(), HistoryError> {
        self.db.begin_write().map_err(e)?.commit().map_err(e)
    }

    fn append_with(&self, entries: Vec<BuildEntry>, durability: redb::Durability) -> Result<(), HistoryError> {
        let mut tx = self.db.begin_write().map_err(e)?;
        tx.set_durability(durability);
        {
            let mut full = tx.open_table(ENTRIES).map_err(e)?;
            let mut short = tx.open_table(SUMMARIES).map_err(e)?;
            let mut ids = tx.open_table(BY_ID).map_err(e)?;
            let first = full.last().map_err(e)?.map_or(1, |(k, _)| k.value() + 1);
            for (seq, mut entry) in (first..).zip(entries) {
                entry.facts.seq = seq;
                let summary = serde_json::to_vec(&entry.summary()).map_err(e)?;
                full.insert(entry.facts.seq, gzip(&serde_json::to_vec(&entry).map_err(e)?)?.as_slice()).map_err(e)?;
                short.insert(entry.facts.seq, summary.as_slice()).map_err(e)?;
                ids.insert(entry.facts.request_id.as_str(), entry.facts.seq).map_err(e)?;
            }
            while full.len().map_err(e)? > self.size {
                let Some((seq, _)) = full.pop_first().map_err(e)? else { break };
                let seq = seq.value();
                if let Some(s) = short.remove(seq).map_err(e)? {
                    let id = serde_json::from_slice::<BuildSummary>(s.value()).map(|s| s.facts.request_id);
                    if let Ok(id) = id {
                        ids.remove(id.as_str()).map_err(e)?;
                    }
                }
            }
        }
        tx.commit().map_err(e)
    }

    /// A page of summaries, newest first.
    pub fn list(&self, filter: &Filter) -> Result<Page, HistoryError> {
        let tx = self.db.begin_read().map_err(e)?;
        let table = tx.open_table(SUMMARIES).map_err(e)?;
        let total = table.len().map_err(e)?;
        let upper = filter.before.unwrap_or(u64::MAX);
        let (page, mut builds, mut next) = (filter.page(), Vec::new(), None);
        for row in table.range(..upper).map_err(e)?.rev() {
            let (_, value) = row.map_err(e)?;
            let summary: BuildSummary = serde_json::from_slice(value.value()).map_err(e)?;
            if !filter.shows(&summary) {
                continue;
            }
            if builds.len() == page {
                next = builds.last().map(|b: &BuildSummary| b.facts.seq);
                break;
            }
            builds.push(summary);
        }
        Ok(Page { builds, next, total })
    }

    /// One build, by its position or its request id.
    pub fn get(&self, id: &str) -> Result<Option<BuildEntry>, HistoryError> {
        let tx = self.db.begin_read().map_err(e)?;
        let seq = match id.parse::<u64>() {
            Ok(seq) => Some(seq),
            Err(_) => tx.open_table(BY_ID).map_err(e)?.get(id).map_err(e)?.map(|v| v.value()),
        };
        let Some(seq) = seq else { return Ok(None) };
        let table = tx.open_table(ENTRIES).map_err(e)?;
        let Some(value) = table.get(seq).map_err(e)? else { return Ok(None) };
        let json = gunzip(value.value())?;
        serde_json::from_slice(&json).map(Some).map_err(e)
    }
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>, HistoryError> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).map_err(e)?;
    gz.finish().map_err(e)
}

fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, HistoryError> {
    let mut out = Vec::new();
    let decoder = flate2::read::GzDecoder::new(bytes);
    decoder.take(MAX_STORED_ENTRY as u64).read_to_end(&mut out).map_err(e)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::BuildFacts;

    fn entry(image: &str, result: &str) -> BuildEntry {
        let request_id = format!("req-{image}-{result}-{}", rand_suffix());
        let facts = BuildFacts { request_id, image: image.into(), result: result.into(), ..Default::default() };
        BuildEntry { facts, ..Default::default() }
    }

    fn rand_suffix() -> String {
        kiln_snapshotter::SnapshotId::random().as_str().to_string()
    }

    #[test]
    fn the_history_keeps_its_newest_builds_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.redb");
        {
            let store = HistoryStore::open(&path, 5).unwrap();
            store.append((0..4).map(|i| entry(&format!("a{i}"), "success")).collect()).unwrap();
            store.append((4..8).map(|i| entry(&format!("a{i}"), "failure")).collect()).unwrap();
        }
        let store = HistoryStore::open(&path, 3).unwrap();
        let page = store.list(&Filter::default()).unwrap();
        let images: Vec<_> = page.builds.iter().map(|b| b.facts.image.as_str()).collect();
        assert_eq!(images, ["a7", "a6", "a5"], "newest first, trimmed to the new size");
        assert_eq!(page.total, 3);
        let oldest = store.get("3").unwrap();
        assert!(oldest.is_none(), "trimmed entries are gone");
        let by_id = store.get(&page.builds[0].facts.request_id).unwrap().unwrap();
        assert_eq!((by_id.facts.seq, by_id.facts.image.as_str()), (8, "a7"));
    }

    #[test]
    fn lists_filter_and_page() {
        let dir = tempfile::tempdir().unwrap();
        let store = HistoryStore::open(&dir.path().join("h.redb"), 100).unwrap();
        let mut all = Vec::new();
        for i in 0..30 {
            all.push(entry(
                if i % 2 == 0 { "fn/even" } else { "fn/odd" },
                if i % 3 == 0 { "failure" } else { "success" },
            ));
        }
        store.append(all).unwrap();
        let odd = Filter { image: Some("odd".into()), limit: Some(4), ..Default::default() };
        let first = store.list(&odd).unwrap();
        assert_eq!(first.builds.len(), 4);
        assert!(first.builds.iter().all(|b| b.facts.image == "fn/odd"));
        let second = store.list(&Filter { before: first.next, ..odd.clone() }).unwrap();
        assert!(second.builds[0].facts.seq < first.builds[3].facts.seq, "the next page starts after the first");
        let failed = store.list(&Filter { result: Some("failed".into()), limit: Some(500), ..Default::default() });
        assert_eq!(failed.unwrap().builds.len(), 10);
    }
}
