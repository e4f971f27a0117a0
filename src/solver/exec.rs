//! Running Exec and File ops: each runs through the [`super::runner`] on
//! an overlay of the parent's snapshots plus a new upper snapshot, which is
//! then diffed into a layer and committed as the step's snapshot.

use super::cachemount::{self, CacheLease, CacheSpec};
use super::{BuildInput, Event, LayerRecord, SolveError, Solver};
use crate::errors::ErrorKind;
use crate::graph::{ExecOp, NodeId, RunMount};
use crate::platform::binfmt::{self, Support};
use crate::worker::fileop::{FileOpRequest, PlannedAction};
use crate::worker::runner::{RunError, RunStep};
use crate::worker::skeleton::Skeleton;
use crate::worker::Uncommitted;
use kiln_runtime::mounts::{BindRoot, StepMount};
use kiln_runtime::step::{SecretFile, StepNetwork, StepRequest};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Output lines quoted in a failure message.
const TAIL_LINES: usize = 10;
/// Most output one step may add to the build log.
pub const MAX_STEP_OUTPUT: usize = 4 << 20;

impl Solver {
    pub(super) async fn run_exec(
        &self,
        id: NodeId,
        op: &ExecOp,
        base: Vec<LayerRecord>,
        sources: &[Vec<LayerRecord>],
        input: &BuildInput<'_>,
    ) -> Result<Vec<LayerRecord>, SolveError> {
        match binfmt::check(&op.platform) {
            Ok(Support::Native) => {}
            Ok(Support::Emulated(handler)) => {
                let note = format!("{} binaries run under emulation (binfmt_misc handler {handler})", op.platform);
                let _ = input.progress.send(Event::Output(id, note));
            }
            Err(e) => return Err(SolveError::new(Some(id), ErrorKind::FailedPrecondition, e.to_string())),
        }
        let (upper, overlay) = self.worker.prepare(&base).map_err(|e| SolveError::worker(id, e))?;
        let bundle = upper.bundle().to_path_buf();
        let mut env = op.env.clone();
        env.extend(op.proxy_env.iter().cloned());
        let prepared = match prepare_secrets(&bundle, op, input.secrets, &mut env) {
            Ok(files) => self.step_mounts(id, op, sources, input, &bundle).await.map(|m| (files, m)),
            Err(e) => Err(e),
        };
        let (secret_files, (mounts, _leases)) = match prepared {
            Ok(p) => p,
            Err(e) => return Err(SolveError::new(Some(id), e.kind(), e.to_string())),
        };
        let request = StepRequest {
            id: format!("kiln-{}", upper.id().as_str()),
            rootfs: overlay,
            bundle: bundle.clone(),
            state_root: self.worker.data_dir().join("run/state"),
            args: op.args.clone(),
            env,
            secret_files,
            cwd: op.cwd.clone(),
            user: op.user.clone(),
            hostname: op.hostname.clone().unwrap_or_else(|| crate::graph::DEFAULT_HOSTNAME.into()),
            mounts,
            network: StepNetwork::Host,
            limits: self.cfg.step_limits,
        };
        let job = RunStep { request, mode: op.network, egress: super::network::reporter(id, input.progress) };
        let sink = OutputSink::new(id, input);
        let outcome = self.worker.runner().run_step(job, &|line| sink.emit(line)).await;
        let result = outcome.map_err(|e| run_failure(id, e, &sink)).and_then(|r| match (r.error, r.exit_code) {
            (Some(e), _) => Err(SolveError::new(Some(id), ErrorKind::FailedPrecondition, e)),
            (None, 0) => Ok(()),
            (None, code) => Err(SolveError::new(
                Some(id),
                ErrorKind::FailedPrecondition,
                exit_message(&op.args, code, &sink.tail()),
            )),
        });
        self.finish(id, upper, base, result, input.epoch).await
    }

    /// Runs file actions on `base` — or, linked (`COPY --link`), on an
    /// empty filesystem whose layer then goes on top of `base`.
    pub(super) async fn run_file(
        &self,
        id: NodeId,
        actions: Vec<PlannedAction>,
        base: Vec<LayerRecord>,
        (linked, skeleton): (bool, Option<Skeleton>),
        input: &BuildInput<'_>,
    ) -> Result<Vec<LayerRecord>, SolveError> {
        let lower: &[LayerRecord] = if linked || skeleton.is_some() { &[] } else { &base };
        let (upper, mut overlay) = self.worker.prepare(lower).map_err(|e| SolveError::worker(id, e))?;
        let bundle = upper.bundle().to_path_buf();
        if let Some(skeleton) = skeleton {
            let dir = bundle.join("skeleton");
            let made = dir.clone();
            let created = tokio::task::spawn_blocking(move || skeleton.create(&made)).await;
            created.map_err(|e| SolveError::internal(id, e))?.map_err(|e| SolveError::internal(id, e))?;
            overlay = super::skeleton::over_skeleton(overlay, &dir);
        }
        let req = FileOpRequest {
            rootfs: overlay,
            mountpoint: bundle.join("rootfs"),
            context: input.context.to_path_buf(),
            actions,
            max_archive_bytes: self.cfg.max_archive_bytes,
        };
        let sink = OutputSink::new(id, input);
        let outcome = self.worker.runner().run_file_op(req, &|line| sink.emit(line)).await;
        let result = outcome.map_err(|e| run_failure(id, e, &sink)).and_then(|r| match r.error {
            Some(e) => Err(SolveError::new(Some(id), ErrorKind::InvalidArgument, e)),
            None => Ok(()),
        });
        self.finish(id, upper, base, result, input.epoch).await
    }

    /// The step's `--mount`s for the helper, with the cache leases that
    /// must be held until it finishes.
    async fn step_mounts(
        &self,
        node: NodeId,
        op: &ExecOp,
        sources: &[Vec<LayerRecord>],
        input: &BuildInput<'_>,
        bundle: &Path,
    ) -> Result<(Vec<StepMount>, Vec<CacheLease>), StepSetupError> {
        let (mut mounts, mut leases) = (Vec::new(), Vec::new());
        for (n, m) in op.mounts.iter().enumerate() {
            let mount = match m {
                RunMount::Tmpfs { target, size } => StepMount::Tmpfs { target: target.clone(), size: *size },
                RunMount::Cache { target, id, sharing, uid, gid, mode, readonly } => {
                    let (tenant, sharing) = (input.tenant, *sharing);
                    let spec = CacheSpec { tenant, id, sharing, uid: *uid, gid: *gid, mode: *mode };
                    let private = bundle.join(format!("private-cache-{n}"));
                    let root = self.worker.data_dir().join("cache-mounts");
                    if let Some(sync) = input.mount_sync {
                        self.import_cache_mount(node, sync, &root, &spec, input).await;
                    }
                    let lease = cachemount::lease(&root, &spec, &private).await?;
                    let root = BindRoot::Dir(lease.dir.clone());
                    leases.push(lease);
                    let (target, readonly) = (target.clone(), *readonly);
                    StepMount::Bind { root, source: "/".into(), target, readonly, copy_on_write: false }
                }
                RunMount::Bind { target, source, from_input, readwrite } => {
                    let root = match from_input {
                        None => BindRoot::Dir(input.context.to_path_buf()),
                        Some(i) => BindRoot::Chain(self.worker.view(&sources[*i - 1])?),
                    };
                    let (source, target) = (source.clone(), target.clone());
                    StepMount::Bind { root, source, target, readonly: !readwrite, copy_on_write: *readwrite }
                }
            };
            mounts.push(mount);
        }
        Ok((mounts, leases))
    }

    /// Commits the upper as a layer on `base` when the step succeeded;
    /// drops it (removing it) when it failed. `epoch` is the build's own
    /// `SOURCE_DATE_EPOCH` (new files' mtimes are clamped to it). A failure while the data
    /// directory is full is out of space: the helper reports its own
    /// write errors only as text, so the disk is looked at now, while the
    /// step's upper still holds what filled it.
    pub(super) async fn finish(
        &self,
        id: NodeId,
        upper: Uncommitted,
        base: Vec<LayerRecord>,
        result: Result<(), SolveError>,
        epoch: Option<i64>,
    ) -> Result<Vec<LayerRecord>, SolveError> {
        if let Err(mut e) = result {
            if self.data_dir_full() {
                e.kind = ErrorKind::OutOfSpace;
            }
            return Err(e);
        }
        self.worker.commit_layer(upper, base, epoch).await.map_err(|e| SolveError::worker(id, e))
    }
}

/// Where a helper's output goes: the build log (up to the per-step budget,
/// then one notice) and the tail kept for a failure message.
#[derive(Clone)]
struct OutputSink {
    id: NodeId,
    progress: super::Progress,
    tail: Arc<Mutex<VecDeque<String>>>,
    logged: Arc<AtomicUsize>,
}

impl OutputSink {
    fn new(id: NodeId, input: &BuildInput<'_>) -> Self {
        OutputSink { id, progress: input.progress.clone(), tail: Default::default(), logged: Default::default() }
    }

    /// The last output lines.
    fn tail(&self) -> Vec<String> {
        self.tail.lock().expect("tail lock").iter().cloned().collect()
    }

    fn emit(&self, mut line: String) {
        {
            let mut t = self.tail.lock().expect("tail lock");
            if t.len() == TAIL_LINES {
                t.pop_front();
            }
            t.push_back(line.clone());
        }
        let before = self.logged.fetch_add(line.len() + 1, Ordering::Relaxed);
        if before + line.len() < MAX_STEP_OUTPUT {
            let _ = self.progress.send(Event::Output(self.id, line));
        } else if before < MAX_STEP_OUTPUT {
            line = format!(
                "[output truncated: the step printed more than {} MiB; the rest is not logged]",
                MAX_STEP_OUTPUT >> 20
            );
            let _ = self.progress.send(Event::Output(self.id, line));
        }
    }
}

/// Writes each provided secret into `<bundle>/secrets/` with its mode and
/// owner, and adds `env=` variables. A missing required secret is an error
/// (which names the id, never a value).
fn prepare_secrets(
    bundle: &Path,
    op: &ExecOp,
    secrets: &std::collections::BTreeMap<String, Vec<u8>>,
    env: &mut Vec<String>,
) -> Result<Vec<SecretFile>, StepSetupError> {
    use std::os::unix::fs::PermissionsExt;
    let mut files = Vec::new();
    for (n, m) in op.secrets.iter().enumerate() {
        let Some(value) = secrets.get(&m.id) else {
            if m.required {
                return Err(StepSetupError::MissingSecret(m.id.clone()));
            }
            continue;
        };
        let failed = |source| StepSetupError::Secret { id: m.id.clone(), source };
        if let Some(var) = &m.env {
            env.push(format!("{var}={}", String::from_utf8_lossy(value)));
        }
        let Some(target) = &m.target else { continue };
        let dir = bundle.join("secrets");
        std::fs::create_dir_all(&dir).map_err(failed)?;
        let source = dir.join(n.to_string());
        std::fs::write(&source, value).map_err(failed)?;
        std::os::unix::fs::chown(&source, Some(m.uid), Some(m.gid)).map_err(failed)?;
        std::fs::set_permissions(&source, std::fs::Permissions::from_mode(m.mode)).map_err(failed)?;
        files.push(SecretFile { source, target: target.clone() });
    }
    Ok(files)
}

/// Why a RUN step's mounts and secrets could not be set up.
#[derive(Debug, thiserror::Error)]
pub(super) enum StepSetupError {
    /// A required secret the request lacks.
    #[error("secret {0}: not found (required by this step; the request did not provide it)")]
    MissingSecret(String),
    /// A secret file could not be written.
    #[error("prepare secret {id:?}: {source}")]
    Secret {
        /// The secret's id (never its value).
        id: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A cache mount.
    #[error(transparent)]
    CacheMount(#[from] super::cachemount::CacheMountError),
    /// A bind mount's source chain.
    #[error(transparent)]
    Worker(#[from] crate::worker::WorkerError),
}

impl StepSetupError {
    /// A missing secret is the request's fault; the rest are the builder's
    /// (a full disk among them).
    fn kind(&self) -> ErrorKind {
        match self {
            StepSetupError::MissingSecret(_) => ErrorKind::InvalidArgument,
            StepSetupError::Worker(e) => e.kind(),
            other if crate::errors::is_disk_full(other) => ErrorKind::OutOfSpace,
            _ => ErrorKind::Internal,
        }
    }
}

/// A job that produced no result, as a build error: a timeout is the
/// step's fault; the rest are the builder's, quoted with the last output.
fn run_failure(id: NodeId, e: RunError, sink: &OutputSink) -> SolveError {
    let tail = sink.tail();
    match e {
        RunError::TimedOut(_) => SolveError::new(Some(id), ErrorKind::FailedPrecondition, e.to_string()),
        RunError::Network(_) => SolveError::new(Some(id), ErrorKind::Unavailable, e.to_string()),
        RunError::Died { .. } => SolveError::internal(id, format!("{e}: {}", tail.join("\n"))),
        RunError::Unreadable(_) => {
            let last: Vec<&str> = tail.iter().rev().take(3).rev().map(String::as_str).collect();
            SolveError::internal(id, format!("{e}: {}", last.join(" / ")))
        }
        RunError::Spawn(_) => SolveError::internal(id, e.to_string()),
    }
}

/// Longest command quoted in a failure message.
const MAX_QUOTED_COMMAND: usize = 4096;

/// BuildKit's words for a failed step (`process "/bin/sh -c …" did not
/// complete successfully: exit code: N`), then the step's last output.
fn exit_message(args: &[String], code: i32, tail: &[String]) -> String {
    let mut command = args.join(" ");
    if command.len() > MAX_QUOTED_COMMAND {
        let cut = (0..=MAX_QUOTED_COMMAND).rev().find(|&i| command.is_char_boundary(i)).unwrap_or(0);
        command.truncate(cut);
        command.push('…');
    }
    let mut msg = format!("process {} did not complete successfully: exit code: {code}", crate::gofmt::quote(&command));
    if !tail.is_empty() {
        msg.push_str("; last output: ");
        msg.push_str(&tail.join(" | "));
    }
    msg
}
