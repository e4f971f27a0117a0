//! Ports of BuildKit's cache tests (`dockerfile_cache_test.go`,
//! `testCopyWildcardCache`): a wildcard COPY keys on the files it matches
//! now, so a renamed or changed match reruns what follows and an unrelated
//! change does not; the same inputs give the same image under any name.

mod support;

use serde_json::json;
use support::*;

fn build(server: &Server, image: &str, files: &[(&str, &[u8])]) -> (u16, serde_json::Value) {
    server.build(&request_tar(&json!({ "image": image }), files))
}

fn unique_of(image: &str) -> String {
    std::fs::read_to_string(unpack_image(image, None).rootfs.join("unique")).unwrap()
}

#[test]
fn wildcard_copies_key_on_the_files_they_match() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();

    // testCopyWildcardCache: the RUN after `COPY foo*` reruns when a match
    // changes, not when a later COPY's file does.
    let image = test_image("kiln/bk-wildcard-cache");
    let dockerfile = format!(
        "FROM {reg}/busybox AS base\nCOPY foo* files/\nRUN cat /dev/urandom | head -c 100 | sha256sum > unique\n\
         COPY bar files/\nFROM scratch\nCOPY --from=base unique /\n"
    );
    let run = |foo2: &[u8], bar: &[u8]| {
        let files = [("Dockerfile", dockerfile.as_bytes()), ("foo1", b"foo1-data"), ("foo2", foo2), ("bar", bar)];
        let (status, reply) = build(&server, &image, &files);
        assert_success(status, &reply);
        unique_of(&image)
    };
    let first = run(b"foo2-data", b"bar-data");
    assert_eq!(run(b"foo2-data", b"bar-data-mod"), first, "a later COPY's file does not rerun the RUN");
    assert_ne!(run(b"foo2-data-mod", b"bar-data-mod"), first, "a changed match reruns it");

    // testWildcardRenameCache: renaming the file the RUN reads fails the
    // rebuild instead of reusing the cached step.
    let image = test_image("kiln/bk-wildcard-rename");
    let dockerfile = format!("FROM {reg}/busybox\nCOPY file* /files/\nRUN ls /files/file1\n");
    let (status, reply) = build(&server, &image, &[("Dockerfile", dockerfile.as_bytes()), ("file1", b"x")]);
    assert_success(status, &reply);
    let (status, reply) = build(&server, &image, &[("Dockerfile", dockerfile.as_bytes()), ("file2", b"x")]);
    assert_ne!(status, 200, "the renamed file reruns `ls /files/file1`, which fails: {reply}");
    assert!(log_text(&reply).contains("/files/file1"), "{reply}");
}

#[test]
fn the_same_inputs_give_the_same_image_under_another_name() {
    // testReproducibleIDs.
    let server = Server::start(ServerOptions::default());
    let dockerfile = format!("FROM {}/busybox\nENV foo=bar\nCOPY foo /\nRUN echo bar > bar\n", registry());
    let files: [(&str, &[u8]); 2] = [("Dockerfile", dockerfile.as_bytes()), ("foo", b"foo-contents")];
    let digests: Vec<String> = ["kiln/bk-ids", "kiln/bk-ids2"]
        .iter()
        .map(|name| {
            let (status, reply) = build(&server, &test_image(name), &files);
            assert_success(status, &reply);
            reply["digest"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(digests[0], digests[1]);
}
