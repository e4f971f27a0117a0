//! NDJSON streaming read with faas-cli's rules, the `max_inflight` limit
//! with `/ready`, and `/metrics`.

mod support;

use serde_json::json;
use std::time::{Duration, Instant};
use support::*;

fn dockerfile_request(image: &str, dockerfile: &str) -> Vec<u8> {
    request_tar(&json!({"image": image}), &[("Dockerfile", dockerfile.as_bytes())])
}

#[test]
fn stream_reports_success_run_failure_and_push_failure() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let image = test_image("kiln/stream");
    let noisy = "i=0; while [ $i -lt 3000 ]; do echo \"line $i $(printf '%0200d' 0)\"; i=$((i+1)); done";
    let ok = server.build_stream(&dockerfile_request(&image, &format!("FROM {reg}/busybox\nRUN {noisy}\n")));
    assert_eq!(ok.verdict, Ok(image.clone()), "{:?}", ok.lines.last());
    let digest = ok.lines.last().unwrap()["digest"].as_str().unwrap_or_default().to_string();
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "the last line names the digest: {digest}");
    assert!(ok.lines.len() > 3, "progress arrives in several lines");
    assert!(ok.lines[..ok.lines.len() - 1].iter().all(|l| l["status"] == "in_progress"));
    assert!(ok.log.iter().any(|l| l.ends_with(&format!("line 2999 {}", "0".repeat(200)))), "all output is streamed");
    assert!(ok.log.iter().any(|l| l.contains(&format!("pushing manifest for {image}@sha256:"))));
    let durations: Vec<f64> = ok.lines.iter().map(|l| l["duration"].as_f64().unwrap()).collect();
    assert!(durations.windows(2).all(|w| w[0] <= w[1]), "duration grows: {durations:?}");

    let fail =
        server.build_stream(&dockerfile_request(&image, &format!("FROM {reg}/busybox\nRUN echo bad && exit 7\n")));
    let err = fail.verdict.expect_err("a RUN failure is a failed build");
    assert!(err.contains("exit code: 7") && err.contains("Dockerfile line 2"), "{err}");
    assert_eq!(fail.lines.last().unwrap()["status"], "failed", "never 'failure'");

    let unreachable = "127.0.0.1:1/kiln/nowhere:v1";
    let push = server.build_stream(&dockerfile_request(unreachable, &format!("FROM {reg}/busybox\nRUN true\n")));
    let err = push.verdict.expect_err("a push failure is a failed build");
    assert!(err.contains("push 127.0.0.1:1/kiln/nowhere:v1"), "{err}");

    let denied = server.build_stream(b"not a tar");
    assert_eq!(denied.status, 400, "errors before the build are real status codes");
}

#[test]
fn max_inflight_answers_429_byte_exact_and_flips_ready() {
    let server = Server::start(ServerOptions { args: vec!["--max-inflight".into(), "1".into()], ..Default::default() });
    let reg = registry();
    let image = test_image("kiln/limit");
    let slow = dockerfile_request(&image, &format!("FROM {reg}/busybox\nRUN sleep 3\n"));
    let ready = |s: &Server| reqwest::blocking::get(format!("{}/ready", s.url)).unwrap().status().as_u16();
    assert_eq!(ready(&server), 200);
    std::thread::scope(|scope| {
        let first = scope.spawn(|| server.build_stream(&slow));
        let deadline = Instant::now() + Duration::from_secs(10);
        while ready(&server) != 503 {
            assert!(Instant::now() < deadline, "/ready never went unready");
            std::thread::sleep(Duration::from_millis(20));
        }
        let raw = raw_post(&server.url, &slow);
        let want_head = "HTTP/1.1 429 Too Many Requests\r\n";
        assert!(raw.starts_with(want_head), "{raw}");
        let lower = raw.to_ascii_lowercase();
        assert!(lower.contains("\r\ncontent-type: text/plain; charset=utf-8\r\n"), "{raw}");
        assert!(lower.contains("\r\ncontent-length: 62\r\n"), "{raw}");
        assert!(raw.ends_with("\r\n\r\nConcurrent request limit exceeded. Max concurrent requests: 1\n"), "{raw}");
        assert!(first.join().unwrap().verdict.is_ok());
    });
    assert_eq!(ready(&server), 200, "ready again once the build ended");
}

/// A raw HTTP/1.1 exchange, to see headers and body byte for byte.
fn raw_post(url: &str, body: &[u8]) -> String {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let head =
        format!("POST /build HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn metrics_move_after_builds() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let image = test_image("kiln/metrics");
    let body = dockerfile_request(&image, &format!("FROM {reg}/busybox\nRUN echo m > /m\n"));
    assert_success_pair(server.build(&body));
    assert_success_pair(server.build(&body));
    let (status, _) = server.post(&body, Some("sha256=00"));
    assert_eq!(status, 401);
    let text = reqwest::blocking::get(format!("{}/metrics", server.metrics_url)).unwrap().text().unwrap();
    let value = |needle: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with(needle)).unwrap_or_else(|| panic!("no {needle} in\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(value("kiln_http_requests_total{route=\"/build\",code=\"200\"}"), 2.0);
    assert_eq!(value("kiln_http_requests_total{route=\"/build\",code=\"401\"}"), 1.0);
    assert_eq!(value("kiln_build_duration_seconds_count{result=\"success\"}"), 2.0);
    assert_eq!(value("kiln_cache_misses_total"), 2.0, "FROM and RUN ran once");
    assert_eq!(value("kiln_cache_hits_total"), 2.0, "and hit the second time");
    assert!(value("kiln_pulled_bytes_total") > 500_000.0, "the busybox layer was pulled");
    assert!(value("kiln_pushed_bytes_total") > 100.0);
    assert_eq!(value("kiln_step_duration_seconds_count{op=\"exec\"}"), 1.0);
    assert_eq!(value("kiln_builds_in_flight"), 0.0);
}

fn assert_success_pair((status, reply): (u16, serde_json::Value)) {
    assert_success(status, &reply);
}
