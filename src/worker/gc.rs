//! Garbage collection of the data dir. Cache entries (steps) own layers:
//! a snapshot and a blob each, shared between entries by reference count.
//! A collection first removes what no entry references (left by a crash
//! between a commit and its index write, or by an eviction), then evicts
//! the least recently used entries until the store fits the budget. Index
//! rows go first, files second, so a crash in between leaves only orphans
//! for the next collection. Callers must hold the GC lock exclusively: no
//! build is running, so nothing a build holds is touched.
//!
//! Blobs that images served at `/v2/` reach (their tags, [`super::tags`])
//! are never removed: a served image stays pullable until its tag moves.
//!
//! Blobs under [`METADATA_BLOB`] bytes (image configs and manifests, which
//! save a registry round trip on the next build) are removed only when
//! the store is still over budget after every eviction.

use super::{Worker, WorkerError};
use kiln_snapshotter::snapshots::Kind;
use kiln_snapshotter::{Digest, SnapshotId};
use std::collections::HashMap;

/// Blobs smaller than this are kept as metadata unless space is short.
pub const METADATA_BLOB: u64 = 64 * 1024;

/// What a collection did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GcReport {
    /// Cache entries evicted.
    pub steps_evicted: usize,
    /// Snapshots removed.
    pub snapshots_removed: usize,
    /// Blobs removed.
    pub blobs_removed: usize,
    /// Bytes in the store before.
    pub bytes_before: u64,
    /// Bytes in the store after.
    pub bytes_after: u64,
}

/// Reference counts and sizes of everything in the store.
struct Inventory {
    snap_refs: HashMap<SnapshotId, usize>,
    blob_refs: HashMap<Digest, usize>,
    snap_size: HashMap<SnapshotId, u64>,
    blob_size: HashMap<Digest, u64>,
    total: u64,
    /// Where each diff id was unpacked: a lazy layer holds that snapshot.
    unpacked: HashMap<String, SnapshotId>,
}

impl Inventory {
    /// The snapshot a cache entry's layer holds: its own, or for a lazy
    /// layer the one its content was unpacked into when a step read it.
    fn held(&self, layer: &super::LayerRecord) -> Option<SnapshotId> {
        layer.snapshot.clone().or_else(|| self.unpacked.get(layer.diff_id.as_str()).cloned())
    }
}

impl Worker {
    /// Removes unreferenced snapshots and blobs, then evicts least
    /// recently used cache entries while the store exceeds `budget` bytes.
    pub fn collect_garbage(&self, budget: Option<u64>) -> Result<GcReport, WorkerError> {
        let mut steps = self.cache.steps()?;
        steps.sort_by_key(|(_, _, used)| *used);
        let mut inv = self.inventory(&steps)?;
        let mut report = GcReport { bytes_before: inv.total, ..Default::default() };
        let mut projected = inv.total - inv.unreferenced_bytes();
        let mut evicted = Vec::new();
        let mut steps = steps.into_iter();
        while budget.is_some_and(|b| projected > b) {
            let Some((key, rec, _)) = steps.next() else { break };
            for l in &rec.layers {
                if let Some(s) = inv.held(l).filter(|s| decrement(&mut inv.snap_refs, s) == Some(0)) {
                    projected -= inv.snap_size.get(&s).copied().unwrap_or(0);
                }
                let blob = inv.blob_size.get(&l.digest).copied().unwrap_or(0);
                if decrement(&mut inv.blob_refs, &l.digest) == Some(0) && blob >= METADATA_BLOB {
                    projected -= blob;
                }
            }
            evicted.push(key);
        }
        let over = |inv: &Inventory| budget.is_some_and(|b| inv.total > b);
        let gone_snaps: Vec<SnapshotId> =
            inv.snap_size.keys().filter(|s| inv.snap_refs.get(*s).is_none_or(|n| *n == 0)).cloned().collect();
        let stale_unpacked: Vec<String> = self
            .cache
            .unpacked()?
            .into_iter()
            .filter(|(_, s)| gone_snaps.contains(s) || !inv.snap_size.contains_key(s))
            .map(|(d, _)| d)
            .collect();
        self.cache.forget(&evicted, &stale_unpacked)?;
        report.steps_evicted = evicted.len();
        for s in gone_snaps {
            self.snapshots.remove(&s)?;
            inv.total -= inv.snap_size[&s];
            report.snapshots_removed += 1;
        }
        self.remove_blobs(&mut inv, &mut report, false)?;
        if over(&inv) {
            self.remove_blobs(&mut inv, &mut report, true)?;
        }
        report.bytes_after = inv.total;
        self.prune_inventories()?;
        Ok(report)
    }

    /// Committed snapshots and blobs with their sizes and the references
    /// cache entries hold.
    fn inventory(&self, steps: &[(String, super::StepRecord, i64)]) -> Result<Inventory, WorkerError> {
        let mut inv = Inventory {
            snap_refs: HashMap::new(),
            blob_refs: HashMap::new(),
            snap_size: HashMap::new(),
            blob_size: HashMap::new(),
            total: 0,
            unpacked: self.cache.unpacked()?.into_iter().collect(),
        };
        for (_, rec, _) in steps {
            for l in &rec.layers {
                if let Some(s) = inv.held(l) {
                    *inv.snap_refs.entry(s).or_default() += 1;
                }
                *inv.blob_refs.entry(l.digest.clone()).or_default() += 1;
            }
        }
        let served = super::tags::LocalTags::new(&self.cfg.data_dir);
        for blob in super::tags::pinned(self.store(), &served) {
            if let Ok(digest) = Digest::parse(&blob) {
                *inv.blob_refs.entry(digest).or_default() += 1;
            }
        }
        for (id, kind) in self.snapshots.walk()? {
            if kind == Kind::Committed {
                let size = self.snapshots.usage(&id)?.size;
                inv.total += size;
                inv.snap_size.insert(id, size);
            }
        }
        for info in self.store.walk()? {
            inv.total += info.size;
            inv.blob_size.insert(info.digest, info.size);
        }
        Ok(inv)
    }

    fn remove_blobs(&self, inv: &mut Inventory, report: &mut GcReport, metadata_too: bool) -> Result<(), WorkerError> {
        let gone: Vec<Digest> = inv
            .blob_size
            .iter()
            .filter(|(d, size)| {
                inv.blob_refs.get(*d).is_none_or(|n| *n == 0) && (metadata_too || **size >= METADATA_BLOB)
            })
            .map(|(d, _)| d.clone())
            .collect();
        for d in gone {
            self.store.remove(&d)?;
            inv.total -= inv.blob_size.remove(&d).unwrap_or(0);
            report.blobs_removed += 1;
        }
        Ok(())
    }
}

/// Drops one reference; returns the count left (`None`: never counted).
fn decrement<K: std::hash::Hash + Eq>(refs: &mut HashMap<K, usize>, key: &K) -> Option<usize> {
    let n = refs.get_mut(key)?;
    *n = n.saturating_sub(1);
    Some(*n)
}

impl Inventory {
    /// Bytes of snapshots and non-metadata blobs no entry references.
    fn unreferenced_bytes(&self) -> u64 {
        let snaps: u64 =
            self.snap_size.iter().filter(|(s, _)| self.snap_refs.get(*s).is_none_or(|n| *n == 0)).map(|(_, b)| b).sum();
        let blobs: u64 = self
            .blob_size
            .iter()
            .filter(|(d, b)| self.blob_refs.get(*d).is_none_or(|n| *n == 0) && **b >= METADATA_BLOB)
            .map(|(_, b)| b)
            .sum();
        snaps + blobs
    }
}
