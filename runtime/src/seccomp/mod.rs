//! The seccomp filter of every RUN step, written as classic BPF by hand
//! (no libseccomp: nothing to compile per step, a few microseconds to
//! install). The helper installs it before it calls libcontainer, while it
//! holds `CAP_SYS_ADMIN` in the step's user namespace, so no
//! `no_new_privs` is needed (setuid programs keep working in steps); the
//! container's init and the step inherit it.
//!
//! It is an allow-list, Docker's default profile for a container with
//! Docker's 14 capabilities: the syscalls that profile allows without a
//! capability, `ptrace` and `process_vm_*` (allowed there on kernels from
//! 4.8), `chroot` (the step has `CAP_SYS_CHROOT`), and the few calls
//! libcontainer makes after the filter is in place to set the container up
//! (`mount`, `umount2`, `pivot_root`, the new mount API but `fspick`,
//! `sethostname`, `setdomainname`), which the kernel refuses to the step
//! itself (they need `CAP_SYS_ADMIN`, which the step lacks; `open_tree`
//! without `OPEN_TREE_CLONE` is an `O_PATH` open). With arguments checked: `clone` and `unshare`
//! without `CLONE_NEWUSER` (a new user namespace is the way to every
//! capability inside one), `socket` of any family but AF_VSOCK
//! (EAFNOSUPPORT), `personality` with Linux's personalities only. `clone3`
//! answers ENOSYS (its flags sit in memory the filter cannot read), so
//! libc and libcontainer fall back to `clone`. Every other syscall the
//! profile knows answers EPERM — the kernel keyring (one namespace of keys
//! per user), `perf_event_open`, `io_uring`, `bpf`, `userfaultfd`,
//! `open_by_handle_at`, `setns`, module, kexec, swap,
//! reboot, clock and accounting calls among them; a syscall newer than the
//! profile answers ENOSYS, so a program falls back as on an older kernel.
//! Lookup is a binary search over ranges of equal verdict (about 16
//! instructions per syscall).

use crate::{Error, Result};

/// `offsetof(struct seccomp_data, nr)`.
const NR: u32 = 0;
/// `offsetof(struct seccomp_data, arch)`.
const ARCH: u32 = 4;
/// `offsetof(struct seccomp_data, args[0])` (low 32 bits, little endian).
const ARG0: u32 = 16;

const LD_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const JA: u16 = 0x05; // BPF_JMP | BPF_JA
const JEQ: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JGE: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const JSET: u16 = 0x45; // BPF_JMP | BPF_JSET | BPF_K
const RET: u16 = 0x06; // BPF_RET | BPF_K

const ALLOW: u32 = 0x7fff_0000;
const KILL_PROCESS: u32 = 0x8000_0000;
const fn errno(e: i32) -> u32 {
    0x0005_0000 | (e as u32 & 0xffff)
}

#[cfg(target_arch = "x86_64")]
const NATIVE_ARCH: u32 = 0xc000_003e; // AUDIT_ARCH_X86_64
#[cfg(target_arch = "aarch64")]
const NATIVE_ARCH: u32 = 0xc000_00b7; // AUDIT_ARCH_AARCH64

/// The highest syscall number the profile was written against (Linux
/// 6.15's `open_tree_attr`); anything above answers ENOSYS.
const NEWEST_KNOWN: u32 = 467;

mod syscalls;

use libc::*;
pub use syscalls::DENIED;
use syscalls::{ALLOWED, ALLOWED_ARCH};

/// Personalities a step may set (Linux, 32-bit Linux, uname26, and the
/// query value), as the runtimes' default profiles allow.
const PERSONALITIES: &[u32] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

const CLONE_NEWUSER_BIT: u32 = CLONE_NEWUSER as u32;
const AF_VSOCK_FAMILY: u32 = 40;

/// What the filter answers for one syscall number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// A fixed return action.
    Return(u32),
    /// Allowed unless the flags in argument 0 ask for a user namespace.
    NoNewUser,
    /// Allowed unless argument 0 is AF_VSOCK.
    NoVsock,
    /// Allowed for [`PERSONALITIES`] only.
    KnownPersonality,
}

fn verdict_for(nr: u32) -> Verdict {
    let nr = nr as c_long;
    if nr == SYS_clone || nr == SYS_unshare {
        Verdict::NoNewUser
    } else if nr == SYS_socket {
        Verdict::NoVsock
    } else if nr == SYS_personality {
        Verdict::KnownPersonality
    } else if nr == SYS_clone3 || nr as u32 > NEWEST_KNOWN {
        Verdict::Return(errno(ENOSYS))
    } else if ALLOWED.contains(&nr) || ALLOWED_ARCH.contains(&nr) {
        Verdict::Return(ALLOW)
    } else {
        Verdict::Return(errno(EPERM))
    }
}

/// Syscall numbers in runs of equal verdict: `(first number, verdict)`;
/// the last run reaches every higher number.
fn ranges() -> Vec<(u32, Verdict)> {
    let mut runs: Vec<(u32, Verdict)> = Vec::new();
    for nr in 0..=NEWEST_KNOWN + 1 {
        let v = verdict_for(nr);
        if runs.last().map(|(_, last)| *last) != Some(v) {
            runs.push((nr, v));
        }
    }
    runs
}

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter { code, jt: 0, jf: 0, k }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// A program under construction: instructions, and `JA`s to the argument
/// checks, patched once those are placed.
struct Builder {
    prog: Vec<sock_filter>,
    to_patch: Vec<(usize, Verdict)>,
}

impl Builder {
    /// A binary search over `runs` (the accumulator holds the number).
    fn search(&mut self, runs: &[(u32, Verdict)]) {
        if let [(_, verdict)] = runs {
            match verdict {
                Verdict::Return(action) => self.prog.push(stmt(RET, *action)),
                other => {
                    self.to_patch.push((self.prog.len(), *other));
                    self.prog.push(stmt(JA, 0));
                }
            }
            return;
        }
        let mid = runs.len() / 2;
        // nr >= split: fall through to the jump to the upper half.
        self.prog.push(jump(JGE, runs[mid].0, 0, 1));
        let to_upper = self.prog.len();
        self.prog.push(stmt(JA, 0));
        self.search(&runs[..mid]);
        self.prog[to_upper].k = (self.prog.len() - to_upper - 1) as u32;
        self.search(&runs[mid..]);
    }

    /// Places one argument check and returns where it starts.
    fn argument_check(&mut self, verdict: Verdict) -> usize {
        let start = self.prog.len();
        let eperm = errno(EPERM);
        self.prog.push(stmt(LD_ABS, ARG0));
        match verdict {
            Verdict::NoNewUser => {
                self.prog.push(jump(JSET, CLONE_NEWUSER_BIT, 0, 1));
                self.prog.push(stmt(RET, eperm));
            }
            Verdict::NoVsock => {
                self.prog.push(jump(JEQ, AF_VSOCK_FAMILY, 0, 1));
                self.prog.push(stmt(RET, errno(EAFNOSUPPORT)));
            }
            Verdict::KnownPersonality => {
                let n = PERSONALITIES.len() as u8;
                for (i, value) in PERSONALITIES.iter().enumerate() {
                    self.prog.push(jump(JEQ, *value, n - i as u8, 0));
                }
                self.prog.push(stmt(RET, eperm));
            }
            Verdict::Return(_) => unreachable!("not an argument check"),
        }
        self.prog.push(stmt(RET, ALLOW));
        start
    }
}

/// The filter program.
pub fn program() -> Vec<sock_filter> {
    let prelude = vec![stmt(LD_ABS, ARCH), jump(JEQ, NATIVE_ARCH, 1, 0), stmt(RET, KILL_PROCESS), stmt(LD_ABS, NR)];
    let mut b = Builder { prog: prelude, to_patch: Vec::new() };
    #[cfg(target_arch = "x86_64")]
    {
        // The x32 ABI's numbers: a second syscall table.
        b.prog.push(jump(JGE, 0x4000_0000, 0, 1));
        b.prog.push(stmt(RET, errno(EPERM)));
    }
    b.search(&ranges());
    let mut placed: Vec<(Verdict, usize)> = Vec::new();
    for (at, verdict) in std::mem::take(&mut b.to_patch) {
        let target = match placed.iter().find(|(v, _)| *v == verdict) {
            Some((_, start)) => *start,
            None => {
                let start = b.argument_check(verdict);
                placed.push((verdict, start));
                start
            }
        };
        b.prog[at].k = (target - at - 1) as u32;
    }
    b.prog
}

/// Installs the filter on the calling thread (inherited by every process
/// it starts). Needs `CAP_SYS_ADMIN` in the current user namespace or
/// `no_new_privs`.
pub fn install() -> Result<()> {
    let prog = program();
    let fprog = libc::sock_fprog { len: prog.len() as u16, filter: prog.as_ptr() as *mut libc::sock_filter };
    // SAFETY: a valid program that outlives the call.
    let rc = unsafe { libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &fprog as *const _) };
    if rc != 0 {
        return Err(Error::Io("install the step's seccomp filter".into(), std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the program the way the kernel does, over one syscall.
    fn verdict(nr: c_long, arg0: u64) -> u32 {
        let prog = program();
        let data = |off: u32| -> u32 {
            match off {
                NR => nr as u32,
                ARCH => NATIVE_ARCH,
                ARG0 => arg0 as u32,
                _ => panic!("offset {off}"),
            }
        };
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let ins = prog[pc];
            pc += 1;
            match ins.code {
                LD_ABS => acc = data(ins.k),
                RET => return ins.k,
                JA => pc += ins.k as usize,
                JEQ | JGE | JSET => {
                    let taken = match ins.code {
                        JEQ => acc == ins.k,
                        JGE => acc >= ins.k,
                        _ => acc & ins.k != 0,
                    };
                    pc += if taken { ins.jt } else { ins.jf } as usize;
                }
                other => panic!("opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn every_number_gets_the_verdict_of_the_tables() {
        for nr in 0..=NEWEST_KNOWN + 40 {
            if let Verdict::Return(action) = verdict_for(nr) {
                assert_eq!(verdict(nr as c_long, 0), action, "syscall {nr}");
            }
        }
        assert!(program().len() < 1024, "{} instructions", program().len());
    }

    #[test]
    fn refuses_what_the_runtime_defaults_refuse_and_allows_the_rest() {
        let eperm = errno(EPERM);
        for nr in DENIED {
            assert_eq!(verdict(*nr, 0), eperm, "syscall {nr}");
            assert!(!ALLOWED.contains(nr) && !ALLOWED_ARCH.contains(nr), "syscall {nr} is listed both ways");
        }
        assert_eq!(verdict(SYS_unshare, CLONE_NEWUSER as u64), eperm);
        assert_eq!(verdict(SYS_unshare, (CLONE_NEWNS | CLONE_NEWUSER) as u64), eperm);
        assert_eq!(verdict(SYS_unshare, CLONE_NEWNS as u64), ALLOW);
        assert_eq!(verdict(SYS_clone, (CLONE_NEWUSER | SIGCHLD) as u64), eperm);
        assert_eq!(verdict(SYS_clone, (CLONE_NEWPID | SIGCHLD) as u64), ALLOW);
        assert_eq!(verdict(SYS_clone3, 0), errno(ENOSYS));
        assert_eq!(verdict(SYS_socket, 40), errno(EAFNOSUPPORT));
        assert_eq!(verdict(SYS_socket, AF_INET as u64), ALLOW);
        assert_eq!(verdict(SYS_personality, 0x0040_0000), eperm, "READ_IMPLIES_EXEC");
        for ok in PERSONALITIES {
            assert_eq!(verdict(SYS_personality, *ok as u64), ALLOW);
        }
        for ok in [SYS_read, SYS_mount, SYS_ptrace, SYS_execve, SYS_openat, SYS_getdents64] {
            assert_eq!(verdict(ok, 0), ALLOW, "syscall {ok}");
        }
        assert_eq!(verdict(452, 0), ALLOW, "fchmodat2, which glibc tries first");
        assert_eq!(verdict(NEWEST_KNOWN as c_long + 1, 0), errno(ENOSYS), "newer than the profile");
        #[cfg(target_arch = "x86_64")]
        assert_eq!(verdict(0x4000_0000 + SYS_keyctl, 0), eperm, "x32 numbers");
    }
}
