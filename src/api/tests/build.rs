//! `POST /build`: signatures, limits, request errors, layerless builds,
//! NDJSON framing and of-builder's replies.

use super::*;
use crate::wire::{sign, CONFIG_ENTRY};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};

#[tokio::test]
async fn an_unsigned_build_is_refused_with_401_and_audited() {
    let f = fixture();
    let req = post_build(request(local_only("r.example/fn:1"), LAYERLESS), None, &[]);
    let (status, reply) = send_json(app(f.state.clone()), req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{reply}");
    assert_eq!(reply["status"], "failed");
    assert!(reply["error"].as_str().unwrap().to_lowercase().contains("signature"), "{reply}");
    let audit = f.audit_lines();
    assert_eq!(audit.len(), 1, "one audit record per request");
    assert_eq!(audit[0]["result"], "rejected");
    assert_eq!(audit[0]["status"], 401);
}

#[tokio::test]
async fn a_signature_over_other_bytes_is_refused() {
    let f = fixture();
    let body = request(local_only("r.example/fn:1"), LAYERLESS);
    let forged = sign(SECRET, b"something else");
    let (status, reply) = send_json(app(f.state.clone()), post_build(body, Some(forged), &[])).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{reply}");
    let other_key = sign(b"another secret", &request(local_only("r.example/fn:1"), LAYERLESS));
    let body = request(local_only("r.example/fn:1"), LAYERLESS);
    let (status, _) = send_json(app(f.state.clone()), post_build(body, Some(other_key), &[])).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_malformed_signature_header_is_refused_before_the_body() {
    let f = fixture();
    let body = request(local_only("r.example/fn:1"), LAYERLESS);
    let (status, reply) = send_json(app(f.state.clone()), post_build(body, Some("md5=abc".into()), &[])).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{reply}");
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let f = fixture_with(4, |c| c.max_body_bytes = 4096);
    let big = "x".repeat(8192);
    let body = tar(&[(CONFIG_ENTRY, br#"{"image":"r.example/fn:1"}"#), ("context/blob", big.as_bytes())]);
    let (status, reply) = send_json(app(f.state.clone()), signed(body)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{reply}");
}

#[tokio::test]
async fn bytes_that_are_not_a_tar_are_400() {
    let f = fixture();
    let (status, reply) = send_json(app(f.state.clone()), signed(b"not a tar at all".repeat(64))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
}

#[tokio::test]
async fn a_tar_without_the_config_entry_is_400_naming_it() {
    let f = fixture();
    let body = tar(&[("context/Dockerfile", LAYERLESS.as_bytes())]);
    let (status, reply) = send_json(app(f.state.clone()), signed(body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert!(reply["error"].as_str().unwrap().contains(CONFIG_ENTRY), "{reply}");
}

#[tokio::test]
async fn a_config_without_an_image_is_400() {
    let f = fixture();
    let (status, reply) = send_json(app(f.state.clone()), signed(request(json!({"buildArgs": {}}), LAYERLESS))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("image"), "{reply}");
}

#[tokio::test]
async fn too_many_entries_is_a_clear_400() {
    let f = fixture_with(4, |c| c.max_entries = 5);
    let names: Vec<String> = (0..10).map(|i| format!("context/f{i}")).collect();
    let mut files: Vec<(&str, &[u8])> = vec![(CONFIG_ENTRY, br#"{"image":"r.example/fn:1"}"#)];
    files.extend(names.iter().map(|n| (n.as_str(), &b"x"[..])));
    let (status, reply) = send_json(app(f.state.clone()), signed(tar(&files))).await;
    assert!(status.is_client_error(), "{status} {reply}");
    assert!(reply["error"].as_str().unwrap().contains("entries"), "{reply}");
}

#[tokio::test]
async fn an_unknown_instruction_is_400_naming_its_line() {
    let f = fixture();
    let body = request(local_only("r.example/fn:1"), "FROM scratch\nLABEL a=b\nFROB the widget\n");
    let (status, reply) = send_json(app(f.state.clone()), signed(body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    let error = reply["error"].as_str().unwrap();
    assert!(error.starts_with("Dockerfile:3:1: unknown instruction: FROB"), "{reply}");
}

#[tokio::test]
async fn a_layerless_build_runs_to_the_end_and_writes_its_image_locally() {
    let f = fixture();
    let (status, reply) =
        send_json(app(f.state.clone()), signed(request(local_only("r.example/fn:1"), LAYERLESS))).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["status"], "success");
    assert_eq!(reply["image"], "r.example/fn:1");
    let digest = kiln_snapshotter::Digest::parse(reply["digest"].as_str().unwrap()).unwrap();
    let manifest: Value = serde_json::from_slice(&f.blob(&digest)).unwrap();
    assert_eq!(manifest["mediaType"], crate::oci::MediaType::OCI_MANIFEST);
    assert_eq!(manifest["layers"], json!([]), "FROM scratch with config-only instructions has no layer");
    let config = f.image_config(&reply);
    assert_eq!(config["config"]["Labels"]["org.example.team"], "functions");
    assert_eq!(config["config"]["Env"][1], "MODE=fast", "after the default PATH BuildKit writes");
    assert!(config["config"]["Env"][0].as_str().unwrap().starts_with("PATH="));
    assert_eq!(config["config"]["Cmd"], json!(["/fn"]));
    let audit = f.audit_lines();
    assert_eq!(audit[0]["result"], "success");
    assert_eq!(audit[0]["digest"], reply["digest"]);
}

#[tokio::test]
async fn the_same_request_twice_gives_the_same_digest() {
    let f = fixture();
    let body = request(local_only("r.example/fn:1"), LAYERLESS);
    let (_, first) = send_json(app(f.state.clone()), signed(body.clone())).await;
    let (_, second) = send_json(app(f.state.clone()), signed(body)).await;
    assert_eq!(first["digest"], second["digest"]);
    assert!(first["digest"].as_str().unwrap().starts_with("sha256:"));
}

#[tokio::test]
async fn build_args_reach_the_config() {
    let f = fixture();
    let config = json!({"image": "r.example/fn:1", "skipPush": true, "buildArgs": {"VERSION": "1.2.3"}});
    let dockerfile = "FROM scratch\nARG VERSION\nARG UNSET=default\nLABEL version=$VERSION other=$UNSET\n";
    let (status, reply) = send_json(app(f.state.clone()), signed(request(config, dockerfile))).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let labels = &f.image_config(&reply)["config"]["Labels"];
    assert_eq!(labels["version"], "1.2.3");
    assert_eq!(labels["other"], "default");
}

#[tokio::test]
async fn a_draining_server_refuses_new_builds_with_503() {
    let f = fixture();
    f.state.lifecycle.begin_drain();
    let (status, reply) =
        send_json(app(f.state.clone()), signed(request(local_only("r.example/fn:1"), LAYERLESS))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{reply}");
}

#[tokio::test]
async fn ndjson_streams_one_object_per_line_and_ends_with_the_verdict() {
    let f = fixture();
    let body = request(local_only("r.example/fn:1"), LAYERLESS);
    let sig = sign(SECRET, &body);
    let req = post_build(body, Some(sig), &[("accept", "application/x-ndjson")]);
    let (status, headers, bytes) = send(app(f.state.clone()), req).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"].to_str().unwrap().contains("ndjson"), "{headers:?}");
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.ends_with('\n'));
    let frames: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(frames.len() >= 2, "progress then verdict: {text}");
    assert!(frames[..frames.len() - 1].iter().all(|f| f["status"] == "in_progress"), "{text}");
    assert_eq!(frames.last().unwrap()["status"], "success", "{text}");
}

#[tokio::test]
async fn a_failing_ndjson_build_ends_with_failed_never_failure() {
    let f = fixture();
    let body = request(local_only("r.example/fn:1"), "FROM scratch\nFROB x\n");
    let sig = sign(SECRET, &body);
    let req = post_build(body, Some(sig), &[("accept", "application/x-ndjson")]);
    let (_, _, bytes) = send(app(f.state.clone()), req).await;
    let text = String::from_utf8(bytes).unwrap();
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["status"], "failed", "{text}");
    assert!(last["error"].as_str().unwrap().starts_with("Dockerfile:2:1:"), "{text}");
}

#[tokio::test]
async fn an_of_builder_request_gets_of_builders_reply() {
    let f = fixture();
    let config = serde_json::to_vec(&json!({"Ref": "Registry.Example/Fn:1"})).unwrap();
    let body = tar(&[("config", &config), ("context/Dockerfile", b"FROM scratch\nFROB x\n")]);
    let sig = format!("sha256={}", &sign(SECRET, &body)["sha256=".len()..]);
    let req = post_build(body, None, &[("x-cloud-signature", &sig)]);
    let (status, reply) = send_json(app(f.state.clone()), req).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{reply}");
    assert_eq!(reply["imageName"], "Registry.Example/Fn:1", "the ref as given");
    assert!(reply["status"].as_str().unwrap().starts_with("failure: "), "{reply}");
    assert!(reply["log"].is_array());
}

#[tokio::test]
async fn an_of_builder_request_refused_before_its_build_is_an_unexpected_failure() {
    let f = fixture();
    let body = tar(&[("config", br#"{"ref": ""}"#)]);
    let sig = sign(SECRET, &body);
    let req = post_build(body, None, &[("x-cloud-signature", &sig)]);
    let (status, reply) = send_json(app(f.state.clone()), req).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{reply}");
    assert!(reply["status"].as_str().unwrap().starts_with("unexpected failure: "), "{reply}");
    assert_eq!(reply["log"], Value::Null);
    assert_eq!(reply["imageName"], "");
}

#[tokio::test]
async fn a_full_server_answers_429() {
    let f = fixture_with(1, |_| {});
    let _held = f.state.limiter.try_acquire().unwrap();
    let (status, _, body) = send(app(f.state.clone()), signed(request(local_only("r.example/fn:1"), LAYERLESS))).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(String::from_utf8_lossy(&body).contains("Max concurrent requests: 1"), "pro-builder's text");
    let (status, _, _) = send(app(f.state.clone()), Request::get("/ready").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "/ready says so too");
}

#[tokio::test]
async fn images_outside_the_policy_are_refused_naming_the_line_before_any_pull() {
    let f =
        fixture_with(4, |c| c.allowed_images = crate::imagepolicy::ImagePolicy::new(&["127.0.0.1:1/team/*".into()]));
    let dockerfile = "FROM scratch\nLABEL a=b\nFROM 127.0.0.1:1/other/base:1\nRUN true\n";
    let (status, reply) =
        send_json(app(f.state.clone()), signed(request(local_only("r.example/fn:1"), dockerfile))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    let error = reply["error"].as_str().unwrap();
    assert!(error.starts_with("Dockerfile:3:1:") && error.contains("other/base"), "{reply}");
}

#[tokio::test]
async fn the_host_network_needs_its_entitlement() {
    let f = fixture();
    let dockerfile = "FROM scratch\nRUN --network=host true\n";
    let (status, reply) =
        send_json(app(f.state.clone()), signed(request(local_only("r.example/fn:1"), dockerfile))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    let error = reply["error"].as_str().unwrap();
    assert!(error.starts_with("Dockerfile:2:1:") && error.contains("network.host"), "{reply}");
}

#[tokio::test]
async fn an_unknown_platform_is_400() {
    let f = fixture();
    let config = json!({"image": "r.example/fn:1", "skipPush": true, "platforms": ["linux/not-a-cpu/x/y"]});
    let (status, reply) = send_json(app(f.state.clone()), signed(request(config, LAYERLESS))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
}

#[tokio::test]
async fn a_missing_target_stage_is_400_naming_it() {
    let f = fixture();
    let config = json!({"image": "r.example/fn:1", "skipPush": true, "target": "nowhere"});
    let (status, reply) = send_json(app(f.state.clone()), signed(request(config, LAYERLESS))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("nowhere"), "{reply}");
}

/// BuildKit's testDockerfileLowercase: a context with `dockerfile` and no
/// `Dockerfile` builds from it.
#[tokio::test]
async fn a_lowercase_dockerfile_is_read_when_there_is_no_dockerfile() {
    let f = fixture();
    let config = serde_json::to_vec(&local_only("r.example/fn:1")).unwrap();
    let body = tar(&[(CONFIG_ENTRY, &config), ("context/dockerfile", LAYERLESS.as_bytes())]);
    let (status, reply) = send_json(app(f.state.clone()), signed(body)).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(f.image_config(&reply)["config"]["Labels"]["org.example.team"], "functions");
}
