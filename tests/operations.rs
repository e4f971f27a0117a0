//! Operations: the audit trail (one JSON line per request, every field an
//! auditor needs, never a secret) and the opt-in `/v2/` pull API over
//! kiln's own store, read by skopeo for an image built with `skipPush`,
//! which a full cache prune does not take away.

mod support;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::process::Command;
use support::*;

fn audit_server() -> (Server, tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    let args = vec!["--audit-log".to_string(), file.display().to_string()];
    (Server::start(ServerOptions { args, ..Default::default() }), dir, file)
}

fn records(file: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect()
}

fn skopeo_digest(image: &str) -> String {
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}", &format!("docker://{image}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo inspect {image}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn every_request_leaves_one_audit_record_without_secrets() {
    let (server, _dir, file) = audit_server();
    let token = format!("tok-{}", unique("secret-value"));
    let base = format!("{}/busybox:latest", registry());
    let dockerfile = format!("FROM {base}\nARG TOKEN\nRUN test -n \"$TOKEN\" && echo built > /b\n");
    let image = test_image(&unique("kiln/audited"));
    let config = json!({"image": image, "buildArgs": {"TOKEN": token}});
    let body = request_tar(&config, &[("Dockerfile", dockerfile.as_bytes())]);
    let client = reqwest::blocking::Client::new();
    let resp = client
        .post(format!("{}/build", server.url))
        .header("X-Build-Signature", sign(SECRET, &body))
        .body(body.clone())
        .send()
        .unwrap();
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let reply_len = resp.content_length();
    let reply: Value = resp.json().unwrap();
    assert_eq!(reply["status"], "success", "{reply}");

    let (status, _) = server.post(&body, Some("sha256=00"));
    assert_eq!(status, 401);
    let failing = format!("FROM {base}\nRUN exit 3\n");
    let outcome = server.build_stream(&request_tar(&json!({"image": image}), &[("Dockerfile", failing.as_bytes())]));
    assert!(outcome.verdict.is_err());
    std::thread::sleep(std::time::Duration::from_millis(200));

    let all = records(&file);
    assert_eq!(all.len(), 3, "one record per request: {all:#?}");
    let ok = &all[0];
    assert_eq!(ok["request_id"], request_id.as_str());
    assert!(ok["client"].as_str().unwrap().starts_with("127.0.0.1:"), "{ok}");
    assert!(ok["time"].as_str().unwrap().ends_with('Z'), "{ok}");
    assert_eq!(ok["signature"], "valid");
    assert_eq!(ok["image"], image.as_str());
    assert_eq!(ok["result"], "success");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["digest"], reply["digest"]);
    assert_eq!(ok["digest"], skopeo_digest(&image).as_str(), "the digest is the pushed image's");
    assert_eq!(ok["pushed"], true);
    assert_eq!(ok["base_images"], json!([{"reference": base, "digest": skopeo_digest(&base)}]));
    assert_eq!(ok["dockerfile_digest"], format!("sha256:{}", hex::encode(Sha256::digest(dockerfile.as_bytes()))));
    assert_eq!(ok["build_arg_names"], json!(["TOKEN"]));
    assert_eq!(ok["bytes_in"], body.len() as u64);
    if let Some(len) = reply_len {
        assert_eq!(ok["bytes_out"], len);
    }
    assert!(ok["duration"].as_f64().unwrap() > 0.0);

    let bad = &all[1];
    assert_eq!(
        (&bad["signature"], &bad["result"], &bad["status"]),
        (&json!("invalid"), &json!("rejected"), &json!(401))
    );
    let failed = &all[2];
    assert_eq!((&failed["result"], &failed["status"]), (&json!("failure"), &json!(200)), "{failed}");
    assert!(failed["error"].as_str().unwrap().contains("exit code: 3"), "{failed}");
    assert!(failed["bytes_out"].as_u64().unwrap() > 0);

    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains(&token), "a build-arg value reached the audit trail");
    assert!(!text.contains(SECRET), "the payload secret reached the audit trail");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn skopeo_pulls_a_skip_push_image_from_kilns_own_v2() {
    let args = vec!["--serve-images".to_string(), "--audit-log".to_string(), "off".to_string()];
    let server = Server::start(ServerOptions { args, ..Default::default() });
    let name = unique("fn/served");
    let image = format!("registry.invalid/{name}:1.0");
    let dockerfile = format!("FROM {}/busybox\nRUN echo served > /served\n", registry());
    let config = json!({"image": image, "skipPush": true});
    let (status, reply) = server.build(&request_tar(&config, &[("Dockerfile", dockerfile.as_bytes())]));
    assert_success(status, &reply);
    let host = server.url.trim_start_matches("http://");

    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("oci");
    let copied = Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false", &format!("docker://{host}/{name}:1.0")])
        .arg(format!("oci:{}:pulled", layout.display()))
        .output()
        .unwrap();
    assert!(copied.status.success(), "skopeo copy: {}", String::from_utf8_lossy(&copied.stderr));
    let bundle = tmp.path().join("bundle");
    let unpacked = Command::new("umoci")
        .args(["unpack", "--rootless", "--image", &format!("{}:pulled", layout.display())])
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(unpacked.status.success(), "umoci: {}", String::from_utf8_lossy(&unpacked.stderr));
    assert_eq!(std::fs::read_to_string(bundle.join("rootfs/served")).unwrap(), "served\n");
    assert!(bundle.join("rootfs/bin/busybox").exists(), "the base layer is served too");

    let by_digest = format!("docker://{host}/{name}@{}", reply["digest"].as_str().unwrap());
    let inspected =
        Command::new("skopeo").args(["inspect", "--raw", "--tls-verify=false", &by_digest]).output().unwrap();
    assert!(inspected.status.success(), "by digest: {}", String::from_utf8_lossy(&inspected.stderr));

    let get = |path: &str| reqwest::blocking::get(format!("{}{path}", server.url)).unwrap();
    assert_eq!(get("/v2/").status(), 200);
    assert_eq!(get(&format!("/v2/{name}/manifests/2.0")).status(), 404, "unknown tag");
    let other = unique("fn/other");
    assert_eq!(get(&format!("/v2/{other}/manifests/1.0")).status(), 404, "unknown name");
    let manifest: Value = get(&format!("/v2/{name}/manifests/1.0")).json().unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    assert_eq!(get(&format!("/v2/{name}/blobs/{layer}")).status(), 200);
    assert_eq!(get(&format!("/v2/{other}/blobs/{layer}")).status(), 404, "a name serves only what its tags reach");

    let pruned: Value = server.admin("POST", "/cache/prune?keep_storage=0").json().unwrap();
    assert!(pruned["steps_evicted"].as_u64().unwrap() > 0, "the cache was emptied: {pruned}");
    let again = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", &format!("docker://{host}/{name}:1.0")])
        .output()
        .unwrap();
    assert!(again.status.success(), "a served image survives the prune: {}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(get(&format!("/v2/{name}/blobs/{layer}")).status(), 200, "its layers are pinned");
}

#[test]
fn the_pull_api_is_off_unless_asked_for() {
    let server = Server::start(ServerOptions::default());
    assert_eq!(reqwest::blocking::get(format!("{}/v2/", server.url)).unwrap().status(), 404);
}

#[test]
fn a_client_that_goes_away_mid_stream_leaves_an_abandoned_record() {
    use std::io::{Read, Write};
    let (server, _dir, file) = audit_server();
    let image = test_image(&unique("kiln/abandoned"));
    let dockerfile = format!("FROM {}/busybox\nRUN sleep 30\n", registry());
    let body = request_tar(&json!({"image": image}), &[("Dockerfile", dockerfile.as_bytes())]);
    let addr = server.url.trim_start_matches("http://").to_string();
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    let head = format!(
        "POST /build HTTP/1.1\r\nHost: {addr}\r\nAccept: application/x-ndjson\r\nX-Build-Signature: {}\r\nContent-Length: {}\r\n\r\n",
        sign(SECRET, &body),
        body.len()
    );
    conn.write_all(head.as_bytes()).unwrap();
    conn.write_all(&body).unwrap();
    let mut first = [0u8; 512];
    let n = conn.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"), "the stream started");
    std::thread::sleep(std::time::Duration::from_millis(500));
    drop(conn);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while records(&file).is_empty() {
        assert!(std::time::Instant::now() < deadline, "no audit record after the client left");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let record = &records(&file)[0];
    assert_eq!((&record["result"], &record["status"]), (&json!("abandoned"), &json!(200)), "{record}");
    assert!(record["duration"].as_f64().unwrap() < 20.0, "the build was cancelled, not waited for: {record}");
}
