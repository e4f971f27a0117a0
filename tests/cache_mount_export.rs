//! Cache mounts that follow the function (`--cache-mount-export`): what a
//! tenant's `RUN --mount=type=cache` step left on one replica is there on
//! a fresh replica, never for another tenant, and the export runs after
//! the reply (it never delays the build's last line).

mod support;

use serde_json::json;
use std::io::BufRead;
use support::*;

/// The tags of `repo` in the test registry.
fn tags(repo: &str) -> Vec<String> {
    let resp = reqwest::blocking::get(format!("http://{}/v2/{repo}/tags/list", registry())).unwrap();
    if !resp.status().is_success() {
        return Vec::new();
    }
    let list: serde_json::Value = resp.json().unwrap();
    list["tags"].as_array().into_iter().flatten().map(|t| t.as_str().unwrap().to_string()).collect()
}

fn cache_mount_tags(repo: &str) -> Vec<String> {
    tags(repo).into_iter().filter(|t| t.starts_with("cachemount-")).collect()
}

/// Streams a build and returns once its final NDJSON line has arrived
/// (the connection is still open then), with that line.
fn build_until_final_line(server: &Server, body: &[u8]) -> serde_json::Value {
    let client = reqwest::blocking::Client::builder().timeout(std::time::Duration::from_secs(300)).build().unwrap();
    let resp = client
        .post(format!("{}/build", server.url))
        .header("X-Build-Signature", sign(SECRET, body))
        .header("Accept", "application/x-ndjson")
        .body(body.to_vec())
        .send()
        .unwrap();
    for line in std::io::BufReader::new(resp).lines() {
        let line: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        if line["status"] != "in_progress" {
            return line;
        }
    }
    panic!("the stream ended without a final line");
}

fn wait_for_tags(repo: &str) -> Vec<String> {
    for _ in 0..300 {
        let found = cache_mount_tags(repo);
        if !found.is_empty() {
            return found;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("no cache mount was exported to {repo} within 30 s");
}

#[test]
fn a_fresh_replica_sees_its_tenant_s_cache_mount_and_no_other_tenant_s() {
    let reg = registry();
    let cache_repo = unique("kiln/mount-cache");
    let args = || ServerOptions {
        args: vec!["--registry-cache".into(), format!("{reg}/{cache_repo}:main"), "--cache-mount-export".into()],
        ..Default::default()
    };
    let tenant_image = format!("{reg}/{}:v1", unique("kiln/mount-tenant"));
    let marker = unique("written-by-replica-a");
    // 24 MiB of random bytes take a while to pack: long enough to see that
    // the reply did not wait for the export.
    let write = format!(
        "FROM {reg}/busybox\nRUN --mount=type=cache,target=/cache echo {marker} > /cache/note && \
         head -c 25165824 /dev/urandom > /cache/big\n"
    );
    let first = Server::start(args());
    let body = request_tar(&json!({"image": tenant_image}), &[("Dockerfile", write.as_bytes())]);
    let last = build_until_final_line(&first, &body);
    assert_eq!(last["status"], "success", "{last}");
    assert!(cache_mount_tags(&cache_repo).is_empty(), "the export ran before the final line was sent");
    let exported = wait_for_tags(&cache_repo);
    assert_eq!(exported.len(), 1, "{exported:?}");

    let read = format!(
        "FROM {reg}/busybox\nRUN --mount=type=cache,target=/cache (cat /cache/note || echo nothing) > /seen && \
         wc -c < /cache/big >> /seen || true\n"
    );
    let replica = Server::start(args());
    let body = request_tar(&json!({"image": tenant_image}), &[("Dockerfile", read.as_bytes())]);
    let (status, reply) = replica.build(&body);
    assert_success(status, &reply);
    assert!(log_text(&reply).contains("imported from"), "{}", log_text(&reply));
    let seen = std::fs::read_to_string(unpack_image(&tenant_image, None).rootfs.join("seen")).unwrap();
    assert_eq!(seen.split_whitespace().collect::<Vec<_>>(), [marker.as_str(), "25165824"], "{seen}");

    let other_tenant = format!("{reg}/{}:v1", unique("kiln/mount-other"));
    let stranger = Server::start(args());
    let body = request_tar(&json!({"image": other_tenant}), &[("Dockerfile", read.as_bytes())]);
    let (status, reply) = stranger.build(&body);
    assert_success(status, &reply);
    assert!(!log_text(&reply).contains("imported from"), "{}", log_text(&reply));
    let seen = std::fs::read_to_string(unpack_image(&other_tenant, None).rootfs.join("seen")).unwrap();
    assert!(seen.starts_with("nothing"), "another tenant read the cache: {seen}");
}

#[test]
fn a_cache_over_the_bound_stays_local_and_the_flag_needs_a_registry_cache() {
    let reg = registry();
    let cache_repo = unique("kiln/mount-bound");
    let server = Server::start(ServerOptions {
        args: vec![
            "--registry-cache".into(),
            format!("{reg}/{cache_repo}:main"),
            "--cache-mount-export".into(),
            "--cache-mount-export-max-size".into(),
            "1MiB".into(),
        ],
        ..Default::default()
    });
    let dockerfile = format!(
        "FROM {reg}/busybox\nRUN --mount=type=cache,target=/cache head -c 2097152 /dev/zero > /cache/big-{}\n",
        unique("x")
    );
    let body = request_tar(&json!({"image": test_image("kiln/mount-bound")}), &[("Dockerfile", dockerfile.as_bytes())]);
    let (status, reply) = server.build(&body);
    assert_success(status, &reply);
    let mut said = String::new();
    for _ in 0..100 {
        said = server.log();
        if said.contains("cache mount not exported") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(said.contains("more than --cache-mount-export-max-size"), "{said}");
    assert!(cache_mount_tags(&cache_repo).is_empty());

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["serve", "--cache-mount-export", "--listen", "127.0.0.1:0", "--insecure"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("set --registry-cache"), "{stderr}");
}

/// The digest the tag `tag` of `repo` names now.
fn tag_digest(repo: &str, tag: &str) -> Option<String> {
    let resp = reqwest::blocking::Client::new()
        .head(format!("http://{}/v2/{repo}/manifests/{tag}", registry()))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .unwrap();
    let digest = resp.headers().get("Docker-Content-Digest").map(|d| d.to_str().unwrap().to_string());
    digest.filter(|_| resp.status().is_success())
}

/// A new export deletes the artifact it replaced (the registry allows
/// deletion here), so the registry's own garbage collection can free the
/// old content; the tag names the new one.
#[test]
fn an_export_deletes_the_artifact_it_replaced() {
    let reg = registry();
    let cache_repo = unique("kiln/mount-gc");
    let server = Server::start(ServerOptions {
        args: vec!["--registry-cache".into(), format!("{reg}/{cache_repo}:main"), "--cache-mount-export".into()],
        ..Default::default()
    });
    let image = test_image("kiln/mount-gc");
    let build = |n: u32| {
        let dockerfile = format!("FROM {reg}/busybox\nRUN --mount=type=cache,target=/cache echo {n} > /cache/n-{n}\n");
        let body = request_tar(&json!({"image": image}), &[("Dockerfile", dockerfile.as_bytes())]);
        let (status, reply) = server.build(&body);
        assert_success(status, &reply);
    };
    build(1);
    let tag = wait_for_tags(&cache_repo).remove(0);
    let first = tag_digest(&cache_repo, &tag).unwrap();
    build(2);
    let mut second = first.clone();
    for _ in 0..300 {
        second = tag_digest(&cache_repo, &tag).unwrap();
        if second != first {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_ne!(second, first, "the second export did not replace the first");
    let mut gone = false;
    for _ in 0..100 {
        gone = tag_digest(&cache_repo, &first).is_none();
        if gone {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(gone, "the replaced artifact {first} is still in the registry");
    assert_eq!(tag_digest(&cache_repo, &second).as_deref(), Some(second.as_str()));
}
