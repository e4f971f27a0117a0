//! The body of the single-threaded helper process that runs one RUN step:
//! private mount namespace → overlay at `<bundle>/rootfs` → stubs for the
//! runtime's mountpoints → libcontainer create/start/wait/delete → stubs
//! removed again, so the upper dir holds only what the step changed.

use crate::users::{self, Identity};
use crate::{spec, Error, Result};
use kiln_snapshotter::fsx::{self, mkdir_all_at};
use kiln_snapshotter::overlay::{make_mounts_private, OverlaySpec};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use nix::sys::wait::{waitpid, WaitStatus};
use serde::{Deserialize, Serialize};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// What the server asks the helper to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRequest {
    /// Unique container id (also names the cgroup).
    pub id: String,
    /// The step's overlay.
    pub overlay: OverlaySpec,
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
const STUB_FILES: [&str; 2] = ["etc/resolv.conf", "etc/hosts"];

/// Runs the step; called in the helper process.
pub fn run_step(req: &StepRequest) -> Result<StepResult> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| Error::Namespace(format!("unshare(CLONE_NEWNS): {e}")))?;
    make_mounts_private()?;
    let rootfs = req.bundle.join("rootfs");
    fs::create_dir_all(&rootfs).map_err(|e| Error::Io(format!("create {}", rootfs.display()), e))?;
    req.overlay.mount_at(&rootfs)?;
    let root: OwnedFd = File::open(&rootfs)
        .map_err(|e| Error::Io("open rootfs".into(), e))?
        .into();
    let identity = users::resolve(&rootfs, &req.user)?;
    let stubs = Stubs::create(&root)?;
    mkdir_all_at(&root, Path::new(req.cwd.trim_start_matches('/')))
        .map_err(|e| Error::Io(format!("create working directory {}", req.cwd), e))?;
    let binds = write_network_files(&req.bundle, &req.hostname, &stubs)?;
    let env = with_home(&req.env, &identity);
    let cgroups_path = format!("/kiln-{}", req.id);
    let config = spec::build(&spec::SpecInput {
        rootfs: &rootfs,
        args: &req.args,
        env: &env,
        cwd: &req.cwd,
        identity: &identity,
        hostname: &req.hostname,
        cgroups_path: &cgroups_path,
        binds: &binds,
    });
    let spec_path = req.bundle.join("config.json");
    fs::write(&spec_path, serde_json::to_vec(&config).expect("spec serializes"))
        .map_err(|e| Error::Io("write config.json".into(), e))?;
    let outcome = run_container(req);
    stubs.remove(&root);
    outcome
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

/// Mountpoints created for this run only.
struct Stubs {
    dirs: Vec<&'static str>,
    files: Vec<&'static str>,
    /// Whether `etc` itself was created for the stub files.
    etc_created: bool,
}

impl Stubs {
    fn create(root: &OwnedFd) -> Result<Self> {
        let mut stubs = Stubs {
            dirs: Vec::new(),
            files: Vec::new(),
            etc_created: false,
        };
        for d in STUB_DIRS {
            if !exists_at(root, d) {
                mkdir_all_at(root, Path::new(d)).map_err(|e| Error::Io(format!("create /{d}"), e))?;
                stubs.dirs.push(d);
            }
        }
        stubs.etc_created = !exists_at(root, "etc");
        let Ok(etc) = mkdir_all_at(root, Path::new("etc")) else {
            return Ok(stubs);
        };
        for f in STUB_FILES {
            let name = &f[4..];
            if exists_at(&etc, name) {
                continue;
            }
            fs::File::create(fsx::fd_path(&etc, OsStr::new(name))).map_err(|e| Error::Io(format!("create /{f}"), e))?;
            stubs.files.push(f);
        }
        Ok(stubs)
    }

    fn has_file(&self, f: &str) -> bool {
        self.files.contains(&f)
    }

    fn remove(&self, root: &OwnedFd) {
        let base = fsx::fd_path(root, OsStr::new(""));
        for f in &self.files {
            let _ = fs::remove_file(base.join(f));
        }
        for d in &self.dirs {
            let _ = fs::remove_dir(base.join(d));
        }
        if self.etc_created {
            let _ = fs::remove_dir(base.join("etc"));
        }
    }
}

fn exists_at(dir: &OwnedFd, rel: &str) -> bool {
    fs::symlink_metadata(fsx::fd_path(dir, OsStr::new(rel))).is_ok()
}

/// Writes the step's `hosts` and `resolv.conf` into the bundle and returns
/// the binds for the ones whose mountpoint exists in the rootfs.
fn write_network_files(bundle: &Path, hostname: &str, stubs: &Stubs) -> Result<Vec<(String, String)>> {
    let resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_else(|_| "nameserver 1.1.1.1\n".into());
    let hosts = format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n");
    let mut binds = Vec::new();
    for (name, content) in [("resolv.conf", resolv), ("hosts", hosts)] {
        let src = bundle.join(name);
        fs::write(&src, content).map_err(|e| Error::Io(format!("write {name}"), e))?;
        let dst = format!("etc/{name}");
        let mountable = stubs.has_file(&dst) || is_regular_in_bundle_rootfs(bundle, &dst);
        if mountable {
            binds.push((src.display().to_string(), format!("/{dst}")));
        }
    }
    Ok(binds)
}

fn is_regular_in_bundle_rootfs(bundle: &Path, rel: &str) -> bool {
    let Ok(root) = File::open(bundle.join("rootfs")) else {
        return false;
    };
    fsx::open_in_root(&root, Path::new(rel), libc::O_PATH | libc::O_NOFOLLOW)
        .ok()
        .and_then(|fd| File::from(fd).metadata().ok())
        .is_some_and(|m| m.is_file())
}
