//! A local cache miss looked up in the registry cache: a step the cache
//! names is pulled and unpacked instead of run.

use super::{BuildInput, Event, LayerRecord, SolveError, Solver};
use crate::graph::NodeId;
use crate::oci::Descriptor;

impl Solver {
    /// Imports `key` from the registry cache, if it is there: pulls and
    /// unpacks its chain and records it locally.
    pub(super) async fn import_cached(
        &self,
        id: NodeId,
        key: &str,
        input: &BuildInput<'_>,
    ) -> Result<Option<Vec<LayerRecord>>, SolveError> {
        let Some(cache) = input.registry_cache else { return Ok(None) };
        let Some(chain) = cache.map.entries.get(key) else { return Ok(None) };
        let mut layers = Vec::new();
        for l in &chain.layers {
            let desc = Descriptor::new(&l.media_type, &l.digest, l.size);
            let fetched = self
                .worker
                .fetch_layer(&cache.reference, &desc, &l.diff_id)
                .await
                .map_err(|e| SolveError::new(Some(id), e.kind(), format!("registry cache: {e}")))?;
            let _ = input.progress.send(Event::Pulled(id, fetched.pulled));
            layers.push(LayerRecord {
                snapshot: fetched.snapshot,
                digest: l.digest.clone(),
                diff_id: l.diff_id.clone(),
                size: l.size,
                media_type: l.media_type.clone(),
                created: l.created,
                origin: Some(format!("{}/{}", cache.reference.registry, cache.reference.repository)),
            });
        }
        Ok(Some(layers))
    }
}
