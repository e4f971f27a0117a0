//! The worker owns storage and execution: the content store, the
//! snapshots, the registry and the step runner, each held through its
//! trait, the cache index, and the upkeep around them (push
//! bookkeeping, local tags, garbage collection, store checks, the registry
//! cache export). The solver schedules steps and computes their keys; it
//! reaches storage and execution only through a worker, as BuildKit's
//! solver reaches them through `worker.Worker`.

mod cache;
pub mod check;
mod error;
#[cfg(test)]
pub(crate) mod fake_runner;
pub mod fileop;
mod gc;
pub mod headers;
mod inventory;
mod layers;
mod lazy;
mod maintenance;
pub mod regcache;
pub mod runner;
mod scratch;
pub mod skeleton;
mod subtree;
pub mod tags;
#[cfg(test)]
mod tests;

pub use cache::{CacheError, CacheIndex, HttpRecord, LayerRecord, StepRecord};
pub use error::WorkerError;
pub use gc::{GcReport, METADATA_BLOB};
pub use layers::{Fetched, Uncommitted};
pub use lazy::Materialized;

use crate::registry::Registry;
use kiln_snapshotter::content::Store;
use kiln_snapshotter::diff::DiffOptions;
use kiln_snapshotter::snapshots::Snapshotter;
use kiln_snapshotter::{ContentStore, Digest, Snapshots};
use runner::StepRunner;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Static worker settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The data directory (content, snapshots, cache, run).
    pub data_dir: PathBuf,
    /// Layer writing options.
    pub diff: DiffOptions,
    /// Most bytes the content store and snapshots may hold (`None`: no
    /// limit); least recently used cache entries go first.
    pub cache_budget: Option<u64>,
}

/// What a worker stores in and runs with, each behind its trait.
#[derive(Clone)]
pub struct Backends {
    /// Blobs: layers, configs, manifests.
    pub store: Arc<dyn Store>,
    /// Unpacked layers and step upper directories.
    pub snapshots: Arc<dyn Snapshotter>,
    /// What runs RUN steps and file ops.
    pub runner: Arc<dyn StepRunner>,
    /// Pulls and pushes.
    pub registry: Arc<dyn Registry>,
}

/// One cache entry as `kiln cache ls` shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CacheEntry {
    /// Cache key.
    pub key: String,
    /// The instruction.
    pub description: String,
    /// Unix seconds of the last use (0: unknown).
    pub last_used: i64,
    /// Layers in the chain.
    pub layers: usize,
    /// Compressed size of the step's own layer.
    pub top_layer_bytes: u64,
}

/// Storage and execution, shared by all builds of a server.
pub struct Worker {
    store: Arc<dyn Store>,
    snapshots: Arc<dyn Snapshotter>,
    runner: Arc<dyn StepRunner>,
    registry: Arc<dyn Registry>,
    cache: CacheIndex,
    cfg: WorkerConfig,
    maintenance: maintenance::Maintenance,
    layer_hashes: subtree::LayerHashes,
    /// Per diff id: held while a lazy layer is fetched and unpacked.
    unpacking: crate::keylock::KeyLocks,
}

impl Worker {
    /// The worker of a data directory: the filesystem content store and
    /// overlay snapshots under it, cleaned of what a previous run left
    /// (partial blobs, active snapshots, steps still running, scratch),
    /// then collected down to the budget.
    pub fn open(
        cfg: WorkerConfig,
        runner: Arc<dyn StepRunner>,
        registry: Arc<dyn Registry>,
    ) -> Result<Self, WorkerError> {
        let store = ContentStore::at(cfg.data_dir.join("content"))?;
        store.clean_ingest()?;
        let snapshots = Snapshots::open(cfg.data_dir.join("snapshots"))?;
        snapshots.clean_active()?;
        scratch::clean(&cfg.data_dir);
        Self::with(cfg, Backends { store: Arc::new(store), snapshots: Arc::new(snapshots), runner, registry })
    }

    /// A worker over any implementations of its backends (tests use an
    /// in-memory content store and a scripted runner).
    pub fn with(cfg: WorkerConfig, backends: Backends) -> Result<Self, WorkerError> {
        std::fs::create_dir_all(&cfg.data_dir).map_err(|e| WorkerError::io("create the data directory", e))?;
        let cache = CacheIndex::open(&cfg.data_dir.join("cache.redb"))?;
        scratch::spread(&cfg.data_dir);
        let worker = Self {
            store: backends.store,
            snapshots: backends.snapshots,
            runner: backends.runner,
            registry: backends.registry,
            cache,
            cfg,
            maintenance: Default::default(),
            layer_hashes: Default::default(),
            unpacking: Default::default(),
        };
        let report = worker.collect_garbage(worker.cfg.cache_budget)?;
        tracing::info!(?report, "start-up garbage collection");
        Ok(worker)
    }

    /// The content store.
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// The content store, to hand to blocking work.
    pub fn shared_store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// The snapshotter.
    pub fn snapshots(&self) -> &dyn Snapshotter {
        self.snapshots.as_ref()
    }

    /// The step runner.
    pub fn runner(&self) -> &dyn StepRunner {
        self.runner.as_ref()
    }

    /// The registry client.
    pub fn registry(&self) -> &dyn Registry {
        self.registry.as_ref()
    }

    /// The cache index.
    pub fn cache(&self) -> &CacheIndex {
        &self.cache
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.cfg.data_dir
    }

    /// Fills in, for layers built here, the repository they were last pushed
    /// to, so a push to another repository of that registry can mount them.
    pub fn add_push_origins(&self, layers: &mut [LayerRecord]) {
        for l in layers.iter_mut().filter(|l| l.origin.is_none()) {
            l.origin = self.cache.pushed_to(&l.digest).ok().flatten();
        }
    }

    /// Remembers that `layers` now live in `repo` (`registry/repository`).
    pub fn record_pushed(&self, layers: &[LayerRecord], repo: &str) {
        let digests: Vec<Digest> = layers.iter().map(|l| l.digest.clone()).collect();
        if let Err(e) = self.cache.record_pushed(&digests, repo) {
            tracing::warn!(error = %e, "record pushed layers");
        }
    }

    /// Every cache entry, most recently used first.
    pub fn cache_entries(&self) -> Result<Vec<CacheEntry>, WorkerError> {
        let mut steps = self.cache.steps()?;
        steps.sort_by_key(|(_, _, used)| std::cmp::Reverse(*used));
        Ok(steps
            .into_iter()
            .map(|(key, rec, used)| CacheEntry {
                key,
                description: rec.description,
                last_used: used,
                layers: rec.layers.len(),
                top_layer_bytes: rec.layers.last().map_or(0, |l| l.size),
            })
            .collect())
    }
}
