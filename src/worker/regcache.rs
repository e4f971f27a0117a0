//! The registry cache, so replicas share what any of them built (in the
//! style of BuildKit's `type=registry` cache). After a build, its steps'
//! cache keys and layer chains are pushed as an OCI manifest under a cache
//! ref: the config blob maps each key to its chain, the manifest's layers
//! list every blob so the registry keeps them. A build that misses its
//! local cache looks the key up in that map, pulls the chain's blobs (each
//! unpacked once per data dir) and records the step as cached.

use super::{LayerRecord, Worker, WorkerError};
use crate::oci::{Descriptor, ImageManifest, MediaType, PlatformSpec};
use crate::registry::Reference;
use kiln_snapshotter::Digest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most entries a cache manifest keeps (the newest win).
pub const MAX_ENTRIES: usize = 512;

/// One layer of a cached chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedLayer {
    /// Compressed blob digest.
    pub digest: Digest,
    /// Uncompressed digest.
    pub diff_id: Digest,
    /// Blob size.
    pub size: u64,
    /// Layer media type.
    pub media_type: String,
    /// When it was built (keeps image configs identical across replicas).
    pub created: i64,
}

/// The cache config blob: an image config (so any registry takes it) that
/// carries the key map.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CacheMap {
    /// Always `linux`.
    pub os: String,
    /// The builder's architecture.
    pub architecture: String,
    /// Cache key → layer chain, base first.
    #[serde(rename = "io.kiln.cache.v1", default)]
    pub entries: BTreeMap<String, CacheEntryChain>,
}

/// A chain and when it was exported (for trimming).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheEntryChain {
    /// Layers, base first.
    pub layers: Vec<CachedLayer>,
    /// Unix seconds of the export.
    pub exported: i64,
}

/// The registry cache one build reads and writes.
#[derive(Debug, Clone)]
pub struct RegistryCache {
    /// Where the cache manifest lives.
    pub reference: Reference,
    /// What it held when the build started.
    pub map: CacheMap,
}

impl RegistryCache {
    /// Loads the cache at `reference` (an absent cache is an empty one).
    pub async fn load(worker: &Worker, reference: Reference) -> Result<Self, WorkerError> {
        let platform = PlatformSpec { os: "linux".into(), architecture: String::new(), variant: None };
        let map = match crate::registry::resolve(worker.registry(), &reference, &platform, worker.store()).await {
            Ok(r) => serde_json::from_slice(&r.config)
                .map_err(|e| WorkerError::BadLayer(format!("{reference}: bad cache config: {e}")))?,
            Err(crate::registry::Error::NotFound(_)) => CacheMap::default(),
            Err(e) => return Err(e.into()),
        };
        Ok(RegistryCache { reference, map })
    }
}

impl Worker {
    /// Adds this build's steps to the cache at `cache.reference` and pushes
    /// it with every blob it names. Returns the entries written.
    pub async fn export_cache(
        &self,
        cache: &RegistryCache,
        steps: &[(String, Vec<LayerRecord>)],
        log: &(dyn Fn(String) + Sync),
    ) -> Result<usize, WorkerError> {
        let mut map = cache.map.clone();
        map.os = "linux".into();
        map.architecture = crate::platform::Platform::host().architecture;
        let now = crate::timefmt::now_secs();
        for (key, chain) in steps {
            let layers = chain.iter().map(cached_layer).collect();
            map.entries.insert(key.clone(), CacheEntryChain { layers, exported: now });
        }
        trim(&mut map);
        let r = &cache.reference;
        let mut blobs: BTreeMap<Digest, (u64, String, Option<String>)> = BTreeMap::new();
        for (_, chain) in steps {
            for l in chain {
                blobs.insert(l.digest.clone(), (l.size, l.media_type.clone(), l.origin.clone()));
            }
        }
        for (digest, (_, _, origin)) in &blobs {
            if self.store.info(digest)?.is_none() {
                continue;
            }
            let origin = origin.as_deref().and_then(|o| Reference::parse(o).ok());
            self.registry.push_blob(r, digest, self.store(), origin.as_ref()).await?;
        }
        let manifest = self.cache_manifest(&map, r).await?;
        self.registry.put_manifest(r, &manifest, MediaType::OCI_MANIFEST).await?;
        log(format!("exported {} cache entries to {r}", map.entries.len()));
        Ok(map.entries.len())
    }

    /// Pushes the config blob and returns the manifest naming every blob of
    /// the map (blobs the registry lacks are left out of the manifest, and
    /// their entries with them on the next import's miss).
    async fn cache_manifest(&self, map: &CacheMap, r: &Reference) -> Result<Vec<u8>, WorkerError> {
        let config = serde_json::to_vec(map).expect("cache map serializes");
        let config_digest = kiln_snapshotter::content::write_blob(self.store(), &config)?;
        self.registry.push_blob(r, &config_digest, self.store(), None).await?;
        let mut layers: BTreeMap<Digest, Descriptor> = BTreeMap::new();
        for chain in map.entries.values() {
            for l in &chain.layers {
                if self.registry.blob_exists(r, &l.digest).await? {
                    layers.insert(l.digest.clone(), Descriptor::new(&l.media_type, &l.digest, l.size));
                }
            }
        }
        let config = Descriptor::new(MediaType::OCI_CONFIG, &config_digest, config.len() as u64);
        Ok(ImageManifest::oci(config, layers.into_values().collect()).to_bytes())
    }
}

fn cached_layer(l: &LayerRecord) -> CachedLayer {
    CachedLayer {
        digest: l.digest.clone(),
        diff_id: l.diff_id.clone(),
        size: l.size,
        media_type: l.media_type.clone(),
        created: l.created,
    }
}

/// Keeps the newest [`MAX_ENTRIES`] entries.
fn trim(map: &mut CacheMap) {
    if map.entries.len() <= MAX_ENTRIES {
        return;
    }
    let mut by_age: Vec<(i64, String)> = map.entries.iter().map(|(k, v)| (v.exported, k.clone())).collect();
    by_age.sort();
    for (_, k) in by_age.into_iter().take(map.entries.len() - MAX_ENTRIES) {
        map.entries.remove(&k);
    }
}
