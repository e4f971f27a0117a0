//! The body of the single-threaded helper process that runs one RUN step:
//! private mount namespace → the step's network → overlay at
//! `<bundle>/rootfs` → stubs for the runtime's mountpoints → the step's own
//! user namespace → seccomp → libcontainer create/start/wait/delete → stubs
//! removed again, so the upper dir holds only what the step changed.

use crate::users::{self, Identity};
use crate::{spec, Error, Result};
use kiln_snapshotter::fsx::{self, mkdir_all_at};
use kiln_snapshotter::overlay::{make_mounts_private, mount_all, Mount};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use nix::sys::wait::{waitpid, WaitStatus};
use serde::{Deserialize, Serialize};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// What the server asks the helper to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRequest {
    /// Unique container id (also names the cgroup).
    pub id: String,
    /// The mounts that make the step's rootfs (the snapshotter's overlay).
    pub rootfs: Vec<Mount>,
    /// Private bundle directory for this step.
    pub bundle: PathBuf,
    /// libcontainer state root.
    pub state_root: PathBuf,
    /// argv.
    pub args: Vec<String>,
    /// `KEY=value` environment (without HOME, which is filled in here).
    pub env: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// Dockerfile USER value.
    pub user: String,
    /// Hostname.
    pub hostname: String,
    /// Secret files to bind read-only into the step.
    #[serde(default)]
    pub secret_files: Vec<SecretFile>,
    /// `RUN --mount=type=cache|bind|tmpfs`.
    #[serde(default)]
    pub mounts: Vec<crate::mounts::StepMount>,
    /// The step's network namespace.
    #[serde(default)]
    pub network: StepNetwork,
    /// Process limits.
    #[serde(default)]
    pub limits: spec::StepLimits,
}

/// Where a step's network comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepNetwork {
    /// The server's own (`RUN --network=host`, an entitlement).
    #[default]
    Host,
    /// A new namespace with only loopback (`RUN --network=none`).
    Isolated,
    /// Namespaces the server prepared, inherited as descriptors.
    Join {
        /// The network namespace.
        netns: i32,
        /// The step's user namespace, which owns `netns`.
        userns: i32,
    },
}

/// A secret file prepared by the server (mode and owner already set).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecretFile {
    /// The prepared file in the bundle.
    pub source: PathBuf,
    /// Absolute path inside the step.
    pub target: String,
}

/// What the helper reports back.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StepResult {
    /// The process's exit code (128+signal when killed).
    pub exit_code: i32,
    /// Set when the step could not be run at all.
    pub error: Option<String>,
}

/// Paths the runtime mounts over; created for the run when missing and
/// removed afterwards so they never reach a layer.
const STUB_DIRS: [&str; 3] = ["proc", "sys", "dev"];
const NETWORK_FILES: [&str; 2] = ["resolv.conf", "hosts"];

/// Runs the step; called in the helper process.
pub fn run_step(req: &StepRequest) -> Result<StepResult> {
    // Rust ignores SIGPIPE in its own processes and an ignored signal stays
    // ignored across exec: restore the default, or `yes | head` never ends.
    // SAFETY: resetting a signal disposition to its default.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    record_namespace_init(&req.bundle);
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| Error::Namespace(format!("unshare(CLONE_NEWNS): {e}")))?;
    make_mounts_private()?;
    let userns = match req.network {
        StepNetwork::Host => crate::step_userns::create(false)?.userns,
        StepNetwork::Isolated => crate::netns::isolate()?,
        StepNetwork::Join { netns, userns } => {
            crate::netns::join(netns)?;
            // SAFETY: the server hands the helper this descriptor; it is owned here.
            unsafe { OwnedFd::from_raw_fd(userns) }
        }
    };
    let rootfs = req.bundle.join("rootfs");
    fs::create_dir_all(&rootfs).map_err(|e| Error::Io(format!("create {}", rootfs.display()), e))?;
    mount_all(&req.rootfs, &rootfs)?;
    let root: OwnedFd = File::open(&rootfs).map_err(|e| Error::Io("open rootfs".into(), e))?.into();
    let identity = users::resolve(&rootfs, &req.user)?;
    let mut stubs = Stubs::default();
    let outcome = prepare_and_run(req, &root, &rootfs, &identity, &userns, &mut stubs);
    stubs.remove(&root);
    outcome
}

fn prepare_and_run(
    req: &StepRequest,
    root: &OwnedFd,
    rootfs: &Path,
    identity: &Identity,
    userns: &OwnedFd,
    stubs: &mut Stubs,
) -> Result<StepResult> {
    for d in STUB_DIRS {
        stubs.ensure(root, d, true)?;
    }
    mkdir_all_at(root, Path::new(req.cwd.trim_start_matches('/')))
        .map_err(|e| Error::Io(format!("create working directory {}", req.cwd), e))?;
    let mut binds = write_network_files(root, &req.bundle, &req.hostname, stubs)?;
    for secret in &req.secret_files {
        stubs.ensure(root, secret.target.trim_start_matches('/'), false)?;
        binds.push((secret.source.display().to_string(), secret.target.clone()));
    }
    let mut extra_mounts = Vec::new();
    for (n, m) in req.mounts.iter().enumerate() {
        let prepared = crate::mounts::prepare(n, m, &req.bundle)?;
        stubs.ensure(root, m.target().trim_start_matches('/'), prepared.dir)?;
        extra_mounts.push(prepared.spec);
    }
    let sysfs = (req.network != StepNetwork::Host).then(|| mount_own_sysfs(&req.bundle)).transpose()?;
    let env = with_home(&req.env, identity);
    let cgroups_path = format!("/kiln-{}", req.id);
    let config = spec::build(&spec::SpecInput {
        rootfs,
        args: &req.args,
        env: &env,
        cwd: &req.cwd,
        identity,
        hostname: &req.hostname,
        cgroups_path: &cgroups_path,
        binds: &binds,
        extra_mounts: &extra_mounts,
        limits: &req.limits,
        sysfs: sysfs.as_deref(),
    });
    let spec_path = req.bundle.join("config.json");
    fs::write(&spec_path, serde_json::to_vec(&config).expect("spec serializes"))
        .map_err(|e| Error::Io("write config.json".into(), e))?;
    // Every mount from kiln's namespace is made by now.
    crate::step_userns::join(userns)?;
    // Inherited by libcontainer's processes and the step.
    crate::seccomp::install()?;
    run_container(req)
}

/// Mounts a sysfs of the step's network namespace (the helper has joined
/// it) in the bundle, for the container to bind: mounting sysfs needs
/// `CAP_SYS_ADMIN` over the namespace's owner, which the step's own user
/// namespace lacks.
fn mount_own_sysfs(bundle: &Path) -> Result<PathBuf> {
    use nix::mount::MsFlags;
    let dir = bundle.join("sysfs");
    fs::create_dir_all(&dir).map_err(|e| Error::Io(format!("create {}", dir.display()), e))?;
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
    nix::mount::mount(Some("sysfs"), &dir, Some("sysfs"), flags, None::<&str>)
        .map_err(|e| Error::Namespace(format!("mount the step's sysfs: {e}")))?;
    Ok(dir)
}

fn with_home(env: &[String], id: &Identity) -> Vec<String> {
    let mut env = env.to_vec();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", id.home));
    }
    env
}

fn run_container(req: &StepRequest) -> Result<StepResult> {
    fs::create_dir_all(&req.state_root).map_err(|e| Error::Io("create state root".into(), e))?;
    let err = |what: &str| {
        let what = what.to_string();
        move |e: libcontainer::error::LibcontainerError| Error::Container(format!("{what}: {e}"))
    };
    let mut container = ContainerBuilder::new(req.id.clone(), SyscallType::default())
        .with_executor(DefaultExecutor {})
        .with_root_path(&req.state_root)
        .map_err(err("state root"))?
        .as_init(&req.bundle)
        .with_systemd(false)
        .with_detach(false)
        .build()
        .map_err(err("create"))?;
    let started = container.start().map_err(err("start"));
    let status = match (&started, container.pid()) {
        (Ok(()), Some(pid)) => waitpid(pid, None).map_err(|e| Error::Container(format!("wait: {e}"))),
        (Ok(()), None) => Err(Error::Container("container has no pid".into())),
        (Err(_), _) => Ok(WaitStatus::StillAlive),
    };
    let _ = container.delete(true);
    started?;
    let exit_code = match status? {
        WaitStatus::Exited(_, code) => code,
        WaitStatus::Signaled(_, sig, _) => 128 + sig as i32,
        other => return Err(Error::Container(format!("unexpected wait status {other:?}"))),
    };
    Ok(StepResult { exit_code, error: None })
}

/// File in the bundle naming the init of the step's PID namespace (the
/// helper's child, `pid starttime` as the server's `/proc` numbers them):
/// killing it ends the container and everything it started.
pub const PID_FILE: &str = "container.pid";

/// Records the calling process, init of the helper's PID namespace. Its
/// number in that namespace is 1; `/proc/self` gives the one the server's
/// `/proc` uses.
fn record_namespace_init(bundle: &Path) {
    let pid = fs::read_link("/proc/self").ok().and_then(|p| p.to_str()?.parse::<i32>().ok());
    if let Some((pid, start)) = pid.and_then(|p| Some((p, start_time(p)?))) {
        let _ = fs::write(bundle.join(PID_FILE), format!("{pid} {start}"));
    }
}

/// A process's start time (clock ticks after boot), which tells a reused
/// pid from the original.
fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 2..];
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

/// Kills the step recorded in `bundle` if its process still runs (the
/// server lets no step outlive its helper's wait). Returns whether one
/// was killed.
pub fn kill_recorded(bundle: &Path) -> bool {
    let Ok(text) = fs::read_to_string(bundle.join(PID_FILE)) else { return false };
    let mut parts = text.split_whitespace().map(|p| p.parse::<u64>().ok());
    let (Some(Some(pid)), Some(Some(start))) = (parts.next(), parts.next()) else { return false };
    if start_time(pid as i32) != Some(start) {
        return false;
    }
    // SAFETY: plain kill(2) of a process verified by pid and start time.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    true
}

/// Kills the steps recorded under `run_dir` (`<run_dir>/*/container.pid`)
/// whose processes still run: each is PID 1 of its PID namespace, so the
/// whole step dies. Returns how many were killed.
pub fn kill_orphans(run_dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(run_dir) else { return 0 };
    entries.flatten().filter(|e| kill_recorded(&e.path())).count()
}

/// Mountpoints created for this run only, in creation order.
#[derive(Default)]
struct Stubs {
    created: Vec<String>,
}

impl Stubs {
    /// Makes sure `rel` exists in the rootfs (as a directory or an empty
    /// file), creating missing parents; records what it created. Never
    /// follows a symlink.
    fn ensure(&mut self, root: &OwnedFd, rel: &str, dir: bool) -> Result<()> {
        let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
        let mut cur = root.try_clone().map_err(|e| Error::Io("dup".into(), e))?;
        for (i, part) in parts.iter().enumerate() {
            let path = parts[..=i].join("/");
            let last = i + 1 == parts.len();
            if !exists_at(&cur, part) {
                let p = fsx::fd_path(&cur, OsStr::new(part));
                let made = if last && !dir { fs::File::create(&p).map(drop) } else { fs::create_dir(&p) };
                made.map_err(|e| Error::Io(format!("create mountpoint /{path}"), e))?;
                self.created.push(path.clone());
            }
            if !last {
                cur = fsx::openat_dir(&cur, OsStr::new(part)).map_err(|e| Error::Io(format!("open /{path}"), e))?;
            }
        }
        Ok(())
    }

    fn has(&self, rel: &str) -> bool {
        self.created.iter().any(|c| c == rel)
    }

    fn remove(&self, root: &OwnedFd) {
        let base = fsx::fd_path(root, OsStr::new(""));
        for rel in self.created.iter().rev() {
            let p = base.join(rel);
            let _ = fs::remove_file(&p).or_else(|_| fs::remove_dir(&p));
        }
    }
}

fn exists_at(dir: &OwnedFd, rel: &str) -> bool {
    fs::symlink_metadata(fsx::fd_path(dir, OsStr::new(rel))).is_ok()
}

/// Writes the step's `hosts` and `resolv.conf` into the bundle and returns
/// binds for them, creating their mountpoints when the rootfs lacks them
/// (a rootfs whose /etc is not a plain directory gets none).
fn write_network_files(
    root: &OwnedFd,
    bundle: &Path,
    hostname: &str,
    stubs: &mut Stubs,
) -> Result<Vec<(String, String)>> {
    let resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_else(|_| "nameserver 1.1.1.1\n".into());
    let hosts = format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n");
    let mut binds = Vec::new();
    for (name, content) in NETWORK_FILES.into_iter().zip([resolv, hosts]) {
        let src = bundle.join(name);
        fs::write(&src, content).map_err(|e| Error::Io(format!("write {name}"), e))?;
        let rel = format!("etc/{name}");
        if stubs.ensure(root, &rel, false).is_err() && !stubs.has(&rel) {
            continue;
        }
        if is_regular_in_root(root, &rel) {
            binds.push((src.display().to_string(), format!("/{rel}")));
        }
    }
    Ok(binds)
}

fn is_regular_in_root(root: &OwnedFd, rel: &str) -> bool {
    fsx::open_in_root(root, Path::new(rel), libc::O_PATH | libc::O_NOFOLLOW)
        .ok()
        .and_then(|fd| File::from(fd).metadata().ok())
        .is_some_and(|m| m.is_file())
}
