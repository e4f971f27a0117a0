//! The registry cache, so replicas share what any of them built (in the
//! style of BuildKit's `type=registry` cache). After a build, its steps'
//! cache keys and layer chains are pushed as an OCI manifest under a cache
//! ref: the config blob maps each key to its chain, the manifest's layers
//! list every blob so the registry keeps them. A build that misses its
//! local cache looks the key up in that map, pulls the chain's blobs (each
//! unpacked once per data dir) and records the step as cached.

use super::{BuildInput, Event, LayerRecord, SolveError, Solver};
use crate::errors::ErrorKind;
use crate::graph::NodeId;
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
    pub async fn load(solver: &Solver, reference: Reference) -> Result<Self, String> {
        let platform = PlatformSpec { os: "linux".into(), architecture: String::new(), variant: None };
        let map = match solver.registry().resolve(&reference, &platform, solver.store()).await {
            Ok(r) => serde_json::from_slice(&r.config).map_err(|e| format!("{reference}: bad cache config: {e}"))?,
            Err(crate::registry::Error::NotFound(_)) => CacheMap::default(),
            Err(e) => return Err(format!("{reference}: {e}")),
        };
        Ok(RegistryCache { reference, map })
    }
}

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
            let desc = Descriptor {
                media_type: l.media_type.clone(),
                digest: l.digest.to_string(),
                size: l.size,
                platform: None,
            };
            let pulled = self
                .registry
                .fetch_blob(&cache.reference, &desc, &self.store)
                .await
                .map_err(|e| SolveError::new(Some(id), ErrorKind::from(&e), format!("registry cache: {e}")))?;
            let _ = input.progress.send(Event::Pulled(id, pulled));
            let snapshot = self.unpack(id, &l.digest, &l.diff_id, input.progress).await?;
            layers.push(LayerRecord {
                snapshot,
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

    /// Adds this build's steps to the cache at `cache.reference` and pushes
    /// it with every blob it names. Returns the entries written.
    pub async fn export_cache(
        &self,
        cache: &RegistryCache,
        steps: &[(String, Vec<LayerRecord>)],
        log: &(dyn Fn(String) + Sync),
    ) -> Result<usize, String> {
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
            if self.store.size_of(digest).map_err(|e| e.to_string())?.is_none() {
                continue;
            }
            let origin = origin.as_deref().and_then(|o| Reference::parse(o).ok());
            self.registry.push_blob(r, digest, &self.store, origin.as_ref()).await.map_err(|e| e.to_string())?;
        }
        let manifest = self.cache_manifest(&map, r).await?;
        self.registry.put_manifest(r, &manifest, MediaType::OCI_MANIFEST).await.map_err(|e| e.to_string())?;
        log(format!("exported {} cache entries to {r}", map.entries.len()));
        Ok(map.entries.len())
    }

    /// Pushes the config blob and returns the manifest naming every blob of
    /// the map (blobs the registry lacks are left out of the manifest, and
    /// their entries with them on the next import's miss).
    async fn cache_manifest(&self, map: &CacheMap, r: &Reference) -> Result<Vec<u8>, String> {
        let config = serde_json::to_vec(map).expect("cache map serializes");
        let config_digest = self.store.write_blob(&config).map_err(|e| e.to_string())?;
        self.registry.push_blob(r, &config_digest, &self.store, None).await.map_err(|e| e.to_string())?;
        let mut layers: BTreeMap<Digest, Descriptor> = BTreeMap::new();
        for chain in map.entries.values() {
            for l in &chain.layers {
                if self.registry.blob_exists(r, &l.digest).await.map_err(|e| e.to_string())? {
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
