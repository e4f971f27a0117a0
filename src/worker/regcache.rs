//! The registry cache, so replicas share what any of them built (in the
//! style of BuildKit's `type=registry` cache). After a build, its steps'
//! cache keys and layer chains are pushed as an OCI manifest under a cache
//! ref: the config blob maps each key to its chain, the manifest's layers
//! list every blob so the registry keeps them. A build that misses its
//! local cache looks the key up in that map, pulls the chain's blobs (each
//! unpacked once per data dir) and records the step as cached.

use super::{LayerRecord, Worker, WorkerError};
use crate::attest::sbom::{LayerInventory, INVENTORY_VERSION};
use crate::oci::{Descriptor, ImageManifest, MediaType, PlatformSpec};
use crate::registry::Reference;
use base64::Engine as _;
use kiln_snapshotter::conformance::MemoryStore;
use kiln_snapshotter::Digest;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

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
    /// Diff id → the blob of that layer's package inventory (for SBOMs),
    /// so a replica that never saw a layer need not fetch it to scan it.
    #[serde(rename = "io.kiln.inventory.v1", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inventories: BTreeMap<String, InventoryBlob>,
    /// Diff id → the blob of that layer's tar-header index, so a replica
    /// can COPY onto a layer without fetching it.
    #[serde(rename = "io.kiln.headers.v1", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, InventoryBlob>,
    /// Selection id → the content key of paths a `COPY --from` read from
    /// a stage, so a replica holding that stage lazily keys the step
    /// without fetching the stage's layers.
    #[serde(rename = "io.kiln.selections.v1", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selections: BTreeMap<String, Selection>,
}

/// The content key of some paths of a stage (by the stage's cache key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    /// The stage's cache key.
    pub stage: String,
    /// The paths read, as the step names them.
    pub paths: Vec<String>,
    /// Their content key.
    pub key: String,
}

impl Selection {
    /// Its id in the cache map: a digest of the stage key and the paths.
    pub fn id(stage: &str, paths: &[String]) -> String {
        let mut text = stage.to_string();
        for p in paths {
            text.push('\0');
            text.push_str(p);
        }
        Digest::of(text.as_bytes()).hex().to_string()
    }
}

/// Where a layer's inventory or header index is kept in the cache
/// repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryBlob {
    /// The blob's digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// A small one's bytes (base64), kept in the cache config itself
    /// rather than as a blob: one upload less per layer at each export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<String>,
}

impl InventoryBlob {
    /// Whether a replica can read it: inline, or a blob the cache
    /// manifest names (so the registry keeps it).
    fn readable(&self, blobs: &HashSet<Digest>) -> bool {
        self.inline.is_some() || blobs.contains(&self.digest)
    }
}

/// Largest per-layer document kept inline in the cache config.
const MAX_INLINE_BYTES: usize = 4 << 10;

/// Most inline bytes one cache config carries (the rest are blobs).
const MAX_INLINE_TOTAL: usize = 512 << 10;

/// Media type of an inventory blob in the cache manifest.
pub const INVENTORY_MEDIA_TYPE: &str = "application/vnd.kiln.layer-inventory.v1+json";

/// Media type of a header index blob in the cache manifest.
pub const HEADERS_MEDIA_TYPE: &str = "application/vnd.kiln.layer-headers.v1+gzip";

/// Largest inventory or header index blob read back.
const MAX_INVENTORY_BYTES: u64 = 64 << 20;

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
    /// The blobs its manifest names (the registry keeps them): a chain
    /// with a layer outside them is not imported.
    pub blobs: HashSet<Digest>,
}

impl RegistryCache {
    /// Loads the cache at `reference` (an absent cache is an empty one).
    pub async fn load(worker: &Worker, reference: Reference) -> Result<Self, WorkerError> {
        let platform = PlatformSpec { os: "linux".into(), architecture: String::new(), variant: None };
        let (map, blobs) =
            match crate::registry::resolve(worker.registry(), &reference, &platform, &MemoryStore::default()).await {
                Ok(r) => {
                    let map = serde_json::from_slice(&r.config)
                        .map_err(|e| WorkerError::BadLayer(format!("{reference}: bad cache config: {e}")))?;
                    let listed: Vec<&str> = r.manifest.layers.iter().map(|l| l.digest.as_str()).collect();
                    worker.registry().note_present(&reference, &listed);
                    let blobs = r.manifest.layers.iter().filter_map(|l| Digest::parse(&l.digest).ok()).collect();
                    (map, blobs)
                }
                Err(crate::registry::Error::NotFound(_)) => Default::default(),
                Err(e) => return Err(e.into()),
            };
        Ok(RegistryCache { reference, map, blobs })
    }

    /// The chain cached under `key`, when the registry keeps all of it.
    pub fn chain(&self, key: &str) -> Option<&CacheEntryChain> {
        self.map.entries.get(key).filter(|c| c.layers.iter().all(|l| self.blobs.contains(&l.digest)))
    }

    /// The content key another replica computed for `paths` of the stage
    /// keyed `stage`, if any.
    pub fn content_key(&self, stage: &str, paths: &[String]) -> Option<&str> {
        let found = self.map.selections.get(&Selection::id(stage, paths))?;
        (found.stage == stage && found.paths == paths).then_some(found.key.as_str())
    }

    /// The inventory another replica exported for `diff_id`, if any.
    pub async fn inventory(&self, worker: &Worker, diff_id: &Digest) -> Result<Option<LayerInventory>, WorkerError> {
        let Some(blob) = self.map.inventories.get(diff_id.as_str()).filter(|b| b.readable(&self.blobs)) else {
            return Ok(None);
        };
        let bytes = self.fetch(worker, INVENTORY_MEDIA_TYPE, blob).await?;
        let inv: LayerInventory = serde_json::from_slice(&bytes)
            .map_err(|e| WorkerError::BadLayer(format!("{}: inventory of {diff_id}: {e}", self.reference)))?;
        Ok(Some(inv).filter(|i| i.version == INVENTORY_VERSION))
    }
}

impl RegistryCache {
    /// The header index bytes another replica exported for `diff_id`, if
    /// any.
    pub async fn headers(&self, worker: &Worker, diff_id: &Digest) -> Result<Option<Vec<u8>>, WorkerError> {
        let Some(blob) = self.map.headers.get(diff_id.as_str()).filter(|b| b.readable(&self.blobs)) else {
            return Ok(None);
        };
        Ok(Some(self.fetch(worker, HEADERS_MEDIA_TYPE, blob).await?))
    }

    /// A small blob of the cache repository, read into memory (it is
    /// derived data: nothing is kept in the content store, nothing synced).
    async fn fetch(&self, worker: &Worker, media_type: &str, blob: &InventoryBlob) -> Result<Vec<u8>, WorkerError> {
        if let Some(inline) = &blob.inline {
            return decode_inline(&self.reference, blob, inline);
        }
        if blob.size > MAX_INVENTORY_BYTES {
            return Err(WorkerError::BadLayer(format!("{}: blob {} is too large", self.reference, blob.digest)));
        }
        let memory = MemoryStore::default();
        let desc = Descriptor::new(media_type, &blob.digest, blob.size);
        worker.registry().fetch_blob(&self.reference, &desc, &memory).await?;
        Ok(kiln_snapshotter::content::read_blob(&memory, &blob.digest, MAX_INVENTORY_BYTES)?)
    }
}

impl Worker {
    /// Adds this build's steps to the cache at `cache.reference` and pushes
    /// it with every blob it names. Returns the entries written.
    pub async fn export_cache(
        &self,
        cache: &RegistryCache,
        steps: &[(String, Vec<LayerRecord>)],
        selections: &[Selection],
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
        for sel in selections {
            map.selections.insert(Selection::id(&sel.stage, &sel.paths), sel.clone());
        }
        trim(&mut map);
        let r = &cache.reference;
        let mut layers: BTreeMap<Digest, &LayerRecord> = BTreeMap::new();
        for l in steps.iter().flat_map(|(_, chain)| chain) {
            layers.insert(l.digest.clone(), l);
        }
        let mut present = cache.blobs.clone();
        for (digest, l) in layers.into_iter().filter(|(d, _)| !cache.blobs.contains(d)) {
            let origin = l.origin.as_deref().and_then(|o| Reference::parse(o).ok());
            let desc = Descriptor::new(&l.media_type, &digest, l.size);
            crate::registry::push_layer_blob(self.registry(), self.store(), r, &desc, origin.as_ref()).await?;
            present.insert(digest);
        }
        let inventory = |l: &LayerRecord| {
            self.cached_inventory(l).map(|inv| serde_json::to_vec(&inv).expect("inventory serializes"))
        };
        let blobs = LayerBlobs { steps, reference: r };
        blobs.export(self, &mut map.inventories, &map.entries, &mut present, inventory).await?;
        let headers = |l: &LayerRecord| self.cached_headers_bytes(&l.diff_id);
        blobs.export(self, &mut map.headers, &map.entries, &mut present, headers).await?;
        let manifest = self.cache_manifest(&map, r, &present).await?;
        self.registry.put_manifest(r, &manifest, MediaType::OCI_MANIFEST).await?;
        log(format!("exported {} cache entries to {r}", map.entries.len()));
        Ok(map.entries.len())
    }

    /// Pushes the config blob and returns the manifest naming every blob of
    /// the map (blobs the registry lacks are left out of the manifest, and
    /// their entries with them on the next import's miss).
    async fn cache_manifest(
        &self,
        map: &CacheMap,
        r: &Reference,
        present: &HashSet<Digest>,
    ) -> Result<Vec<u8>, WorkerError> {
        let config = serde_json::to_vec(map).expect("cache map serializes");
        // Only pushed, never read here: written to memory, not synced.
        let memory = MemoryStore::default();
        let config_digest = kiln_snapshotter::content::write_blob(&memory, &config)?;
        // It holds this export's time: new to the repository.
        self.registry.push_unseen_blob(r, &config_digest, &memory).await?;
        let mut layers: BTreeMap<Digest, Descriptor> = BTreeMap::new();
        for chain in map.entries.values() {
            for l in &chain.layers {
                if present.contains(&l.digest) || self.registry.blob_exists(r, &l.digest).await? {
                    layers.insert(l.digest.clone(), Descriptor::new(&l.media_type, &l.digest, l.size));
                }
            }
        }
        let annotations = [(&map.inventories, INVENTORY_MEDIA_TYPE), (&map.headers, HEADERS_MEDIA_TYPE)];
        for (blobs, media_type) in annotations {
            for blob in blobs.values().filter(|b| present.contains(&b.digest)) {
                layers.insert(blob.digest.clone(), Descriptor::new(media_type, &blob.digest, blob.size));
            }
        }
        let config = Descriptor::new(MediaType::OCI_CONFIG, &config_digest, config.len() as u64);
        Ok(ImageManifest::oci(config, layers.into_values().collect()).to_bytes())
    }
}

/// The layers of a build's steps, for exporting what is kept per layer
/// (inventories, header indexes).
struct LayerBlobs<'a> {
    steps: &'a [(String, Vec<LayerRecord>)],
    reference: &'a Reference,
}

impl LayerBlobs<'_> {
    /// Pushes what `bytes_of` gives for each layer `map` lacks a present
    /// blob for, and drops the map's blobs of layers no entry names any
    /// more.
    async fn export(
        &self,
        worker: &Worker,
        map: &mut BTreeMap<String, InventoryBlob>,
        entries: &BTreeMap<String, CacheEntryChain>,
        present: &mut HashSet<Digest>,
        bytes_of: impl Fn(&LayerRecord) -> Option<Vec<u8>>,
    ) -> Result<(), WorkerError> {
        let mut seen = HashSet::new();
        for l in self.steps.iter().flat_map(|(_, chain)| chain) {
            let blob = map.get(l.diff_id.as_str());
            if blob.is_some_and(|b| b.inline.is_some() || present.contains(&b.digest)) || !seen.insert(&l.diff_id) {
                continue;
            }
            let Some(bytes) = crate::blocking::in_place(|| bytes_of(l)) else { continue };
            let digest = Digest::of(&bytes);
            let inlined: usize = map.values().filter_map(|b| b.inline.as_ref().map(String::len)).sum();
            let inline = (bytes.len() <= MAX_INLINE_BYTES && inlined + bytes.len() * 2 <= MAX_INLINE_TOTAL)
                .then(|| base64::engine::general_purpose::STANDARD.encode(&bytes));
            if inline.is_none() {
                let memory = MemoryStore::default();
                kiln_snapshotter::content::write_blob(&memory, &bytes)?;
                worker.registry.push_blob(self.reference, &digest, &memory, None).await?;
                present.insert(digest.clone());
            }
            map.insert(l.diff_id.to_string(), InventoryBlob { digest, size: bytes.len() as u64, inline });
        }
        let live: HashSet<&str> = entries.values().flat_map(|c| c.layers.iter().map(|l| l.diff_id.as_str())).collect();
        map.retain(|diff_id, _| live.contains(diff_id.as_str()));
        Ok(())
    }
}

/// An inline document's bytes, checked against its digest and size.
fn decode_inline(reference: &Reference, blob: &InventoryBlob, inline: &str) -> Result<Vec<u8>, WorkerError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(inline)
        .ok()
        .filter(|b| b.len() as u64 == blob.size && Digest::of(b) == blob.digest);
    bytes.ok_or_else(|| WorkerError::BadLayer(format!("{reference}: inline document {} does not match", blob.digest)))
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

/// Keeps the newest [`MAX_ENTRIES`] entries, and the selections of
/// stages they hold.
fn trim(map: &mut CacheMap) {
    if map.entries.len() > MAX_ENTRIES {
        let mut by_age: Vec<(i64, String)> = map.entries.iter().map(|(k, v)| (v.exported, k.clone())).collect();
        by_age.sort();
        for (_, k) in by_age.into_iter().take(map.entries.len() - MAX_ENTRIES) {
            map.entries.remove(&k);
        }
    }
    let entries = &map.entries;
    map.selections.retain(|_, s| entries.contains_key(&s.stage));
}
