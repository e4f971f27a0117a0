//! Executes an op graph: a versioned cache key per op, cache hits reuse
//! snapshots and layers, misses pull (Source), run a container (Exec) or
//! apply file actions (File) and diff the result into a layer.

mod cache;
mod cachemount;
pub mod check;
mod context;
mod exec;
#[cfg(test)]
pub(crate) mod fake_runner;
pub mod fileop;
mod gc;
mod git;
mod http;
mod keys;
mod network;
pub mod regcache;
pub mod runner;
pub mod tags;

pub use cache::{CacheIndex, LayerRecord, StepRecord};
pub use context::apply_dockerignore;
pub use gc::{GcReport, METADATA_BLOB};
pub use http::MAX_DOWNLOAD_BYTES;
pub use keys::{cache_key, CACHE_KEY_VERSION};

use crate::errors::ErrorKind;
use crate::graph::{Definition, NodeId, Op};
use crate::registry::{Reference, RegistryClient, Resolved};
use kiln_snapshotter::diff::DiffOptions;
use kiln_snapshotter::snapshots::Snapshotter;
use kiln_snapshotter::{ContentStore, Digest, Snapshots};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Progress reported while solving.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A step started.
    Started(NodeId),
    /// A step was satisfied from the cache.
    Cached(NodeId),
    /// A step finished after this many seconds.
    Done(NodeId, f64),
    /// A line of a step's output.
    Output(NodeId, String),
    /// Compressed bytes downloaded for a step.
    Pulled(NodeId, u64),
    /// Something a step's network did.
    Egress(NodeId, crate::egress::EgressEvent),
}

/// Where progress goes.
pub type Progress = tokio::sync::mpsc::UnboundedSender<Event>;

/// A failed solve, with the step it failed in.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SolveError {
    /// The failing node, when one is to blame.
    pub node: Option<NodeId>,
    /// The kind, for status mapping.
    pub kind: ErrorKind,
    /// What happened.
    pub message: String,
}

impl SolveError {
    fn new(node: Option<NodeId>, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { node, kind, message: message.into() }
    }

    fn internal(node: NodeId, e: impl std::fmt::Display) -> Self {
        Self::new(Some(node), ErrorKind::Internal, e.to_string())
    }
}

impl From<cache::CacheError> for SolveError {
    fn from(e: cache::CacheError) -> Self {
        Self::new(None, ErrorKind::Internal, e.to_string())
    }
}

/// Static solver settings.
#[derive(Clone)]
pub struct SolverConfig {
    /// The data directory (content, snapshots, cache, run).
    pub data_dir: PathBuf,
    /// What runs RUN steps and file ops.
    pub runner: Arc<dyn runner::StepRunner>,
    /// Layer writing options.
    pub diff: DiffOptions,
    /// Most bytes the content store and snapshots may hold (`None`: no
    /// limit); least recently used cache entries go first.
    pub cache_budget: Option<u64>,
    /// Process limits of every step.
    pub step_limits: kiln_runtime::spec::StepLimits,
    /// Most bytes one archive that ADD extracts may unpack to.
    pub max_archive_bytes: u64,
    /// Network namespaces of steps with the default network.
    pub networks: Arc<crate::egress::StepNetworks>,
}

/// The base images a build resolved, by manifest digest.
pub type Bases = HashMap<Digest, (Reference, Resolved)>;

/// One build's inputs.
pub struct BuildInput<'a> {
    /// The graph.
    pub definition: &'a Definition,
    /// The node to build (`None`: an image with no layers).
    pub root: Option<NodeId>,
    /// The unpacked build context.
    pub context: &'a Path,
    /// Resolved base images.
    pub bases: &'a Bases,
    /// Progress sink.
    pub progress: &'a Progress,
    /// Build secrets by id (values never leave the solver's step setup).
    pub secrets: &'a std::collections::BTreeMap<String, Vec<u8>>,
    /// The registry cache to import from on a local miss.
    pub registry_cache: Option<&'a regcache::RegistryCache>,
    /// Whose build this is: cache mounts and the keys of the steps that
    /// use them are scoped to it (see [`crate::tenant`]).
    pub tenant: &'a str,
}

/// A solved build.
#[derive(Debug, Clone, Default)]
pub struct Solved {
    /// The root's layer chain, base first.
    pub layers: Vec<LayerRecord>,
    /// Every step that produced layers (not base images), by cache key.
    pub steps: Vec<(String, Vec<LayerRecord>)>,
}

/// The solver, shared by all builds of a server.
pub struct Solver {
    store: ContentStore,
    snapshots: Snapshots,
    cache: CacheIndex,
    registry: Arc<RegistryClient>,
    http: reqwest::Client,
    cfg: SolverConfig,
    /// Builds hold it shared; garbage collection holds it exclusively.
    gc_lock: tokio::sync::RwLock<()>,
    /// Per cache key: held while a build runs that step.
    step_locks: crate::keylock::KeyLocks,
    /// Bounds steps running at once across all builds (see [`step_slots`]).
    run_slots: tokio::sync::Semaphore,
    last_gc: std::sync::Mutex<Instant>,
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

/// Seconds between collections triggered by finished builds.
const GC_INTERVAL_SECS: u64 = 30;

/// What computing a key already produced for running the op.
enum Prepared {
    /// Nothing to carry over.
    Nothing,
    /// File actions with expanded sources.
    Plan(Vec<fileop::PlannedAction>),
    /// A download (when the key needed it).
    Download(Option<http::Download>),
    /// The commit a Git ref resolved to.
    Commit(String),
}

/// Steps one build may run at once (one per core), and all builds together
/// (four builds' worth). A build's steps wait for its own slots first, so
/// one tenant's long parallel steps cannot hold every slot: another build's
/// step starts at once and the kernel shares the cores between them.
fn step_slots() -> (usize, usize) {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2);
    (cores, 4 * cores)
}

/// Longest a prune or check waits for a moment without builds.
const MAINTENANCE_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

/// Build workspaces and cache mounts are created and deleted by the
/// thousand files: like the snapshot root, their parents get ext4's
/// top-directory flag so that each lands in a block group of its own.
fn spread_scratch_dirs(data_dir: &std::path::Path) {
    for name in ["builds", "cache-mounts"] {
        let dir = data_dir.join(name);
        let marked = std::fs::create_dir_all(&dir).and_then(|()| kiln_snapshotter::fsx::mark_top_directory(&dir));
        if let Err(e) = marked {
            tracing::debug!(dir = %dir.display(), error = %e, "left without the top-directory flag");
        }
    }
}

/// Removes what requests and probes of an earlier run left (a killed
/// server leaves its build workspaces; a killed probe its `doctor-*`
/// scratch): nothing runs yet, so all of it is garbage.
fn clean_scratch(data_dir: &std::path::Path) {
    let builds = std::fs::read_dir(data_dir.join("builds")).into_iter().flatten().flatten();
    let doctor = std::fs::read_dir(data_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("doctor-"));
    for entry in builds.chain(doctor) {
        if let Err(e) = std::fs::remove_dir_all(entry.path()) {
            tracing::warn!(path = %entry.path().display(), error = %e, "stale scratch left in place");
        }
    }
}

impl Solver {
    /// Opens the stores under the data dir.
    pub fn open(cfg: SolverConfig, registry: Arc<RegistryClient>) -> Result<Self, String> {
        let store = ContentStore::at(cfg.data_dir.join("content")).map_err(|e| e.to_string())?;
        store.clean_ingest().map_err(|e| e.to_string())?;
        let snapshots = Snapshots::open(cfg.data_dir.join("snapshots")).map_err(|e| e.to_string())?;
        snapshots.clean_active().map_err(|e| e.to_string())?;
        let cache = CacheIndex::open(&cfg.data_dir.join("cache.redb")).map_err(|e| e.to_string())?;
        let orphans = kiln_runtime::step::kill_orphans(&cfg.data_dir.join("run"));
        if orphans > 0 {
            tracing::warn!(orphans, "killed steps left running by a previous server");
        }
        let _ = std::fs::remove_dir_all(cfg.data_dir.join("run"));
        clean_scratch(&cfg.data_dir);
        spread_scratch_dirs(&cfg.data_dir);
        let solver = Self {
            store,
            snapshots,
            cache,
            registry,
            http: http::client(cfg.networks.policy())?,
            cfg,
            gc_lock: tokio::sync::RwLock::new(()),
            step_locks: crate::keylock::KeyLocks::default(),
            run_slots: tokio::sync::Semaphore::new(step_slots().1),
            last_gc: std::sync::Mutex::new(Instant::now()),
        };
        let report = solver.collect_garbage(solver.cfg.cache_budget)?;
        tracing::info!(?report, "start-up garbage collection");
        Ok(solver)
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
    pub fn cache_entries(&self) -> Result<Vec<CacheEntry>, String> {
        let mut steps = self.cache.steps().map_err(|e| e.to_string())?;
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

    /// Collects garbage down to `budget` bytes now, once no build runs
    /// (`kiln cache prune`).
    pub async fn prune(self: &Arc<Self>, budget: u64) -> Result<GcReport, String> {
        let _exclusive = self.maintenance_lock().await?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.collect_garbage(Some(budget))).await.map_err(|e| e.to_string())?
    }

    /// The GC lock for maintenance, taken only at a moment when no build
    /// holds it: polled rather than queued for, so a waiting prune or
    /// check never makes a new build wait behind it (a queued writer would
    /// hold back every later reader). Gives up after [`MAINTENANCE_WAIT`].
    pub(crate) async fn maintenance_lock(&self) -> Result<tokio::sync::RwLockWriteGuard<'_, ()>, String> {
        let deadline = Instant::now() + MAINTENANCE_WAIT;
        loop {
            if let Ok(guard) = self.gc_lock.try_write() {
                return Ok(guard);
            }
            if Instant::now() >= deadline {
                return Err(format!("builds kept running for {} s: try again later", MAINTENANCE_WAIT.as_secs()));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Held by a build from its first step to its push, so garbage
    /// collection never removes what the build uses.
    pub async fn build_guard(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.gc_lock.read().await
    }

    /// After a build: collects garbage when the last collection is older
    /// than the interval and no build is running.
    pub async fn after_build(self: &Arc<Self>) {
        {
            let mut last = self.last_gc.lock().expect("gc clock");
            if last.elapsed().as_secs() < GC_INTERVAL_SECS {
                return;
            }
            *last = Instant::now();
        }
        let Ok(_exclusive) = self.gc_lock.try_write() else { return };
        let this = self.clone();
        match tokio::task::spawn_blocking(move || this.collect_garbage(this.cfg.cache_budget)).await {
            Ok(Ok(report)) => tracing::info!(?report, "garbage collection"),
            Ok(Err(e)) => tracing::warn!(error = %e, "garbage collection failed"),
            Err(e) => tracing::warn!(error = %e, "garbage collection panicked"),
        }
    }

    /// The content store.
    pub fn store(&self) -> &ContentStore {
        &self.store
    }

    /// The registry client.
    pub fn registry(&self) -> &RegistryClient {
        &self.registry
    }

    /// Builds `input.root`: its layer chain, base first, and the chains of
    /// every step on the way.
    pub async fn solve(&self, input: &BuildInput<'_>) -> Result<Solved, SolveError> {
        let Some(root) = input.root else { return Ok(Solved::default()) };
        let def = input.definition;
        let mut keys: HashMap<NodeId, String> = HashMap::new();
        let mut results: HashMap<NodeId, Vec<LayerRecord>> = HashMap::new();
        let solved = self.solve_nodes(def, root, input, &mut keys, &mut results).await;
        let used: Vec<String> = keys.values().cloned().collect();
        if let Err(e) = self.cache.touch(&used, crate::timefmt::now_secs()) {
            tracing::warn!(error = %e, "record cache use");
        }
        solved.map_err(|e| self.explain_out_of_space(e))?;
        let steps = keys
            .iter()
            .filter(|(id, _)| !matches!(def.nodes[**id].op, Op::Source(_) | Op::Scratch))
            .map(|(id, key)| (key.clone(), results[id].clone()))
            .collect();
        Ok(Solved { layers: results.remove(&root).unwrap_or_default(), steps })
    }

    /// A failure on a (nearly) full data directory says so: the step's
    /// own error (often a helper that could not write its result) is kept
    /// and the remedy added.
    fn explain_out_of_space(&self, e: SolveError) -> SolveError {
        let free = crate::errors::free_bytes(&self.cfg.data_dir);
        let full = free.is_some_and(|f| f < 8 << 20);
        if !full && !crate::errors::is_out_of_space(&e.message) {
            return e;
        }
        let message = format!(
            "{}: no space left on device in the data directory {} ({} bytes free); free disk space or lower \
             --cache-max-size",
            e.message,
            self.cfg.data_dir.display(),
            free.unwrap_or(0)
        );
        SolveError { kind: crate::errors::ErrorKind::OutOfSpace, message, ..e }
    }

    /// Solves the ancestry of `root` wave by wave: every node whose inputs
    /// are done runs at the same time as the others of its wave, so
    /// independent stages and base image pulls overlap. A failure cancels
    /// the rest of its wave (their helpers die and their snapshots go).
    async fn solve_nodes(
        &self,
        def: &Definition,
        root: NodeId,
        input: &BuildInput<'_>,
        keys: &mut HashMap<NodeId, String>,
        results: &mut HashMap<NodeId, Vec<LayerRecord>>,
    ) -> Result<(), SolveError> {
        let own_slots = tokio::sync::Semaphore::new(step_slots().0);
        for wave in waves(def, root) {
            let done = {
                let (k, r, own) = (&*keys, &*results, &own_slots);
                let nodes = wave.iter().map(|id| self.solve_node(def, *id, input, (k, r), own));
                futures_util::future::try_join_all(nodes).await?
            };
            for (id, (key, layers)) in wave.into_iter().zip(done) {
                keys.insert(id, key);
                results.insert(id, layers);
            }
        }
        Ok(())
    }

    /// One node: its key, then the cache or a run (in one of the build's
    /// own step slots, then one of all builds').
    async fn solve_node(
        &self,
        def: &Definition,
        id: NodeId,
        input: &BuildInput<'_>,
        (keys, results): (&HashMap<NodeId, String>, &HashMap<NodeId, Vec<LayerRecord>>),
        own_slots: &tokio::sync::Semaphore,
    ) -> Result<(String, Vec<LayerRecord>), SolveError> {
        let node = &def.nodes[id];
        let parent = node.inputs.first().copied();
        let parent_key = parent.map_or("", |p| keys[&p].as_str());
        let source_keys: Vec<&str> = node.inputs.iter().skip(1).map(|i| keys[i].as_str()).collect();
        let (key, prepared) = self.key(id, &node.op, parent_key, &source_keys, input).await?;
        let _ = input.progress.send(Event::Started(id));
        let started = Instant::now();
        // One build at a time runs a given step; the others wait and hit the cache.
        let _running = self.step_locks.lock(&key).await;
        if let Some(rec) = self.cache.get_step(&key)?.filter(|r| self.usable(r)) {
            let _ = input.progress.send(Event::Cached(id));
            return Ok((key, rec.layers));
        }
        match self.import_cached(id, &key, input).await {
            Ok(Some(layers)) => {
                self.record_step(&key, node, &layers)?;
                let _ = input.progress.send(Event::Output(id, "found in the registry cache".into()));
                let _ = input.progress.send(Event::Cached(id));
                return Ok((key, layers));
            }
            Ok(None) => {}
            Err(e) => {
                let _ =
                    input.progress.send(Event::Output(id, format!("registry cache unusable, running the step: {e}")));
            }
        }
        let _own = own_slots.acquire().await.map_err(|e| SolveError::internal(id, e))?;
        let _slot = self.run_slots.acquire().await.map_err(|e| SolveError::internal(id, e))?;
        let base = parent.map(|p| results[&p].clone()).unwrap_or_default();
        let layers = match (&node.op, prepared) {
            (Op::Source(src), _) => self.pull(id, &src.digest, input).await?,
            (Op::Scratch, _) => Vec::new(),
            (Op::Exec(op), _) => {
                let sources: Vec<Vec<LayerRecord>> = node.inputs.iter().skip(1).map(|i| results[i].clone()).collect();
                self.run_exec(id, op, base, &sources, input).await?
            }
            (Op::Http(op), Prepared::Download(d)) => self.run_http(id, op, d).await?,
            (Op::Git(op), Prepared::Commit(c)) => self.run_git(id, op, &c, input).await?,
            (Op::File(_), Prepared::Plan(mut plan)) => {
                for action in &mut plan {
                    if let fileop::PlannedAction::Copy { from_input: Some(i), source_mounts, .. } = action {
                        let chain = top_first(&results[&node.inputs[*i]]);
                        *source_mounts = self.snapshots.view(&chain).map_err(|e| SolveError::internal(id, e))?;
                    }
                }
                self.run_file(id, plan, base, input).await?
            }
            _ => return Err(SolveError::internal(id, "op and prepared state disagree")),
        };
        self.record_step(&key, node, &layers)?;
        let _ = input.progress.send(Event::Done(id, started.elapsed().as_secs_f64()));
        Ok((key, layers))
    }

    /// Records a step's layers under its key, with its instruction.
    fn record_step(&self, key: &str, node: &crate::graph::Node, layers: &[LayerRecord]) -> Result<(), SolveError> {
        let description = node.source.as_ref().map(|l| l.text.clone()).unwrap_or_default();
        Ok(self.cache.put_step(key, &StepRecord { layers: layers.to_vec(), description })?)
    }

    /// The op's cache key, and what computing it prepared for running it.
    async fn key(
        &self,
        id: NodeId,
        op: &Op,
        parent_key: &str,
        source_keys: &[&str],
        input: &BuildInput<'_>,
    ) -> Result<(String, Prepared), SolveError> {
        match op {
            Op::Http(h) => self.http_key(id, h).await.map(|(k, d)| (k, Prepared::Download(d))),
            Op::Git(g) => self.git_key(id, g, input).await.map(|(k, c)| (k, Prepared::Commit(c))),
            _ => {
                let (key, plan) = keys::cache_key(op, parent_key, source_keys, input.context)
                    .await
                    .map_err(|e| SolveError::new(Some(id), ErrorKind::InvalidArgument, e))?;
                // What a cache mount held went into the layer: the layer is
                // the tenant's, like the cache.
                let key = match keys::uses_cache_mounts(op) {
                    true => keys::scoped_to_tenant(&key, input.tenant),
                    false => key,
                };
                Ok((key, plan.map_or(Prepared::Nothing, Prepared::Plan)))
            }
        }
    }

    fn usable(&self, rec: &StepRecord) -> bool {
        rec.layers
            .iter()
            .all(|l| self.snapshots.exists(&l.snapshot) && matches!(self.store.size_of(&l.digest), Ok(Some(_))))
    }

    async fn pull(&self, id: NodeId, digest: &Digest, input: &BuildInput<'_>) -> Result<Vec<LayerRecord>, SolveError> {
        let (reference, resolved) = input
            .bases
            .get(digest)
            .ok_or_else(|| SolveError::internal(id, format!("base image {digest} was not resolved")))?;
        let config: crate::graph::ImageConfig = serde_json::from_slice(&resolved.config).map_err(|e| {
            SolveError::new(Some(id), ErrorKind::Unavailable, format!("{reference}: bad image config: {e}"))
        })?;
        let diff_ids = &config.rootfs.diff_ids;
        if diff_ids.len() != resolved.manifest.layers.len() {
            return Err(SolveError::new(
                Some(id),
                ErrorKind::Unavailable,
                format!("{reference}: config and manifest disagree on layers"),
            ));
        }
        // Every layer downloads and unpacks at the same time as the others
        // (each into its own snapshot), as containerd's unpacker does.
        let layers = resolved.manifest.layers.iter().zip(diff_ids);
        futures_util::future::try_join_all(
            layers.map(|(desc, diff_id)| self.pull_layer(id, reference, desc, diff_id, input)),
        )
        .await
    }

    /// Downloads one base layer (once per digest across builds) and unpacks it.
    async fn pull_layer(
        &self,
        id: NodeId,
        reference: &Reference,
        desc: &crate::registry::Descriptor,
        diff_id: &str,
        input: &BuildInput<'_>,
    ) -> Result<LayerRecord, SolveError> {
        let diff_id = Digest::parse(diff_id).map_err(|e| SolveError::internal(id, e))?;
        let pulled = self
            .registry
            .fetch_blob(reference, desc, &self.store)
            .await
            .map_err(|e| SolveError::new(Some(id), ErrorKind::from(&e), e.to_string()))?;
        let _ = input.progress.send(Event::Pulled(id, pulled));
        let blob = Digest::parse(&desc.digest).map_err(|e| SolveError::internal(id, e))?;
        let snapshot = self.unpack(id, &blob, &diff_id, input.progress).await?;
        Ok(LayerRecord {
            snapshot,
            digest: blob,
            diff_id,
            size: desc.size,
            media_type: crate::registry::MediaType::oci_layer(&desc.media_type).to_string(),
            created: 0,
            origin: Some(format!("{}/{}", reference.registry, reference.repository)),
        })
    }

    async fn unpack(
        &self,
        id: NodeId,
        blob: &Digest,
        diff_id: &Digest,
        progress: &Progress,
    ) -> Result<kiln_snapshotter::SnapshotId, SolveError> {
        if let Some(s) = self.cache.get_unpacked(diff_id)?.filter(|s| self.snapshots.exists(s)) {
            return Ok(s);
        }
        let snap = self.snapshots.prepare_empty().map_err(|e| SolveError::internal(id, e))?;
        let (store, snapshots, s) = (self.store.clone(), self.snapshots.clone(), snap.clone());
        let blob = blob.clone();
        let applied = tokio::task::spawn_blocking(move || {
            let reader = store.reader(&blob)?;
            kiln_snapshotter::apply::apply_layer(reader, &snapshots.fs_path(&s))
        })
        .await
        .map_err(|e| SolveError::internal(id, e))?;
        let failure = match applied {
            Err(e) => Some(format!("unpack layer {diff_id}: {e}")),
            Ok(stats) if stats.diff_id != *diff_id => Some(format!(
                "layer {diff_id} does not match the image config (its content hashes to {})",
                stats.diff_id
            )),
            Ok(stats) => {
                if stats.skipped_devices > 0 {
                    let line = format!(
                        "layer {diff_id}: skipped {} device node(s), which cannot be created in a user namespace",
                        stats.skipped_devices
                    );
                    let _ = progress.send(Event::Output(id, line));
                }
                None
            }
        };
        if let Some(message) = failure {
            let _ = self.snapshots.remove(&snap);
            return Err(SolveError::new(Some(id), ErrorKind::Unavailable, message));
        }
        self.snapshots.commit(&snap).map_err(|e| SolveError::internal(id, e))?;
        self.cache.put_unpacked(diff_id, &snap)?;
        Ok(snap)
    }
}

/// The ancestry of `root` in waves: a node's wave is one more than the
/// latest wave among its inputs.
fn waves(def: &Definition, root: NodeId) -> Vec<Vec<NodeId>> {
    let mut depth: HashMap<NodeId, usize> = HashMap::new();
    let mut out: Vec<Vec<NodeId>> = Vec::new();
    for id in def.ancestry(root) {
        let d = def.nodes[id].inputs.iter().map(|i| depth[i] + 1).max().unwrap_or(0);
        depth.insert(id, d);
        if out.len() <= d {
            out.resize(d + 1, Vec::new());
        }
        out[d].push(id);
    }
    out
}

/// A layer chain's snapshots, topmost first (overlay lowerdir order).
fn top_first(layers: &[LayerRecord]) -> Vec<kiln_snapshotter::SnapshotId> {
    layers.iter().rev().map(|l| l.snapshot.clone()).collect()
}
