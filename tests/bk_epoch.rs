//! Ports of BuildKit's `SOURCE_DATE_EPOCH` tests
//! (`dockerfile_source_date_epoch_test.go`, `testWorkdirSourceDateEpoch
//! Reproducible`): a build's own epoch from the `SOURCE_DATE_EPOCH` build
//! arg or the Dockerfile's global ARG default — seconds, `context`, or a
//! source stage's download — dates the image and clamps its new files,
//! and its layers carry BuildKit's `buildkit/rewritten-timestamp`. The
//! pushed image is read back with skopeo and umoci. kiln always clamps
//! when an epoch applies (BuildKit's `rewrite-timestamp=true`).

mod support;

use serde_json::{json, Value};
use std::os::unix::fs::MetadataExt;
use support::*;

const REWRITTEN: &str = "buildkit/rewritten-timestamp";
/// 2015-10-21T07:28:00Z, before the request tar's file times.
const OCT_2015: i64 = 1_445_412_480;

fn build(server: &Server, image: &str, dockerfile: &str, args: &[(&str, &str)]) -> (u16, Value) {
    let build_args: serde_json::Map<String, Value> = args.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    let config = json!({ "image": image, "buildArgs": build_args });
    server.build(&request_tar(&config, &[("Dockerfile", dockerfile.as_bytes())]))
}

fn rfc3339(secs: i64) -> String {
    let out =
        std::process::Command::new("date").args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%SZ"]).output();
    String::from_utf8(out.unwrap().stdout).unwrap().trim().to_string()
}

fn annotations(image: &str) -> Vec<Option<String>> {
    let manifest = image_manifest(image);
    let layers = manifest["layers"].as_array().unwrap();
    layers.iter().map(|l| l["annotations"][REWRITTEN].as_str().map(str::to_string)).collect()
}

/// Real times unless a build dates itself (BuildKit without an epoch).
fn undated_server(args: Vec<String>) -> Server {
    let env = vec![("SOURCE_DATE_EPOCH".to_string(), "now".to_string())];
    Server::start(ServerOptions { env, args, ..Default::default() })
}

#[test]
fn the_build_arg_and_the_dockerfile_default_date_the_image_and_its_files() {
    let server = undated_server(vec![]);
    let image = test_image("kiln/sde-arg");

    // testSourceDateEpochWithoutExporter: every date is the build arg's.
    let (status, reply) = build(
        &server,
        &image,
        "FROM scratch\nENTRYPOINT foo bar\nCOPY Dockerfile .\n",
        &[("SOURCE_DATE_EPOCH", "1700000001")],
    );
    assert_success(status, &reply);
    let config = image_config(&image, None);
    assert_eq!(config["created"], rfc3339(1_700_000_001));
    for h in config["history"].as_array().unwrap() {
        assert_eq!(h["created"], rfc3339(1_700_000_001), "{h}");
    }
    assert_eq!(annotations(&image), [Some("1700000001".to_string())]);

    // testSourceDateEpochDockerfileDefault: the global ARG's default, and
    // new files newer than it are clamped to it.
    let dated = format!("ARG SOURCE_DATE_EPOCH={OCT_2015}\nFROM scratch\nCOPY Dockerfile .\n");
    assert_success_of(build(&server, &image, &dated, &[]));
    assert_eq!(annotations(&image), [Some(OCT_2015.to_string())]);
    let rootfs = unpack_image(&image, None);
    assert_eq!(std::fs::metadata(rootfs.rootfs.join("Dockerfile")).unwrap().mtime(), OCT_2015);
    assert_eq!(image_config(&image, None)["created"], rfc3339(OCT_2015));

    // testSourceDateEpochDockerfileDefaultOverride: the build arg wins.
    assert_success_of(build(&server, &image, &dated, &[("SOURCE_DATE_EPOCH", "1700000002")]));
    assert_eq!(annotations(&image), [Some("1700000002".to_string())]);

    // testSourceDateEpochContextLocalUnset: an uploaded context has no
    // date, so nothing is rewritten.
    assert_success_of(build(&server, &image, &dated, &[("SOURCE_DATE_EPOCH", "context")]));
    assert_eq!(annotations(&image), [None]);
    let rootfs = unpack_image(&image, None);
    assert_eq!(std::fs::metadata(rootfs.rootfs.join("Dockerfile")).unwrap().mtime(), 1_700_000_000);

    // testSourceDateEpochDockerfileDefaultInvalid.
    let (status, reply) = build(&server, &image, "ARG SOURCE_DATE_EPOCH=not-a-timestamp\nFROM scratch\n", &[]);
    assert_eq!(status, 400, "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("invalid SOURCE_DATE_EPOCH: not-a-timestamp"), "{reply}");
}

fn assert_success_of((status, reply): (u16, Value)) {
    assert_success(status, &reply);
}

#[test]
fn the_same_epoch_rebuilds_the_same_image_and_another_epoch_does_not_reuse_its_layers() {
    // testReproSourceDateEpoch, testWorkdirSourceDateEpochReproducible.
    let server = undated_server(vec![]);
    let (reg, image) = (registry(), test_image("kiln/sde-repro"));
    let dockerfile = format!(
        "FROM {reg}/busybox\nWORKDIR /mydir\nRUN touch /foo\nRUN touch -d '2010-01-01 12:34:56' /foo-2010\n\
         RUN touch -d '2030-01-01 12:34:56' /foo-2030\nRUN rm -f /foo-2030\n"
    );
    let epoch = [("SOURCE_DATE_EPOCH", "1673354096")];
    assert_success_of(build(&server, &image, &dockerfile, &epoch));
    let first = image_manifest(&image);
    let config = image_config(&image, None);
    let base = image_config(&format!("{reg}/busybox"), None);
    let base_history = base["history"].as_array().unwrap();
    assert_eq!(&config["history"].as_array().unwrap()[..base_history.len()], &base_history[..], "base dates stay");
    let marks = annotations(&image);
    assert_eq!(marks[0], None, "the base layer is as pulled");
    assert!(marks[1..].iter().all(|m| m.as_deref() == Some("1673354096")), "{marks:?}");
    let rootfs = unpack_image(&image, None);
    let mtime = |p: &str| std::fs::metadata(rootfs.rootfs.join(p)).unwrap().mtime();
    assert_eq!(mtime("foo"), 1_673_354_096, "a new file is clamped");
    assert_eq!(mtime("foo-2010"), 1_262_349_296, "an older time stays");
    assert_eq!(mtime("mydir"), 1_673_354_096, "WORKDIR's directory too");

    assert_eq!(server.admin("POST", "/cache/prune?keep_storage=0").status().as_u16(), 200, "the cache is pruned");
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_success_of(build(&server, &image, &dockerfile, &epoch));
    assert_eq!(image_manifest(&image), first, "the same inputs and epoch give the same manifest");

    assert_success_of(build(&server, &image, &dockerfile, &[("SOURCE_DATE_EPOCH", "1673354000")]));
    let rootfs = unpack_image(&image, None);
    assert_eq!(std::fs::metadata(rootfs.rootfs.join("foo")).unwrap().mtime(), 1_673_354_000, "not the cached layer");
    assert!(annotations(&image)[1..].iter().all(|m| m.as_deref() == Some("1673354000")));
}

#[test]
fn a_source_stage_dates_the_build_with_its_download() {
    let (reg, image) = (registry(), test_image("kiln/sde-stage"));
    // testSourceDateEpochStageHTTPArchive: no Last-Modified, so the newest
    // file in the archive.
    let undated = FileServer::start_undated("kiln-sde-undated");
    sh(&undated.dir, "echo bar > foo && touch -d @1700000402 foo && tar czf src.tar.gz foo && rm foo");
    let stage = |url: String| {
        format!(
            "ARG SOURCE_DATE_EPOCH=mysource\nFROM scratch AS mysource\nADD {url} /\n\
             FROM {reg}/busybox\nARG SOURCE_DATE_EPOCH\nRUN echo -n \"$SOURCE_DATE_EPOCH\" >/epoch\n"
        )
    };
    let mut allow = undated.allow();
    let dated = FileServer::start("kiln-sde-dated");
    sh(&dated.dir, "echo bar > foo && tar cf src.tar foo && touch -d @1700000201 src.tar");
    allow.extend(dated.allow());
    let server = undated_server(allow);
    assert_success_of(build(&server, &image, &stage(undated.url("src.tar.gz")), &[]));
    let rootfs = unpack_image(&image, None);
    assert_eq!(std::fs::read_to_string(rootfs.rootfs.join("epoch")).unwrap(), "1700000402");
    assert_eq!(image_config(&image, None)["created"], rfc3339(1_700_000_402));
    assert_eq!(annotations(&image).last().unwrap().as_deref(), Some("1700000402"));

    // testSourceDateEpochContextHTTPLastModified's rule for a stage: the
    // server's Last-Modified first.
    assert_success_of(build(&server, &image, &stage(dated.url("src.tar")), &[]));
    let rootfs = unpack_image(&image, None);
    assert_eq!(std::fs::read_to_string(rootfs.rootfs.join("epoch")).unwrap(), "1700000201");

    // testSourceDateEpochStageOverride: the build arg wins over the stage.
    assert_success_of(build(
        &server,
        &image,
        &stage(undated.url("src.tar.gz")),
        &[("SOURCE_DATE_EPOCH", "1700000502")],
    ));
    assert_eq!(annotations(&image).last().unwrap().as_deref(), Some("1700000502"));

    // A Git source: the commit's committer time.
    let repo = FileServer::start("kiln-sde-git");
    let work = repo.dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let git = "git -c user.name=t -c user.email=t@example.com";
    sh(&work, &format!("git init -q . && echo a > a && {git} add a && GIT_COMMITTER_DATE='@1700000601 +0000' {git} commit -qm one && git tag v1"));
    sh(&repo.dir, "git clone -q --bare work r.git && cd r.git && git update-server-info");
    let git_server = undated_server(repo.allow());
    assert_success_of(build(&git_server, &image, &stage(format!("{}#v1", repo.url("r.git"))), &[]));
    let rootfs = unpack_image(&image, None);
    assert_eq!(std::fs::read_to_string(rootfs.rootfs.join("epoch")).unwrap(), "1700000601");

    // The sources are fetched under the steps' egress policy: without the
    // allow, the node's loopback is refused (the controls above reach it).
    let strict = undated_server(vec![]);
    for (url, why) in [
        (undated.url("src.tar.gz"), "refused by the egress policy"),
        (format!("{}#v1", repo.url("r.git")), "SOURCE_DATE_EPOCH source"),
    ] {
        let (status, reply) = build(&strict, &image, &stage(url.clone()), &[]);
        assert_ne!(status, 200, "{url}: {reply}");
        assert!(reply["error"].as_str().unwrap().contains(why), "{url}: {reply}");
    }

    // testSourceDateEpochStageInvalid.
    let invalid =
        "ARG SOURCE_DATE_EPOCH=mysource\nFROM scratch AS mysource\nCOPY Dockerfile /Dockerfile\nFROM scratch\n";
    let (status, reply) = build(&server, &image, invalid, &[]);
    assert_eq!(status, 400, "{reply}");
    let err = reply["error"].as_str().unwrap();
    assert!(err.contains("SOURCE_DATE_EPOCH stage does not meet source-only requirements"), "{err}");
}
