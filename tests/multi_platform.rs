//! Multi-platform builds: `platforms` in the request builds one image per
//! platform, pushes each manifest by digest and tags an OCI index over
//! them. Stages without a foreign RUN need no emulation; a foreign RUN runs
//! through qemu's binfmt_misc handler when the host has one registered and
//! is refused with the remedy otherwise. Checked with skopeo and umoci.

mod support;

use kiln::platform::{binfmt, Platform};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use std::process::Command;
use support::*;

/// The architecture of amd64/arm64 that this machine is not.
fn foreign_arch() -> &'static str {
    if Platform::host().architecture == "arm64" {
        "amd64"
    } else {
        "arm64"
    }
}

/// `uname -m` for an architecture.
fn machine(arch: &str) -> &'static str {
    if arch == "arm64" {
        "aarch64"
    } else {
        "x86_64"
    }
}

/// The raw manifest (or index) bytes under `reference`.
fn raw_manifest(reference: &str) -> Vec<u8> {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo inspect {reference}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// The ELF e_machine of a binary.
fn elf_machine(path: &std::path::Path) -> u16 {
    let bytes = std::fs::read(path).unwrap();
    u16::from_le_bytes([bytes[18], bytes[19]])
}

/// Every blob of every platform is in the registry: skopeo copies the
/// whole index.
fn assert_index_complete(image: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("skopeo")
        .args(["copy", "--quiet", "--all", "--src-tls-verify=false"])
        .arg(format!("docker://{image}"))
        .arg(format!("oci:{}:all", dir.path().join("oci").display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo copy --all {image}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn cross_compile_shape_pushes_an_index_of_both_platforms() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let image = test_image("kiln/multi-cross");
    let dockerfile = format!(
        "FROM --platform=$BUILDPLATFORM {reg}/busybox:latest AS build\n\
         ARG TARGETARCH\n\
         RUN echo \"built on $(uname -m) for $TARGETARCH\" > /out\n\
         FROM scratch\n\
         COPY --from=build /out /out\n\
         CMD [\"/out\"]\n"
    );
    // faas-cli splits --platforms on commas without trimming.
    let config = json!({"image": image, "platforms": ["linux/amd64", " linux/arm64"]});
    let (status, reply) = server.build(&request_tar(&config, &[("Dockerfile", dockerfile.as_bytes())]));
    assert_success(status, &reply);
    let log = log_text(&reply);
    assert!(log.contains("[linux/arm64 build 2/2]") && log.contains("[linux/amd64 build 2/2]"), "{log}");
    assert!(!log.contains("emulation"), "no step needed emulation:\n{log}");

    let raw = raw_manifest(&image);
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&raw)));
    assert_eq!(reply["digest"], digest, "the reply names the index");
    assert!(log.contains(&format!("pushing manifest list for {image}@{digest}")), "{log}");
    let index: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(index["mediaType"], "application/vnd.oci.image.index.v1+json");
    let entries = index["manifests"].as_array().unwrap();
    let platforms: Vec<String> = entries
        .iter()
        .map(|m| {
            format!("{}/{}", m["platform"]["os"].as_str().unwrap(), m["platform"]["architecture"].as_str().unwrap())
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    assert_index_complete(&image);

    let host = machine(&Platform::host().architecture);
    for (entry, arch) in entries.iter().zip(["amd64", "arm64"]) {
        let by_digest = format!("{}@{}", image.rsplit_once(':').unwrap().0, entry["digest"].as_str().unwrap());
        assert_eq!(image_config(&by_digest, None)["architecture"], arch, "the scratch stage takes the target's");
        let img = unpack_image_for(&image, arch);
        let out = std::fs::read_to_string(img.rootfs.join("out")).unwrap();
        assert_eq!(out, format!("built on {host} for {arch}\n"), "the build stage ran natively for {arch}");
    }
}

#[test]
fn each_platform_gets_its_base_image_from_the_index() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let image = test_image("kiln/multi-base");
    let dockerfile = format!("FROM {reg}/busybox:multi\nCOPY app.txt /app.txt\n");
    let other = foreign_arch();
    let config = json!({"image": image, "platforms": [format!("linux/{other}"), Platform::host().to_string()]});
    let body = request_tar(&config, &[("Dockerfile", dockerfile.as_bytes()), ("app.txt", b"hello\n")]);
    let (status, reply) = server.build(&body);
    assert_success(status, &reply);
    assert_index_complete(&image);
    let host = Platform::host().architecture;
    for (arch, e_machine) in [(other, if other == "arm64" { 183 } else { 62 }), (host.as_str(), elf_machine_of_host())]
    {
        let img = unpack_image_for(&image, arch);
        assert_eq!(elf_machine(&img.rootfs.join("bin/busybox")), e_machine, "{arch} image has the {arch} busybox");
        assert_eq!(std::fs::read_to_string(img.rootfs.join("app.txt")).unwrap(), "hello\n");
    }
    let (status, again) = server.build(&body);
    assert_success(status, &again);
    assert_eq!(again["digest"], reply["digest"], "a cached multi-platform rebuild yields the same index");
}

fn elf_machine_of_host() -> u16 {
    elf_machine(std::path::Path::new("/proc/self/exe"))
}

#[test]
fn a_foreign_run_is_emulated_when_qemu_is_registered_or_refused_with_the_remedy() {
    let user = std::env::var("KILN_TEST_USER").unwrap_or_else(|_| "kiln-test".into());
    let server = Server::start(ServerOptions { user: Some(user), ..Default::default() });
    let reg = registry();
    let image = test_image("kiln/multi-emulated");
    let other = foreign_arch();
    let dockerfile = format!("FROM {reg}/busybox:multi\nRUN uname -m > /machine\n");
    let config = json!({"image": image, "platforms": [format!("linux/{other}")]});
    let (status, reply) = server.build(&request_tar(&config, &[("Dockerfile", dockerfile.as_bytes())]));
    let platform = Platform::parse(other).unwrap();
    match binfmt::check(&platform) {
        Ok(_) => {
            assert_success(status, &reply);
            assert!(log_text(&reply).contains("run under emulation (binfmt_misc handler"), "{}", log_text(&reply));
            let manifest = image_manifest(&image);
            assert_eq!(manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json", "one platform: no index");
            assert_eq!(image_config(&image, None)["architecture"], other);
            let img = unpack_image(&image, None);
            let uname = std::fs::read_to_string(img.rootfs.join("machine")).unwrap();
            assert_eq!(uname.trim(), machine(other), "the RUN ran the {other} busybox");
        }
        Err(why) => {
            eprintln!("no emulator registered on this host ({why}): checking the refusal");
            assert_ne!(status, 200, "{reply}");
            let msg = reply["error"].as_str().or(reply["message"].as_str()).unwrap_or_default().to_string();
            let text = format!("{msg} {}", log_text(&reply));
            assert!(text.contains(&format!("RUN for linux/{other}")) && text.contains("qemu-user-static"), "{text}");
            assert!(text.contains("line 2"), "{text}");
        }
    }
}

#[test]
fn malformed_platforms_are_refused_before_building() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let dockerfile = format!("FROM {reg}/busybox:latest\nRUN echo must not run\n");
    for bad in ["linux/", "windows/amd64"] {
        let config = json!({"image": test_image("kiln/multi-bad"), "platforms": ["linux/amd64", bad]});
        let (status, reply) = server.build(&request_tar(&config, &[("Dockerfile", dockerfile.as_bytes())]));
        assert_eq!(status, 400, "{bad}: {reply}");
        assert!(reply.to_string().contains("platforms:"), "{bad}: {reply}");
        assert_eq!(executed_runs(&reply), 0);
    }
}
