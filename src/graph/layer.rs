//! What lowering and solving attach to the graph for the exporter: the
//! history entry of each layer-producing node, and the layers kiln holds.

use super::{History, NodeId};
use kiln_snapshotter::{Digest, SnapshotId};
use serde::{Deserialize, Serialize};

/// One history entry and the node whose layer it describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryStep {
    /// The entry (times are filled in at export).
    pub entry: History,
    /// The layer-producing node, if any.
    pub node: Option<NodeId>,
    /// True for entries inherited from the base image.
    pub from_base: bool,
}

/// One layer of an image as kiln holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// Snapshot holding the layer's content (overlay form); `None` for a
    /// lazy layer, known by its digests and fetched from `origin` only
    /// when a step must read it (see `Worker::materialize`).
    #[serde(default)]
    pub snapshot: Option<SnapshotId>,
    /// Compressed blob digest.
    pub digest: Digest,
    /// Uncompressed digest.
    pub diff_id: Digest,
    /// Blob size.
    pub size: u64,
    /// Layer media type.
    pub media_type: String,
    /// When the layer was made (Unix seconds; base layers: 0).
    pub created: i64,
    /// Repository the blob came from, for cross-repository mounts.
    pub origin: Option<String>,
}
