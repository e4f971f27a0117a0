//! kiln builds its own image from the repository's Dockerfile (the
//! prebuilt-binary variant, offline) on a Debian base, then a second build
//! runs `kiln --version` inside it: the image works and runs as non-root.

mod support;

use serde_json::json;
use std::path::Path;
use support::*;

/// The test binary with its debug info stripped (the debug build is ~300 MB).
fn stripped_kiln(dir: &Path) -> Vec<u8> {
    let out = dir.join("kiln");
    std::fs::copy(env!("CARGO_BIN_EXE_kiln"), &out).unwrap();
    let ok = std::process::Command::new("strip").arg(&out).status().unwrap();
    assert!(ok.success(), "strip the kiln binary");
    std::fs::read(out).unwrap()
}

fn repo_file(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(name)).unwrap()
}

#[test]
fn kiln_builds_its_own_image_and_the_image_runs_kiln_as_non_root() {
    let tmp = tempfile::tempdir().unwrap();
    let binary = stripped_kiln(tmp.path());
    // apt's mirror may sit on an address the default egress policy refuses
    // (here a documentation range): allowed by name, as an operator would.
    let args = vec!["--step-egress-allow".into(), "deb.debian.org".into()];
    let server = Server::start(ServerOptions { args, ..Default::default() });
    let image = test_image(&unique("kiln/self"));
    let config = json!({"image": image, "buildArgs": {
        "BINARY": "prebuilt",
        "BASE_IMAGE": format!("{}/debian:bookworm-slim", registry()),
        "RUST_IMAGE": "rust-is-not-needed.invalid/rust:never",
    }});
    let (dockerfile, ignore) = (repo_file("Dockerfile"), repo_file(".dockerignore"));
    let files: &[(&str, &[u8])] =
        &[("Dockerfile", &dockerfile), (".dockerignore", &ignore), ("target/release/kiln", &binary)];
    let (status, reply) = server.build(&request_tar(&config, files));
    assert_success(status, &reply);
    assert!(!log_text(&reply).contains("rust-is-not-needed"), "the unused Rust stage was never resolved");

    let cfg = image_config(&image, None);
    assert_eq!(cfg["config"]["User"], "10001:10001");
    assert_eq!(cfg["config"]["Entrypoint"], json!(["/usr/local/bin/kiln"]));
    assert_eq!(cfg["config"]["Cmd"], json!(["serve"]));
    assert!(cfg["config"]["ExposedPorts"].get("8080/tcp").is_some(), "{cfg}");

    let probe = format!(
        "FROM {image}\nRUN kiln --version > /tmp/version && id -u > /tmp/uid && ls -ld /var/lib/kiln > /tmp/data \
         && grep '^kiln:' /etc/subuid > /tmp/subuid && command -v newuidmap > /tmp/newuidmap\n\
         USER root\nRUN cp /tmp/version /tmp/uid /tmp/data /tmp/subuid /tmp/newuidmap /\n"
    );
    let probe_image = test_image(&unique("kiln/self-probe"));
    let (status, reply) =
        server.build(&request_tar(&json!({"image": probe_image}), &[("Dockerfile", probe.as_bytes())]));
    assert_success(status, &reply);
    let root = unpack_image(&probe_image, None);
    let read = |name: &str| std::fs::read_to_string(root.rootfs.join(name)).unwrap().trim().to_string();
    assert_eq!(read("version"), format!("kiln {}", env!("CARGO_PKG_VERSION")));
    assert_eq!(read("uid"), "10001", "the image runs as the kiln user");
    assert!(read("data").contains(" kiln kiln "), "the data dir belongs to kiln: {}", read("data"));
    assert_eq!(read("subuid"), "kiln:100000:65536");
    assert_eq!(read("newuidmap"), "/usr/bin/newuidmap");
}
