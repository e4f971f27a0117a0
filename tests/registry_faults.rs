//! Registry faults: behind a proxy that fails the first request of every
//! kind (a 503, or a reset connection), pulls and pushes retry and succeed,
//! and the pushed tag points at a complete image (skopeo + umoci read it).

mod support;

use serde_json::json;
use std::process::Command;
use support::*;

#[test]
fn pulls_and_pushes_retry_through_faults() {
    let server =
        Server::start(ServerOptions { args: vec!["--registry-timeout".into(), "2".into()], ..Default::default() });
    for mode in ["503", "reset", "slow"] {
        let proxy = RegistryProxy::start(mode);
        let image = format!("{}/{}:v1", proxy.addr(), unique(&format!("kiln/faults-{mode}")));
        let dockerfile = format!("FROM {}/busybox\nRUN echo {mode} > /mode\n", proxy.addr());
        let (status, reply) =
            server.build(&request_tar(&json!({"image": image}), &[("Dockerfile", dockerfile.as_bytes())]));
        assert_success(status, &reply);
        assert!(proxy.injected() >= 6, "the proxy failed pulls and pushes ({} faults)", proxy.injected());
        let direct = image.replacen(proxy.addr(), &registry(), 1);
        let img = unpack_image(&direct, None);
        assert_eq!(std::fs::read_to_string(img.rootfs.join("mode")).unwrap(), format!("{mode}\n"), "complete image");
    }
}

#[test]
fn a_corrupted_blob_fails_the_build_and_pushes_nothing() {
    let server = Server::start(ServerOptions::default());
    let proxy = RegistryProxy::start("corrupt");
    let repo = unique("kiln/faults-corrupt");
    let image = format!("{}/{repo}:v1", registry());
    let dockerfile = format!("FROM {}/busybox\nRUN true\n", proxy.addr());
    let (status, reply) =
        server.build(&request_tar(&json!({"image": image}), &[("Dockerfile", dockerfile.as_bytes())]));
    assert_eq!(status, 500, "{reply}");
    let err = reply["error"].as_str().unwrap();
    assert!(err.contains("digest"), "the error names the digest check: {err}");
    assert!(proxy.injected() >= 1);
    let tags = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", &format!("docker://{image}")])
        .output()
        .unwrap();
    assert!(!tags.status.success(), "nothing was tagged");
}

#[test]
fn a_registry_down_or_failing_mid_push_fails_clearly_and_service_resumes() {
    let server =
        Server::start(ServerOptions { args: vec!["--registry-timeout".into(), "2".into()], ..Default::default() });
    let repo = unique("kiln/faults-down");
    let dockerfile = format!("FROM {}/busybox\nRUN echo pushed > /p\n", registry());
    let build =
        |target: &str| server.build(&request_tar(&json!({"image": target}), &[("Dockerfile", dockerfile.as_bytes())]));

    let down = format!("127.0.0.1:{}/{repo}:v1", free_port());
    let (status, reply) = build(&down);
    let err = reply["error"].as_str().unwrap_or_default();
    assert_eq!(status, 500, "{reply}");
    assert!(err.contains("push") && err.contains("Connection refused"), "names the push and the cause: {err}");

    let proxy = RegistryProxy::start("putfail");
    let failing = format!("{}/{repo}:v1", proxy.addr());
    let (status, reply) = build(&failing);
    let err = reply["error"].as_str().unwrap_or_default();
    assert_eq!(status, 500, "{reply}");
    assert!(err.contains("push") && err.contains("500"), "{err}");
    assert!(proxy.injected() >= 3, "uploads were retried ({} faults)", proxy.injected());
    let direct = format!("{}/{repo}:v1", registry());
    let tag = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", &format!("docker://{direct}")])
        .output()
        .unwrap();
    assert!(!tag.status.success(), "a failed push tags nothing");

    let (status, report) = server.check_store();
    assert_eq!(status, 200, "the failures corrupted nothing: {report}");
    let (status, reply) = build(&direct);
    assert_success(status, &reply);
    assert_eq!(executed_runs(&reply), 0, "the step built before the failed pushes is reused");
    let img = unpack_image(&direct, None);
    assert_eq!(std::fs::read_to_string(img.rootfs.join("p")).unwrap(), "pushed\n");
}
