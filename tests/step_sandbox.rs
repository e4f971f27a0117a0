//! Every RUN step runs under kiln's seccomp filter, with runc's masked and
//! read-only `/proc` paths: a static probe (fixtures/probes/syscalls.c)
//! tries from inside a step what the runtimes' default profiles refuse —
//! a new user namespace, the kernel keyring (shared by every step, so a
//! channel between tenants' builds), perf, io_uring, bpf, userfaultfd,
//! AF_VSOCK, READ_IMPLIES_EXEC — and each fails, as root and rootless,
//! while `no_new_privs` stays off (setuid programs keep working).

mod support;

use serde_json::json;
use std::collections::BTreeMap;
use std::process::Command;
use support::*;

/// The probe, built static, and what it reports when run here, outside
/// any step (the control: the same calls succeed without kiln's filter).
fn probe_binary() -> (Vec<u8>, BTreeMap<String, String>) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("syscalls");
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/probes/syscalls.c");
    let built = Command::new("cc").args(["-static", "-O1", "-o"]).arg(&out).arg(src).output().unwrap();
    assert!(built.status.success(), "cc: {}", String::from_utf8_lossy(&built.stderr));
    let here = Command::new(&out).output().unwrap();
    (std::fs::read(out).unwrap(), results(&String::from_utf8_lossy(&here.stdout)))
}

fn results(text: &str) -> BTreeMap<String, String> {
    text.lines().filter_map(|l| l.split_once(' ')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn sandboxed(user: Option<String>) {
    let server = Server::start(ServerOptions { user, ..Default::default() });
    let image = test_image("kiln/sandbox");
    let dockerfile = format!(
        "FROM {}/busybox\nCOPY syscalls /syscalls\n\
         RUN chmod 755 /syscalls && /syscalls > /probe && grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status > /status && \
         (cat /proc/keys | wc -c) > /keys && (head -c 1 /proc/kcore | wc -c) > /kcore && \
         ( (echo 1 > /proc/sys/kernel/sysrq) 2>/dev/null && echo writable || echo read-only) > /proc-sys && \
         (unshare -U true 2>/dev/null && echo ESCAPED || echo blocked) > /unshare\n",
        registry()
    );
    let (binary, outside) = probe_binary();
    for works in ["unshare-user", "add_key", "keyctl", "personality", "inet-socket"] {
        assert_eq!(
            outside.get(works).map(String::as_str),
            Some("ok"),
            "control: {works} works outside a step: {outside:?}"
        );
    }
    let config = json!({"image": image});
    let (status, reply) =
        server.build(&request_tar(&config, &[("Dockerfile", dockerfile.as_bytes()), ("syscalls", &binary)]));
    assert_success(status, &reply);
    let img = unpack_image(&image, None);
    let read = |f: &str| std::fs::read_to_string(img.rootfs.join(f)).unwrap();
    let probe = results(&read("probe"));
    for denied in
        ["unshare-user", "add_key", "keyctl", "perf_event_open", "io_uring_setup", "bpf", "userfaultfd", "personality"]
    {
        assert_eq!(probe.get(denied).map(String::as_str), Some("EPERM"), "{denied}: {probe:?}");
    }
    assert_eq!(probe["vsock"], "EAFNOSUPPORT", "{probe:?}");
    assert_eq!(probe["clone3"], "ENOSYS", "clone3 answers ENOSYS so libc falls back to clone: {probe:?}");
    assert_eq!(probe["inet-socket"], "ok", "ordinary sockets work: {probe:?}");
    let status = read("status");
    assert!(status.contains("Seccomp:\t2"), "a filter is installed: {status}");
    assert!(status.contains("NoNewPrivs:\t0"), "setuid programs keep working: {status}");
    assert_eq!(read("keys").trim(), "0", "/proc/keys is masked");
    assert_eq!(read("kcore").trim(), "0", "/proc/kcore is masked");
    assert_eq!(read("proc-sys").trim(), "read-only");
    assert_eq!(read("unshare").trim(), "blocked", "busybox unshare -U fails too");
}

#[test]
fn steps_run_under_the_seccomp_filter_as_root() {
    sandboxed(None);
}

#[test]
fn steps_run_under_the_seccomp_filter_rootless() {
    sandboxed(Some(std::env::var("KILN_TEST_USER").unwrap_or_else(|_| "kiln-test".into())));
}
