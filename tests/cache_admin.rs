//! `kiln cache ls` and `kiln cache prune` against a running server's
//! internal listener.

mod support;

use serde_json::json;
use support::*;

fn kiln_cache(server: &Server, args: &[&str]) -> String {
    server.admin_cli("cache", args)
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

#[test]
fn admin_endpoints_need_a_signature_from_loopback_and_from_a_step() {
    let args = vec!["--allow-insecure-entitlement".into(), "network.host".into()];
    let server = Server::start(ServerOptions { args, ..Default::default() });
    let client = reqwest::blocking::Client::new();
    for (method, path) in
        [("POST", "/cache/prune?keep_storage=0"), ("POST", "/cache/check"), ("GET", "/cache"), ("GET", "/doctor")]
    {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let resp = client.request(m, format!("{}{path}", server.metrics_url)).send().unwrap();
        assert_eq!(resp.status().as_u16(), 401, "{method} {path} unsigned");
        let forged = client
            .get(format!("{}/cache", server.metrics_url))
            .header("X-Kiln-Timestamp", kiln::timefmt::now_secs().to_string())
            .header("X-Kiln-Signature", format!("sha256={}", "00".repeat(32)))
            .send()
            .unwrap();
        assert_eq!(forged.status().as_u16(), 401, "a wrong signature");
    }
    let metrics = client.get(format!("{}/metrics", server.metrics_url)).send().unwrap();
    assert_eq!(metrics.status().as_u16(), 200, "/metrics stays open for Prometheus");

    let port = server.metrics_url.rsplit(':').next().unwrap();
    // A default step does not reach the listener at all (the node's
    // loopback is not its own); a host-network step (an entitlement) does,
    // and its unsigned prune is refused.
    // stdin stays open for a while: busybox nc half-closes the socket at
    // stdin's EOF, and hyper (half-close off) may then drop the connection
    // before its answer is written.
    let prune =
        format!("(printf 'POST /cache/prune?keep_storage=0 HTTP/1.0\\r\\n\\r\\n'; sleep 3) | nc -w 5 127.0.0.1 {port}");
    let dockerfile = format!(
        "FROM {}/busybox\nRUN ({prune} || echo step-could-not-connect) | head -1\nRUN --network=host {prune} | head -1\n",
        registry()
    );
    let image = test_image("kiln/step-prunes");
    let (status, reply) =
        server.build(&request_tar(&json!({"image": image}), &[("Dockerfile", dockerfile.as_bytes())]));
    assert_success(status, &reply);
    let log = log_text(&reply);
    assert!(log.contains("step-could-not-connect"), "a default step cannot connect:\n{log}");
    assert!(log.contains(" 401 Unauthorized"), "the host-network step's unsigned prune is refused:\n{log}");
    let listing = kiln_cache(&server, &["ls"]);
    assert!(listing.contains("RUN --network=host (printf"), "nothing was pruned: {listing}");
}

#[test]
fn a_waiting_prune_does_not_hold_back_new_builds() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let long = format!("FROM {reg}/busybox\nRUN sleep 6 && echo {}\n", unique("long"));
    let long = request_tar(&json!({"image": test_image("kiln/long")}), &[("Dockerfile", long.as_bytes())]);
    std::thread::scope(|s| {
        let running = s.spawn(|| server.build(&long));
        std::thread::sleep(std::time::Duration::from_secs(2));
        let prune = s.spawn(|| server.admin("POST", "/cache/prune?keep_storage=0").status().as_u16());
        std::thread::sleep(std::time::Duration::from_millis(300));
        let quick =
            request_tar(&json!({"image": test_image("kiln/quick")}), &[("Dockerfile", b"FROM scratch\nLABEL q=1\n")]);
        let started = std::time::Instant::now();
        let (status, reply) = server.build(&quick);
        let took = started.elapsed();
        assert_success(status, &reply);
        assert!(took < std::time::Duration::from_secs(3), "the quick build waited {took:?} behind the prune");
        assert!(!prune.is_finished(), "the prune waits for the running build");
        let (status, reply) = running.join().unwrap();
        assert_success(status, &reply);
        assert_eq!(prune.join().unwrap(), 200, "then it runs");
    });
}
