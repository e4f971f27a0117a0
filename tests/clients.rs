//! Requests shaped byte for byte like the real clients' (contract.md §1.2
//! and §2) all build.

mod support;

use serde_json::json;
use std::path::Path;
use std::process::Command;
use support::*;

fn write_context(dir: &Path, marker: &str) {
    std::fs::create_dir_all(dir.join("function")).unwrap();
    let dockerfile = format!("FROM {}/busybox\nCOPY function /function\nRUN echo {marker} > /marker\n", registry());
    std::fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
    std::fs::write(dir.join("function/handler.py"), "def handle(req):\n    return req\n").unwrap();
}

fn check_image(image: &str, marker: &str) {
    let img = unpack_image(image, None);
    assert_eq!(std::fs::read_to_string(img.rootfs.join("marker")).unwrap(), format!("{marker}\n"));
    assert!(img.rootfs.join("function/handler.py").exists());
}

#[test]
fn python_example_client_pax_tar_config_first() {
    let server = Server::start(ServerOptions::default());
    let tmp = tempfile::tempdir().unwrap();
    write_context(&tmp.path().join("context"), "python");
    let image = test_image("kiln/python-client");
    let out = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/python_build.py"))
        .args([&server.url, SECRET, &tmp.path().join("context").display().to_string(), &image])
        .output()
        .expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["http"], 200, "{v}");
    assert_eq!(v["reply"]["image"], image.as_str());
    check_image(&image, "python");
}

/// node-tar's `tar.c({cwd}, ['./context', './com.openfaas.docker.config'])`,
/// plus the function-editor-demo's `./` root entry, sent with axios' Accept.
#[test]
fn node_clients_dot_slash_tar() {
    let server = Server::start(ServerOptions::default());
    let image = test_image("kiln/node-client");
    let dockerfile = format!("FROM {}/busybox\nCOPY function /function\nRUN echo node > /marker\n", registry());
    let config = serde_json::to_vec(&json!({"image": image, "buildArgs": {}, "push": false})).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, kind: tar::EntryType, data: &[u8]| {
        let mode = if kind == tar::EntryType::Directory { 0o755 } else { 0o644 };
        tar_entry(&mut b, name, kind, mode, 0, data, None);
    };
    add("./", tar::EntryType::Directory, b"");
    add("./context/", tar::EntryType::Directory, b"");
    add("./com.openfaas.docker.config", tar::EntryType::Regular, &config);
    add("./context/Dockerfile", tar::EntryType::Regular, dockerfile.as_bytes());
    add("./context/function/", tar::EntryType::Directory, b"");
    add("./context/function/handler.py", tar::EntryType::Regular, b"def handle(req):\n    return req\n");
    let body = b.into_inner().unwrap();
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/build", server.url))
        .header("X-Build-Signature", sign(SECRET, &body))
        .header("Content-Type", "application/octet-stream")
        .header("Accept", "application/json, text/plain, */*")
        .header("User-Agent", "axios/0.27.2")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let reply: serde_json::Value = resp.json().unwrap();
    assert_eq!(reply["image"], image.as_str(), "{reply}");
    check_image(&image, "node");
}

/// The docs' walkthrough: `tar cvf req.tar --exclude=req.tar .` (GNU tar),
/// `openssl dgst -sha256 -hmac`, `curl --data-binary` with curl's default
/// form content type, here also with `Expect: 100-continue`.
#[test]
fn curl_walkthrough_gnu_tar_form_content_type() {
    let server = Server::start(ServerOptions::default());
    let tmp = tempfile::tempdir().unwrap();
    write_context(&tmp.path().join("context"), "curl");
    let image = test_image("kiln/curl-client");
    std::fs::write(tmp.path().join("com.openfaas.docker.config"), json!({"image": image}).to_string()).unwrap();
    let tar = Command::new("tar")
        .current_dir(tmp.path())
        .args(["cvf", "req.tar", "--exclude=req.tar", "."])
        .output()
        .unwrap();
    assert!(tar.status.success());
    let body = std::fs::read(tmp.path().join("req.tar")).unwrap();
    assert_eq!(&body[257..265], b"ustar  \0", "GNU tar's own format");
    let hmac = sign(SECRET, &body);
    let out = Command::new("curl")
        .current_dir(tmp.path())
        .args(["-s", "-w", "\n%{http_code}", "-H", &format!("X-Build-Signature: {hmac}"), "-H", "Expect: 100-continue"])
        .args(["-X", "POST", "--data-binary", "@req.tar", &format!("{}/build", server.url)])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let (json_text, code) = text.rsplit_once('\n').unwrap();
    assert_eq!(code, "200", "{json_text}");
    let reply: serde_json::Value = serde_json::from_str(json_text).unwrap();
    assert_eq!(reply["status"], "success");
    check_image(&image, "curl");
}
