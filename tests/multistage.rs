//! Multi-stage builds shaped like the OpenFaaS templates: a watchdog image
//! stage, `COPY --from=<stage|index|image>`, `--chown=app:app` after a RUN
//! that creates the user, an unreachable `test` stage, HEALTHCHECK.

mod support;

use serde_json::json;
use support::*;

#[test]
fn openfaas_template_shape_builds() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let image = test_image("kiln/template");
    let dockerfile = format!(
        r#"ARG PYTHON_VERSION=3.12
FROM --platform=${{TARGETPLATFORM:-linux/amd64}} {reg}/of-watchdog:test AS watchdog
FROM --platform=${{TARGETPLATFORM:-linux/amd64}} {reg}/busybox:latest AS build
COPY --from=watchdog /fwatchdog /usr/bin/fwatchdog
RUN chmod +x /usr/bin/fwatchdog
ARG ADDITIONAL_PACKAGE
RUN echo 'app:x:1000:1000::/home/app:/bin/sh' >> /etc/passwd && echo 'app:x:1000:' >> /etc/group && mkdir -p /home/app && chown app:app /home/app && echo "pkgs=[$ADDITIONAL_PACKAGE]" > /home/app/pkgs
WORKDIR /home/app/
COPY --chown=app:app function/ ./function/
USER app
RUN echo owned > /home/app/by-app

FROM build AS test
RUN echo the test stage must not run && exit 1

FROM build AS ship
COPY --from=0 /fwatchdog /usr/local/bin/from-index
COPY --from={reg}/of-watchdog:test /fwatchdog /usr/local/bin/from-image
COPY --from=build /home/app /copied-home
ENV fprocess="python3 index.py"
HEALTHCHECK --interval=3s CMD [ -e /tmp/.lock ] || exit 1
CMD ["fwatchdog"]
"#
    );
    let config = json!({"image": image, "buildArgs": {"ADDITIONAL_PACKAGE": "", "UNUSED": "x"}});
    let body = request_tar(
        &config,
        &[("Dockerfile", dockerfile.as_bytes()), ("function/handler.py", b"def handle(r):\n    return r\n")],
    );
    let (status, reply) = server.build(&body);
    assert_success(status, &reply);
    assert!(!log_text(&reply).contains("must not run"));

    let img = unpack_image(&image, None);
    let r = &img.rootfs;
    assert!(r.join("usr/bin/fwatchdog").exists(), "COPY --from=<stage>");
    assert!(r.join("usr/local/bin/from-index").exists(), "COPY --from=<index>");
    assert!(r.join("usr/local/bin/from-image").exists(), "COPY --from=<image>");
    assert_eq!(owner_mode(&r.join("home/app/function/handler.py")).0, 1000, "--chown=app:app after RUN adduser");
    assert_eq!(owner_mode(&r.join("home/app/function/handler.py")).1, 1000);
    assert_eq!(owner_mode(&r.join("copied-home/by-app")).0, 1000, "COPY --from keeps source owners");
    assert_eq!(owner_mode(&r.join("copied-home")).0, 0, "the directory COPY creates is root's");
    assert_eq!(std::fs::read_to_string(r.join("home/app/pkgs")).unwrap(), "pkgs=[]\n", "empty build arg is set");
    let cfg = image_config(&image, None);
    let c = &cfg["config"];
    assert_eq!(c["Healthcheck"]["Test"], json!(["CMD-SHELL", "[ -e /tmp/.lock ] || exit 1"]));
    assert_eq!(c["Healthcheck"]["Interval"], 3_000_000_000u64);
    assert_eq!(c["User"], "app");
    assert_eq!(c["Cmd"], json!(["fwatchdog"]));
    assert!(c["Env"].as_array().unwrap().iter().any(|e| e == "fprocess=python3 index.py"));

    let (status, again) = server.build(&body);
    assert_success(status, &again);
    assert_eq!(executed_runs(&reply), 3, "the first build ran the three RUN steps of its stages");
    assert_eq!(executed_runs(&again), 0, "a rebuild runs nothing:\n{}", log_text(&again));
}

#[test]
fn copy_from_a_later_stage_is_rejected_with_its_line() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let dockerfile = format!("FROM {reg}/busybox AS a\nCOPY --from=b /x /x\nFROM {reg}/busybox AS b\n");
    // Built (the target), stage a fails; as in BuildKit, it would not matter
    // in a build that does not run stage a.
    let config = json!({"image": format!("{reg}/kiln/later:v1"), "target": "a"});
    let (status, reply) = server.build(&request_tar(&config, &[("Dockerfile", dockerfile.as_bytes())]));
    assert_eq!(status, 400);
    let err = reply["error"].as_str().unwrap();
    assert!(err.contains("Dockerfile:2") && err.contains("needs to be defined before current stage \"a\""), "{err}");
    let config = json!({"image": format!("{reg}/kiln/later:v1")});
    let (status, reply) = server.build(&request_tar(&config, &[("Dockerfile", dockerfile.as_bytes())]));
    assert_success(status, &reply);
}

#[test]
fn dockerignore_is_honoured_server_side() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let image = test_image("kiln/dockerignore");
    let ignore = b"# build noise\n*.log\n!keep.log\nnode_modules\nsecrets/\n**/*.tmp\n";
    let dockerfile = format!("FROM {reg}/busybox\nCOPY . /app\n");
    let files: Vec<(&str, &[u8])> = vec![
        ("Dockerfile", dockerfile.as_bytes()),
        (".dockerignore", ignore),
        ("main.py", b"print(1)\n"),
        ("debug.log", b"noise"),
        ("keep.log", b"kept"),
        ("sub/deep.log", b"not at the root, so kept"),
        ("node_modules/x/index.js", b"x"),
        ("secrets/token", b"t"),
        ("a/b/c.tmp", b"t"),
        ("a/b/c.txt", b"kept"),
    ];
    let (status, reply) = server.build(&request_tar(&json!({"image": image}), &files));
    assert_success(status, &reply);
    let img = unpack_image(&image, None);
    let app = img.rootfs.join("app");
    for kept in ["main.py", "keep.log", "sub/deep.log", "a/b/c.txt", "Dockerfile", ".dockerignore"] {
        assert!(app.join(kept).exists(), "{kept} should be copied");
    }
    for gone in ["debug.log", "node_modules", "secrets", "a/b/c.tmp"] {
        assert!(!app.join(gone).exists(), "{gone} is excluded by .dockerignore");
    }
    let missing = format!("FROM {reg}/busybox\nCOPY debug.log /x\n");
    let files: Vec<(&str, &[u8])> =
        vec![("Dockerfile", missing.as_bytes()), (".dockerignore", ignore), ("debug.log", b"noise")];
    let (status, reply) = server.build(&request_tar(&json!({"image": image}), &files));
    assert_eq!(status, 400);
    assert!(reply["error"].as_str().unwrap().contains("\"/debug.log\": not found"), "{reply}");
}

#[test]
fn registry_mirrors_serve_real_image_names() {
    let reg = registry();
    let args = vec![
        "--registry-mirror".to_string(),
        format!("docker.io={reg}"),
        "--registry-mirror".into(),
        format!("ghcr.io={reg}"),
    ];
    let server = Server::start(ServerOptions { args, ..Default::default() });
    let image = test_image("kiln/mirrored");
    let dockerfile = "FROM ghcr.io/openfaas/of-watchdog:0.10.7 AS watchdog\nFROM busybox:latest\nCOPY --from=watchdog /fwatchdog /usr/bin/fwatchdog\nRUN test -x /usr/bin/fwatchdog\n";
    let (status, reply) =
        server.build(&request_tar(&json!({"image": image}), &[("Dockerfile", dockerfile.as_bytes())]));
    assert_success(status, &reply);
    let log = log_text(&reply);
    assert!(log.contains(&format!("load metadata for docker.io/library/busybox:latest (mirror {reg})")), "{log}");
    assert!(log.contains(&format!("load metadata for ghcr.io/openfaas/of-watchdog:0.10.7 (mirror {reg})")), "{log}");
    assert!(unpack_image(&image, None).rootfs.join("usr/bin/fwatchdog").exists());
}

#[test]
fn heredocs_in_run_and_copy() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let image = test_image("kiln/heredoc");
    let dockerfile = format!(
        "FROM {reg}/busybox\nARG NAME=world\nRUN <<EOF\necho \"hello from heredoc\" > /h1\necho \"$HOME\" > /h1home\nEOF\n\
         RUN cat <<EOF > /h2\ninline $NAME\nEOF\n\
         RUN <<EOF\n#!/bin/sh\necho shebang > /h3\nEOF\n\
         COPY <<EOF /etc/greeting\nHello ${{NAME}} \\$literal 'quoted'\nEOF\n\
         COPY <<-'RAW' <<TWO /multi/\n\traw $NAME\n\tRAW\ntwo ${{NAME}}\nTWO\n"
    );
    let (status, reply) =
        server.build(&request_tar(&json!({"image": image}), &[("Dockerfile", dockerfile.as_bytes())]));
    assert_success(status, &reply);
    let img = unpack_image(&image, None);
    let read = |p: &str| std::fs::read_to_string(img.rootfs.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(read("h1"), "hello from heredoc\n");
    assert_eq!(read("h1home"), "/root\n");
    assert_eq!(read("h2"), "inline world\n", "the shell expands RUN heredocs");
    assert_eq!(read("h3"), "shebang\n", "a #! heredoc runs as a script file");
    assert_eq!(
        read("etc/greeting"),
        "Hello world $literal 'quoted'\n",
        "COPY heredocs: builder expansion, quotes kept"
    );
    assert_eq!(read("multi/RAW"), "raw $NAME\n", "quoted delimiter: no expansion; <<- strips tabs");
    assert_eq!(read("multi/TWO"), "two world\n");
    assert_eq!(owner_mode(&img.rootfs.join("etc/greeting")), (0, 0, 0o644));
}

fn gzip_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    tar_entry(&mut b, "app/", tar::EntryType::Directory, 0o755, 0, b"", None);
    tar_entry(&mut b, "app/run.sh", tar::EntryType::Regular, 0o750, 1000, b"echo run\n", None);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &b.into_inner().unwrap()).unwrap();
    gz.finish().unwrap()
}

#[test]
fn add_extracts_local_archives_unless_unpack_false() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let image = test_image("kiln/add");
    let dockerfile = format!(
        "FROM {reg}/busybox\nADD app.tar.gz /opt/\nADD plain.txt /opt/plain.txt\nADD --unpack=false app.tar.gz /keep/\n"
    );
    let archive = gzip_tar();
    let files: Vec<(&str, &[u8])> =
        vec![("Dockerfile", dockerfile.as_bytes()), ("app.tar.gz", &archive), ("plain.txt", b"plain\n")];
    let (status, reply) = server.build(&request_tar(&json!({"image": image}), &files));
    assert_success(status, &reply);
    let img = unpack_image(&image, None);
    assert_eq!(std::fs::read_to_string(img.rootfs.join("opt/app/run.sh")).unwrap(), "echo run\n");
    assert_eq!(
        owner_mode(&img.rootfs.join("opt/app/run.sh")),
        (1000, 1000, 0o750),
        "archive owners and modes are kept"
    );
    assert_eq!(std::fs::read_to_string(img.rootfs.join("opt/plain.txt")).unwrap(), "plain\n");
    assert!(!img.rootfs.join("opt/app.tar.gz").exists(), "the archive itself is not copied");

    let kept = std::fs::read(img.rootfs.join("keep/app.tar.gz")).unwrap();
    assert_eq!(kept, archive, "--unpack=false copies the archive as a file");
}

#[test]
fn onbuild_triggers_run_in_child_builds() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let parent = test_image("kiln/onbuild-parent");
    let p = format!(
        "FROM {reg}/busybox\nONBUILD COPY marker.txt /from-child-context\nONBUILD RUN echo triggered > /onbuild-ran\n"
    );
    let (status, reply) = server.build(&request_tar(&json!({"image": parent}), &[("Dockerfile", p.as_bytes())]));
    assert_success(status, &reply);
    assert_eq!(
        image_config(&parent, None)["config"]["OnBuild"],
        json!(["COPY marker.txt /from-child-context", "RUN echo triggered > /onbuild-ran"])
    );

    let child = test_image("kiln/onbuild-child");
    let c = format!("# syntax=example.com/custom/frontend:1\nFROM {parent}\nRUN test -f /onbuild-ran\n");
    let body =
        request_tar(&json!({"image": child}), &[("Dockerfile", c.as_bytes()), ("marker.txt", b"child's file\n")]);
    let (status, reply) = server.build(&body);
    assert_success(status, &reply);
    assert!(log_text(&reply).contains("WARNING: # syntax=example.com/custom/frontend:1 is ignored"));
    let img = unpack_image(&child, None);
    assert_eq!(std::fs::read_to_string(img.rootfs.join("from-child-context")).unwrap(), "child's file\n");
    assert!(image_config(&child, None)["config"].get("OnBuild").is_none(), "triggers are not inherited");
}

/// BuildKit's testOnBuildNewDeps: a trigger's `--from` is a dependency of
/// the child build — an image (`ONBUILD COPY --from=<image>`) is resolved,
/// and a stage reached only through a trigger (`ONBUILD RUN
/// --mount=…,from=inputstage`) is built, not pruned.
#[test]
fn onbuild_trigger_dependencies_are_resolved_and_built() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let base = test_image("kiln/onbuild-deps-base");
    let first = format!("FROM {reg}/busybox\nONBUILD COPY --from={reg}/of-watchdog:test /fwatchdog /out/watchdog\n");
    let (status, reply) = server.build(&request_tar(&json!({"image": base}), &[("Dockerfile", first.as_bytes())]));
    assert_success(status, &reply);
    let base2 = test_image("kiln/onbuild-deps-base2");
    let second = format!(
        "FROM {reg}/busybox\nONBUILD RUN --mount=type=bind,target=/in,from=inputstage mkdir -p /out && \
         cat /in/foo > /out/bar && cp /in/out/watchdog /out/bar2\n"
    );
    let (status, reply) = server.build(&request_tar(&json!({"image": base2}), &[("Dockerfile", second.as_bytes())]));
    assert_success(status, &reply);

    let child = test_image("kiln/onbuild-deps-child");
    let dockerfile = format!(
        "FROM {base} AS inputstage\nRUN echo -n foo > /foo\nFROM {base2} AS base\nRUN echo -n bar3 > /out/bar3\n\
         FROM scratch\nCOPY --from=base /out /\n"
    );
    let (status, reply) =
        server.build(&request_tar(&json!({"image": child}), &[("Dockerfile", dockerfile.as_bytes())]));
    assert_success(status, &reply);
    let img = unpack_image(&child, None);
    assert_eq!(std::fs::read_to_string(img.rootfs.join("bar")).unwrap(), "foo");
    assert!(std::fs::metadata(img.rootfs.join("bar2")).unwrap().len() > 5, "the image the first trigger copied");
    assert_eq!(std::fs::read_to_string(img.rootfs.join("bar3")).unwrap(), "bar3");
}

/// A tar of hand-made entries: (path, kind, target or content, mode).
fn archive(entries: &[(&str, tar::EntryType, &str, u32)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, data, mode) in entries {
        match kind {
            tar::EntryType::Symlink | tar::EntryType::Link => tar_entry(&mut b, path, *kind, *mode, 0, b"", Some(data)),
            _ => tar_entry(&mut b, path, *kind, *mode, 0, data.as_bytes(), None),
        }
    }
    b.into_inner().unwrap()
}

/// BuildKit's testDockerfileAddArchiveThroughAbsoluteSymlink,
/// testDockerfileAddChownArchive and testDockerfileAddArchiveWithImpliedParentDir:
/// an archive's paths are resolved as if its destination were `/` — through
/// the absolute symlink `/var/run -> /run` the image has, hardlinks too —
/// missing parents are created, and `--chown` owns every extracted entry and
/// the destination.
#[test]
fn add_extracts_archives_as_if_chrooted_into_the_destination() {
    use tar::EntryType::{Directory, Link, Regular, Symlink};
    let server = Server::start(ServerOptions::default());
    let image = test_image("kiln/add-chroot");
    let rootfs =
        archive(&[("run/", Directory, "", 0o755), ("var/", Directory, "", 0o755), ("var/run", Symlink, "/run", 0o777)]);
    let head = "ref: refs/heads/main\n";
    let payload = archive(&[
        ("var/run/act/", Directory, "", 0o755),
        ("var/run/act/.git/", Directory, "", 0o755),
        ("var/run/act/.git/HEAD", Regular, head, 0o644),
        ("var/run/act/.git/HEAD.link", Link, "var/run/act/.git/HEAD", 0o644),
        ("etc/dnf/dnf.conf", Regular, "[main]\n", 0o644),
    ]);
    let owned = archive(&[("foo", Regular, "content0", 0o644)]);
    let dockerfile = "FROM scratch\nADD rootfs.tar /\nADD payload.tar /\nADD --chown=100:200 owned.tar /out/\n";
    let files: Vec<(&str, &[u8])> = vec![
        ("Dockerfile", dockerfile.as_bytes()),
        ("rootfs.tar", &rootfs),
        ("payload.tar", &payload),
        ("owned.tar", &owned),
    ];
    let (status, reply) = server.build(&request_tar(&json!({"image": image}), &files));
    assert_success(status, &reply);
    let img = unpack_image(&image, None);
    let head_path = img.rootfs.join("run/act/.git/HEAD");
    assert_eq!(std::fs::read_to_string(&head_path).unwrap(), head, "extracted through the image's /var/run -> /run");
    use std::os::unix::fs::MetadataExt;
    let (file, link) =
        (std::fs::metadata(&head_path).unwrap(), std::fs::metadata(img.rootfs.join("run/act/.git/HEAD.link")).unwrap());
    assert_eq!((file.dev(), file.ino()), (link.dev(), link.ino()), "the hardlink resolves the same way");
    assert_eq!(std::fs::read_to_string(img.rootfs.join("etc/dnf/dnf.conf")).unwrap(), "[main]\n", "implied parents");
    assert_eq!(std::fs::read_to_string(img.rootfs.join("out/foo")).unwrap(), "content0");
    assert_eq!(owner_mode(&img.rootfs.join("out/foo")).0, 100);
    assert_eq!(owner_mode(&img.rootfs.join("out/foo")).1, 200);
    assert_eq!(owner_mode(&img.rootfs.join("out")).0, 100, "--chown owns the destination");
}

#[test]
fn add_extracts_zstd_xz_and_bzip2_archives() {
    let dir = std::env::temp_dir().join(unique("kiln-archives"));
    std::fs::create_dir_all(dir.join("app")).unwrap();
    std::fs::write(dir.join("app/run.sh"), "echo run\n").unwrap();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, flag) in [("app.tar.zst", "--zstd"), ("app.tar.xz", "-J"), ("app.tar.bz2", "-j")] {
        let ok = std::process::Command::new("tar")
            .args([flag, "-cf", name, "app"])
            .current_dir(&dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "tar {flag}");
        files.push((name.to_string(), std::fs::read(dir.join(name)).unwrap()));
    }
    std::fs::remove_dir_all(&dir).unwrap();
    let reg = registry();
    let image = test_image("kiln/add-compressed");
    let dockerfile = format!("FROM {reg}/busybox\nADD app.tar.zst /zst/\nADD app.tar.xz /xz/\nADD app.tar.bz2 /bz2/\n");
    let mut entries: Vec<(&str, &[u8])> = vec![("Dockerfile", dockerfile.as_bytes())];
    entries.extend(files.iter().map(|(n, d)| (n.as_str(), d.as_slice())));
    let server = Server::start(ServerOptions::default());
    let (status, reply) = server.build(&request_tar(&json!({"image": image}), &entries));
    assert_success(status, &reply);
    let img = unpack_image(&image, None);
    for dir in ["zst", "xz", "bz2"] {
        let run = img.rootfs.join(dir).join("app/run.sh");
        assert_eq!(std::fs::read_to_string(&run).unwrap_or_default(), "echo run\n", "{dir} archive extracted");
    }
}

#[test]
fn independent_stages_run_at_the_same_time() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let image = test_image("kiln/parallel-stages");
    let dockerfile = format!(
        "FROM {reg}/busybox AS left\nRUN sleep 1 && echo left > /left\n\
         FROM {reg}/busybox AS right\nRUN sleep 1 && echo right > /right\n\
         FROM {reg}/busybox\nCOPY --from=left /left /left\nCOPY --from=right /right /right\n"
    );
    let (status, reply) =
        server.build(&request_tar(&json!({"image": image}), &[("Dockerfile", dockerfile.as_bytes())]));
    assert_success(status, &reply);
    let log = log_text(&reply);
    let lines: Vec<&str> = log.lines().collect();
    let pos = |needle: &str, done: bool| {
        lines
            .iter()
            .position(|l| l.contains(needle) && l.ends_with('s') == done && !l.contains("CACHED"))
            .unwrap_or_else(|| panic!("{needle} (done: {done}) missing:\n{log}"))
    };
    let starts = [pos("[left 2/2] RUN", false), pos("[right 2/2] RUN", false)];
    let first_done = pos("[left 2/2] RUN", true).min(pos("[right 2/2] RUN", true));
    assert!(starts.iter().all(|s| *s < first_done), "both stages' steps were running at once:\n{log}");
    let img = unpack_image(&image, None);
    assert_eq!(std::fs::read_to_string(img.rootfs.join("left")).unwrap(), "left\n");
    assert_eq!(std::fs::read_to_string(img.rootfs.join("right")).unwrap(), "right\n");
}

/// BuildKit's testHeredocIndent and testRunBasicHeredoc: `<<-` strips
/// leading tabs in COPY bodies and RUN scripts (with or without a `#!`
/// line, or fed to a command), `<<` keeps them; a RUN here-document is the
/// step's script.
#[test]
fn heredoc_indent_and_basic_run() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let image = test_image("kiln/heredoc-indent");
    let dockerfile = format!(
        "FROM {reg}/busybox AS build\nCOPY <<EOF /dest/foo-copy\n\tfoo\nEOF\nCOPY <<-EOF /dest/bar-copy\n\tbar\nEOF\n\
         RUN <<EOF\necho \"\n\tfoo\" > /dest/foo-run\nEOF\nRUN <<-EOF\necho \"\n\tbar\" > /dest/bar-run\nEOF\n\
         RUN <<EOF\n#!/bin/sh\necho \"\n\tfoo\" > /dest/foo2-run\nEOF\nRUN <<-EOF\n#!/bin/sh\necho \"\n\tbar\" > /dest/bar2-run\nEOF\n\
         RUN <<EOF sh > /dest/foo3-run\necho \"\n\tfoo\"\nEOF\nRUN <<-EOF sh > /dest/bar3-run\necho \"\n\tbar\"\nEOF\n\
         RUN <<EOF\necho \"i am\" >> /dest/whoami\nwhoami >> /dest/whoami\nEOF\n\
         FROM scratch\nCOPY --from=build /dest /\n"
    );
    let (status, reply) =
        server.build(&request_tar(&json!({"image": image}), &[("Dockerfile", dockerfile.as_bytes())]));
    assert_success(status, &reply);
    let img = unpack_image(&image, None);
    let read = |p: &str| std::fs::read_to_string(img.rootfs.join(p)).unwrap();
    for (file, want) in [
        ("foo-copy", "\tfoo\n"),
        ("foo-run", "\n\tfoo\n"),
        ("foo2-run", "\n\tfoo\n"),
        ("foo3-run", "\n\tfoo\n"),
        ("bar-copy", "bar\n"),
        ("bar-run", "\nbar\n"),
        ("bar2-run", "\nbar\n"),
        ("bar3-run", "\nbar\n"),
        ("whoami", "i am\nroot\n"),
    ] {
        assert_eq!(read(file), want, "{file}");
    }
}

/// BuildKit's testCopyHeredoc, testRunFakeHeredoc, testRunShebangHeredoc and
/// testRunComplexHeredoc: COPY of one and of two here-documents (named by
/// their delimiters under a directory destination) with `--chmod` and
/// `--chown`; a RUN here-document fed to a non-shell SHELL, run through its
/// `#!` line, and here-documents on other file descriptors of one command.
/// (The fixture busybox keeps awk at `/usr/bin/awk`, Docker Hub's at `/bin/awk`.)
#[test]
fn heredoc_copies_and_complex_runs() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let image = test_image("kiln/heredoc-complex");
    let dockerfile = format!(
        "FROM {reg}/busybox AS copies\n\
         RUN echo user:x:1000:1000::/home/user:/bin/sh >> /etc/passwd && echo user:x:1000: >> /etc/group\n\
         WORKDIR /dest\n\
         COPY <<EOF single\nsingle file\nEOF\n\
         COPY <<EOF <<EOF2 double/\nfirst file\nEOF\nsecond file\nEOF2\n\
         RUN mkdir -p /permfiles\n\
         COPY --chmod=777 <<EOF /permfiles/all\ndummy content\nEOF\n\
         COPY --chmod=0644 <<EOF /permfiles/rw\ndummy content\nEOF\n\
         COPY --chown=user:user <<EOF /permfiles/owned\ndummy content\nEOF\n\
         RUN stat -c \"%04a\" /permfiles/all >> perms && stat -c \"%04a\" /permfiles/rw >> perms && stat -c \"%U:%G\" /permfiles/owned >> perms\n\
         FROM {reg}/busybox AS fake\n\
         SHELL [\"/usr/bin/awk\"]\n\
         RUN <<EOF\nBEGIN {{\n\tprint \"foo\" > \"/dest\"\n}}\nEOF\n\
         FROM {reg}/busybox AS shebang\n\
         RUN <<EOF\n#!/usr/bin/awk -f\nBEGIN {{\n\tprint \"hello\" >> \"/dest\"\n\tprint \"world\" >> \"/dest\"\n}}\nEOF\n\
         FROM {reg}/busybox AS complex\n\
         WORKDIR /dest\n\
         RUN cat <<EOF1 | tr '[:upper:]' '[:lower:]' > ./out1; \\\n\tcat <<EOF2 | tr '[:lower:]' '[:upper:]' > ./out2\nhello WORLD\nEOF1\nHELLO world\nEOF2\n\
         RUN <<EOF 3<<IN1 4<<IN2 awk -f -\nBEGIN {{\n\twhile ((getline line < \"/proc/self/fd/3\") > 0)\n\t\tprint tolower(line) > \"./fd3\"\n\
         \twhile ((getline line < \"/proc/self/fd/4\") > 0)\n\t\tprint toupper(line) > \"./fd4\"\n}}\nEOF\nhello WORLD\nIN1\nHELLO world\nIN2\n\
         FROM scratch\n\
         COPY --from=copies /dest /copies/\n\
         COPY --from=fake /dest /fake\n\
         COPY --from=shebang /dest /shebang\n\
         COPY --from=complex /dest /complex/\n"
    );
    let (status, reply) =
        server.build(&request_tar(&json!({"image": image}), &[("Dockerfile", dockerfile.as_bytes())]));
    assert_success(status, &reply);
    let img = unpack_image(&image, None);
    let read = |p: &str| std::fs::read_to_string(img.rootfs.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    for (file, want) in [
        ("copies/single", "single file\n"),
        ("copies/double/EOF", "first file\n"),
        ("copies/double/EOF2", "second file\n"),
        ("copies/perms", "0777\n0644\nuser:user\n"),
        ("fake", "foo\n"),
        ("shebang", "hello\nworld\n"),
        ("complex/out1", "hello world\n"),
        ("complex/out2", "HELLO WORLD\n"),
        ("complex/fd3", "hello world\n"),
        ("complex/fd4", "HELLO WORLD\n"),
    ] {
        assert_eq!(read(file), want, "{file}");
    }
}

/// BuildKit's testOnBuildHeredoc: an `ONBUILD RUN <<EOF` trigger pushed in
/// a base image runs its here-document in the stage built on that base.
#[test]
fn onbuild_heredoc_trigger_runs_in_the_child() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let base = test_image("kiln/onbuild-heredoc-base");
    let base_df = format!("FROM {reg}/busybox\nONBUILD RUN <<EOF\necho \"hello world\" >> /dest\nEOF\n");
    let (status, reply) = server.build(&request_tar(&json!({"image": base}), &[("Dockerfile", base_df.as_bytes())]));
    assert_success(status, &reply);
    let image = test_image("kiln/onbuild-heredoc");
    let child_df = format!("FROM {base} AS base\nFROM scratch\nCOPY --from=base /dest /dest\n");
    let (status, reply) = server.build(&request_tar(&json!({"image": image}), &[("Dockerfile", child_df.as_bytes())]));
    assert_success(status, &reply);
    let img = unpack_image(&image, None);
    assert_eq!(std::fs::read_to_string(img.rootfs.join("dest")).unwrap(), "hello world\n");
}
