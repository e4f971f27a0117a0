//! Each layer's package inventory (for SBOMs), scanned once from its
//! snapshot and kept beside the stores under `sbom/<diff id hex>.json`:
//! a cached layer is never scanned again. A file of another format
//! version, or one that does not parse, is scanned again and replaced.

use super::regcache::RegistryCache;
use super::{LayerRecord, Worker, WorkerError};
use crate::attest::sbom::{scan_layer, LayerInventory, INVENTORY_VERSION};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

impl Worker {
    /// Removes the cached inventories and header indexes of layers no
    /// cache entry or unpacked base layer holds any more (after a
    /// collection).
    pub(super) fn prune_inventories(&self) -> Result<usize, WorkerError> {
        let mut live: HashSet<String> = self.cache().unpacked()?.into_iter().map(|(d, _)| d).collect();
        for (_, rec, _) in self.cache().steps()? {
            live.extend(rec.layers.iter().map(|l| l.diff_id.to_string()));
        }
        let live: HashSet<String> = live.iter().map(|d| d.trim_start_matches("sha256:").to_string()).collect();
        let mut removed = 0;
        for dir in ["sbom", super::headers::HEADERS_DIR] {
            let Ok(entries) = std::fs::read_dir(self.data_dir().join(dir)) else { continue };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                let hex = name.split('.').next().unwrap_or(&name);
                if !live.contains(hex) && std::fs::remove_file(entry.path()).is_ok() {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    fn inventory_path(&self, layer: &LayerRecord) -> PathBuf {
        self.data_dir().join("sbom").join(format!("{}.json", layer.diff_id.hex()))
    }

    /// The inventories of `layers` and how many were scanned now: each
    /// one cached here, else exported by another replica with `cache`,
    /// else scanned from its content (a lazy layer is fetched first).
    pub async fn layer_inventories(
        self: &Arc<Self>,
        layers: &[LayerRecord],
        cache: Option<&RegistryCache>,
    ) -> Result<(Vec<LayerInventory>, usize), WorkerError> {
        let mut out = Vec::with_capacity(layers.len());
        let mut scanned = 0;
        for layer in layers {
            let (this, l) = (self.clone(), layer.clone());
            if let Some(inv) = tokio::task::spawn_blocking(move || this.cached_inventory(&l)).await? {
                out.push(inv);
                continue;
            }
            if let Some(inv) = self.exported_inventory(cache, layer).await {
                let (this, l, i) = (self.clone(), layer.clone(), inv.clone());
                tokio::task::spawn_blocking(move || this.keep_inventory(&l, &i)).await??;
                out.push(inv);
                continue;
            }
            let layer = self.materialize(std::slice::from_ref(layer)).await?.layers.remove(0);
            let this = self.clone();
            out.push(tokio::task::spawn_blocking(move || this.scan_inventory(&layer)).await??);
            scanned += 1;
        }
        Ok((out, scanned))
    }

    /// What another replica exported for `layer`; a failure to read it
    /// only means scanning here.
    async fn exported_inventory(&self, cache: Option<&RegistryCache>, layer: &LayerRecord) -> Option<LayerInventory> {
        let inv = cache?.inventory(self, &layer.diff_id).await;
        inv.inspect_err(|e| tracing::debug!(error = %e, "registry cache inventory unusable")).ok().flatten()
    }

    /// The inventory cached here for `layer` (blocking), when it is of the
    /// current format.
    pub fn cached_inventory(&self, layer: &LayerRecord) -> Option<LayerInventory> {
        let bytes = std::fs::read(self.inventory_path(layer)).ok()?;
        serde_json::from_slice::<LayerInventory>(&bytes).ok().filter(|inv| inv.version == INVENTORY_VERSION)
    }

    /// Scans a materialized layer and caches its inventory (blocking).
    fn scan_inventory(&self, layer: &LayerRecord) -> Result<LayerInventory, WorkerError> {
        let dir = self.snapshots().dir(&super::layers::snapshot_of(layer)?);
        let inv = scan_layer(&dir).map_err(io_error("scan the packages of layer", layer))?;
        self.keep_inventory(layer, &inv)?;
        Ok(inv)
    }

    /// Caches `inv` as `layer`'s inventory (blocking).
    fn keep_inventory(&self, layer: &LayerRecord, inv: &LayerInventory) -> Result<(), WorkerError> {
        let path = self.inventory_path(layer);
        let parent = path.parent().expect("under the data dir");
        std::fs::create_dir_all(parent).map_err(io_error("create the sbom cache for", layer))?;
        let tmp = tempfile::NamedTempFile::new_in(parent).map_err(io_error("cache the packages of layer", layer))?;
        std::fs::write(tmp.path(), serde_json::to_vec(inv).expect("inventory serializes"))
            .map_err(io_error("cache the packages of layer", layer))?;
        tmp.persist(&path).map_err(|e| io_error("cache the packages of layer", layer)(e.error))?;
        Ok(())
    }
}

fn io_error(context: &str, layer: &LayerRecord) -> impl FnOnce(std::io::Error) -> WorkerError {
    let context = format!("{context} {}", layer.diff_id);
    move |source| WorkerError::Io { context, source }
}
