//! Ports of BuildKit's COPY integration tests (`dockerfile_copy_test.go`
//! and the COPY cases of `dockerfile_core_test.go`), written from what each
//! asserts: its Dockerfile is built here and its checks run on the pushed
//! image (or as RUN steps that fail the build, as upstream's do). The
//! fixture busybox has no `adduser`, so users are added as passwd lines.

mod support;

use serde_json::json;
use support::*;

/// One entry of a build context.
enum Ctx<'a> {
    File(&'a str, &'a [u8], u32),
    Dir(&'a str, u32),
    Link(&'a str, &'a str),
}

/// A request tar holding `entries` under `context/`.
fn context(config: &serde_json::Value, entries: &[Ctx]) -> Vec<u8> {
    use tar::EntryType::{Directory, Regular, Symlink};
    let mut b = tar::Builder::new(Vec::new());
    tar_entry(&mut b, "context", Directory, 0o755, 0, b"", None);
    for e in entries {
        match e {
            Ctx::File(p, data, mode) => tar_entry(&mut b, &format!("context/{p}"), Regular, *mode, 0, data, None),
            Ctx::Dir(p, mode) => tar_entry(&mut b, &format!("context/{p}"), Directory, *mode, 0, b"", None),
            Ctx::Link(p, target) => tar_entry(&mut b, &format!("context/{p}"), Symlink, 0o777, 0, b"", Some(target)),
        }
    }
    let cfg = serde_json::to_vec(config).unwrap();
    tar_entry(&mut b, "com.openfaas.docker.config", Regular, 0o664, 0, &cfg, None);
    b.into_inner().unwrap()
}

/// Builds `entries` (with `extra` request fields) as a new image and
/// unpacks it.
fn build(server: &Server, name: &str, extra: serde_json::Value, entries: &[Ctx]) -> Unpacked {
    let image = test_image(name);
    let mut config = json!({"image": image});
    config.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let (status, reply) = server.build(&context(&config, entries));
    assert_success(status, &reply);
    unpack_image(&image, None)
}

fn read(img: &Unpacked, path: &str) -> String {
    std::fs::read_to_string(img.rootfs.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// testCopyChmod, testCopyChown, testCopyChownCreateDest and
/// testCopyChownExistingDir: `--chmod` (octal, zero, from an ARG) and the
/// directories COPY creates; `--chown` by name, id and ARG/ENV values; the
/// owner of a created destination; a copy into an existing directory keeps
/// the owners of what was there and gives the new files theirs (or the
/// `--chown` one).
#[test]
fn copy_modes_and_owners() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let chmod = format!(
        "FROM {reg}/busybox AS base\nRUN mkdir -m 0777 /out\nCOPY --chmod=0644 foo /\nCOPY --chmod=777 bar /baz\n\
         COPY --chmod=0 foo /foobis\nCOPY --chmod=777 foo /parent/foo\nCOPY --chmod=770 foo /parent/sub/foo\n\
         ARG mode\nCOPY --chmod=${{mode}} foo /footer\n\
         RUN stat -c \"%04a\" /foo > /out/fooperm\nRUN stat -c \"%04a\" /baz > /out/barperm\n\
         RUN stat -c \"%04a\" /foobis > /out/foobisperm\nRUN stat -c \"%04a\" /parent > /out/parentperm\n\
         RUN stat -c \"%04a\" /parent/sub > /out/subparentperm\nRUN stat -c \"%04a\" /footer > /out/footerperm\n\
         FROM scratch\nCOPY --from=base /out /\n"
    );
    let files = [
        Ctx::File("Dockerfile", chmod.as_bytes(), 0o600),
        Ctx::File("foo", b"foo-contents", 0o600),
        Ctx::File("bar", b"bar-contents", 0o700),
    ];
    let img = build(&server, "kiln/bk-copy-chmod", json!({"buildArgs": {"mode": "755"}}), &files);
    for (file, want) in [
        ("fooperm", "0644"),
        ("barperm", "0777"),
        ("foobisperm", "0000"),
        ("parentperm", "0777"),
        ("subparentperm", "0770"),
        ("footerperm", "0755"),
    ] {
        assert_eq!(read(&img, file), format!("{want}\n"), "{file}");
    }

    let chown = format!(
        "FROM {reg}/busybox AS base\n\
         RUN echo daemon:x:1:1::/:/bin/false >> /etc/passwd && echo daemon:x:1: >> /etc/group && sed -i s/^nogroup:/nobody:/ /etc/group\n\
         ENV owner 1000\nRUN mkdir -m 0777 /out\nCOPY --chown=daemon foo /\nCOPY --chown=1000:nobody bar /baz\n\
         ARG group\nCOPY --chown=${{owner}}:${{group}} foo /foobis\n\
         RUN stat -c \"%U %G\" /foo > /out/fooowner\nRUN stat -c \"%u %G\" /baz/sub > /out/subowner\n\
         RUN stat -c \"%u %G\" /foobis > /out/foobisowner\nFROM scratch\nCOPY --from=base /out /\n"
    );
    let files = [
        Ctx::File("Dockerfile", chown.as_bytes(), 0o600),
        Ctx::File("foo", b"foo-contents", 0o600),
        Ctx::Dir("bar", 0o700),
        Ctx::File("bar/sub", b"", 0o600),
    ];
    let img = build(&server, "kiln/bk-copy-chown", json!({"buildArgs": {"group": "nobody"}}), &files);
    assert_eq!(read(&img, "fooowner"), "daemon daemon\n");
    assert_eq!(read(&img, "subowner"), "1000 nobody\n");
    assert_eq!(read(&img, "foobisowner"), "1000 nobody\n");

    let create_dest = format!(
        "FROM {reg}/busybox\nARG group\nENV owner user01\n\
         RUN echo user:x:1000:1000::/home/user:/bin/sh >> /etc/passwd && echo user:x:1000: >> /etc/group\n\
         RUN echo user01:x:1001:1001::/home/user01:/bin/sh >> /etc/passwd && echo user01:x:1001: >> /etc/group\n\
         COPY --chown=user:user . /dest\nCOPY --chown=${{owner}}:${{group}} . /dest01\n\
         RUN [ \"$(stat -c \"%U %G\" /dest)\" == \"user user\" ]\nRUN [ \"$(stat -c \"%U %G\" /dest01)\" == \"user01 user\" ]\n"
    );
    let files = [Ctx::File("Dockerfile", create_dest.as_bytes(), 0o600)];
    build(&server, "kiln/bk-copy-chown-dest", json!({"buildArgs": {"group": "user"}}), &files);

    let existing = existing_dir_dockerfile(&reg);
    let files = [Ctx::File("Dockerfile.web", existing.as_bytes(), 0o600), Ctx::Link("Dockerfile", "Dockerfile.web")];
    for target in ["copy_from", "copy_from_chowned"] {
        build(&server, "kiln/bk-copy-chown-existing", json!({"target": target}), &files);
    }
}

/// testCopyChownExistingDir's Dockerfile: each stage checks owners with
/// `stat` and fails the build on a mismatch.
fn existing_dir_dockerfile(reg: &str) -> String {
    let check = |pairs: &[(&str, &str)]| {
        let tests: Vec<String> = pairs
            .iter()
            .map(|(want, path)| {
                format!("a=$(stat -c %u:%g {path}); [ \"$a\" = {want} ] || {{ echo \"{path}: want {want}, got $a\"; exit 1; }}")
            })
            .collect();
        format!("RUN {}\n", tests.join(" && "))
    };
    let untouched = [
        ("500:600", "/existingdir"),
        ("501:601", "/existingdir/existingsubdir"),
        ("501:601", "/existingdir/existingfile"),
    ];
    let plain = [
        ("100:200", "/file"),
        ("0:0", "/dir"),
        ("101:201", "/dir/subdir"),
        ("102:202", "/dir/subdir/nestedfile"),
        ("101:201", "/existingdir/subdir"),
        ("102:202", "/existingdir/subdir/nestedfile"),
    ];
    let chowned = [
        ("300:400", "/file"),
        ("300:400", "/dir"),
        ("300:400", "/dir/subdir"),
        ("300:400", "/dir/subdir/nestedfile"),
        ("300:400", "/existingdir/subdir"),
        ("300:400", "/existingdir/subdir/nestedfile"),
    ];
    format!(
        "FROM {reg}/busybox AS source\n\
         RUN touch /file && chown 100:200 /file && mkdir -p /dir/subdir && touch /dir/subdir/nestedfile \
         && chown 100:200 /dir && chown 101:201 /dir/subdir && chown 102:202 /dir/subdir/nestedfile\n\
         FROM {reg}/busybox AS test_base\n\
         RUN mkdir -p /existingdir/existingsubdir && touch /existingdir/existingfile && chown 500:600 /existingdir \
         && chown 501:601 /existingdir/existingsubdir && chown 501:601 /existingdir/existingfile\n\
         FROM test_base AS copy_from\nCOPY --from=source /file .\nCOPY --from=source /dir /dir\nCOPY --from=source /dir/. /existingdir\n{}{}\
         FROM test_base AS copy_from_chowned\nCOPY --from=source --chown=300:400 /file .\n\
         COPY --from=source --chown=300:400 /dir /dir\nCOPY --from=source --chown=300:400 /dir/. /existingdir\n{}{}",
        check(&plain),
        check(&untouched),
        check(&chowned),
        check(&untouched),
    )
}

/// testCopyOverrideFiles, testCopyRelative, testCopyVarSubstitution,
/// testCopyWildcards, testEmptyWildcard, testEmptyDestDir,
/// testPreserveDestDirSlash and testCopyUnicodePath.
#[test]
fn copy_destinations_sources_and_wildcards() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let dockerfile = "FROM scratch AS base\nCOPY sub sub\nCOPY sub sub\nCOPY files/foo.go dest/foo.go\n\
                      COPY files/foo.go dest/foo.go\nCOPY files dest\n\
                      ENV FOO bar\nCOPY $FOO baz\n\
                      COPY *.go /gofiles/\nCOPY f*.go foo2.go\nCOPY sub/* /subdest/\nCOPY sub/*/dir2/foo /subdest2/\n\
                      COPY sub/*/dir2/foo /subdest3/bar\nCOPY . all/\nCOPY sub/dir1/ subdest4\nCOPY sub/dir1/. subdest5\n\
                      COPY sub/dir1 subdest6\nCOPY bar nomatch* /empty-wildcard/\n\
                      COPY test-äöü.txt /\nCOPY test-%C3%A4%C3%B6%C3%BC.txt /\nCOPY test+aou.txt /\n";
    let files = [
        Ctx::File("Dockerfile", dockerfile.as_bytes(), 0o600),
        Ctx::Dir("sub", 0o700),
        Ctx::Dir("sub/dir1", 0o700),
        Ctx::Dir("sub/dir1/dir2", 0o700),
        Ctx::File("sub/dir1/dir2/foo", b"foo-contents", 0o600),
        Ctx::Dir("files", 0o700),
        Ctx::File("files/foo.go", b"foo.go-contents", 0o600),
        Ctx::File("bar", b"bar-contents", 0o600),
        Ctx::File("foo.go", b"foo-contents", 0o600),
        Ctx::File("bar.go", b"bar-contents", 0o600),
        Ctx::File("test-äöü.txt", b"foo", 0o644),
        Ctx::File("test-%C3%A4%C3%B6%C3%BC.txt", b"bar", 0o644),
        Ctx::File("test+aou.txt", b"baz", 0o644),
    ];
    let img = build(&server, "kiln/bk-copy-paths", json!({}), &files);
    for (file, want) in [
        ("sub/dir1/dir2/foo", "foo-contents"),
        ("dest/foo.go", "foo.go-contents"),
        ("baz", "bar-contents"),
        ("gofiles/foo.go", "foo-contents"),
        ("gofiles/bar.go", "bar-contents"),
        ("foo2.go", "foo-contents"),
        ("subdest/dir2/foo", "foo-contents"),
        ("subdest2/foo", "foo-contents"),
        ("subdest3/bar", "foo-contents"),
        ("all/foo.go", "foo-contents"),
        ("subdest4/dir2/foo", "foo-contents"),
        ("subdest5/dir2/foo", "foo-contents"),
        ("subdest6/dir2/foo", "foo-contents"),
        ("empty-wildcard/bar", "bar-contents"),
        ("test-äöü.txt", "foo"),
        ("test-%C3%A4%C3%B6%C3%BC.txt", "bar"),
        ("test+aou.txt", "baz"),
    ] {
        assert_eq!(read(&img, file), want, "{file}");
    }

    let relative = format!(
        "FROM {reg}/busybox\nWORKDIR /test1\nWORKDIR test2\nRUN sh -c \"[ \"$PWD\" = '/test1/test2' ]\"\n\
         COPY foo ./\nRUN sh -c \"[ $(cat /test1/test2/foo) = 'hello' ]\"\n\
         ADD foo ./bar/baz\nRUN sh -c \"[ $(cat /test1/test2/bar/baz) = 'hello' ]\"\n\
         COPY foo ./bar/baz2\nRUN sh -c \"[ $(cat /test1/test2/bar/baz2) = 'hello' ]\"\n\
         WORKDIR ..\nCOPY foo ./\nRUN sh -c \"[ $(cat /test1/foo) = 'hello' ]\"\n\
         COPY foo /test3/\nRUN sh -c \"[ $(cat /test3/foo) = 'hello' ]\"\n\
         WORKDIR /test4\nCOPY . .\nRUN sh -c \"[ $(cat /test4/foo) = 'hello' ]\"\n\
         WORKDIR /test5/test6\nCOPY foo ../\nRUN sh -c \"[ $(cat /test5/foo) = 'hello' ]\"\n\
         ENV empty=\"\"\nCOPY foo $empty\nRUN [ \"$(cat foo)\" == \"hello\" ]\n\
         COPY foo /sample/\nRUN [ \"$(cat /sample/foo)\" == \"hello\" ]\n"
    );
    let files = [Ctx::File("Dockerfile", relative.as_bytes(), 0o600), Ctx::File("foo", b"hello", 0o600)];
    build(&server, "kiln/bk-copy-relative", json!({}), &files);
}

/// testCopySymlinks, testCopyFollowAllSymlinks,
/// testCopyThroughSymlinkContext, testSymlinkDestination and
/// testCopyThroughSymlinkMultiStage: a source that is a symlink (named,
/// matched by a wildcard, or a chain of links) is copied as its target's
/// contents; a symlinked directory on a source path is followed, in the
/// context and in a stage; a destination that is a symlink (made by an
/// ADDed archive) is followed.
#[test]
fn copy_through_symlinks() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let archive = {
        let mut b = tar::Builder::new(Vec::new());
        tar_entry(&mut b, "symlink", tar::EntryType::Symlink, 0o755, 0, b"", Some("../tmp/symlink-target"));
        b.into_inner().unwrap()
    };
    let dockerfile =
        "FROM scratch\nCOPY foo /\nCOPY sub/l* alllinks/\nCOPY dir/sub followed\nCOPY link/foo /through/\n\
                      ADD t.tar /\nCOPY dest-foo /symlink/\n";
    let files = [
        Ctx::File("Dockerfile", dockerfile.as_bytes(), 0o600),
        Ctx::File("bar", b"bar-contents", 0o600),
        Ctx::Link("foo", "bar"),
        Ctx::Dir("sub", 0o700),
        Ctx::File("sub/lfile", b"lfile-contents", 0o600),
        Ctx::Link("sub/l0", "subfile"),
        Ctx::File("sub/subfile", b"subfile-contents", 0o600),
        Ctx::Link("sub/l1", "second"),
        Ctx::Link("sub/second", "baz"),
        Ctx::File("sub/baz", b"baz-contents", 0o600),
        Ctx::Dir("dir", 0o700),
        Ctx::Link("dir/sub", "../bar"),
        Ctx::Link("link", "linked"),
        Ctx::Dir("linked", 0o700),
        Ctx::File("linked/foo", b"contents", 0o600),
        Ctx::File("t.tar", &archive, 0o600),
        Ctx::File("dest-foo", b"content0", 0o600),
    ];
    let img = build(&server, "kiln/bk-copy-symlinks", json!({}), &files);
    for (file, want) in [
        ("foo", "bar-contents"),
        ("alllinks/l0", "subfile-contents"),
        ("alllinks/lfile", "lfile-contents"),
        ("alllinks/l1", "baz-contents"),
        ("followed", "bar-contents"),
        ("through/foo", "contents"),
        ("tmp/symlink-target/dest-foo", "content0"),
    ] {
        assert!(!img.rootfs.join(file).is_symlink(), "{file} is copied as a file, not a link");
        assert_eq!(read(&img, file), want, "{file}");
    }

    let stages = format!(
        "FROM {reg}/busybox AS build\n\
         RUN mkdir -p /out/sub && ln -s /out/sub /sub && ln -s out/sub /sub2 && echo -n \"data\" > /sub/foo\n\
         FROM scratch\nCOPY --from=build /sub/foo .\nCOPY --from=build /sub2/foo bar\n"
    );
    let img =
        build(&server, "kiln/bk-copy-symlink-stage", json!({}), &[Ctx::File("Dockerfile", stages.as_bytes(), 0o600)]);
    assert_eq!(read(&img, "foo"), "data");
    assert_eq!(read(&img, "bar"), "data");
}

/// testDockerignore, testDockerignoreInvalid and testDockerignoreOverride:
/// `.dockerignore` patterns with an exception (and ignoring the Dockerfile
/// and itself); `Dockerfile.dockerignore` applies to `Dockerfile`; a
/// pattern that is only `!` fails the build (promptly, not a hang).
#[test]
fn dockerignore_rules() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let files = [
        Ctx::File("Dockerfile", b"FROM scratch\nCOPY . .\n", 0o600),
        Ctx::File("foo", b"foo-contents", 0o600),
        Ctx::File("bar", b"bar-contents", 0o600),
        Ctx::File("baz", b"baz-contents", 0o600),
        Ctx::File("bay", b"bay-contents", 0o600),
        Ctx::File(".dockerignore", b"\nba*\nDockerfile\n!bay\n.dockerignore\n", 0o600),
    ];
    let img = build(&server, "kiln/bk-dockerignore", json!({}), &files);
    assert_eq!(read(&img, "foo"), "foo-contents");
    assert_eq!(read(&img, "bay"), "bay-contents");
    for gone in [".dockerignore", "Dockerfile", "bar", "baz"] {
        assert!(!img.rootfs.join(gone).exists(), "{gone} is ignored");
    }

    let df = format!("FROM {reg}/busybox\nCOPY . .\nRUN [ -f foo ] && [ ! -f bar ]\n");
    let files = [
        Ctx::File("Dockerfile", df.as_bytes(), 0o600),
        Ctx::File("Dockerfile.dockerignore", b"\nbar\n", 0o600),
        Ctx::File(".dockerignore", b"\nfoo\n", 0o600),
        Ctx::File("foo", b"contents0", 0o600),
        Ctx::File("bar", b"contents0", 0o600),
    ];
    build(&server, "kiln/bk-dockerignore-override", json!({}), &files);

    // testCopyIgnoredFiles: copying an ignored path warns (CopyIgnoredFile), then fails.
    let files = [
        Ctx::File("Dockerfile", b"FROM scratch\nCOPY . .\nCOPY secret.txt /x\n", 0o600),
        Ctx::File(".dockerignore", b"secret.txt\n", 0o600),
        Ctx::File("secret.txt", b"s", 0o600),
    ];
    let (status, reply) = server.build(&context(&json!({"image": test_image("kiln/bk-copy-ignored")}), &files));
    assert_ne!(status, 200, "{reply}");
    let log = log_text(&reply);
    let warning = "WARNING: CopyIgnoredFile: Attempting to Copy file \"secret.txt\" that is excluded by .dockerignore";
    assert!(log.contains(warning), "{log}");

    let files =
        [Ctx::File("Dockerfile", b"FROM scratch\nCOPY . .\n", 0o600), Ctx::File(".dockerignore", b"!\n", 0o600)];
    let started = std::time::Instant::now();
    let (status, reply) = server.build(&context(&json!({"image": test_image("kiln/bk-dockerignore-bad")}), &files));
    assert_ne!(status, 200, "{reply}");
    assert!(started.elapsed() < std::time::Duration::from_secs(15), "fails promptly");
}

/// The script a RUN uses to fail the build unless every test holds.
fn checks(tests: &[&str]) -> String {
    format!("RUN set -ex; {}\n", tests.iter().map(|t| format!("[ {t} ]")).collect::<Vec<_>>().join("; "))
}

/// testCopyParents, testCopyParentsMissingDirectory and
/// testCopyRelativeParents: `COPY --parents` keeps the source's path below
/// the destination, from the pivot `/./` on when there is one; wildcards
/// before and after the pivot, `**`, several sources, and a source that
/// matches nothing (a literal one fails, a wildcard one copies nothing).
#[test]
fn copy_parents_and_pivots() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let df = "FROM scratch\nCOPY --parents foo1/foo2/bar /\nWORKDIR /test\nCOPY --parents foo1/foo2/ba* .\n";
    let files = [
        Ctx::File("Dockerfile", df.as_bytes(), 0o600),
        Ctx::Dir("foo1", 0o700),
        Ctx::Dir("foo1/foo2", 0o700),
        Ctx::File("foo1/foo2/bar", b"testing", 0o600),
        Ctx::File("foo1/foo2/baz", b"testing2", 0o600),
    ];
    let img = build(&server, "kiln/bk-parents", json!({}), &files);
    assert_eq!(read(&img, "foo1/foo2/bar"), "testing");
    assert_eq!(read(&img, "test/foo1/foo2/bar"), "testing");
    assert_eq!(read(&img, "test/foo1/foo2/baz"), "testing2");

    let base = format!(
        "FROM {reg}/busybox AS base\nWORKDIR /test\n\
         RUN set -ex; mkdir -p a/b/c/d/e a/b2/c/d/e a/b/c2/d/e a/b/c2/d/e2; \
         touch a/b/c/d/foo a/b/c/d/e/bay a/b2/c/d/e/bar a/b/c2/d/e/baz a/b/c2/d/e2/baz\n"
    );
    let stages: [(&str, &str, &[&str]); 11] = [
        (
            "normal",
            "/test/a/b/c/d",
            &["-d /out/test/a/b/c/d/e", "-f /out/test/a/b/c/d/e/bay", "! -d /out/e", "! -d /out/a"],
        ),
        ("withpivot", "/test/a/b/./c/d", &["-d /out/c/d/e", "-f /out/c/d/foo", "! -d /out/a", "! -d /out/e"]),
        ("wildcard-nonexistent", "/test/a/b3*/c", &["-d /out", "! -d /out/a"]),
        ("wildcard-afterpivot", "/test/a/b/./c3*", &["-d /out", "! -d /out/a", "! -d /out/c3"]),
        ("end", "/test/a/b/c/d/.", &["-d /out/test/a/b/c/d/e", "-f /out/test/a/b/c/d/foo"]),
        ("start", "./test/a/b/c/d", &["-d /out/test/a/b/c/d/e", "-f /out/test/a/b/c/d/foo"]),
        ("double", "/test/a/./b/./c", &["-d /out/b/c/d/e", "-f /out/b/c/d/foo"]),
        ("wildcard", "/test/a/./*/c", &["-d /out/b/c/d/e", "-f /out/b2/c/d/e/bar"]),
        ("doublewildcard", "/test/a/b*/./c/**/e", &["-d /out/c/d/e", "-f /out/c/d/e/bay", "-f /out/c/d/e/bar"]),
        (
            "doubleinputs",
            "/test/a/b/c*/./d/**/baz /test/a/b*/./c/**/bar",
            &["-f /out/d/e/baz", "! -f /out/d/e/bay", "-f /out/d/e2/baz", "-f /out/c/d/e/bar"],
        ),
        ("nonexistentfile", "/test/nonexistent-file", &[]),
    ];
    let mut df = base;
    for (name, sources, tests) in &stages {
        df.push_str(&format!("FROM {reg}/busybox AS {name}\nCOPY --from=base --parents {sources} /out/\n"));
        if !tests.is_empty() {
            df.push_str(&checks(tests));
        }
    }
    let files = [Ctx::File("Dockerfile", df.as_bytes(), 0o600)];
    for (name, _, _) in &stages[..10] {
        build(&server, "kiln/bk-parents-pivot", json!({"target": name}), &files);
    }
    let image = test_image("kiln/bk-parents-missing");
    let (status, reply) = server.build(&context(&json!({"image": image, "target": "nonexistentfile"}), &files));
    assert_ne!(status, 200, "{reply}");
    assert!(reply.to_string().contains("\\\"/test/nonexistent-file\\\": not found"), "{reply}");
}
