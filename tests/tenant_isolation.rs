//! What one tenant's build leaves behind is not another tenant's to see:
//! cache mounts are scoped to the image's repository by default
//! (`--tenant-scope`), and `--allowed-images` keeps a Dockerfile from
//! pulling images outside the operator's patterns with the builder's
//! credentials.

mod support;

use serde_json::json;
use support::*;

/// A build of `image` that prints what the shared-id cache holds, then
/// leaves `token` in it; `run` makes the step's key new.
fn cache_probe(image: &str, token: &str, run: &str) -> Vec<u8> {
    let dockerfile = format!(
        "FROM {}/busybox\nARG RUN\n\
         RUN --mount=type=cache,target=/root/.cache/pip (cat /root/.cache/pip/token 2>/dev/null || echo none) > /seen \
         && echo {token} > /root/.cache/pip/token\n",
        registry()
    );
    request_tar(&json!({"image": image, "buildArgs": {"RUN": run}}), &[("Dockerfile", dockerfile.as_bytes())])
}

fn seen(image: &str) -> String {
    std::fs::read_to_string(unpack_image(image, None).rootfs.join("seen")).unwrap().trim().to_string()
}

#[test]
fn cache_mounts_are_shared_within_a_tenant_and_never_across() {
    let server = Server::start(ServerOptions::default());
    let (a, b) = (test_image("kiln/tenant-a"), test_image("kiln/tenant-b"));
    let (status, reply) = server.build(&cache_probe(&a, "token-of-a", "1"));
    assert_success(status, &reply);
    assert_eq!(seen(&a), "none");
    let (status, reply) = server.build(&cache_probe(&b, "token-of-b", "1"));
    assert_success(status, &reply);
    assert_eq!(executed_runs(&reply), 1, "B's step ran: A's layer is not B's cache hit");
    assert_eq!(seen(&b), "none", "B does not see A's cache mount");
    let (status, reply) = server.build(&cache_probe(&a, "token-of-a", "2"));
    assert_success(status, &reply);
    assert_eq!(seen(&a), "token-of-a", "A's next build does");

    let shared =
        Server::start(ServerOptions { args: vec!["--tenant-scope".into(), "registry".into()], ..Default::default() });
    assert_success_pair(shared.build(&cache_probe(&a, "from-a", "1")));
    assert_success_pair(shared.build(&cache_probe(&b, "from-b", "1")));
    assert_eq!(seen(&b), "from-a", "--tenant-scope registry shares across repositories");
}

fn assert_success_pair((status, reply): (u16, serde_json::Value)) {
    assert_success(status, &reply);
}

#[test]
fn allowed_images_refuse_what_is_outside_the_patterns_naming_the_line() {
    let reg = registry();
    let args = vec!["--allowed-images".into(), format!("{reg}/busybox")];
    let server = Server::start(ServerOptions { args, ..Default::default() });
    let image = test_image("kiln/policy");
    let build = |dockerfile: String| {
        server.build(&request_tar(&json!({"image": image}), &[("Dockerfile", dockerfile.as_bytes())]))
    };
    assert_success_pair(build(format!("FROM {reg}/busybox\nRUN true\n")));
    let (status, reply) = build(format!("FROM {reg}/busybox AS ok\nFROM {reg}/of-watchdog:test\n"));
    assert_eq!(status, 400, "{reply}");
    let error = reply["error"].as_str().unwrap();
    assert!(error.contains("Dockerfile:2:1") && error.contains("of-watchdog:test is not an allowed image"), "{error}");
    let (status, reply) =
        build(format!("FROM {reg}/busybox\nRUN true\nCOPY --from={reg}/of-watchdog:test /fwatchdog /\n"));
    assert_eq!(status, 400, "{reply}");
    let error = reply["error"].as_str().unwrap();
    assert!(error.contains("Dockerfile:3:1") && error.contains("--allowed-images"), "{error}");
}

#[test]
fn one_builds_long_steps_do_not_hold_back_another_builds_step() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let tag = unique("slow");
    // Two stages in one wave: they take every step slot one build may hold.
    let slow = format!(
        "FROM {reg}/busybox AS a\nRUN sleep 8 && echo {tag}-a > /a\n\
         FROM {reg}/busybox AS b\nRUN sleep 8 && echo {tag}-b > /b\n\
         FROM {reg}/busybox\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n"
    );
    let slow = request_tar(&json!({"image": test_image("kiln/slow-tenant")}), &[("Dockerfile", slow.as_bytes())]);
    let quick = format!("FROM {reg}/busybox\nRUN echo {} > /q\n", unique("quick"));
    let quick = request_tar(&json!({"image": test_image("kiln/quick-tenant")}), &[("Dockerfile", quick.as_bytes())]);
    std::thread::scope(|s| {
        let running = s.spawn(|| server.build(&slow));
        std::thread::sleep(std::time::Duration::from_secs(2));
        let started = std::time::Instant::now();
        let (status, reply) = server.build(&quick);
        let took = started.elapsed();
        assert_success(status, &reply);
        assert_eq!(executed_runs(&reply), 1);
        assert!(took < std::time::Duration::from_secs(4), "the quick build waited {took:?} for the slow one's steps");
        assert!(!running.is_finished(), "the slow build was still running");
        assert_success_pair(running.join().unwrap());
    });
}

#[test]
fn the_host_network_is_an_entitlement_the_operator_grants() {
    let server = Server::start(ServerOptions::default());
    let dockerfile = format!("FROM {}/busybox\nRUN --network=none true\nRUN --network=host true\n", registry());
    let body = request_tar(&json!({"image": test_image("kiln/net-host")}), &[("Dockerfile", dockerfile.as_bytes())]);
    let (status, reply) = server.build(&body);
    assert_eq!(status, 400, "{reply}");
    let error = reply["error"].as_str().unwrap();
    assert!(error.contains("Dockerfile:3:1") && error.contains("network.host is not allowed"), "{error}");
    let args = vec!["--allow-insecure-entitlement".into(), "network.host".into()];
    let granted = Server::start(ServerOptions { args, ..Default::default() });
    assert_success_pair(granted.build(&body));
}
