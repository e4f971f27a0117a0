//! Lazy layers. A base image's layers and a chain imported from the
//! registry cache are known by their digests alone: the solver records
//! them without their bytes, and a layer is downloaded and unpacked only
//! when a step must read it (a RUN or file op on top, a `COPY --from` of
//! it, an SBOM scan no cache answers). A cache hit, a push the registry
//! answers by HEAD or mount, and the manifest never need the bytes — as
//! BuildKit keeps its cache-hit layers lazy.

use super::{LayerRecord, Worker, WorkerError};
use crate::oci::Descriptor;
use crate::registry::Reference;
use kiln_snapshotter::SnapshotId;

/// A chain with every layer's content on disk.
#[derive(Debug, Clone, Default)]
pub struct Materialized {
    /// The chain, each layer with its snapshot.
    pub layers: Vec<LayerRecord>,
    /// Compressed bytes downloaded for it.
    pub pulled: u64,
    /// Device nodes left out while unpacking.
    pub skipped_devices: u64,
}

impl Worker {
    /// The committed snapshot holding `layer`'s content here, if any: its
    /// own, or where its diff id was unpacked before.
    pub fn local_snapshot(&self, layer: &LayerRecord) -> Result<Option<SnapshotId>, WorkerError> {
        let committed = |s: &SnapshotId| matches!(self.snapshots.stat(s), Ok(Some(_)));
        if let Some(s) = layer.snapshot.as_ref().filter(|s| committed(s)) {
            return Ok(Some(s.clone()));
        }
        Ok(self.cache.get_unpacked(&layer.diff_id)?.filter(committed))
    }

    /// `layers` with every lazy one fetched from its origin and unpacked
    /// (all at once, each diff id once across builds).
    pub async fn materialize(&self, layers: &[LayerRecord]) -> Result<Materialized, WorkerError> {
        let fetches = layers.iter().map(|l| self.materialize_one(l));
        let done = futures_util::future::try_join_all(fetches).await?;
        let mut out = Materialized::default();
        for (layer, pulled, skipped) in done {
            out.layers.push(layer);
            out.pulled += pulled;
            out.skipped_devices += skipped;
        }
        Ok(out)
    }

    async fn materialize_one(&self, layer: &LayerRecord) -> Result<(LayerRecord, u64, u64), WorkerError> {
        if layer.snapshot.is_some() {
            return Ok((layer.clone(), 0, 0));
        }
        let _one_unpack = self.unpacking.lock(layer.diff_id.as_str()).await;
        if let Some(s) = self.local_snapshot(layer)? {
            return Ok((LayerRecord { snapshot: Some(s), ..layer.clone() }, 0, 0));
        }
        let origin = origin_of(layer)?;
        let desc = Descriptor::new(&layer.media_type, layer.digest.as_str(), layer.size);
        let fetched = self.fetch_layer(&origin, &desc, &layer.diff_id).await?;
        let record = LayerRecord { snapshot: Some(fetched.snapshot), ..layer.clone() };
        Ok((record, fetched.pulled, fetched.skipped_devices))
    }

    /// Downloads the blobs of `layers` this store lacks (from each one's
    /// origin), for what serves images from the local store.
    pub async fn fetch_blobs(&self, layers: &[LayerRecord]) -> Result<u64, WorkerError> {
        let mut pulled = 0;
        for layer in layers {
            if self.store.info(&layer.digest)?.is_some() {
                continue;
            }
            let desc = Descriptor::new(&layer.media_type, layer.digest.as_str(), layer.size);
            pulled += self.registry.fetch_blob(&origin_of(layer)?, &desc, self.store()).await?;
        }
        Ok(pulled)
    }
}

/// Where a lazy layer's blob can be fetched from.
fn origin_of(layer: &LayerRecord) -> Result<Reference, WorkerError> {
    let origin = layer.origin.as_deref().ok_or_else(|| {
        WorkerError::BadLayer(format!(
            "layer {} is not stored here and has no repository to fetch it from",
            layer.diff_id
        ))
    })?;
    Reference::parse(origin)
        .map_err(|e| WorkerError::BadLayer(format!("layer {}: origin {origin}: {e}", layer.diff_id)))
}
