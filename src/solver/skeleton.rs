//! A COPY or WORKDIR on a chain that is not all here runs on a skeleton
//! of it ([`crate::worker::skeleton`]) made from the layers' header
//! indexes, so its layer is made without downloading the layers below.

use super::{BuildInput, LayerRecord, Solver};
use crate::graph::NodeId;
use crate::worker::fileop::PlannedAction;
use crate::worker::skeleton::{plan, tree::Tree, Skeleton};
use kiln_snapshotter::overlay::Mount;
use std::path::Path;

impl Solver {
    /// The skeleton `actions` can run on instead of `chain`, when a layer
    /// of it would have to be fetched and every layer's index is known.
    pub(super) async fn skeleton(
        &self,
        id: NodeId,
        actions: &[PlannedAction],
        chain: &[LayerRecord],
        input: &BuildInput<'_>,
    ) -> Option<Skeleton> {
        let missing = chain.iter().any(|l| matches!(self.worker.local_snapshot(l), Ok(None)));
        if !missing || !usable_lowerdir(self.worker.data_dir()) {
            return None;
        }
        let headers = self.worker.chain_headers(chain, input.registry_cache).await?;
        let (actions, context) = (actions.to_vec(), input.context.to_path_buf());
        let planned = tokio::task::spawn_blocking(move || plan(&Tree::merge(headers), &actions, &context)).await;
        match planned {
            Ok(Ok(skeleton)) => Some(skeleton),
            Ok(Err(why)) => {
                tracing::debug!(node = id, %why, "file op reads the real layers");
                None
            }
            Err(_) => None,
        }
    }
}

/// Whether a directory under `data_dir` can be named in an overlay's
/// `lowerdir=` option (which splits at `:` and `,`).
fn usable_lowerdir(data_dir: &Path) -> bool {
    !data_dir.to_string_lossy().contains([':', ',', '\\'])
}

/// `mounts` (a step's overlay over nothing) with `dir` as its lower.
pub(super) fn over_skeleton(mut mounts: Vec<Mount>, dir: &Path) -> Vec<Mount> {
    for m in mounts.iter_mut().filter(|m| m.fstype == "overlay") {
        for o in m.options.iter_mut().filter(|o| o.starts_with("lowerdir=")) {
            *o = format!("lowerdir={}", dir.display());
        }
    }
    mounts
}
