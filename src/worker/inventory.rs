//! Each layer's package inventory (for SBOMs), scanned once from its
//! snapshot and kept beside the stores under `sbom/<diff id hex>.json`:
//! a cached layer is never scanned again. A file of another format
//! version, or one that does not parse, is scanned again and replaced.

use super::{LayerRecord, Worker, WorkerError};
use crate::attest::sbom::{scan_layer, LayerInventory, INVENTORY_VERSION};
use std::collections::HashSet;
use std::path::PathBuf;

impl Worker {
    /// Removes the cached inventories of layers no cache entry or unpacked
    /// base layer holds any more (after a collection).
    pub(super) fn prune_inventories(&self) -> Result<usize, WorkerError> {
        let dir = self.data_dir().join("sbom");
        let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(0) };
        let mut live: HashSet<String> = self.cache().unpacked()?.into_iter().map(|(d, _)| d).collect();
        for (_, rec, _) in self.cache().steps()? {
            live.extend(rec.layers.iter().map(|l| l.diff_id.to_string()));
        }
        let live: HashSet<String> = live.iter().map(|d| d.trim_start_matches("sha256:").to_string()).collect();
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let hex = name.strip_suffix(".json").unwrap_or(&name);
            if !live.contains(hex) && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn inventory_path(&self, layer: &LayerRecord) -> PathBuf {
        self.data_dir().join("sbom").join(format!("{}.json", layer.diff_id.hex()))
    }

    /// The inventory of `layer` (blocking): from the cache, or scanned and
    /// cached; `(inventory, scanned now)`.
    pub fn layer_inventory(&self, layer: &LayerRecord) -> Result<(LayerInventory, bool), WorkerError> {
        let path = self.inventory_path(layer);
        if let Ok(bytes) = std::fs::read(&path) {
            if let Ok(inv) = serde_json::from_slice::<LayerInventory>(&bytes) {
                if inv.version == INVENTORY_VERSION {
                    return Ok((inv, false));
                }
            }
        }
        let dir = self.snapshots().dir(&layer.snapshot);
        let io = |context: &str| {
            let context = format!("{context} {}", layer.diff_id);
            move |source| WorkerError::Io { context, source }
        };
        let inv = scan_layer(&dir).map_err(io("scan the packages of layer"))?;
        let parent = path.parent().expect("under the data dir");
        std::fs::create_dir_all(parent).map_err(io("create the sbom cache for"))?;
        let tmp = tempfile::NamedTempFile::new_in(parent).map_err(io("cache the packages of layer"))?;
        std::fs::write(tmp.path(), serde_json::to_vec(&inv).expect("inventory serializes"))
            .map_err(io("cache the packages of layer"))?;
        tmp.persist(&path).map_err(|e| io("cache the packages of layer")(e.error))?;
        Ok((inv, true))
    }
}
