//! The step helper's kill chain. The server starts `kiln __run-step` after
//! `unshare(CLONE_NEWPID)`, so the helper's first child is PID 1 of a new
//! PID namespace; [`run_as_namespace_init`] runs the step in that child.
//! The child dies with the helper (parent-death signal) and the kernel
//! kills every process of a PID namespace whose init dies, so killing the
//! helper (cancelled build, timeout, server crash: the helper dies with the
//! server too) takes the step's whole process tree with it.

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};
use std::os::fd::AsRawFd;
use std::process::ExitCode;

/// Runs `body` in a forked child (PID 1 of the helper's PID namespace) and
/// returns its exit status. Must be called while single-threaded.
pub fn run_as_namespace_init(body: impl FnOnce() -> ExitCode) -> ExitCode {
    let Ok((alive_r, alive_w)) = nix::unistd::pipe() else { return ExitCode::from(3) };
    // SAFETY: the helper is single-threaded here; the child only runs `body`.
    match unsafe { fork() } {
        Err(e) => {
            eprintln!("kiln helper: fork: {e}");
            ExitCode::from(3)
        }
        Ok(ForkResult::Child) => {
            drop(alive_w);
            // SAFETY: plain prctl.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            if parent_gone(&alive_r) {
                std::process::exit(3);
            }
            let code = body();
            std::process::exit(if code == ExitCode::SUCCESS { 0 } else { 2 });
        }
        Ok(ForkResult::Parent { child }) => {
            drop(alive_r);
            let status = loop {
                match waitpid(child, None) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    other => break other,
                }
            };
            drop(alive_w);
            match status {
                Ok(WaitStatus::Exited(_, 0)) => ExitCode::SUCCESS,
                Ok(WaitStatus::Exited(_, c)) => ExitCode::from(c as u8),
                _ => ExitCode::from(3),
            }
        }
    }
}

/// Whether the helper died before the parent-death signal was armed (its
/// end of the pipe is then closed).
fn parent_gone(alive: &std::os::fd::OwnedFd) -> bool {
    let mut fds = [libc::pollfd { fd: alive.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
    // SAFETY: poll on one descriptor we own, no wait.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, 0) };
    n > 0 && fds[0].revents & (libc::POLLHUP | libc::POLLIN) != 0
}
