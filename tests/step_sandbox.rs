//! Every RUN step runs under kiln's seccomp filter, with runc's masked and
//! read-only `/proc` paths: a static probe (fixtures/probes/syscalls.c)
//! tries from inside a step what the runtimes' default profiles refuse —
//! a new user namespace, the kernel keyring (shared by every step, so a
//! channel between tenants' builds), perf, io_uring, bpf, userfaultfd,
//! AF_VSOCK, READ_IMPLIES_EXEC, and calls on no deny-list that the
//! allow-list leaves out (`get_mempolicy`, `kcmp`) — and each fails, as
//! root and rootless,
//! while `no_new_privs` stays off (setuid programs keep working).
//! Each step also has a user namespace of its own, so a step that holds its
//! process limit does not stop another build's step from forking.

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
    for works in ["unshare-user", "add_key", "keyctl", "personality", "inet-socket", "get_mempolicy", "kcmp"] {
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
    for denied in [
        "unshare-user",
        "add_key",
        "keyctl",
        "perf_event_open",
        "io_uring_setup",
        "bpf",
        "userfaultfd",
        "personality",
        "get_mempolicy",
        "kcmp",
    ] {
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

/// Processes whose command line is exactly `argv`.
fn processes_running(argv: &[&str]) -> usize {
    let want: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .filter(|c| *c == want)
        .count()
}

fn one_steps_process_limit_is_its_own(user: Option<String>) {
    const LIMIT: usize = 40;
    let args = vec!["--step-max-processes".to_string(), LIMIT.to_string()];
    let server = std::sync::Arc::new(Server::start(ServerOptions { user, args, ..Default::default() }));
    let reg = registry();
    // Forks `sleep` until the kernel refuses, then holds every process.
    let hog = format!(
        "FROM {reg}/busybox\nRUN (i=0; while true; do sleep 13 & i=$((i+1)); echo $i > /held; done) 2>/dev/null; \
         read n < /held; echo \"forks: $n\"; exec sleep 13\n"
    );
    let body = request_tar(&json!({"image": test_image("kiln/nproc-hog")}), &[("Dockerfile", hog.as_bytes())]);
    let hog_server = server.clone();
    let hog_build = std::thread::spawn(move || hog_server.build(&body));
    let holding = || processes_running(&["sleep", "13"]) >= LIMIT - 5;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !holding() {
        assert!(std::time::Instant::now() < deadline, "the hog never reached its limit: {}", server.log());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let other = format!("FROM {reg}/busybox\nRUN sh -c 'echo forked' && /bin/true && echo started > /ran\n");
    let body = request_tar(&json!({"image": test_image("kiln/nproc-other")}), &[("Dockerfile", other.as_bytes())]);
    let (status, reply) = server.build(&body);
    assert!(holding(), "the hog still held its processes while the other build ran");
    assert_success(status, &reply);
    assert!(log_text(&reply).contains("forked"), "{reply}");
    let (status, reply) = hog_build.join().unwrap();
    assert_success(status, &reply);
    let log = log_text(&reply);
    let held: usize = log.lines().find_map(|l| l.split_once("Z forks: ")?.1.trim().parse().ok()).expect(&log);
    assert!((LIMIT - 5..LIMIT).contains(&held), "the hog stopped at its own limit ({held} of {LIMIT})");
}

#[test]
fn a_step_at_its_process_limit_does_not_stop_another_builds_step_as_root() {
    one_steps_process_limit_is_its_own(None);
}

#[test]
fn a_step_at_its_process_limit_does_not_stop_another_builds_step_rootless() {
    one_steps_process_limit_is_its_own(Some(std::env::var("KILN_TEST_USER").unwrap_or_else(|_| "kiln-test".into())));
}
