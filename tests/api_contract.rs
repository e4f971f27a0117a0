//! The `/build` request contract: signatures, tar intake, config checks.

mod support;

use serde_json::json;
use support::*;

fn builds_dir_is_empty(server: &Server) -> bool {
    match std::fs::read_dir(server.data_dir.join("builds")) {
        Ok(mut d) => d.next().is_none(),
        Err(_) => true,
    }
}

#[test]
fn signatures_are_checked_before_anything_is_unpacked() {
    let server = Server::start(ServerOptions::default());
    let body = request_tar(&json!({"image": "127.0.0.1:1/x:y"}), &[("Dockerfile", b"FROM scratch\n")]);
    let cases = [
        (None, "missing X-Build-Signature header"),
        (Some(sign("wrong-secret", &body)), "invalid message digest or secret"),
        (Some("sha256=00".to_string()), "invalid message digest or secret"),
        (Some("sha1=abcd".to_string()), "malformed X-Build-Signature"),
    ];
    for (sig, want) in cases {
        let (status, reply) = server.post(&body, sig.as_deref());
        assert_eq!(status, 401, "{reply}");
        assert_eq!(reply["status"], "failed");
        assert!(reply["error"].as_str().unwrap().contains(want), "{want}: {reply}");
        assert!(builds_dir_is_empty(&server), "nothing may be unpacked for an unsigned request");
    }
    let mut tampered = body.clone();
    let sig = sign(SECRET, &body);
    tampered[600] ^= 1;
    let (status, _) = server.post(&tampered, Some(&sig));
    assert_eq!(status, 401);
}

#[test]
fn bad_requests_get_400_with_json() {
    let server = Server::start(ServerOptions::default());
    let mut no_config = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(13);
    h.set_mode(0o644);
    no_config.append_data(&mut h, "context/Dockerfile", &b"FROM scratch\n"[..]).unwrap();
    let no_config = no_config.into_inner().unwrap();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (no_config, "missing com.openfaas.docker.config"),
        (request_tar(&json!({"buildArgs": {}}), &[("Dockerfile", b"FROM scratch\n")]), "\"image\" is required"),
        (request_tar(&json!({"image": "UPPER/case"}), &[("Dockerfile", b"FROM scratch\n")]), "invalid image reference"),
        (request_tar(&json!({"image": "r.io/x:1"}), &[("README", b"x")]), "context/Dockerfile not found"),
        (b"definitely not a tar archive, just some bytes that are long enough to fill a block".repeat(8), "tar"),
    ];
    for (body, want) in cases {
        let (status, reply) = server.build(&body);
        assert_eq!(status, 400, "{want}: {reply}");
        assert_eq!(reply["status"], "failed");
        assert!(reply["error"].as_str().unwrap().contains(want), "{want}: {reply}");
    }
    assert!(builds_dir_is_empty(&server), "scratch directories are removed");
}

#[test]
fn healthz_answers() {
    let server = Server::start(ServerOptions::default());
    let body = reqwest::blocking::get(format!("{}/healthz", server.url)).unwrap().text().unwrap();
    assert_eq!(body, "OK");
}

#[test]
fn body_limit_and_disable_hmac() {
    let server = Server::start(ServerOptions { args: vec!["--max-body-mb".into(), "1".into()], ..Default::default() });
    let big = vec![0u8; 2 << 20];
    let (status, reply) = server.build(&big);
    assert_eq!(status, 413, "{reply}");
    assert_eq!(reply["status"], "failed");
    assert!(reply["error"].as_str().unwrap().contains("limit 1048576 bytes"), "{reply}");

    let open = Server::start(ServerOptions { env: vec![("disable_hmac".into(), "true".into())], ..Default::default() });
    let image = test_image("kiln/unsigned");
    let body =
        request_tar(&json!({"image": image}), &[("Dockerfile", format!("FROM {}/busybox\n", registry()).as_bytes())]);
    let (status, reply) = open.post(&body, None);
    assert_success(status, &reply);
}

#[test]
fn target_selects_a_stage_and_skips_the_rest() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let image = test_image("kiln/target");
    let dockerfile = format!(
        "FROM {reg}/busybox AS build\nRUN echo build > /stage\nFROM build AS test\nRUN exit 1\nFROM build AS Ship\nRUN echo ship >> /stage\n"
    );
    for (target, want) in [("ship", "build\nship\n"), ("build", "build\n")] {
        let body = request_tar(&json!({"image": image, "target": target}), &[("Dockerfile", dockerfile.as_bytes())]);
        let (status, reply) = server.build(&body);
        assert_success(status, &reply);
        assert!(!log_text(&reply).contains("exit 1"), "the unreachable test stage never runs");
        let img = unpack_image(&image, None);
        assert_eq!(std::fs::read_to_string(img.rootfs.join("stage")).unwrap(), want, "target {target}");
    }
    let body = request_tar(&json!({"image": image, "target": "shp"}), &[("Dockerfile", dockerfile.as_bytes())]);
    let (status, reply) = server.build(&body);
    assert_eq!(status, 400);
    assert!(
        reply["error"].as_str().unwrap().contains("target stage \"shp\" could not be found (did you mean ship?)"),
        "{reply}"
    );
}

#[test]
fn dockerfile_checks_warn_and_fail_with_error_true() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let image = test_image("kiln/checks");
    let dockerfile = format!("FROM {reg}/busybox as build\nMAINTAINER me\nCMD echo hi\n");
    let body = request_tar(&json!({"image": image}), &[("Dockerfile", dockerfile.as_bytes())]);
    let (status, reply) = server.build(&body);
    assert_success(status, &reply);
    let log = log_text(&reply);
    for rule in ["FromAsCasing", "MaintainerDeprecated", "JSONArgsRecommended"] {
        assert!(log.contains(&format!("WARNING: {rule}:")), "{rule} is reported:\n{log}");
    }

    let strict = format!("# check=skip=FromAsCasing;error=true\n{dockerfile}");
    let body = request_tar(&json!({"image": image}), &[("Dockerfile", strict.as_bytes())]);
    let (status, reply) = server.build(&body);
    assert_eq!(status, 400, "{reply}");
    let err = reply["error"].as_str().unwrap();
    assert!(err.contains("MaintainerDeprecated") && err.contains("(line 3)") && !err.contains("FromAsCasing"), "{err}");

    let args = json!({"image": image, "buildArgs": {"BUILDKIT_DOCKERFILE_CHECK": "skip=all"}});
    let (status, reply) = server.build(&request_tar(&args, &[("Dockerfile", strict.as_bytes())]));
    assert_success(status, &reply);
    assert!(!log_text(&reply).contains("WARNING: Maintainer"), "the build arg overrides the directive");
}
