//! Running Exec and File ops: each runs in a fresh single-threaded helper
//! process (`kiln __run-step` / `kiln __file-op`) on an overlay of the
//! parent's snapshots plus a new upper snapshot, which is then diffed into
//! a layer and committed as the step's snapshot.

use super::cachemount::{self, CacheLease, CacheSpec};
use super::fileop::{FileOpRequest, PlannedAction};
use super::{BuildInput, Event, LayerRecord, SolveError, Solver};
use crate::errors::ErrorKind;
use crate::graph::{ExecOp, NetworkMode, NodeId, RunMount};
use crate::platform::binfmt::{self, Support};
use kiln_runtime::mounts::{BindRoot, StepMount};
use kiln_runtime::step::{SecretFile, StepNetwork, StepRequest, StepResult};
use kiln_snapshotter::diff::diff_upper;
use kiln_snapshotter::overlay::Mount;
use kiln_snapshotter::snapshots::Snapshotter;
use kiln_snapshotter::SnapshotId;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// Longest output line forwarded to the log.
const MAX_LINE: usize = 4096;
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
            Err(message) => return Err(SolveError::new(Some(id), ErrorKind::FailedPrecondition, message)),
        }
        let (upper, overlay) = self.prepare(id, &base)?;
        let bundle = self.bundle_dir(upper.id());
        let mut env = op.env.clone();
        env.extend(op.proxy_env.iter().cloned());
        let prepared = match prepare_secrets(&bundle, op, input.secrets, &mut env) {
            Ok(files) => self.step_mounts(op, sources, input, &bundle).await.map(|m| (files, m)),
            Err(message) => Err(message),
        };
        let (secret_files, (mounts, _leases)) = match prepared {
            Ok(p) => p,
            Err(message) => return Err(SolveError::new(Some(id), ErrorKind::InvalidArgument, message)),
        };
        let network = match op.network {
            NetworkMode::Default => match self.cfg.networks.take(super::network::reporter(id, input.progress)).await {
                Ok(n) => Some(n),
                Err(e) => {
                    let msg = format!("prepare the step's network: {e}");
                    return Err(SolveError::new(Some(id), ErrorKind::Unavailable, msg));
                }
            },
            NetworkMode::None | NetworkMode::Host => None,
        };
        let req = StepRequest {
            id: format!("kiln-{}", upper.id().as_str()),
            rootfs: overlay,
            bundle: bundle.clone(),
            state_root: self.cfg.data_dir.join("run/state"),
            args: op.args.clone(),
            env,
            secret_files,
            cwd: op.cwd.clone(),
            user: op.user.clone(),
            hostname: "kiln".into(),
            mounts,
            network: match (&network, op.network) {
                (Some(n), _) => StepNetwork::Join { netns: n.netns_fd(), userns: n.userns_fd() },
                (None, NetworkMode::None) => StepNetwork::Isolated,
                (None, _) => StepNetwork::Host,
            },
            limits: self.cfg.step_limits,
        };
        let inherit: Vec<i32> = network.iter().flat_map(|n| [n.netns_fd(), n.userns_fd()]).collect();
        let outcome = self.run_helper(id, "__run-step", &bundle, &req, input, inherit).await;
        if let Some(n) = network {
            n.close().await;
        }
        // A killed step leaves libcontainer's state behind.
        let _ = std::fs::remove_dir_all(req.state_root.join(&req.id));
        let result = outcome.and_then(|(tail, raw)| {
            let r: StepResult = serde_json::from_slice(&raw).map_err(|e| unreadable_result(id, e, &tail))?;
            match (r.error, r.exit_code) {
                (Some(e), _) => Err(SolveError::new(Some(id), ErrorKind::FailedPrecondition, e)),
                (None, 0) => Ok(()),
                (None, code) => {
                    Err(SolveError::new(Some(id), ErrorKind::FailedPrecondition, exit_message(code, &tail)))
                }
            }
        });
        self.finish(id, upper, base, result).await
    }

    pub(super) async fn run_file(
        &self,
        id: NodeId,
        actions: Vec<PlannedAction>,
        base: Vec<LayerRecord>,
        input: &BuildInput<'_>,
    ) -> Result<Vec<LayerRecord>, SolveError> {
        let (upper, overlay) = self.prepare(id, &base)?;
        let bundle = self.bundle_dir(upper.id());
        let req = FileOpRequest {
            rootfs: overlay,
            mountpoint: bundle.join("rootfs"),
            context: input.context.to_path_buf(),
            actions,
            max_archive_bytes: self.cfg.max_archive_bytes,
        };
        let outcome = self.run_helper(id, "__file-op", &bundle, &req, input, Vec::new()).await;
        let result = outcome.and_then(|(tail, raw)| {
            let r: super::fileop::FileOpResult =
                serde_json::from_slice(&raw).map_err(|e| unreadable_result(id, e, &tail))?;
            match r.error {
                Some(e) => Err(SolveError::new(Some(id), ErrorKind::InvalidArgument, e)),
                None => Ok(()),
            }
        });
        self.finish(id, upper, base, result).await
    }

    /// The step's `--mount`s for the helper, with the cache leases that
    /// must be held until it finishes.
    async fn step_mounts(
        &self,
        op: &ExecOp,
        sources: &[Vec<LayerRecord>],
        input: &BuildInput<'_>,
        bundle: &Path,
    ) -> Result<(Vec<StepMount>, Vec<CacheLease>), String> {
        let (mut mounts, mut leases) = (Vec::new(), Vec::new());
        for (n, m) in op.mounts.iter().enumerate() {
            let mount = match m {
                RunMount::Tmpfs { target, size } => StepMount::Tmpfs { target: target.clone(), size: *size },
                RunMount::Cache { target, id, sharing, uid, gid, mode, readonly } => {
                    let (tenant, sharing) = (input.tenant, *sharing);
                    let spec = CacheSpec { tenant, id, sharing, uid: *uid, gid: *gid, mode: *mode };
                    let private = bundle.join(format!("private-cache-{n}"));
                    let lease = cachemount::lease(&self.cfg.data_dir.join("cache-mounts"), &spec, &private).await?;
                    let root = BindRoot::Dir(lease.dir.clone());
                    leases.push(lease);
                    let (target, readonly) = (target.clone(), *readonly);
                    StepMount::Bind { root, source: "/".into(), target, readonly, copy_on_write: false }
                }
                RunMount::Bind { target, source, from_input, readwrite } => {
                    let root = match from_input {
                        None => BindRoot::Dir(input.context.to_path_buf()),
                        Some(i) => {
                            let chain = super::top_first(&sources[*i - 1]);
                            BindRoot::Chain(self.snapshots.view(&chain).map_err(|e| e.to_string())?)
                        }
                    };
                    let (source, target) = (source.clone(), target.clone());
                    StepMount::Bind { root, source, target, readonly: !readwrite, copy_on_write: *readwrite }
                }
            };
            mounts.push(mount);
        }
        Ok((mounts, leases))
    }

    fn prepare(&self, id: NodeId, base: &[LayerRecord]) -> Result<(Uncommitted, Vec<Mount>), SolveError> {
        let lowers = super::top_first(base);
        let upper = Snapshotter::prepare(&self.snapshots, &lowers).map_err(|e| SolveError::internal(id, e))?;
        let upper = self.uncommitted(upper);
        let mounts = self.snapshots.mounts(upper.id()).map_err(|e| SolveError::internal(id, e))?;
        Ok((upper, mounts))
    }

    /// Guards a freshly prepared snapshot until it is committed.
    pub(super) fn uncommitted(&self, id: SnapshotId) -> Uncommitted {
        let bundle = self.bundle_dir(&id);
        Uncommitted { snapshots: self.snapshots.clone(), id, bundle, committed: false }
    }

    fn bundle_dir(&self, upper: &SnapshotId) -> PathBuf {
        self.cfg.data_dir.join("run").join(upper.as_str())
    }

    /// Diffs and commits the upper on success; removes it on failure.
    pub(super) async fn finish(
        &self,
        id: NodeId,
        mut upper: Uncommitted,
        mut base: Vec<LayerRecord>,
        result: Result<(), SolveError>,
    ) -> Result<Vec<LayerRecord>, SolveError> {
        let _ = std::fs::remove_dir_all(&upper.bundle);
        result?;
        let (store, fs, opts) = (self.store.clone(), self.snapshots.fs_path(upper.id()), self.cfg.diff);
        let layer = tokio::task::spawn_blocking(move || diff_upper(&fs, &store, &opts))
            .await
            .map_err(|e| SolveError::internal(id, e))?
            .map_err(|e| SolveError::internal(id, format!("export layer: {e}")))?;
        self.snapshots.commit(upper.id()).map_err(|e| SolveError::internal(id, e))?;
        upper.committed = true;
        base.push(LayerRecord {
            snapshot: upper.id().clone(),
            digest: layer.digest,
            diff_id: layer.diff_id,
            size: layer.size,
            media_type: layer.media_type,
            created: crate::timefmt::now_secs(),
            origin: None,
        });
        Ok(base)
    }

    /// Runs a helper with `req` as JSON; streams its output as events;
    /// returns the output tail and the result file's bytes.
    async fn run_helper(
        &self,
        id: NodeId,
        verb: &str,
        bundle: &Path,
        req: &impl serde::Serialize,
        input: &BuildInput<'_>,
        inherit: Vec<i32>,
    ) -> Result<(Vec<String>, Vec<u8>), SolveError> {
        std::fs::create_dir_all(bundle).map_err(|e| SolveError::internal(id, e))?;
        let req_path = bundle.join("request.json");
        std::fs::write(&req_path, serde_json::to_vec(req).expect("request serializes"))
            .map_err(|e| SolveError::internal(id, e))?;
        let mut cmd = tokio::process::Command::new(&self.cfg.helper_exe);
        cmd.arg(verb)
            .arg(&req_path)
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .envs(std::env::var_os("KILN_LOG").map(|v| ("KILN_LOG", v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let own_pid_namespace = verb == "__run-step";
        // The helper dies with the server: started from the spawner thread,
        // its parent-death signal is not tied to a worker thread's life.
        // SAFETY: prctl, fcntl and unshare are async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                // The helper inherits these descriptors (the step's namespaces).
                for &fd in &inherit {
                    if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if own_pid_namespace && libc::unshare(libc::CLONE_NEWPID) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child =
            crate::spawner::spawn(cmd).map_err(|e| SolveError::internal(id, format!("spawn helper: {e}")))?;
        // However this ends (cancelled, timed out, done), the step's
        // processes do not outlive it.
        let _reap = own_pid_namespace.then(|| StepReaper(bundle.to_path_buf()));
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let sink = OutputSink { id, progress: input.progress.clone(), tail: tail.clone(), logged: Default::default() };
        let out = forward(child.stdout.take().expect("piped"), sink.clone());
        let err = forward(child.stderr.take().expect("piped"), sink);
        let finished = async { tokio::join!(child.wait(), out, err).0 };
        let status = match self.cfg.step_timeout {
            Some(limit) => match tokio::time::timeout(limit, finished).await {
                Ok(status) => status,
                Err(_) => {
                    // Killing the helper kills the step's whole PID namespace.
                    let _ = child.kill().await;
                    let msg = format!("the step ran longer than the {} s step timeout and was killed", limit.as_secs());
                    return Err(SolveError::new(Some(id), ErrorKind::FailedPrecondition, msg));
                }
            },
            None => finished.await,
        };
        let status = status.map_err(|e| SolveError::internal(id, format!("wait for helper: {e}")))?;
        let tail: Vec<String> = tail.lock().expect("tail lock").iter().cloned().collect();
        match std::fs::read(bundle.join("result.json")) {
            Ok(raw) => Ok((tail, raw)),
            Err(_) => Err(SolveError::internal(id, format!("helper {verb} died ({status}): {}", tail.join("\n")))),
        }
    }
}

/// Kills the recorded init of a step's PID namespace when dropped: with it
/// goes every process of the step, however the helper's wait ended.
struct StepReaper(PathBuf);

impl Drop for StepReaper {
    fn drop(&mut self) {
        kiln_runtime::step::kill_recorded(&self.0);
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

/// Reads lines from `pipe` holding at most [`MAX_LINE`] bytes of any one
/// line in memory, however long the line is.
async fn forward(pipe: impl AsyncRead + Unpin, sink: OutputSink) {
    let mut reader = BufReader::new(pipe);
    let (mut line, mut cut) = (Vec::new(), false);
    loop {
        let buf = match reader.fill_buf().await {
            Ok(b) if !b.is_empty() => b,
            _ => break,
        };
        let (chunk, done, used) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (&buf[..i], true, i + 1),
            None => (buf, false, buf.len()),
        };
        let room = MAX_LINE.saturating_sub(line.len());
        cut |= chunk.len() > room;
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        reader.consume(used);
        if done {
            sink.emit(finish_line(&mut line, &mut cut));
        }
    }
    if !line.is_empty() {
        sink.emit(finish_line(&mut line, &mut cut));
    }
}

fn finish_line(line: &mut Vec<u8>, cut: &mut bool) -> String {
    let mut text = String::from_utf8_lossy(line).into_owned();
    if *cut {
        text.push_str(" [line truncated]");
    }
    line.clear();
    *cut = false;
    text
}

/// Writes each provided secret into `<bundle>/secrets/` with its mode and
/// owner, and adds `env=` variables. A missing required secret is an error
/// (which names the id, never a value).
fn prepare_secrets(
    bundle: &Path,
    op: &ExecOp,
    secrets: &std::collections::BTreeMap<String, Vec<u8>>,
    env: &mut Vec<String>,
) -> Result<Vec<SecretFile>, String> {
    use std::os::unix::fs::PermissionsExt;
    let mut files = Vec::new();
    for (n, m) in op.secrets.iter().enumerate() {
        let Some(value) = secrets.get(&m.id) else {
            if m.required {
                return Err(format!("secret {:?} is required by this step but the request did not provide it", m.id));
            }
            continue;
        };
        if let Some(var) = &m.env {
            env.push(format!("{var}={}", String::from_utf8_lossy(value)));
        }
        let Some(target) = &m.target else { continue };
        let dir = bundle.join("secrets");
        std::fs::create_dir_all(&dir).map_err(|e| format!("prepare secrets: {e}"))?;
        let source = dir.join(n.to_string());
        std::fs::write(&source, value).map_err(|e| format!("prepare secret {:?}: {e}", m.id))?;
        std::os::unix::fs::chown(&source, Some(m.uid), Some(m.gid))
            .map_err(|e| format!("prepare secret {:?}: {e}", m.id))?;
        std::fs::set_permissions(&source, std::fs::Permissions::from_mode(m.mode))
            .map_err(|e| format!("prepare secret {:?}: {e}", m.id))?;
        files.push(SecretFile { source, target: target.clone() });
    }
    Ok(files)
}

/// A helper's result file that does not parse (it may have died or found
/// the disk full): the error with the helper's last output lines.
fn unreadable_result(id: NodeId, e: serde_json::Error, tail: &[String]) -> SolveError {
    let last: Vec<&str> = tail.iter().rev().take(3).rev().map(String::as_str).collect();
    SolveError::internal(id, format!("the helper's result is unreadable ({e}): {}", last.join(" / ")))
}

fn exit_message(code: i32, tail: &[String]) -> String {
    let mut msg = format!("process did not complete successfully: exit code: {code}");
    if !tail.is_empty() {
        msg.push_str("; last output: ");
        msg.push_str(&tail.join(" | "));
    }
    msg
}

/// A prepared snapshot and its scratch dir, removed on drop unless
/// committed: a failed step, and a cancelled build whose future is dropped
/// mid-step, leave nothing behind. Removal retries briefly in the
/// background, since the killed helper may still be exiting.
pub(super) struct Uncommitted {
    snapshots: kiln_snapshotter::Snapshots,
    id: SnapshotId,
    bundle: PathBuf,
    committed: bool,
}

impl Uncommitted {
    /// The snapshot.
    pub(super) fn id(&self) -> &SnapshotId {
        &self.id
    }
}

impl Drop for Uncommitted {
    fn drop(&mut self) {
        let (snapshots, id, bundle, keep) =
            (self.snapshots.clone(), self.id.clone(), self.bundle.clone(), self.committed);
        let remove = move || {
            let bundle_gone = std::fs::remove_dir_all(&bundle).is_ok() || !bundle.exists();
            let snapshot_gone = keep || snapshots.remove(&id).is_ok();
            bundle_gone && snapshot_gone
        };
        if !remove() {
            std::thread::spawn(move || {
                for _ in 0..20 {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    if remove() {
                        return;
                    }
                }
            });
        }
    }
}
