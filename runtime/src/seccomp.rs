//! The seccomp filter of every RUN step, written as classic BPF by hand
//! (no libseccomp: nothing to compile per step, a few microseconds to
//! install). The helper installs it before it calls libcontainer, while it
//! holds `CAP_SYS_ADMIN` in the step's user namespace, so no
//! `no_new_privs` is needed (setuid programs keep working in steps); the
//! container's init and the step inherit it.
//!
//! It is a deny-list of what the runtimes' default profiles (Docker's,
//! containerd's, BuildKit's) refuse *without* a capability check — the step
//! has Docker's 14 capabilities, and the capability checks stop the rest
//! (`mount`, `setns`, `pivot_root`, module loading…): new user namespaces
//! (the way to every capability inside one), the kernel keyring, `perf_event_open`,
//! `io_uring`, `bpf`, `userfaultfd`, `open_by_handle_at`, AF_VSOCK sockets
//! and personalities other than Linux's. `clone3` answers ENOSYS (its
//! flags cannot be inspected), so libc and libcontainer fall back to
//! `clone`, whose flags can.

use crate::{Error, Result};

/// `offsetof(struct seccomp_data, nr)`.
const NR: u32 = 0;
/// `offsetof(struct seccomp_data, arch)`.
const ARCH: u32 = 4;
/// `offsetof(struct seccomp_data, args[0])` (low 32 bits, little endian).
const ARG0: u32 = 16;

const LD_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
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

/// Syscalls a step may not make at all.
const DENIED: &[libc::c_long] = &[
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_perf_event_open,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_bpf,
    libc::SYS_userfaultfd,
    libc::SYS_open_by_handle_at,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_acct,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_reboot,
    libc::SYS_quotactl,
    libc::SYS_fanotify_init,
];

/// Personalities a step may set (Linux, 32-bit Linux, uname26, and the
/// query value), as the runtimes' default profiles allow.
const PERSONALITIES: &[u32] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

const CLONE_NEWUSER: u32 = libc::CLONE_NEWUSER as u32;
const AF_VSOCK: u32 = 40;

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt: 0, jf: 0, k }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// `if nr == SYSCALL { if arg0 & bits { deny } else { allow } }`.
fn refuse_arg_bits(p: &mut Vec<libc::sock_filter>, nr: libc::c_long, bits: u32, deny: u32) {
    p.push(jump(JEQ, nr as u32, 0, 4));
    p.push(stmt(LD_ABS, ARG0));
    p.push(jump(JSET, bits, 0, 1));
    p.push(stmt(RET, deny));
    p.push(stmt(RET, ALLOW));
}

/// The filter program.
pub fn program() -> Vec<libc::sock_filter> {
    let eperm = errno(libc::EPERM);
    let mut p = vec![stmt(LD_ABS, ARCH), jump(JEQ, NATIVE_ARCH, 1, 0), stmt(RET, KILL_PROCESS), stmt(LD_ABS, NR)];
    #[cfg(target_arch = "x86_64")]
    {
        // The x32 ABI's numbers: a second syscall table the list misses.
        p.push(jump(JGE, 0x4000_0000, 0, 1));
        p.push(stmt(RET, eperm));
    }
    for nr in DENIED {
        p.push(jump(JEQ, *nr as u32, 0, 1));
        p.push(stmt(RET, eperm));
    }
    p.push(jump(JEQ, libc::SYS_clone3 as u32, 0, 1));
    p.push(stmt(RET, errno(libc::ENOSYS)));
    refuse_arg_bits(&mut p, libc::SYS_unshare, CLONE_NEWUSER, eperm);
    refuse_arg_bits(&mut p, libc::SYS_clone, CLONE_NEWUSER, eperm);
    // socket(AF_VSOCK, …)
    p.push(jump(JEQ, libc::SYS_socket as u32, 0, 4));
    p.push(stmt(LD_ABS, ARG0));
    p.push(jump(JEQ, AF_VSOCK, 0, 1));
    p.push(stmt(RET, errno(libc::EAFNOSUPPORT)));
    p.push(stmt(RET, ALLOW));
    // personality(p) for p outside PERSONALITIES
    let n = PERSONALITIES.len() as u8;
    p.push(jump(JEQ, libc::SYS_personality as u32, 0, n + 3));
    p.push(stmt(LD_ABS, ARG0));
    for (i, value) in PERSONALITIES.iter().enumerate() {
        p.push(jump(JEQ, *value, n - i as u8, 0));
    }
    p.push(stmt(RET, eperm));
    p.push(stmt(RET, ALLOW));
    // Everything else.
    p.push(stmt(RET, ALLOW));
    p
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
    fn verdict(nr: libc::c_long, arg0: u64) -> u32 {
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
    fn refuses_what_the_runtime_defaults_refuse_and_allows_the_rest() {
        let eperm = errno(libc::EPERM);
        for nr in DENIED {
            assert_eq!(verdict(*nr, 0), eperm, "syscall {nr}");
        }
        assert_eq!(verdict(libc::SYS_unshare, libc::CLONE_NEWUSER as u64), eperm);
        assert_eq!(verdict(libc::SYS_unshare, (libc::CLONE_NEWNS | libc::CLONE_NEWUSER) as u64), eperm);
        assert_eq!(verdict(libc::SYS_unshare, libc::CLONE_NEWNS as u64), ALLOW);
        assert_eq!(verdict(libc::SYS_clone, (libc::CLONE_NEWUSER | libc::SIGCHLD) as u64), eperm);
        assert_eq!(verdict(libc::SYS_clone, (libc::CLONE_NEWPID | libc::SIGCHLD) as u64), ALLOW);
        assert_eq!(verdict(libc::SYS_clone3, 0), errno(libc::ENOSYS));
        assert_eq!(verdict(libc::SYS_socket, 40), errno(libc::EAFNOSUPPORT));
        assert_eq!(verdict(libc::SYS_socket, libc::AF_INET as u64), ALLOW);
        assert_eq!(verdict(libc::SYS_personality, 0x0040_0000), eperm, "READ_IMPLIES_EXEC");
        for ok in PERSONALITIES {
            assert_eq!(verdict(libc::SYS_personality, *ok as u64), ALLOW);
        }
        for ok in [libc::SYS_read, libc::SYS_mount, libc::SYS_ptrace, libc::SYS_setns, libc::SYS_execve] {
            assert_eq!(verdict(ok, 0), ALLOW, "syscall {ok}");
        }
        #[cfg(target_arch = "x86_64")]
        assert_eq!(verdict(0x4000_0000 + libc::SYS_keyctl, 0), eperm, "x32 numbers");
    }
}
