//! A step's bounds: the client going away, the step timeout and the output
//! budget each end or trim the step, and leave no process, mount or
//! scratch directory behind.

mod support;

use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};
use support::*;

fn sleepers(marker: &str) -> usize {
    let out = std::process::Command::new("pgrep").args(["-fx", &format!("sleep {marker}")]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// Bundles (per-step scratch dirs) left under the data dir's `run/`.
fn bundles(data: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(data.join("run")) else { return Vec::new() };
    entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.len() == 12).collect()
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn assert_clean(server: &Server, marker: &str) {
    wait_until("the step's processes are gone", || sleepers(marker) == 0);
    wait_until("no step scratch dir is left", || bundles(&server.data_dir).is_empty());
    // Removal retries while the dying helper's mount namespace still holds
    // the overlay (a few hundred milliseconds).
    wait_until("the step's snapshot is removed", || active_snapshots(&server.data_dir) == 0);
    let image = test_image("kiln/after-cancel");
    let body = request_tar(
        &json!({"image": image}),
        &[("Dockerfile", format!("FROM {}/busybox\nRUN true\n", registry()).as_bytes())],
    );
    let (status, reply) = server.build(&body);
    assert_success(status, &reply);
}

#[test]
fn a_client_that_goes_away_cancels_the_step() {
    let server = Server::start(ServerOptions::default());
    let dockerfile = format!("FROM {}/busybox\nRUN sleep 41\n", registry());
    let body = request_tar(&json!({"image": test_image("kiln/cancel")}), &[("Dockerfile", dockerfile.as_bytes())]);
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(3)).build().unwrap();
    let sent =
        client.post(format!("{}/build", server.url)).header("X-Build-Signature", sign(SECRET, &body)).body(body).send();
    assert!(sent.is_err(), "the client gave up first");
    assert_clean(&server, "41");
}

#[test]
fn the_step_timeout_kills_the_whole_step() {
    let server = Server::start(ServerOptions { args: vec!["--step-timeout".into(), "2".into()], ..Default::default() });
    let dockerfile = format!("FROM {}/busybox\nRUN (sleep 43 &) ; sleep 42\n", registry());
    let body = request_tar(&json!({"image": test_image("kiln/timeout")}), &[("Dockerfile", dockerfile.as_bytes())]);
    let (status, reply) = server.build(&body);
    assert_eq!(status, 500, "{reply}");
    let err = reply["error"].as_str().unwrap();
    assert!(err.contains("2 s step timeout") && err.contains("Dockerfile line 2"), "{err}");
    assert_clean(&server, "42");
    assert_eq!(sleepers("43"), 0, "background processes of the step die too");
}

#[test]
fn step_output_is_capped_with_a_notice() {
    let server = Server::start(ServerOptions::default());
    let dockerfile = format!(
        "FROM {}/busybox\nRUN head -c 200000 /dev/zero | tr '\\\\0' x; echo; yes 0123456789abcdef0123456789abcdef | head -c 6000000; echo done\n",
        registry()
    );
    let body = request_tar(&json!({"image": test_image("kiln/chatty")}), &[("Dockerfile", dockerfile.as_bytes())]);
    let (status, reply) = server.build(&body);
    assert_success(status, &reply);
    let log = log_text(&reply);
    assert!(log.contains("[line truncated]"), "a 200 kB line is cut");
    assert!(log.contains("[output truncated: the step printed more than 4 MiB"), "the budget notice appears");
    let logged = log.lines().filter(|l| l.ends_with("0123456789abcdef0123456789abcdef")).count() * 33;
    assert!(logged <= 4 << 20, "no more than the budget of step output is logged: {logged} bytes");
    let after = log.split("[output truncated").nth(1).unwrap();
    assert!(!after.lines().any(|l| l.ends_with("0123456789abcdef")), "nothing past the budget is logged");
}
