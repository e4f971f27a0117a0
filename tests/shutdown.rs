//! Graceful shutdown: SIGTERM with a build in flight lets it finish and
//! push within the drain timeout; a build that outlives the timeout is
//! cancelled cleanly (503 to its client, no step process, no uncommitted
//! snapshot), and the server exits 0 either way.

mod support;

use serde_json::json;
use std::time::{Duration, Instant};
use support::*;

/// Command names of `pid`'s descendants.
fn descendant_comms(pid: u32) -> Vec<String> {
    let mut parent_of = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        let Some((head, rest)) = stat.rsplit_once(')') else { continue };
        let comm = head.split_once('(').map(|(_, c)| c.to_string()).unwrap_or_default();
        let ppid: u32 = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
        let me: u32 = e.file_name().to_str().and_then(|p| p.parse().ok()).unwrap_or(0);
        parent_of.push((me, ppid, comm));
    }
    let mut family = vec![pid];
    let mut comms = Vec::new();
    let mut i = 0;
    while i < family.len() {
        for (me, ppid, comm) in &parent_of {
            if *ppid == family[i] && !family.contains(me) {
                family.push(*me);
                comms.push(comm.clone());
            }
        }
        i += 1;
    }
    comms
}

fn wait_for_step(server: &Server, comm: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !descendant_comms(server.pid()).iter().any(|c| c == comm) {
        assert!(Instant::now() < deadline, "the step never started:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sleeping_build(image: &str, seconds: u32) -> Vec<u8> {
    let dockerfile = format!("FROM {}/busybox\nRUN sleep {seconds} && echo slept > /slept\n", registry());
    request_tar(&json!({"image": image}), &[("Dockerfile", dockerfile.as_bytes())])
}

/// Sends a build whose RUN sleeps `seconds` from another thread and waits
/// until the step runs; the thread returns the reply.
fn start_sleeping_build(
    server: &Server,
    image: &str,
    seconds: u32,
) -> std::thread::JoinHandle<(u16, serde_json::Value)> {
    let body = sleeping_build(image, seconds);
    let (url, sig) = (server.url.clone(), sign(SECRET, &body));
    let client = std::thread::spawn(move || {
        let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
        let resp = http.post(format!("{url}/build")).header("X-Build-Signature", sig).body(body).send().unwrap();
        (resp.status().as_u16(), resp.json::<serde_json::Value>().unwrap())
    });
    wait_for_step(server, "sleep");
    client
}

#[test]
fn sigterm_lets_a_build_in_flight_finish_and_push() {
    let mut server = Server::start(ServerOptions::default());
    let image = test_image(&unique("drain"));
    let client = start_sleeping_build(&server, &image, 2);
    let signalled = Instant::now();
    let url = server.url.clone();
    let exit = std::thread::scope(|s| {
        let exit = s.spawn(|| server.terminate(Duration::from_secs(60)));
        std::thread::sleep(Duration::from_millis(300));
        let refused = reqwest::blocking::get(format!("{url}/healthz")).is_err();
        assert!(refused, "a stopping server still accepts connections");
        exit.join().unwrap()
    });
    let (status, reply) = client.join().unwrap();
    assert_success(status, &reply);
    let exit = exit.expect("the server exited after its build finished");
    assert!(exit.success(), "exit status {exit:?}:\n{}", server.log());
    assert!(signalled.elapsed() < Duration::from_secs(30));
    let unpacked = unpack_image(&image, None);
    assert_eq!(std::fs::read_to_string(unpacked.rootfs.join("slept")).unwrap(), "slept\n");
    assert!(server.log().contains("draining"), "{}", server.log());
}

#[test]
fn a_build_outliving_the_drain_timeout_is_cancelled_cleanly() {
    let opts = ServerOptions { args: vec!["--shutdown-timeout".into(), "1".into()], ..Default::default() };
    let mut server = Server::start(opts);
    let image = test_image(&unique("cancelled"));
    let client = start_sleeping_build(&server, &image, 300);
    let signalled = Instant::now();
    let exit = server.terminate(Duration::from_secs(30)).expect("the server exited after cancelling");
    assert!(exit.success(), "exit status {exit:?}:\n{}", server.log());
    assert!(signalled.elapsed() < Duration::from_secs(15), "took {:?}", signalled.elapsed());
    let (status, reply) = client.join().unwrap();
    assert_eq!(status, 503, "{reply}");
    assert!(reply["error"].as_str().unwrap_or("").contains("shutting down"), "{reply}");
    assert_eq!(active_snapshots(&server.data_dir), 0, "an uncommitted snapshot was left behind");
    // Killed processes take a moment to go (longer on a loaded machine, as
    // a process in uninterruptible I/O dies only when that returns): give
    // them up to 15 s.
    let leftovers = || std::process::Command::new("pgrep").args(["-f", "sleep 300"]).output().unwrap().stdout;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !leftovers().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let left = leftovers();
    let ps = |pid: &str| std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).unwrap_or_default();
    let pids = String::from_utf8_lossy(&left).to_string();
    assert!(left.is_empty(), "step processes survived: {pids}\n{}", pids.lines().map(ps).collect::<String>());
    assert!(std::process::Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", &format!("docker://{image}")])
        .output()
        .map(|o| !o.status.success())
        .unwrap());
}
