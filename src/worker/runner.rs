//! The seam between solving and executing: a [`StepRunner`] runs one RUN
//! step or file op on a rootfs the solver prepared and hands every output
//! line to a callback. [`HelperRunner`] is the real one: a helper process
//! per job (`kiln __run-step` / `kiln __file-op`) in a PID namespace of its
//! own, the step's network namespace from the pool, the step timeout and
//! the kill chain. Tests use fakes that write into the upper directory.

use super::fileop::{FileOpRequest, FileOpResult};
use crate::egress::{Reporter, StepNetworks};
use crate::graph::NetworkMode;
use futures_util::future::BoxFuture;
use kiln_runtime::step::{StepNetwork, StepRequest, StepResult};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// Where a job's output lines go.
pub type Output<'a> = &'a (dyn Fn(String) + Sync);

/// A RUN step to run: the request (its `network` is filled in by the
/// runner from `mode`) and where network events go.
pub struct RunStep {
    /// The helper request.
    pub request: StepRequest,
    /// The Dockerfile's network mode.
    pub mode: NetworkMode,
    /// Receives the step's connections and refusals.
    pub egress: Reporter,
}

/// Why a job produced no result.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The step's network namespace could not be prepared.
    #[error("prepare the step's network: {0}")]
    Network(#[from] crate::egress::NetworkError),
    /// The helper could not be started.
    #[error("spawn helper: {0}")]
    Spawn(std::io::Error),
    /// The job ran past the step timeout and was killed.
    #[error("the step ran longer than the {} s step timeout and was killed", .0.as_secs())]
    TimedOut(Duration),
    /// The helper ended without writing a result.
    #[error("helper {verb} died ({status})")]
    Died {
        /// The helper verb.
        verb: &'static str,
        /// How it ended.
        status: String,
    },
    /// The result was written but does not parse.
    #[error("the helper's result is unreadable ({0})")]
    Unreadable(String),
}

/// Runs RUN steps and file ops.
pub trait StepRunner: Send + Sync {
    /// Runs a RUN step to its end.
    fn run_step<'a>(&'a self, job: RunStep, out: Output<'a>) -> BoxFuture<'a, Result<StepResult, RunError>>;

    /// Runs a file op (COPY, ADD, WORKDIR) to its end.
    fn run_file_op<'a>(&'a self, req: FileOpRequest, out: Output<'a>) -> BoxFuture<'a, Result<FileOpResult, RunError>>;
}

/// The real runner: helper processes.
pub struct HelperRunner {
    /// The kiln binary (`/proc/self/exe`).
    pub helper_exe: PathBuf,
    /// Longest a job may run (`None`: no limit).
    pub step_timeout: Option<Duration>,
    /// Network namespaces of steps with the default network.
    pub networks: Arc<StepNetworks>,
}

impl StepRunner for HelperRunner {
    fn run_step<'a>(&'a self, job: RunStep, out: Output<'a>) -> BoxFuture<'a, Result<StepResult, RunError>> {
        Box::pin(async move {
            let RunStep { mut request, mode, egress } = job;
            let network = match mode {
                NetworkMode::Default => Some(self.networks.take(egress).await.map_err(RunError::Network)?),
                NetworkMode::None | NetworkMode::Host => None,
            };
            request.network = match (&network, mode) {
                (Some(n), _) => StepNetwork::Join { netns: n.netns_fd(), userns: n.userns_fd() },
                (None, NetworkMode::None) => StepNetwork::Isolated,
                (None, _) => StepNetwork::Host,
            };
            let inherit: Vec<i32> = network.iter().flat_map(|n| [n.netns_fd(), n.userns_fd()]).collect();
            let outcome = self.run_helper("__run-step", &request.bundle, &request, inherit, out).await;
            if let Some(n) = network {
                n.close().await;
            }
            // A killed step leaves libcontainer's state behind.
            let _ = std::fs::remove_dir_all(request.state_root.join(&request.id));
            serde_json::from_slice(&outcome?).map_err(|e| RunError::Unreadable(e.to_string()))
        })
    }

    fn run_file_op<'a>(&'a self, req: FileOpRequest, out: Output<'a>) -> BoxFuture<'a, Result<FileOpResult, RunError>> {
        Box::pin(async move {
            let bundle = req.mountpoint.parent().map(Path::to_path_buf).unwrap_or_default();
            let raw = self.run_helper("__file-op", &bundle, &req, Vec::new(), out).await?;
            serde_json::from_slice(&raw).map_err(|e| RunError::Unreadable(e.to_string()))
        })
    }
}

impl HelperRunner {
    /// Runs a helper with `req` as JSON, forwarding its output; returns
    /// the result file's bytes.
    async fn run_helper(
        &self,
        verb: &'static str,
        bundle: &Path,
        req: &impl serde::Serialize,
        inherit: Vec<i32>,
        out: Output<'_>,
    ) -> Result<Vec<u8>, RunError> {
        std::fs::create_dir_all(bundle).map_err(RunError::Spawn)?;
        let req_path = bundle.join("request.json");
        std::fs::write(&req_path, serde_json::to_vec(req).expect("request serializes")).map_err(RunError::Spawn)?;
        let mut cmd = tokio::process::Command::new(&self.helper_exe);
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
        let mut child = crate::spawner::spawn(cmd).await.map_err(RunError::Spawn)?;
        // However this ends (cancelled, timed out, done), the step's
        // processes do not outlive it.
        let _reap = own_pid_namespace.then(|| StepReaper(bundle.to_path_buf()));
        let stdout = forward(child.stdout.take().expect("piped"), out);
        let stderr = forward(child.stderr.take().expect("piped"), out);
        let finished = async { tokio::join!(child.wait(), stdout, stderr).0 };
        let status = match self.step_timeout {
            Some(limit) => match tokio::time::timeout(limit, finished).await {
                Ok(status) => status,
                Err(_) => {
                    // Killing the helper kills the step's whole PID namespace.
                    let _ = child.kill().await;
                    return Err(RunError::TimedOut(limit));
                }
            },
            None => finished.await,
        };
        let status = status.map_err(RunError::Spawn)?;
        std::fs::read(bundle.join("result.json")).map_err(|_| RunError::Died { verb, status: status.to_string() })
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

/// Longest output line forwarded to the log.
const MAX_LINE: usize = 4096;

/// Reads lines from `pipe` holding at most [`MAX_LINE`] bytes of any one
/// line in memory, however long the line is.
async fn forward(pipe: impl AsyncRead + Unpin, out: Output<'_>) {
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
            out(finish_line(&mut line, &mut cut));
        }
    }
    if !line.is_empty() {
        out(finish_line(&mut line, &mut cut));
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
