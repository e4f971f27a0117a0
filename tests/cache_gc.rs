//! The data dir under a size budget and across crashes: the least recently
//! used cache entry is evicted first and what remains still builds from
//! cache; a `kill -9` in the middle of a RUN step leaves nothing that the
//! next start does not clean, and the next build succeeds.

mod support;

use serde_json::json;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use support::*;

fn run_dockerfile(name: &str) -> String {
    format!("FROM {}/busybox\nRUN head -c 3000000 /dev/urandom > /{name}\n", registry())
}

fn build(server: &Server, image: &str, dockerfile: &str) -> serde_json::Value {
    let (status, reply) =
        server.build(&request_tar(&json!({ "image": image }), &[("Dockerfile", dockerfile.as_bytes())]));
    assert_success(status, &reply);
    reply
}

/// Bytes the collector counts: committed snapshots' allocated blocks plus
/// blob sizes.
fn store_bytes(data: &Path) -> u64 {
    fn blocks(p: &Path) -> u64 {
        let md = std::fs::symlink_metadata(p).unwrap();
        let own = md.blocks() * 512;
        if md.is_dir() {
            own + std::fs::read_dir(p).unwrap().map(|e| blocks(&e.unwrap().path())).sum::<u64>()
        } else {
            own
        }
    }
    let mut total = 0;
    for e in std::fs::read_dir(data.join("snapshots")).unwrap().flatten() {
        if e.path().join("fs").is_dir() && !e.path().join("work").exists() {
            total += blocks(&e.path().join("fs"));
        }
    }
    for e in std::fs::read_dir(data.join("content/blobs/sha256")).unwrap().flatten() {
        total += e.metadata().unwrap().len();
    }
    total
}

#[test]
fn least_recently_used_entries_go_first() {
    let mut server = Server::start(ServerOptions::default());
    let (old, new) = (test_image("kiln/gc-old"), test_image("kiln/gc-new"));
    build(&server, &old, &run_dockerfile("old"));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    build(&server, &new, &run_dockerfile("new"));
    let budget = store_bytes(&server.data_dir) - 1_000_000;
    server.restart(false, &["--cache-max-size", &budget.to_string()]);
    assert!(store_bytes(&server.data_dir) <= budget, "start-up collection fits the budget");
    let again = build(&server, &new, &run_dockerfile("new"));
    assert_eq!(executed_runs(&again), 0, "the recently used entry survived:\n{}\n{}", log_text(&again), server.log());
    let rebuilt = build(&server, &old, &run_dockerfile("old"));
    assert_eq!(executed_runs(&rebuilt), 1, "the least recently used entry was evicted:\n{}", log_text(&rebuilt));
}

#[test]
fn kill_9_mid_step_leaves_nothing_behind() {
    let mut server = Server::start(ServerOptions::default());
    let image = test_image("kiln/crash");
    let dockerfile = format!("FROM {}/busybox\nRUN head -c 1000000 /dev/zero > /partial && sleep 37\n", registry());
    let body = request_tar(&json!({ "image": image }), &[("Dockerfile", dockerfile.as_bytes())]);
    let url = format!("{}/build", server.url);
    let signature = sign(SECRET, &body);
    let request = std::thread::spawn(move || {
        let client = reqwest::blocking::Client::new();
        let _ = client.post(url).header("X-Build-Signature", signature).body(body).send();
    });
    let data = server.data_dir.clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while active_snapshots(&data) == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(active_snapshots(&data) > 0, "the RUN step started");
    std::thread::sleep(std::time::Duration::from_millis(500));
    server.restart(true, &[]);
    request.join().unwrap();
    assert_eq!(active_snapshots(&data), 0, "start-up removed the interrupted step's snapshot");
    let survivors = std::process::Command::new("pgrep").args(["-fx", "sleep 37"]).output().unwrap();
    assert!(survivors.stdout.is_empty(), "the step's processes died with the server");
    let ingest = std::fs::read_dir(server.data_dir.join("content/ingest")).unwrap().count();
    assert_eq!(ingest, 0, "no partial blob survives");
    let fine = format!("FROM {}/busybox\nRUN echo ok > /ok\n", registry());
    build(&server, &image, &fine);
    let img = unpack_image(&image, None);
    assert_eq!(std::fs::read_to_string(img.rootfs.join("ok")).unwrap(), "ok\n");
}
