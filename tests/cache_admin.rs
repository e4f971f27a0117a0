//! `kiln cache ls` and `kiln cache prune` against a running server's
//! internal listener.

mod support;

use serde_json::json;
use std::process::Command;
use support::*;

fn kiln_cache(server: &Server, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("cache")
        .args(args)
        .args(["--url", &server.metrics_url])
        .output()
        .unwrap();
    assert!(out.status.success(), "kiln cache {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn cache_ls_and_prune() {
    let server = Server::start(ServerOptions::default());
    let image = test_image("kiln/cache-admin");
    let dockerfile = format!("FROM {}/busybox\nRUN echo cached-step > /f\n", registry());
    let body = request_tar(&json!({"image": image}), &[("Dockerfile", dockerfile.as_bytes())]);
    let (status, reply) = server.build(&body);
    assert_success(status, &reply);

    let listing = kiln_cache(&server, &["ls"]);
    assert!(listing.starts_with("KEY"), "{listing}");
    assert!(listing.contains("RUN echo cached-step > /f"), "{listing}");

    let report: serde_json::Value = serde_json::from_str(&kiln_cache(&server, &["prune"])).unwrap();
    assert!(report["steps_evicted"].as_u64().unwrap() >= 2, "{report}");
    assert!(report["bytes_after"].as_u64() < report["bytes_before"].as_u64(), "{report}");
    assert_eq!(kiln_cache(&server, &["ls"]).lines().count(), 1, "only the header is left");

    let (status, again) = server.build(&body);
    assert_success(status, &again);
    assert_eq!(executed_runs(&again), 1, "a pruned step runs again");
}
