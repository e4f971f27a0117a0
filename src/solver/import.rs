//! A local cache miss looked up in the registry cache: a step the cache
//! names is recorded as cached with its chain lazy (see
//! `Worker::materialize`), fetched only if a later step reads it.

use super::{BuildInput, LayerRecord, Solver};

impl Solver {
    /// The chain of `key` in the registry cache, if it is there whole.
    pub(super) fn import_cached(&self, key: &str, input: &BuildInput<'_>) -> Option<Vec<LayerRecord>> {
        let cache = input.registry_cache?;
        let chain = cache.chain(key)?;
        let origin = format!("{}/{}", cache.reference.registry, cache.reference.repository);
        let layers = chain.layers.iter().map(|l| LayerRecord {
            snapshot: None,
            digest: l.digest.clone(),
            diff_id: l.diff_id.clone(),
            size: l.size,
            media_type: l.media_type.clone(),
            created: l.created,
            origin: Some(origin.clone()),
        });
        Some(layers.collect())
    }
}
