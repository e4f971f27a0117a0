//! Entering kiln's user namespace at start-up.
//!
//! The server re-executes itself; the child unshares a user namespace and
//! waits on a pipe while the parent writes its ID maps — directly as real
//! root (`0 <base> <count>`), or through the setuid `newuidmap`/`newgidmap`
//! from `/etc/subuid` and `/etc/subgid` when unprivileged. The child then
//! becomes root in the namespace, unshares mount and cgroup namespaces and
//! mounts its own cgroup2 (libcontainer's v2 manager then works rootless).
//! All of this runs before any thread exists: `unshare(CLONE_NEWUSER)`
//! refuses multi-threaded callers.

use crate::{Error, Result};
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

/// Environment variable carrying the sync pipe fds to the re-executed child.
pub const SYNC_ENV: &str = "_KILN_USERNS_SYNC";

/// How host IDs map into the namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdMap {
    /// Real root writes one line per map: `0 <host> <count>`.
    Direct {
        /// First host uid (becomes root inside).
        host_uid: u32,
        /// First host gid.
        host_gid: u32,
        /// Number of ids mapped.
        count: u32,
    },
    /// An unprivileged user: own id as root plus its subordinate range.
    Subordinate {
        /// The caller's uid (becomes root inside).
        uid: u32,
        /// The caller's gid.
        gid: u32,
        /// `(start, count)` from `/etc/subuid`.
        subuid: (u32, u32),
        /// `(start, count)` from `/etc/subgid`.
        subgid: (u32, u32),
    },
}

impl IdMap {
    /// Chooses the map for the current user; `root_range` is what real root
    /// uses (`(base, count)`).
    pub fn detect(root_range: (u32, u32)) -> Result<Self> {
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        if uid == 0 {
            let (base, count) = root_range;
            return Ok(IdMap::Direct { host_uid: base, host_gid: base, count });
        }
        let name = nix::unistd::User::from_uid(uid.into()).ok().flatten().map(|u| u.name).unwrap_or_default();
        let subuid = find_range("/etc/subuid", &name, uid)?;
        let subgid = find_range("/etc/subgid", &name, uid)?;
        Ok(IdMap::Subordinate { uid, gid, subuid, subgid })
    }

    /// The host uid/gid that is root inside the namespace (the owner the
    /// data directory must have).
    pub fn ns_root_owner(&self) -> (u32, u32) {
        match *self {
            IdMap::Direct { host_uid, host_gid, .. } => (host_uid, host_gid),
            IdMap::Subordinate { uid, gid, .. } => (uid, gid),
        }
    }

    fn apply(&self, pid: u32) -> Result<()> {
        match *self {
            IdMap::Direct { host_uid, host_gid, count } => {
                write_map(pid, "uid_map", &format!("0 {host_uid} {count}\n"))?;
                write_map(pid, "gid_map", &format!("0 {host_gid} {count}\n"))
            }
            IdMap::Subordinate { uid, gid, subuid, subgid } => {
                run_id_tool("newuidmap", pid, uid, subuid)?;
                run_id_tool("newgidmap", pid, gid, subgid)
            }
        }
    }
}

fn find_range(file: &str, name: &str, uid: u32) -> Result<(u32, u32)> {
    let text = fs::read_to_string(file).map_err(|e| Error::Io(format!("read {file}"), e))?;
    for line in text.lines() {
        let f: Vec<&str> = line.trim().split(':').collect();
        if f.len() == 3 && (f[0] == name || f[0] == uid.to_string()) {
            if let (Ok(start), Ok(count)) = (f[1].parse(), f[2].parse()) {
                return Ok((start, count));
            }
        }
    }
    Err(Error::Namespace(format!(
        "no subordinate ID range for user {name:?} (uid {uid}) in {file}; add one, e.g. `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {name}`"
    )))
}

fn write_map(pid: u32, file: &str, line: &str) -> Result<()> {
    let path = format!("/proc/{pid}/{file}");
    fs::write(&path, line).map_err(|e| Error::Io(format!("write {path}"), e))
}

fn run_id_tool(tool: &str, pid: u32, own: u32, (start, count): (u32, u32)) -> Result<()> {
    let out = Command::new(tool)
        .args([pid, 0, own, 1, 1, start, count].map(|n| n.to_string()))
        .output()
        .map_err(|e| Error::Io(format!("run {tool} (install the uidmap package)"), e))?;
    if !out.status.success() {
        return Err(Error::Namespace(format!(
            "{tool} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Tries `unshare(CLONE_NEWUSER)` in a short-lived child (this process
/// stays where it is): `Ok` when it works, else the diagnosis.
pub fn probe() -> std::result::Result<(), crate::diagnose::Diagnosis> {
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg("--version").stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    // SAFETY: only unshare(2) between fork and exec.
    unsafe {
        cmd.pre_exec(|| match libc::unshare(libc::CLONE_NEWUSER) {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        });
    }
    let errno = match cmd.status() {
        Ok(_) => return Ok(()),
        Err(e) => e.raw_os_error().unwrap_or(libc::EPERM),
    };
    Err(crate::diagnose::userns_failure(errno, &crate::diagnose::Facts::of_this_process()))
}

/// Parent side: spawns `cmd` (normally a re-execution of this binary) and
/// maps its user namespace. The child must call [`enter_if_requested`]
/// first thing in `main`.
pub fn spawn_mapped(mut cmd: Command, map: &IdMap) -> Result<Child> {
    let io = |what: &str| {
        let what = what.to_string();
        move |e: nix::Error| Error::Io(what, e.into())
    };
    let (c2p_r, c2p_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io("pipe"))?;
    let (p2c_r, p2c_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io("pipe"))?;
    let keep = [p2c_r.as_raw_fd(), c2p_w.as_raw_fd()];
    cmd.env(SYNC_ENV, format!("{},{}", keep[0], keep[1]));
    // SAFETY: only async-signal-safe fcntl calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            for fd in keep {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| Error::Io("spawn namespaced server".into(), e))?;
    drop((c2p_w, p2c_r));
    let mut reply = Vec::new();
    let _ = fs::File::from(c2p_r).take(16).read_to_end(&mut reply);
    if reply != b"1" {
        let status = child.wait().ok();
        let errno = std::str::from_utf8(&reply).ok().and_then(|r| r.strip_prefix('E')?.parse::<i32>().ok());
        return Err(Error::Namespace(match errno {
            Some(errno) => {
                let diagnosis = crate::diagnose::userns_failure(errno, &crate::diagnose::Facts::of_this_process());
                format!("cannot create a user namespace: {diagnosis}")
            }
            None => format!("the child failed before unsharing its user namespace ({status:?})"),
        }));
    }
    if let Err(e) = map.apply(child.id()) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    fs::File::from(p2c_w).write_all(b"1").map_err(|e| Error::Io("signal namespaced child".into(), e))?;
    Ok(child)
}

/// Child side: if this process was started by [`spawn_mapped`], enter the
/// namespaces now. Returns whether it did. Must run before any thread is
/// started.
pub fn enter_if_requested() -> Result<bool> {
    let Ok(fds) = std::env::var(SYNC_ENV) else {
        return Ok(false);
    };
    std::env::remove_var(SYNC_ENV);
    let (rfd, wfd) = fds
        .split_once(',')
        .and_then(|(r, w)| Some((r.parse::<i32>().ok()?, w.parse::<i32>().ok()?)))
        .ok_or_else(|| Error::Namespace(format!("bad {SYNC_ENV} value")))?;
    // SAFETY: the parent handed us these two pipe ends and nothing else owns them.
    let (from_parent, to_parent) = unsafe { (OwnedFd::from_raw_fd(rfd), OwnedFd::from_raw_fd(wfd)) };
    let supervisor = nix::unistd::getppid();
    let ns = |what: &'static str| move |e: nix::Error| Error::Namespace(format!("{what}: {e}"));
    let mut to_parent = fs::File::from(to_parent);
    if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER) {
        let _ = to_parent.write_all(format!("E{}", e as i32).as_bytes());
        return Err(Error::Namespace(format!("unshare(CLONE_NEWUSER): {e}")));
    }
    to_parent.write_all(b"1").map_err(|e| Error::Io("sync".into(), e))?;
    drop(to_parent);
    let mut byte = [0u8; 1];
    if fs::File::from(from_parent).read(&mut byte).unwrap_or(0) != 1 {
        return Err(Error::Namespace("parent failed to write the ID maps".into()));
    }
    become_root()?;
    die_with(supervisor)?;
    let flags = nix::sched::CloneFlags::CLONE_NEWNS | nix::sched::CloneFlags::CLONE_NEWCGROUP;
    nix::sched::unshare(flags).map_err(ns("unshare(mount, cgroup)"))?;
    kiln_snapshotter::overlay::make_mounts_private()?;
    mount_cgroup2();
    let _ = crate::cgroups::delegate(std::path::Path::new(crate::cgroups::CGROUP_ROOT));
    Ok(true)
}

/// Asks for SIGKILL when the supervisor dies. Set after the credential
/// change (which clears it) and checked against a supervisor that already
/// died in between.
fn die_with(supervisor: nix::unistd::Pid) -> Result<()> {
    // SAFETY: plain prctl.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    if nix::unistd::getppid() != supervisor {
        return Err(Error::Namespace("the supervisor exited during start-up".into()));
    }
    Ok(())
}

fn become_root() -> Result<()> {
    let root_gid = nix::unistd::Gid::from_raw(0);
    let root_uid = nix::unistd::Uid::from_raw(0);
    let err = |what: &'static str| move |e: nix::Error| Error::Namespace(format!("{what}: {e}"));
    nix::unistd::setgroups(&[]).map_err(err("setgroups"))?;
    nix::unistd::setresgid(root_gid, root_gid, root_gid).map_err(err("setresgid"))?;
    nix::unistd::setresuid(root_uid, root_uid, root_uid).map_err(err("setresuid"))
}

/// A private cgroup2 at /sys/fs/cgroup lets libcontainer's cgroup v2
/// manager run in rootless mode on cgroup-v1 and hybrid hosts, where the
/// v1 manager would fail with EACCES.
fn mount_cgroup2() {
    use nix::mount::{mount, MsFlags};
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if let Err(e) = mount(Some("none"), "/sys/fs/cgroup", Some("cgroup2"), flags, None::<&str>) {
        tracing::warn!("cannot mount cgroup2 in the namespace ({e}); step resource limits are unavailable");
    }
}
