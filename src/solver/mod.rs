//! Executes an op graph: a versioned cache key per op, cache hits reuse
//! snapshots and layers, misses pull (Source), run a container (Exec) or
//! apply file actions (File) and diff the result into a layer.

mod cachemount;
mod epoch;
mod exec;
mod git;
mod http;
mod import;
mod keys;
pub mod mountsync;
mod network;
mod skeleton;

pub use http::MAX_DOWNLOAD_BYTES;
pub use keys::{cache_key, CACHE_KEY_VERSION};

use crate::errors::ErrorKind;
use crate::graph::{Definition, NodeId, Op};
use crate::registry::{Reference, Resolved};
use crate::worker::fileop::PlannedAction;
use crate::worker::regcache::Selection;
use crate::worker::{LayerRecord, StepRecord, Worker, WorkerError};
use kiln_snapshotter::Digest;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Progress reported while solving.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A step started.
    Started(NodeId),
    /// A step was satisfied from the cache.
    Cached(NodeId),
    /// A step the cache did not answer got its run slots and starts
    /// working (the time since [`Event::Started`] was spent waiting).
    Running(NodeId),
    /// A step finished after this many seconds.
    Done(NodeId, f64),
    /// A line of a step's output.
    Output(NodeId, String),
    /// Compressed bytes downloaded for a step.
    Pulled(NodeId, u64),
    /// Something a step's network did.
    Egress(NodeId, crate::egress::EgressEvent),
    /// A remote source resolved to content: its URL and the content's
    /// digest (`sha256:…`) or commit (`git:<id>`), for provenance.
    Resolved(NodeId, String, String),
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

    /// A worker failure in a step: its kind (a full disk included) comes
    /// from the error's type.
    fn worker(node: NodeId, e: WorkerError) -> Self {
        Self::new(Some(node), e.kind(), e.to_string())
    }
}

impl From<crate::worker::CacheError> for SolveError {
    fn from(e: crate::worker::CacheError) -> Self {
        Self::new(None, ErrorKind::Internal, e.to_string())
    }
}

/// Static solver settings.
#[derive(Clone)]
pub struct SolverConfig {
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
    pub registry_cache: Option<&'a crate::worker::regcache::RegistryCache>,
    /// Whose build this is: cache mounts and the keys of the steps that
    /// use them are scoped to it (see [`crate::tenant`]).
    pub tenant: &'a str,
    /// Cache mounts kept in the registry (`--cache-mount-export`).
    pub mount_sync: Option<&'a mountsync::MountSync>,
    /// The build's own `SOURCE_DATE_EPOCH` when it differs from the
    /// server's: new files' mtimes are clamped to it, and it is part of
    /// every key of a step that makes a layer.
    pub epoch: Option<i64>,
}

/// A solved build.
#[derive(Debug, Clone, Default)]
pub struct Solved {
    /// The root's layer chain, base first.
    pub layers: Vec<LayerRecord>,
    /// Every step that produced layers (not base images), by cache key.
    pub steps: Vec<(String, Vec<LayerRecord>)>,
    /// The content keys of what steps read from other stages.
    pub selections: Vec<Selection>,
}

/// The solver, shared by all builds of a server: it keys, schedules and
/// dedupes steps; its worker stores and runs them.
pub struct Solver {
    worker: Arc<Worker>,
    http: reqwest::Client,
    cfg: SolverConfig,
    /// Per cache key: held while a build runs that step.
    step_locks: crate::keylock::KeyLocks,
    /// Bounds steps running at once across all builds (see [`step_slots`]).
    run_slots: tokio::sync::Semaphore,
}

/// What computing a key already produced for running the op.
enum Prepared {
    /// Nothing to carry over.
    Nothing,
    /// File actions with expanded sources.
    Plan(Vec<PlannedAction>),
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

impl Solver {
    /// A solver over `worker`.
    pub fn new(worker: Arc<Worker>, cfg: SolverConfig) -> Result<Self, SolveError> {
        let http = http::client(cfg.networks.policy())
            .map_err(|e| SolveError::new(None, ErrorKind::Internal, format!("http client: {e}")))?;
        let run_slots = tokio::sync::Semaphore::new(step_slots().1);
        Ok(Self { worker, http, cfg, step_locks: Default::default(), run_slots })
    }

    /// The worker.
    pub fn worker(&self) -> &Arc<Worker> {
        &self.worker
    }

    /// Builds `input.root`: its layer chain, base first, and the chains of
    /// every step on the way.
    pub async fn solve(&self, input: &BuildInput<'_>) -> Result<Solved, SolveError> {
        let Some(root) = input.root else { return Ok(Solved::default()) };
        let def = input.definition;
        let mut keys: HashMap<NodeId, String> = HashMap::new();
        let mut results: HashMap<NodeId, Vec<LayerRecord>> = HashMap::new();
        let selections = std::sync::Mutex::new(Vec::new());
        let solved = self.solve_nodes(def, root, input, (&mut keys, &mut results), &selections).await;
        let used: Vec<String> = keys.values().cloned().collect();
        if let Err(e) = self.worker.cache().touch(&used, crate::timefmt::now_secs()) {
            tracing::warn!(error = %e, "record cache use");
        }
        solved.map_err(|e| self.explain_out_of_space(e))?;
        let steps = keys
            .iter()
            .filter(|(id, _)| !matches!(def.nodes[**id].op, Op::Source(_) | Op::Scratch))
            .map(|(id, key)| (key.clone(), results[id].clone()))
            .collect();
        let selections = selections.into_inner().unwrap_or_else(|p| p.into_inner());
        Ok(Solved { layers: results.remove(&root).unwrap_or_default(), steps, selections })
    }

    /// A failure on a (nearly) full data directory says so: the step's
    /// own error (often a helper that could not write its result, which
    /// reaches here as text) is kept and the remedy added. A full disk is
    /// known from the error's kind or from the free space left.
    fn explain_out_of_space(&self, e: SolveError) -> SolveError {
        let data_dir = self.worker.data_dir();
        let free = crate::errors::free_bytes(data_dir);
        if e.kind != ErrorKind::OutOfSpace && !self.data_dir_full() {
            return e;
        }
        let message = format!(
            "{}: no space left on device in the data directory {} ({} bytes free); free disk space or lower \
             --cache-max-size",
            e.message,
            data_dir.display(),
            free.unwrap_or(0)
        );
        SolveError { kind: crate::errors::ErrorKind::OutOfSpace, message, ..e }
    }

    /// Whether the data directory's disk is (nearly) full.
    fn data_dir_full(&self) -> bool {
        crate::errors::free_bytes(self.worker.data_dir()).is_some_and(|f| f < 8 << 20)
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
        (keys, results): (&mut HashMap<NodeId, String>, &mut HashMap<NodeId, Vec<LayerRecord>>),
        selections: &std::sync::Mutex<Vec<Selection>>,
    ) -> Result<(), SolveError> {
        let own_slots = tokio::sync::Semaphore::new(step_slots().0);
        for wave in waves(def, root) {
            let done = {
                let (k, r, own) = (&*keys, &*results, &own_slots);
                let nodes = wave.iter().map(|id| self.solve_node(def, *id, input, (k, r), own, selections));
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
        selections: &std::sync::Mutex<Vec<Selection>>,
    ) -> Result<(String, Vec<LayerRecord>), SolveError> {
        let node = &def.nodes[id];
        let parent = node.inputs.first().copied();
        let parent_key = parent.map_or("", |p| keys[&p].as_str());
        let source_keys = self.input_keys(id, def, (keys, results), input, selections).await?;
        let source_keys: Vec<&str> = source_keys.iter().map(String::as_str).collect();
        let (key, prepared) = self.key(id, &node.op, parent_key, &source_keys, input).await?;
        let _ = input.progress.send(Event::Started(id));
        let started = Instant::now();
        // One build at a time runs a given step; the others wait and hit the cache.
        let _running = self.step_locks.lock(&key).await;
        if let Some(rec) = self.worker.cache().get_step(&key)?.filter(|r| self.worker.usable(r)) {
            let _ = input.progress.send(Event::Cached(id));
            return Ok((key, rec.layers));
        }
        if let Some(layers) = self.import_cached(&key, input) {
            self.record_step(&key, node, &layers)?;
            let _ = input.progress.send(Event::Output(id, "found in the registry cache".into()));
            let _ = input.progress.send(Event::Cached(id));
            return Ok((key, layers));
        }
        let _own = own_slots.acquire().await.map_err(|e| SolveError::internal(id, e))?;
        let _slot = self.run_slots.acquire().await.map_err(|e| SolveError::internal(id, e))?;
        let _ = input.progress.send(Event::Running(id));
        let mut skeleton = None;
        let base = match (parent, &node.op, &prepared) {
            // `COPY --link` makes its layer on nothing: the parent stays lazy.
            (Some(p), Op::File(f), _) if f.link => results[&p].clone(),
            (Some(p), Op::File(_), Prepared::Plan(plan)) => {
                skeleton = self.skeleton(id, plan, &results[&p], input).await;
                match skeleton {
                    Some(_) => results[&p].clone(),
                    None => self.materialize(id, &results[&p], input).await?,
                }
            }
            (Some(p), Op::Exec(_) | Op::File(_), _) => self.materialize(id, &results[&p], input).await?,
            (Some(p), _, _) => results[&p].clone(),
            (None, _, _) => Vec::new(),
        };
        let layers = match (&node.op, prepared) {
            (Op::Source(src), _) => self.pull(id, &src.digest, input)?,
            (Op::Scratch, _) => Vec::new(),
            (Op::Exec(op), _) => {
                let mut sources: Vec<Vec<LayerRecord>> = Vec::new();
                for i in node.inputs.iter().skip(1) {
                    sources.push(self.materialize(id, &results[i], input).await?);
                }
                self.run_exec(id, op, base, &sources, input).await?
            }
            (Op::Http(op), Prepared::Download(d)) => self.run_http(id, op, d, input.epoch).await?,
            (Op::Git(op), Prepared::Commit(c)) => self.run_git(id, op, &c, input).await?,
            (Op::File(file), Prepared::Plan(mut plan)) => {
                for action in &mut plan {
                    if let PlannedAction::Copy { from_input: Some(i), source_mounts, .. } = action {
                        let chain = self.materialize(id, &results[&node.inputs[*i]], input).await?;
                        *source_mounts = self.worker.view(&chain).map_err(|e| SolveError::worker(id, e))?;
                    }
                }
                self.run_file(id, plan, base, (file.link, skeleton), input).await?
            }
            _ => return Err(SolveError::internal(id, "op and prepared state disagree")),
        };
        self.record_step(&key, node, &layers)?;
        let _ = input.progress.send(Event::Done(id, started.elapsed().as_secs_f64()));
        Ok((key, layers))
    }

    /// The keys of a node's inputs after the parent. A stage read by path
    /// (`COPY --from`, a bind mount) counts by the content of those paths,
    /// as BuildKit keys it, so a change elsewhere in the stage keeps the
    /// step cached; an image counts by its digest, and a stage read in a
    /// way the content cannot key (a wildcard, a symlink on the way) by
    /// its own key.
    async fn input_keys(
        &self,
        id: NodeId,
        def: &Definition,
        (keys, results): (&HashMap<NodeId, String>, &HashMap<NodeId, Vec<LayerRecord>>),
        build: &BuildInput<'_>,
        selections: &std::sync::Mutex<Vec<Selection>>,
    ) -> Result<Vec<String>, SolveError> {
        let node = &def.nodes[id];
        let mut out = Vec::new();
        for (index, input) in node.inputs.iter().enumerate().skip(1) {
            let paths = keys::selected_paths(&node.op, index);
            let by_content = match def.nodes[*input].op {
                // Images and downloads are keyed by content already.
                Op::Source(_) | Op::Http(_) | Op::Git(_) => None,
                _ if paths.is_empty() => None,
                _ => {
                    let stage = &keys[input];
                    let key = self.selection_key(id, stage, &results[input], &paths, build).await?;
                    if let Some(key) = &key {
                        let sel = Selection { stage: stage.clone(), paths: paths.clone(), key: key.clone() };
                        selections.lock().unwrap_or_else(|p| p.into_inner()).push(sel);
                    }
                    key
                }
            };
            out.push(by_content.unwrap_or_else(|| keys[input].clone()));
        }
        Ok(out)
    }

    /// The content key of `paths` in a stage: hashed from its layers when
    /// they are here, else what the registry cache recorded for the stage,
    /// else hashed after fetching them.
    async fn selection_key(
        &self,
        id: NodeId,
        stage: &str,
        chain: &[LayerRecord],
        paths: &[String],
        input: &BuildInput<'_>,
    ) -> Result<Option<String>, SolveError> {
        let lazy = chain.iter().any(|l| l.snapshot.is_none());
        if let Some(known) = input.registry_cache.and_then(|c| c.content_key(stage, paths)).filter(|_| lazy) {
            return Ok(Some(known.to_string()));
        }
        let chain = self.materialize(id, chain, input).await?;
        self.worker.content_key(&chain, paths).await.map_err(|e| SolveError::worker(id, e))
    }

    /// Records a step's layers under its key, with its instruction.
    fn record_step(&self, key: &str, node: &crate::graph::Node, layers: &[LayerRecord]) -> Result<(), SolveError> {
        let description = node.source.as_ref().map(|l| l.text.clone()).unwrap_or_default();
        Ok(self.worker.cache().put_step(key, &StepRecord { layers: layers.to_vec(), description })?)
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
            Op::Http(h) => {
                let (key, download, digest) = self.http_key(id, h).await?;
                let _ = input.progress.send(Event::Resolved(id, h.url.clone(), digest));
                Ok((keys::dated(&key, input.epoch), Prepared::Download(download)))
            }
            Op::Git(g) => {
                let (key, commit) = self.git_key(id, g, input).await?;
                let uri = match &g.reference {
                    Some(r) => format!("{}#{r}", g.remote),
                    None => g.remote.clone(),
                };
                let _ = input.progress.send(Event::Resolved(id, uri, format!("git:{commit}")));
                Ok((keys::dated(&key, input.epoch), Prepared::Commit(commit)))
            }
            _ => {
                let (key, plan) = keys::cache_key(op, parent_key, source_keys, input.context)
                    .await
                    .map_err(|e| SolveError::new(Some(id), ErrorKind::InvalidArgument, e.to_string()))?;
                // What a cache mount held went into the layer: the layer is
                // the tenant's, like the cache.
                let key = match keys::uses_cache_mounts(op) {
                    true => keys::scoped_to_tenant(&key, input.tenant),
                    false => key,
                };
                let key = match op {
                    Op::Source(_) | Op::Scratch => key,
                    _ => keys::dated(&key, input.epoch),
                };
                Ok((key, plan.map_or(Prepared::Nothing, Prepared::Plan)))
            }
        }
    }

    /// A base image's layers, lazy: known by their digests, fetched from
    /// the image's repository only when a step reads them.
    fn pull(&self, id: NodeId, digest: &Digest, input: &BuildInput<'_>) -> Result<Vec<LayerRecord>, SolveError> {
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
        let layers = resolved.manifest.layers.iter().zip(diff_ids);
        layers
            .map(|(desc, diff_id)| {
                Ok(LayerRecord {
                    snapshot: None,
                    digest: Digest::parse(&desc.digest).map_err(|e| SolveError::internal(id, e))?,
                    diff_id: Digest::parse(diff_id).map_err(|e| SolveError::internal(id, e))?,
                    size: desc.size,
                    media_type: crate::registry::MediaType::oci_layer(&desc.media_type).to_string(),
                    created: 0,
                    origin: Some(format!("{}/{}", reference.registry, reference.repository)),
                })
            })
            .collect()
    }

    /// `chain` with its lazy layers fetched and unpacked (each layer at
    /// the same time as the others, as containerd's unpacker does), the
    /// bytes and left-out device nodes reported for step `id`.
    async fn materialize(
        &self,
        id: NodeId,
        chain: &[LayerRecord],
        input: &BuildInput<'_>,
    ) -> Result<Vec<LayerRecord>, SolveError> {
        if chain.iter().all(|l| l.snapshot.is_some()) {
            return Ok(chain.to_vec());
        }
        let fetched = self.worker.materialize(chain).await.map_err(|e| SolveError::worker(id, e))?;
        if fetched.pulled > 0 {
            let _ = input.progress.send(Event::Pulled(id, fetched.pulled));
        }
        if fetched.skipped_devices > 0 {
            let line = format!(
                "skipped {} device node(s) of the layers below, which cannot be created in a user namespace",
                fetched.skipped_devices
            );
            let _ = input.progress.send(Event::Output(id, line));
        }
        Ok(fetched.layers)
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
