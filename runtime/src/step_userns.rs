//! A user namespace of the step's own, mapped one to one onto kiln's.
//!
//! The kernel counts a user's processes (`RLIMIT_NPROC`), keys and
//! inotify instances per user *per user namespace*. Every step runs as the
//! same users of kiln's namespace, so without a namespace of its own a step
//! that holds its process limit stops every other build's steps from
//! forking. Each step therefore gets a new user namespace whose ID maps
//! copy kiln's line by line (`inside inside count`): every file keeps its
//! owner, the kernel counts the step's processes against the step's own
//! limit, and kiln's namespace counts the total of all steps against the
//! creator's limit (raised to its hard limit first).
//!
//! The step's network namespace is created inside its user namespace, so
//! the step's `CAP_NET_RAW` and `CAP_NET_BIND_SERVICE` apply to it (ping
//! and ports below 1024 work as under Docker), while kiln, one namespace
//! up, still owns and configures both. The helper joins the user namespace
//! last ([`join`]): afterwards it holds capabilities only inside it, so
//! every mount it needs from kiln's namespace is made before.

use crate::{Error, Result};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

/// The namespaces made for one step.
#[derive(Debug)]
pub struct StepNamespaces {
    /// The step's user namespace.
    pub userns: OwnedFd,
    /// A network namespace it owns (when asked for).
    pub netns: Option<OwnedFd>,
}

/// Creates a user namespace mapped one to one onto the caller's and, with
/// `with_network`, a network namespace owned by it. Safe in a
/// multi-threaded process: the forked child makes only raw system calls.
pub fn create(with_network: bool) -> Result<StepNamespaces> {
    let (uid_map, gid_map) = identity_maps()?;
    let flags = libc::CLONE_NEWUSER | if with_network { libc::CLONE_NEWNET } else { 0 };
    let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::Namespace(format!("pipe: {e}")));
    let (ready_r, ready_w) = pipe()?;
    let (go_r, go_w) = pipe()?;
    // SAFETY: the child runs only `hold_new_namespaces` (raw system calls).
    match unsafe { fork() }.map_err(|e| Error::Namespace(format!("fork: {e}")))? {
        ForkResult::Child => {
            // SAFETY: async-signal-safe calls on descriptors of this process.
            unsafe {
                libc::close(ready_r.as_raw_fd());
                libc::close(go_w.as_raw_fd());
                hold_new_namespaces(flags, ready_w.as_raw_fd(), go_r.as_raw_fd())
            }
        }
        ForkResult::Parent { child } => {
            drop((ready_w, go_r));
            let mut said = Vec::new();
            let _ = File::from(ready_r).read_to_end(&mut said);
            let made = adopt(&said, uid_map, gid_map, with_network);
            drop(go_w);
            let _ = waitpid(child, None);
            made
        }
    }
}

/// Closes every descriptor from 3 up except `a` and `b` (raw system
/// calls only: it runs in a multi-threaded process's forked child).
unsafe fn close_all_but(a: RawFd, b: RawFd) {
    let (low, high) = (a.min(b) as libc::c_uint, a.max(b) as libc::c_uint);
    let ranges = [(3, low.saturating_sub(1)), (low + 1, high.saturating_sub(1)), (high + 1, libc::c_uint::MAX)];
    for (first, last) in ranges.into_iter().filter(|(first, last)| first <= last) {
        // SAFETY: closes descriptors of this process only.
        unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) };
    }
}

/// Moves the calling single-threaded process into `userns`.
pub fn join(userns: &OwnedFd) -> Result<()> {
    nix::sched::setns(userns, nix::sched::CloneFlags::CLONE_NEWUSER)
        .map_err(|e| Error::Namespace(format!("join the step's user namespace: {e}")))
}

/// The child: unshare, report its pid as `/proc` numbers it (or `!` and
/// the errno), and stay until the parent closes `go`.
unsafe fn hold_new_namespaces(flags: libc::c_int, ready: RawFd, go: RawFd) -> ! {
    // SAFETY: raw system calls on this process's own descriptors and
    // buffers, async-signal-safe (the caller may be a multi-threaded
    // process's forked child).
    unsafe {
        // A server whose IDs changed at start-up is not dumpable, and the /proc
        // files of a non-dumpable task in an unmapped namespace belong to the
        // host's root: the parent could not write the maps. This child lives
        // for the few system calls below, in no step's PID namespace.
        libc::prctl(libc::PR_SET_DUMPABLE, 1);
        // Every other descriptor goes: a sibling call's pipe ends, copied in
        // by this fork, would keep that call's parent from ever seeing EOF
        // (two concurrent calls each holding the other's: both hang).
        close_all_but(ready, go);
        let mut buf = [0u8; 32];
        let n = if libc::unshare(flags) == 0 {
            libc::readlink(c"/proc/self".as_ptr(), buf.as_mut_ptr().cast(), buf.len())
        } else {
            -1
        };
        if n > 0 {
            libc::write(ready, buf.as_ptr().cast(), n as usize);
        } else {
            let errno = *libc::__errno_location();
            let mut msg = [b'!', 0, 0, 0, 0];
            msg[1..].copy_from_slice(&errno.to_ne_bytes());
            libc::write(ready, msg.as_ptr().cast(), msg.len());
        }
        libc::close(ready);
        let mut byte = 0u8;
        libc::read(go, (&mut byte as *mut u8).cast(), 1);
        libc::_exit(0)
    }
}

/// Writes the child's maps and opens its namespaces.
fn adopt(said: &[u8], uid_map: &str, gid_map: &str, with_network: bool) -> Result<StepNamespaces> {
    if let [b'!', errno @ ..] = said {
        let errno = errno.try_into().map(i32::from_ne_bytes).unwrap_or(0);
        let e = std::io::Error::from_raw_os_error(errno);
        return Err(Error::Namespace(format!("unshare a user namespace for the step: {e}")));
    }
    let pid = std::str::from_utf8(said)
        .ok()
        .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| Error::Namespace("the namespace holder ended before reporting".into()))?;
    for (file, map) in [("uid_map", uid_map), ("gid_map", gid_map)] {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, map).map_err(|e| Error::Io(format!("map the step's user namespace: {path}"), e))?;
    }
    let open = |ns: &str| -> Result<OwnedFd> {
        let path = format!("/proc/{pid}/ns/{ns}");
        Ok(File::open(&path).map_err(|e| Error::Io(format!("open {path}"), e))?.into())
    };
    Ok(StepNamespaces { userns: open("user")?, netns: with_network.then(|| open("net")).transpose()? })
}

/// The identity maps of the caller's namespace, read once per process (a
/// process's maps never change); the process soft limit is raised then too:
/// a new namespace's ceiling on all its processes together is its
/// creator's soft limit at creation.
fn identity_maps() -> Result<(&'static str, &'static str)> {
    static MAPS: OnceLock<std::result::Result<(String, String), String>> = OnceLock::new();
    let maps = MAPS.get_or_init(|| {
        raise_process_soft_limit();
        let read = |path| identity_map(&read_proc(path)?);
        let both = || -> Result<(String, String)> { Ok((read("/proc/self/uid_map")?, read("/proc/self/gid_map")?)) };
        both().map_err(|e| e.to_string())
    });
    match maps {
        Ok((uid, gid)) => Ok((uid, gid)),
        Err(e) => Err(Error::Namespace(e.clone())),
    }
}

fn read_proc(path: &str) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::Io(format!("read {path}"), e))
}

/// `inside outside count` lines → `inside inside count` lines.
fn identity_map(current: &str) -> Result<String> {
    let mut out = String::new();
    for line in current.lines().filter(|l| !l.trim().is_empty()) {
        let unreadable = || Error::Namespace(format!("unreadable ID map line {line:?}"));
        let fields: Vec<u32> =
            line.split_whitespace().map(str::parse).collect::<std::result::Result<_, _>>().map_err(|_| unreadable())?;
        let [inside, _outside, count] = fields[..] else { return Err(unreadable()) };
        out.push_str(&format!("{inside} {inside} {count}\n"));
    }
    if out.is_empty() {
        return Err(Error::Namespace("the current user namespace maps no IDs".into()));
    }
    Ok(out)
}

fn raise_process_soft_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit on a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NPROC, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NPROC, &lim);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{adopt, create, identity_map};

    /// Namespaces made from many threads at once all come back: no call
    /// waits for a descriptor another call's child holds.
    #[test]
    fn concurrent_creation_does_not_hang() {
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..8 {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for _ in 0..25 {
                    let made = create(true).map(|_| ()).map_err(|e| e.to_string());
                    tx.send(made).unwrap();
                }
            });
        }
        drop(tx);
        for n in 0..200 {
            match rx.recv_timeout(std::time::Duration::from_secs(30)) {
                Ok(made) => made.unwrap(),
                Err(e) => panic!("namespace {n} of 200 never came: {e}"),
            }
        }
    }

    #[test]
    fn maps_copy_the_inside_ranges_one_to_one() {
        let kiln = "         0       1000          1\n         1     100000      65536\n";
        assert_eq!(identity_map(kiln).unwrap(), "0 0 1\n1 1 65536\n");
        assert_eq!(identity_map("0 0 4294967295\n").unwrap(), "0 0 4294967295\n");
    }

    #[test]
    fn unreadable_or_empty_maps_are_errors() {
        assert!(identity_map("").is_err());
        assert!(identity_map("0 1000\n").is_err());
        assert!(identity_map("a b c\n").is_err());
    }

    #[test]
    fn a_holder_that_failed_or_vanished_is_an_error_naming_why() {
        let mut failed = vec![b'!'];
        failed.extend(libc::EPERM.to_ne_bytes());
        let e = adopt(&failed, "0 0 1\n", "0 0 1\n", false).unwrap_err().to_string();
        assert!(e.contains("Operation not permitted"), "{e}");
        let e = adopt(b"", "0 0 1\n", "0 0 1\n", false).unwrap_err().to_string();
        assert!(e.contains("ended before reporting"), "{e}");
        assert!(adopt(b"../1", "0 0 1\n", "0 0 1\n", false).is_err());
    }
}
