//! of-builder's request and reply (openfaas-cloud): the README's example —
//! a tar made with `tar cf - .` of `config` (`{"Ref": …}`) and `context/`
//! — unsigned with disable_hmac, and signed with `X-Cloud-Signature:
//! sha1=…` and `sha256=…`; each builds and pushes, and skopeo sees
//! `/README.md` and `foo=bar`. A bad legacy signature gets of-builder's 500
//! `unexpected failure: …`; a `sha1=` signature on `X-Build-Signature` is
//! refused.

mod support;

use serde_json::{json, Value};
use std::process::Command;
use support::*;

/// The README's request: `config` at the root, `context/` beside it, made
/// by the `tar` command as its README does.
fn readme_request(reference: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("context")).unwrap();
    let dockerfile = format!("FROM {}/busybox\nADD README.md /\nENV foo bar\n", registry());
    write(&dir.path().join("context/Dockerfile"), dockerfile.as_bytes());
    write(&dir.path().join("context/README.md"), b"# of-builder example\n");
    write(&dir.path().join("config"), json!({"Ref": reference}).to_string().as_bytes());
    let out = Command::new("tar").args(["-cf", "-", "."]).current_dir(dir.path()).output().unwrap();
    assert!(out.status.success());
    out.stdout
}

/// POSTs to /build with `headers`; status, content type and JSON body.
fn post(server: &Server, body: &[u8], headers: &[(&str, String)]) -> (u16, String, Value) {
    let mut req = reqwest::blocking::Client::new().post(format!("{}/build", server.url)).body(body.to_vec());
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
    (status, content_type, serde_json::from_str(&resp.text().unwrap()).unwrap())
}

fn assert_readme_image(image: &str) {
    let root = unpack_image(image, None);
    assert_eq!(std::fs::read_to_string(root.rootfs.join("README.md")).unwrap(), "# of-builder example\n");
    let env = image_config(image, None)["config"]["Env"].clone();
    assert!(env.as_array().unwrap().iter().any(|e| e == "foo=bar"), "{env}");
}

fn assert_of_builder_success(status: u16, content_type: &str, reply: &Value, given: &str) {
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["status"], "success", "{reply}");
    assert_eq!(reply["imageName"], given, "imageName is the ref as given");
    assert!(reply["log"].as_array().is_some_and(|l| !l.is_empty()), "{reply}");
    assert!(reply.get("image").is_none() && reply.get("digest").is_none(), "only of-builder's fields: {reply}");
    assert_eq!(content_type, "text/plain; charset=utf-8", "as Go sniffed of-builder's untyped reply");
}

#[test]
fn the_readme_request_builds_unsigned_with_disable_hmac() {
    let server = Server::start(ServerOptions { args: vec!["--disable-hmac".into()], ..Default::default() });
    let reference = test_image(&unique("foo/bar"));
    let (status, content_type, reply) = post(&server, &readme_request(&reference), &[]);
    assert_of_builder_success(status, &content_type, &reply, &reference);
    assert_readme_image(&reference);
}

#[test]
fn the_readme_request_builds_signed_with_sha1_and_sha256_on_x_cloud_signature() {
    let server = Server::start(ServerOptions::default());
    for (n, sign_with) in [(1, "sha1"), (256, "sha256")] {
        let reference = test_image(&unique(&format!("foo/bar-{n}")));
        let body = readme_request(&reference);
        let signature = match sign_with {
            "sha1" => kiln::api::legacy::sign_sha1(SECRET.as_bytes(), &body),
            _ => sign(SECRET, &body),
        };
        let (status, content_type, reply) = post(&server, &body, &[("X-Cloud-Signature", signature)]);
        assert_of_builder_success(status, &content_type, &reply, &reference);
        assert_readme_image(&reference);
    }
}

#[test]
fn the_image_goes_to_the_lower_cased_ref_and_imagename_keeps_the_given_one() {
    let server = Server::start(ServerOptions { args: vec!["--disable-hmac".into()], ..Default::default() });
    let name = unique("Foo/Mixed-Case");
    let given = format!("{}/{name}:Latest", registry());
    let (status, content_type, reply) = post(&server, &readme_request(&given), &[]);
    assert_of_builder_success(status, &content_type, &reply, &given);
    assert_readme_image(&given.to_lowercase());
}

#[test]
fn a_bad_legacy_signature_gets_of_builders_unexpected_failure() {
    let server = Server::start(ServerOptions::default());
    let body = readme_request(&test_image(&unique("foo/unsigned")));
    let wrong = kiln::api::legacy::sign_sha1(b"not the secret", &body);
    let (status, _, reply) = post(&server, &body, &[("X-Cloud-Signature", wrong)]);
    assert_eq!(status, 500);
    assert_eq!(
        reply,
        json!({"log": null, "imageName": "", "status": "unexpected failure: invalid message digest or secret"})
    );
    let (status, _, reply) = post(&server, &body, &[("X-Cloud-Signature", "md5=00".into())]);
    assert_eq!(status, 500);
    assert_eq!(reply["status"], "unexpected failure: valid hash prefixes: [sha1=, sha256=], got: md5=00");
}

#[test]
fn a_failed_legacy_build_answers_failure_with_its_log() {
    let server = Server::start(ServerOptions { args: vec!["--disable-hmac".into()], ..Default::default() });
    let reference = test_image(&unique("foo/broken"));
    let mut b = tar::Builder::new(Vec::new());
    let dockerfile = format!("FROM {}/busybox\nRUN exit 7\n", registry());
    tar_entry(&mut b, "context/Dockerfile", tar::EntryType::Regular, 0o644, 0, dockerfile.as_bytes(), None);
    let config = json!({"ref": reference, "buildArgs": {"A": "1"}, "frontend": "tonistiigi/dockerfile:v0"});
    tar_entry(&mut b, "config", tar::EntryType::Regular, 0o644, 0, config.to_string().as_bytes(), None);
    let (status, _, reply) = post(&server, &b.into_inner().unwrap(), &[]);
    assert_eq!(status, 500);
    assert_eq!(reply["imageName"], reference.as_str());
    assert!(reply["status"].as_str().unwrap().starts_with("failure: "), "{reply}");
    assert!(reply["status"].as_str().unwrap().contains("exit code: 7"), "{reply}");
    assert!(log_text(&reply).contains("RUN exit 7"), "{reply}");

    let mut b = tar::Builder::new(Vec::new());
    tar_entry(&mut b, "config", tar::EntryType::Regular, 0o644, 0, br#"{"frontend":"x"}"#, None);
    let (status, _, reply) = post(&server, &b.into_inner().unwrap(), &[]);
    assert_eq!((status, &reply["status"]), (500, &json!("unexpected failure: no target reference to push")));
}

#[test]
fn pro_builder_requests_keep_their_reply_and_refuse_sha1() {
    let server = Server::start(ServerOptions::default());
    let image = test_image(&unique("kiln/not-legacy"));
    let dockerfile = format!("FROM {}/busybox\n", registry());
    let body = request_tar(&json!({"image": image}), &[("Dockerfile", dockerfile.as_bytes())]);
    let sha1 = kiln::api::legacy::sign_sha1(SECRET.as_bytes(), &body);
    let (status, _, reply) = post(&server, &body, &[("X-Build-Signature", sha1.clone())]);
    assert_eq!(status, 401, "{reply}");
    assert_eq!(reply["status"], "failed");
    let (status, content_type, reply) = post(&server, &body, &[("X-Build-Signature", sign(SECRET, &body))]);
    assert_success(status, &reply);
    assert_eq!(content_type, "application/json");
    assert_eq!(reply["image"], image.as_str());
    assert!(reply.get("imageName").is_none());
}

#[test]
fn the_cloud_signature_signs_only_legacy_requests_unless_allowed() {
    let image = test_image(&unique("kiln/cloud-signed"));
    let dockerfile = format!("FROM {}/busybox\n", registry());
    let body = request_tar(&json!({"image": image}), &[("Dockerfile", dockerfile.as_bytes())]);
    let signatures =
        [kiln::api::legacy::sign_sha1(SECRET.as_bytes(), &body), kiln::api::auth::sign(SECRET.as_bytes(), &body)];
    let server = Server::start(ServerOptions::default());
    for sig in &signatures {
        let (status, content_type, reply) = post(&server, &body, &[("X-Cloud-Signature", sig.clone())]);
        assert_eq!((status, content_type.as_str()), (401, "application/json"), "{sig}: {reply}");
        let error = reply["error"].as_str().unwrap();
        assert!(error.contains("must be signed with X-Build-Signature"), "{error}");
    }
    let opts = ServerOptions { args: vec!["--allow-cloud-signature".into()], ..Default::default() };
    let allowing = Server::start(opts);
    let (status, _, reply) = post(&allowing, &body, &[("X-Cloud-Signature", signatures[0].clone())]);
    assert_success(status, &reply);
}
