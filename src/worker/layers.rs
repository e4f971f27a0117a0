//! Layers in storage: fetching and unpacking a blob into a snapshot (once
//! per diff id across builds), preparing a step's writable snapshot over
//! a chain, and diffing it into a committed layer.

use super::{LayerRecord, StepRecord, Worker, WorkerError};
use crate::oci::Descriptor;
use crate::registry::Reference;
use kiln_snapshotter::diff::diff_upper_indexed;
use kiln_snapshotter::overlay::Mount;
use kiln_snapshotter::snapshots::Snapshotter;
use kiln_snapshotter::{Digest, SnapshotId};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A layer fetched and unpacked.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Its snapshot.
    pub snapshot: SnapshotId,
    /// Compressed bytes downloaded (0: it was in the store).
    pub pulled: u64,
    /// Device nodes left out (they cannot be created in a user namespace).
    pub skipped_devices: u64,
}

impl Worker {
    /// Whether every layer of a cached step is still in storage, or lazy
    /// with a repository to fetch it from.
    pub fn usable(&self, rec: &StepRecord) -> bool {
        rec.layers.iter().all(|l| match &l.snapshot {
            Some(s) => {
                matches!(self.snapshots.stat(s), Ok(Some(_))) && matches!(self.store.info(&l.digest), Ok(Some(_)))
            }
            None => l.origin.is_some(),
        })
    }

    /// Downloads the blob `desc` from `from` unless stored, and unpacks it
    /// unless a snapshot of `diff_id` exists; the content must hash to
    /// `diff_id`.
    pub async fn fetch_layer(
        &self,
        from: &Reference,
        desc: &Descriptor,
        diff_id: &Digest,
    ) -> Result<Fetched, WorkerError> {
        let pulled = self.registry.fetch_blob(from, desc, self.store()).await?;
        let blob = Digest::parse(&desc.digest)?;
        let (snapshot, skipped_devices) = self.unpack(&blob, diff_id).await?;
        Ok(Fetched { snapshot, pulled, skipped_devices })
    }

    async fn unpack(&self, blob: &Digest, diff_id: &Digest) -> Result<(SnapshotId, u64), WorkerError> {
        if let Some(s) = self.cache.get_unpacked(diff_id)?.filter(|s| matches!(self.snapshots.stat(s), Ok(Some(_)))) {
            return Ok((s, 0));
        }
        let snap = self.uncommitted(self.snapshots.prepare(&[])?);
        let (store, target, blob) = (self.store.clone(), self.snapshots.dir(snap.id()), blob.clone());
        let applied =
            tokio::task::spawn_blocking(move || kiln_snapshotter::apply::apply_layer(store.open(&blob)?, &target))
                .await?;
        let stats = applied.map_err(|source| WorkerError::Unpack { diff_id: diff_id.clone(), source })?;
        if stats.diff_id != *diff_id {
            return Err(WorkerError::BadLayer(format!(
                "layer {diff_id} does not match the image config (its content hashes to {})",
                stats.diff_id
            )));
        }
        crate::blocking::in_place(|| self.keep_headers(diff_id, &stats.headers));
        let id = self.commit(snap)?;
        self.cache.put_unpacked(diff_id, &id)?;
        Ok((id, stats.skipped_devices))
    }

    /// A new writable snapshot over `base` (base first) and the mounts of
    /// a rootfs on it.
    pub fn prepare(&self, base: &[LayerRecord]) -> Result<(Uncommitted, Vec<Mount>), WorkerError> {
        let upper = self.uncommitted(self.snapshots.prepare(&top_first(base)?)?);
        let mounts = self.snapshots.mounts(upper.id())?;
        Ok((upper, mounts))
    }

    /// A new empty writable snapshot, to fill from outside a container.
    pub fn prepare_empty(&self) -> Result<Uncommitted, WorkerError> {
        Ok(self.uncommitted(self.snapshots.prepare(&[])?))
    }

    /// Read-only mounts of a layer chain (base first).
    pub fn view(&self, layers: &[LayerRecord]) -> Result<Vec<Mount>, WorkerError> {
        Ok(self.snapshots.view(&top_first(layers)?)?)
    }

    /// Diffs `upper` into a layer (new files' mtimes clamped to `epoch`, a
    /// build's own `SOURCE_DATE_EPOCH`, else to the server's), commits it,
    /// and returns `base` with it on top.
    pub async fn commit_layer(
        &self,
        upper: Uncommitted,
        mut base: Vec<LayerRecord>,
        epoch: Option<i64>,
    ) -> Result<Vec<LayerRecord>, WorkerError> {
        let _ = std::fs::remove_dir_all(&upper.bundle);
        let mut opts = self.cfg.diff;
        opts.mtime_clamp = epoch.or(opts.mtime_clamp);
        let (store, fs) = (self.store.clone(), upper.dir.clone());
        let (layer, headers) =
            tokio::task::spawn_blocking(move || diff_upper_indexed(&fs, store.as_ref(), &opts)).await??;
        crate::blocking::in_place(|| self.keep_headers(&layer.diff_id, &headers));
        let snapshot = self.commit(upper)?;
        base.push(LayerRecord {
            snapshot: Some(snapshot),
            digest: layer.digest,
            diff_id: layer.diff_id,
            size: layer.size,
            media_type: layer.media_type,
            created: crate::timefmt::now_secs(),
            origin: None,
        });
        Ok(base)
    }

    fn commit(&self, mut upper: Uncommitted) -> Result<SnapshotId, WorkerError> {
        self.snapshots.commit(&upper.id)?;
        upper.committed = true;
        Ok(upper.id.clone())
    }

    /// Guards a freshly prepared snapshot until it is committed.
    fn uncommitted(&self, id: SnapshotId) -> Uncommitted {
        let bundle = self.cfg.data_dir.join("run").join(id.as_str());
        let dir = self.snapshots.dir(&id);
        Uncommitted { snapshots: self.snapshots.clone(), id, dir, bundle, committed: false }
    }
}

/// A layer chain's snapshots, topmost first (overlay lowerdir order); the
/// chain must be materialized.
fn top_first(layers: &[LayerRecord]) -> Result<Vec<SnapshotId>, WorkerError> {
    layers.iter().rev().map(snapshot_of).collect()
}

/// A materialized layer's snapshot.
pub(super) fn snapshot_of(layer: &LayerRecord) -> Result<SnapshotId, WorkerError> {
    layer.snapshot.clone().ok_or_else(|| {
        WorkerError::BadLayer(format!("layer {} was read before it was fetched (a lazy layer)", layer.diff_id))
    })
}

/// A prepared snapshot and its scratch dir, removed on drop unless
/// committed: a failed step, and a cancelled build whose future is dropped
/// mid-step, leave nothing behind. Removal retries briefly in the
/// background, since the killed helper may still be exiting.
pub struct Uncommitted {
    snapshots: Arc<dyn Snapshotter>,
    id: SnapshotId,
    dir: PathBuf,
    bundle: PathBuf,
    committed: bool,
}

impl Uncommitted {
    /// The snapshot.
    pub fn id(&self) -> &SnapshotId {
        &self.id
    }

    /// Where the snapshot's own content lives (to write a layer into).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The step's scratch directory (its helper bundle), removed with it.
    pub fn bundle(&self) -> &Path {
        &self.bundle
    }
}

impl Drop for Uncommitted {
    fn drop(&mut self) {
        let (snapshots, id, bundle, keep) =
            (self.snapshots.clone(), self.id.clone(), self.bundle.clone(), self.committed);
        let remove = move || {
            let bundle_gone = std::fs::remove_dir_all(&bundle).is_ok() || !bundle.exists();
            let snapshot_gone = keep || snapshots.remove(&id).is_ok();
            bundle_gone && snapshot_gone
        };
        if !remove() {
            // A cancelled step's helper may still be dying, its mount
            // namespace holding the overlay: retry for up to 10 s.
            std::thread::spawn(move || {
                for _ in 0..100 {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    if remove() {
                        return;
                    }
                }
            });
        }
    }
}
