//! The build history (`GET /builds`, `GET /builds/{id}`, `kiln history`)
//! of a real server: what a build's entry holds, that it survives a
//! restart within `--history-size`, that a burst loses no entry, and that
//! only the operator reaches it.

mod support;

use serde_json::{json, Value};
use std::time::Duration;
use support::*;

fn tiny_build(image: &str, run: &str) -> Vec<u8> {
    let dockerfile = format!("FROM {}/busybox\nWORKDIR /app\n{run}\n", registry());
    request_tar(&json!({"image": image}), &[("Dockerfile", dockerfile.as_bytes())])
}

fn builds(server: &Server, query: &str) -> Value {
    let resp = server.admin("GET", &format!("/builds{query}"));
    assert_eq!(resp.status().as_u16(), 200);
    resp.json().unwrap()
}

fn kiln_history(server: &Server, args: &[&str]) -> String {
    server.admin_cli("history", args)
}

#[test]
fn an_entry_holds_the_steps_the_log_and_the_failing_line() {
    let server = Server::start(ServerOptions::default());
    let good = test_image("kiln/history-good");
    let (status, reply) = server.build(&tiny_build(&good, "RUN echo made > /f"));
    assert_success(status, &reply);
    let bad = test_image("kiln/history-bad");
    let (status, failed) = server.build(&tiny_build(&bad, "RUN echo about-to-fail && exit 3"));
    assert_ne!(status, 200, "{failed}");

    let page = server.history_holding(2);
    let list = page["builds"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{page}");
    assert_eq!(list[0]["image"], bad, "newest first");
    assert_eq!(list[0]["result"], "failure");
    assert_eq!(list[1]["digest"], reply["digest"]);

    let entry = builds(&server, &format!("/{}", list[0]["request_id"].as_str().unwrap()));
    assert_eq!(entry["error_line"], 3, "{entry}");
    assert!(entry["error"].as_str().unwrap().contains("exit code: 3"), "{entry}");
    let audit = server.audit_lines().into_iter().find(|a| a["request_id"] == entry["request_id"]).unwrap();
    assert_eq!(entry["audit"], audit, "the entry holds the build's audit line as written");
    let steps = entry["steps"].as_array().unwrap();
    let run = steps.iter().find(|s| s["name"].as_str().unwrap().contains("RUN echo about-to-fail")).unwrap();
    assert_eq!((run["line"].as_u64(), run["op"].as_str()), (Some(3), Some("exec")), "{run}");
    assert_eq!(run["unfinished"], true, "the failing step never finished: {run}");
    assert!(run["duration"].as_f64().unwrap() > 0.0, "it ran until the build ended: {run}");
    let log = entry["log"].as_array().unwrap();
    assert!(log.iter().any(|l| l.as_str().unwrap().ends_with("about-to-fail")), "{log:?}");

    let good_entry = builds(&server, &format!("/{}", list[1]["seq"]));
    let good_steps = good_entry["steps"].as_array().unwrap();
    assert!(good_steps.iter().all(|s| s.get("unfinished").is_none()), "{good_entry}");
    assert!(good_steps.windows(2).all(|w| w[0]["start"].as_f64() <= w[1]["start"].as_f64()), "in start order");
    assert!(good_entry["pushed_bytes"].as_u64().unwrap() > 0, "{good_entry}");
    assert!(good_entry["queued"].as_f64().unwrap() > 0.0);

    let failed_only = kiln_history(&server, &["--failed"]);
    assert!(failed_only.contains(&bad) && !failed_only.contains(&good), "{failed_only}");
    let one = kiln_history(&server, &[&list[0]["seq"].to_string()]);
    assert!(one.contains("error (Dockerfile line 3)") && one.contains("UNFINISHED"), "{one}");
    assert!(kiln_history(&server, &["--image", "history-good"]).contains(&good));
}

#[test]
fn the_history_survives_a_restart_within_its_size() {
    let mut server =
        Server::start(ServerOptions { args: vec!["--history-size".into(), "3".into()], ..Default::default() });
    let image = test_image("kiln/history-size");
    for i in 0..5 {
        let (status, reply) = server.build(&tiny_build(&image, &format!("RUN echo {i} > /f")));
        assert_success(status, &reply);
    }
    let before = server.history_holding(3);
    server.restart(false, &[]);
    let after = builds(&server, "");
    assert_eq!(after["total"], 3, "{after}");
    assert_eq!(after["builds"], before["builds"], "the same three, newest first");
    let seqs: Vec<u64> = after["builds"].as_array().unwrap().iter().map(|b| b["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [5, 4, 3]);
    let (status, reply) = server.build(&tiny_build(&image, "RUN echo 5 > /f"));
    assert_success(status, &reply);
    let page = server.history_holding(3);
    assert_eq!(page["builds"][0]["seq"], 6, "positions go on after a restart: {page}");
}

#[test]
fn a_burst_of_50_builds_records_50_entries() {
    let args = vec!["--max-inflight".into(), "64".into()];
    let server = Server::start(ServerOptions { args, ..Default::default() });
    let image = test_image("kiln/history-burst");
    let (status, reply) = server.build(&tiny_build(&image, "RUN echo warm > /f"));
    assert_success(status, &reply);
    std::thread::scope(|s| {
        let builds: Vec<_> = (0..50)
            .map(|i| {
                let (server, image) = (&server, image.clone());
                s.spawn(move || {
                    server.build(&tiny_build(&image.replace(":v1", &format!(":b{i}")), "RUN echo warm > /f"))
                })
            })
            .collect();
        for b in builds {
            let (status, reply) = b.join().unwrap();
            assert_success(status, &reply);
        }
    });
    let page = server.history_holding(51);
    assert_eq!(page["total"], 51, "{page}");
    let ids: std::collections::BTreeSet<_> =
        page["builds"].as_array().unwrap().iter().map(|b| b["request_id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), 51, "every build has its own entry");
}

#[test]
fn only_the_operator_reads_the_history() {
    let server = Server::start(ServerOptions::default());
    let image = test_image("kiln/history-private");
    let (status, reply) = server.build(&tiny_build(&image, "RUN echo secret-step > /f"));
    assert_success(status, &reply);
    server.history_holding(1);
    let client = reqwest::blocking::Client::new();
    for path in ["/builds", "/builds/1"] {
        let unsigned = client.get(format!("{}{path}", server.metrics_url)).send().unwrap();
        assert_eq!(unsigned.status().as_u16(), 401, "{path} unsigned");
        let public = client.get(format!("{}{path}", server.url)).send().unwrap();
        assert_eq!(public.status().as_u16(), 404, "{path} is not on the /build listener");
    }
    let forged_image = test_image("kiln/history-forged");
    let forged = server.post(&tiny_build(&forged_image, "RUN echo forged"), Some("sha256=00"));
    assert_eq!(forged.0, 401);
    let (status, reply) = server.build(&tiny_build(&image, "RUN echo after > /f"));
    assert_success(status, &reply);
    let page = server.history_holding(2);
    let images: Vec<_> = page["builds"].as_array().unwrap().iter().map(|b| b["image"].as_str().unwrap()).collect();
    assert_eq!(images, [image.as_str(), image.as_str()], "an unauthenticated request leaves no entry: {page}");
}

#[test]
fn a_step_that_waits_for_a_run_slot_shows_its_wait() {
    let server = Server::start(ServerOptions::default());
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2);
    // One more parallel stage than a build has run slots (one per core).
    let mut dockerfile = String::new();
    for i in 0..=cores {
        dockerfile.push_str(&format!("FROM {}/busybox AS s{i}\nRUN sleep 1 && echo {i} > /out{i}\n", registry()));
    }
    dockerfile.push_str(&format!("FROM {}/busybox\n", registry()));
    for i in 0..=cores {
        dockerfile.push_str(&format!("COPY --from=s{i} /out{i} /\n"));
    }
    let image = test_image("kiln/history-queued");
    let body = request_tar(&json!({"image": image}), &[("Dockerfile", dockerfile.as_bytes())]);
    let (status, reply) = server.build(&body);
    assert_success(status, &reply);
    let page = server.history_holding(1);
    let entry = builds(&server, &format!("/{}", page["builds"][0]["seq"]));
    let runs: Vec<&Value> = entry["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"].as_str().unwrap().contains("RUN sleep"))
        .collect();
    assert_eq!(runs.len(), cores + 1, "{entry}");
    let waited: Vec<f64> = runs.iter().map(|s| s["queued"].as_f64().unwrap()).collect();
    assert!(waited.iter().filter(|q| **q >= 0.5).count() >= 1, "one RUN waited for a slot: {waited:?}");
    assert!(waited.iter().filter(|q| **q < 0.5).count() >= cores, "the others started at once: {waited:?}");
    let shown = server.admin_cli("history", &[&page["builds"][0]["seq"].to_string()]);
    assert!(shown.contains("s queued)"), "{shown}");
}

/// A killed server keeps what its writer committed (the sync within a
/// second is for a machine crash, which a test here cannot make).
#[test]
fn an_entry_survives_a_kill_9_a_second_after_its_build() {
    let mut server = Server::start(ServerOptions::default());
    let image = test_image("kiln/history-kill");
    let (status, reply) = server.build(&tiny_build(&image, "RUN echo kept > /f"));
    assert_success(status, &reply);
    server.history_holding(1);
    std::thread::sleep(Duration::from_millis(1_200));
    server.restart(true, &[]);
    let page = builds(&server, "");
    assert_eq!(page["total"], 1, "synced within a second: {page}");
    assert_eq!(page["builds"][0]["image"], image);
}
