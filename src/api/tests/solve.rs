//! Solving through the API with the fake runner: RUN steps become layers,
//! the cache answers a repeated step, a changed step runs again, two builds
//! of one step run it once, and a failing step names its Dockerfile line.

use super::*;
use axum::http::StatusCode;
use serde_json::{json, Value};
use std::io::Read;

/// The files of a layer blob (a gzip tar) with their contents.
fn layer_files(f: &Fixture, digest: &str) -> Vec<(String, String)> {
    let digest = kiln_snapshotter::Digest::parse(digest).unwrap();
    let blob = f.blob(&digest);
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(blob.as_slice()));
    let mut files = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type().is_file() {
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            files.push((entry.path().unwrap().display().to_string(), text));
        }
    }
    files
}

fn manifest(f: &Fixture, reply: &Value) -> Value {
    let digest = kiln_snapshotter::Digest::parse(reply["digest"].as_str().unwrap()).unwrap();
    serde_json::from_slice(&f.blob(&digest)).unwrap()
}

async fn build(f: &Fixture, dockerfile: &str) -> (StatusCode, Value) {
    send_json(app(f.state.clone()), signed(request(local_only("r.example/fn:1"), dockerfile))).await
}

/// RUN steps the log reports as cache hits.
fn cached_runs(reply: &Value) -> usize {
    log(reply).lines().filter(|l| l.contains("] RUN ") && l.ends_with(" CACHED")).count()
}

fn log(reply: &Value) -> String {
    reply["log"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect::<Vec<_>>().join("\n")
}

#[tokio::test]
async fn each_run_step_becomes_a_layer_holding_what_it_wrote() {
    let f = fixture();
    let dockerfile = "FROM scratch\nRUN write /app/a.txt alpha; echo wrote a\nRUN write /app/b.txt beta\n";
    let (status, reply) = build(&f, dockerfile).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let layers = manifest(&f, &reply)["layers"].as_array().unwrap().clone();
    assert_eq!(layers.len(), 2);
    assert_eq!(layer_files(&f, layers[0]["digest"].as_str().unwrap()), [("app/a.txt".into(), "alpha".into())]);
    assert_eq!(layer_files(&f, layers[1]["digest"].as_str().unwrap()), [("app/b.txt".into(), "beta".into())]);
    assert!(log(&reply).contains("wrote a"), "step output reaches the log: {}", log(&reply));
    let config = f.image_config(&reply);
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
    assert_eq!(config["history"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_repeated_step_is_a_cache_hit_and_a_changed_one_runs_again() {
    let f = fixture();
    let first = "FROM scratch\nRUN write /a 1\nRUN write /b 2\n";
    let (_, one) = build(&f, first).await;
    assert_eq!(f.runner.runs(), 2);
    let (_, two) = build(&f, first).await;
    assert_eq!(f.runner.runs(), 2, "nothing runs again");
    assert_eq!(one["digest"], two["digest"], "a fully cached rebuild is the same image");
    assert_eq!(cached_runs(&two), 2, "{}", log(&two));
    let (_, three) = build(&f, "FROM scratch\nRUN write /a 1\nRUN write /b 3\n").await;
    assert_eq!(f.runner.runs(), 3, "only the changed step runs");
    assert_eq!(cached_runs(&three), 1, "{}", log(&three));
    assert_ne!(two["digest"], three["digest"]);
}

#[tokio::test]
async fn a_step_after_a_changed_one_runs_again() {
    let f = fixture();
    let _ = build(&f, "FROM scratch\nRUN write /a 1\nRUN write /b 2\n").await;
    let _ = build(&f, "FROM scratch\nRUN write /a 9\nRUN write /b 2\n").await;
    assert_eq!(f.runner.runs(), 4, "a changed parent changes every key after it");
}

#[tokio::test]
async fn two_builds_of_one_step_at_once_run_it_once() {
    let f = fixture();
    let dockerfile = "FROM scratch\nRUN sleep 300; write /slow done\n";
    let one = send_json(app(f.state.clone()), signed(request(local_only("r.example/a:1"), dockerfile)));
    let two = send_json(app(f.state.clone()), signed(request(local_only("r.example/b:1"), dockerfile)));
    let ((s1, r1), (s2, r2)) = tokio::join!(one, two);
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK), "{r1} {r2}");
    assert_eq!(f.runner.runs(), 1, "the second build waits for the first and hits its cache");
}

#[tokio::test]
async fn a_failing_step_names_its_line_and_exit_code_and_keeps_its_output() {
    let f = fixture();
    let dockerfile = "FROM scratch\nRUN write /ok 1\nRUN echo compiling; echo error: missing semicolon; exit 3\n";
    let (status, reply) = build(&f, dockerfile).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{reply}");
    let error = reply["error"].as_str().unwrap();
    assert_eq!(
        error,
        "step [2/2] RUN echo compiling; echo error: missing semicolon; exit 3 (Dockerfile line 3) failed: \
         process \"/bin/sh -c echo compiling; echo error: missing semicolon; exit 3\" did not complete successfully: \
         exit code: 3; last output: compiling | error: missing semicolon"
    );
    assert_eq!(f.audit_lines()[0]["result"], "failure");
    let (status, _) = build(&f, "FROM scratch\nRUN write /ok 1\n").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(f.runner.runs(), 2, "the step before the failure was cached");
}

#[tokio::test]
async fn an_unknown_command_fails_with_127() {
    let f = fixture();
    let (status, reply) = build(&f, "FROM scratch\nRUN frobnicate\n").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(reply["error"].as_str().unwrap().contains("127"), "{reply}");
}

#[tokio::test]
async fn a_stage_a_later_stage_needs_is_built_first_and_an_unused_one_never() {
    let f = fixture();
    let dockerfile = "FROM scratch AS deps\nRUN write /deps x\n\
                      FROM scratch AS unused\nRUN write /unused y\n\
                      FROM scratch\nRUN --mount=type=bind,from=deps,target=/deps write /app z\n";
    let (status, reply) = build(&f, dockerfile).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let ran = f.runner.ran.lock().unwrap().clone();
    assert_eq!(ran, ["write /deps x", "write /app z"], "BuildKit prunes stages the target does not need");
}

#[tokio::test]
async fn a_step_that_prints_too_much_is_cut_with_a_notice() {
    let f = fixture_with(4, |c| c.max_reply_log = 64 << 20);
    let line = "y".repeat(1000);
    let (status, reply) = build(&f, &format!("FROM scratch\nRUN repeat 5000 {line}\n")).await;
    assert_eq!(status, StatusCode::OK);
    let text = log(&reply);
    assert!(text.contains("[output truncated: the step printed more than 4 MiB"), "a notice after the budget");
    assert!(text.len() < 5 << 20, "the log holds about the budget: {} bytes", text.len());
}

#[tokio::test]
async fn build_args_and_env_reach_the_step() {
    let f = fixture();
    let config = json!({"image": "r.example/fn:1", "skipPush": true, "buildArgs": {"NAME": "kiln"}});
    let dockerfile = "FROM scratch\nARG NAME\nENV GREETING=hello\nRUN write /out $GREETING-$NAME\n";
    let (status, reply) = send_json(app(f.state.clone()), signed(request(config, dockerfile))).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(f.runner.ran.lock().unwrap()[0], "write /out $GREETING-$NAME", "the shell expands, not the frontend");
}
