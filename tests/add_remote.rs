//! `ADD <url>` and `ADD <git url>` against real servers: Python's
//! `http.server` on a free loopback port serves files and a bare Git
//! repository (Git's dumb HTTP protocol); results are checked in the image
//! unpacked by skopeo + umoci.

mod support;

use serde_json::json;
use std::os::unix::fs::MetadataExt;
use support::*;

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

fn dockerfile_tar(image: &str, dockerfile: &str) -> Vec<u8> {
    request_tar(&json!({ "image": image }), &[("Dockerfile", dockerfile.as_bytes())])
}

/// Log lines of the steps that ran (not CACHED) and name `needle`.
fn ran(reply: &serde_json::Value, needle: &str) -> usize {
    log_text(reply).lines().filter(|l| l.contains(needle) && l.ends_with('s') && !l.contains("CACHED")).count()
}

#[test]
fn add_url_downloads_like_buildkit() {
    let files = FileServer::start("kiln-add-url");
    support::write(&files.dir.join("hello.txt"), b"hello\n");
    sh(&files.dir, "mkdir -p app && echo run > app/run.sh && tar czf app.tar.gz app && rm -r app");
    sh(&files.dir, "touch -d @1600000000 hello.txt");
    let (reg, image) = (registry(), test_image("kiln/add-url"));
    let dockerfile = format!(
        "FROM {reg}/busybox\n\
         ADD {hello} /dl/\n\
         ADD --checksum=sha256:{sum} --chmod=0640 {hello} /dl/pinned.txt\n\
         ADD {tgz} /kept/\n\
         ADD --unpack=true {tgz} /unpacked/\n\
         ADD --chown=1000:1000 {hello} /owned\n\
         ADD {root} /unnamed/\n",
        root = files.url(""),
        hello = files.url("hello.txt"),
        tgz = files.url("app.tar.gz"),
        sum = sha256_hex(b"hello\n"),
    );
    // Real times (`now`), as BuildKit without SOURCE_DATE_EPOCH: the
    // reproducible default would clamp the Last-Modified mtime to 0.
    let now = vec![("SOURCE_DATE_EPOCH".to_string(), "now".to_string())];
    let server = Server::start(ServerOptions { env: now, args: files.allow(), ..Default::default() });
    let (status, reply) = server.build(&dockerfile_tar(&image, &dockerfile));
    assert_success(status, &reply);
    let img = unpack_image(&image, None);
    let r = &img.rootfs;
    assert_eq!(std::fs::read_to_string(r.join("dl/hello.txt")).unwrap(), "hello\n");
    assert_eq!(owner_mode(&r.join("dl/hello.txt")), (0, 0, 0o600), "downloads are 0600 root:root");
    let mtime = std::fs::metadata(r.join("dl/hello.txt")).unwrap().mtime();
    assert_eq!(mtime, 1_600_000_000, "the mtime comes from Last-Modified");
    assert_eq!(owner_mode(&r.join("dl/pinned.txt")).2, 0o640, "--chmod applies to downloads");
    assert!(r.join("kept/app.tar.gz").is_file(), "downloaded archives are not unpacked by default");
    assert_eq!(std::fs::read_to_string(r.join("unpacked/app/run.sh")).unwrap(), "run\n", "--unpack=true extracts");
    assert_eq!(owner_mode(&r.join("owned")).0, 1000, "--chown applies to downloads");
    assert!(r.join("unnamed/__unnamed__").is_file(), "a URL without a file name saves as __unnamed__");

    support::write(&files.dir.join("hello.txt"), b"changed\n");
    let (status, again) = server.build(&dockerfile_tar(&image, &dockerfile));
    assert_success(status, &again);
    let log = log_text(&again);
    assert!(
        log.lines().any(|l| l.contains("pinned.txt") && l.contains("CACHED")),
        "a pinned checksum keys the cache without a download:\n{log}"
    );
    assert!(ran(&again, "ADD --chown=1000:1000") > 0, "a changed download invalidates its step:\n{log}");
    assert!(log.lines().any(|l| l.contains("/kept/") && l.contains("CACHED")), "an unchanged URL stays cached:\n{log}");
    let img = unpack_image(&image, None);
    assert_eq!(std::fs::read_to_string(img.rootfs.join("owned")).unwrap(), "changed\n");
    assert_eq!(std::fs::read_to_string(img.rootfs.join("dl/pinned.txt")).unwrap(), "hello\n");
}

#[test]
fn add_url_errors_name_the_line_and_cause() {
    let files = FileServer::start("kiln-add-url-errors");
    support::write(&files.dir.join("f"), b"data");
    let args = vec!["--step-egress-allow".into(), "127.0.0.1".into()];
    let server = Server::start(ServerOptions { args, ..Default::default() });
    let reg = registry();
    let cases = [
        (format!("ADD --checksum=sha256:{} {} /f", "0".repeat(64), files.url("f")), 400, "checksum mismatch"),
        (format!("ADD {} /missing", files.url("missing")), 400, "404"),
        ("ADD http://127.0.0.1:9/nothing-listens /x".to_string(), 500, "ADD http://127.0.0.1:9/nothing-listens"),
    ];
    for (instruction, want_status, want) in cases {
        let dockerfile = format!("FROM {reg}/busybox\n{instruction}\n");
        let (status, reply) = server.build(&dockerfile_tar(&test_image("kiln/add-url-bad"), &dockerfile));
        assert_eq!(status, want_status, "{instruction}: {reply}");
        let err = reply["error"].as_str().unwrap();
        assert!(err.contains(want) && err.contains("Dockerfile line 2"), "{instruction}: {err}");
    }

    // Without the allow, an ADD URL on the node, a private range or the
    // metadata address is refused as a step's connection would be.
    let strict = Server::start(ServerOptions::default());
    for url in [files.url("f"), "http://169.254.169.254/latest/meta-data/".into(), "http://10.0.0.1:8080/x".into()] {
        let dockerfile = format!("FROM {reg}/busybox\nADD {url} /f\n");
        let (status, reply) = strict.build(&dockerfile_tar(&test_image("kiln/add-url-refused"), &dockerfile));
        assert_eq!(status, 400, "{url}: {reply}");
        let err = reply["error"].as_str().unwrap();
        assert!(err.contains("refused by the egress policy") && err.contains("Dockerfile line 2"), "{url}: {err}");
    }
}

#[test]
fn add_git_checks_out_a_ref() {
    let files = FileServer::start("kiln-add-git");
    let work = files.dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let git = "git -c user.name=t -c user.email=t@example.com";
    let v1 = sh(
        &work,
        &format!(
            "git init -q -b main . && mkdir sub && echo 'package main' > sub/main.go && echo v1 > README && \
             {git} add . && {git} commit -qm one && {git} tag -a v1 -m v1 && git rev-parse HEAD"
        ),
    );
    sh(&work, &format!("echo v2 > README && {git} commit -qam two"));
    sh(&files.dir, "git clone -q --bare work repo.git && cd repo.git && git update-server-info");
    let repo = files.url("repo.git");
    let (reg, image) = (registry(), test_image("kiln/add-git"));
    let dockerfile = format!(
        "FROM {reg}/busybox\n\
         ADD {repo}#v1:sub /src/\n\
         ADD --keep-git-dir=true {repo} /full/\n\
         ADD --checksum={v1} {repo}#v1 /pinned/\n"
    );
    // git runs in a step network: the loopback server must be allowed.
    let server = Server::start(ServerOptions { args: files.allow(), ..Default::default() });
    let (status, reply) = server.build(&dockerfile_tar(&image, &dockerfile));
    assert_success(status, &reply);
    let img = unpack_image(&image, None);
    let r = &img.rootfs;
    assert_eq!(std::fs::read_to_string(r.join("src/main.go")).unwrap(), "package main\n", "#ref:subdir");
    assert!(!r.join("src/README").exists() && !r.join("src/.git").exists());
    assert_eq!(std::fs::read_to_string(r.join("full/README")).unwrap(), "v2\n", "no ref: the default branch");
    assert!(r.join("full/.git").is_dir(), "--keep-git-dir keeps .git");
    assert_eq!(std::fs::read_to_string(r.join("pinned/README")).unwrap(), "v1\n");

    let wrong = format!("FROM {reg}/busybox\nADD --checksum={} {repo}#v1 /pinned/\n", "a".repeat(40));
    let (status, reply) = server.build(&dockerfile_tar(&test_image("kiln/add-git-bad"), &wrong));
    assert_eq!(status, 400, "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("expected checksum to match"), "{reply}");
    let escape = format!("FROM {reg}/busybox\nADD {repo}?ref=v1&subdir=../../.. /x/\n");
    let (status, reply) = server.build(&dockerfile_tar(&test_image("kiln/add-git-bad"), &escape));
    assert_ne!(status, 200, "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("leaves the repository"), "{reply}");

    // A repository the policy refuses is never reached, and the log says why.
    let strict = Server::start(ServerOptions::default());
    let (status, reply) = strict.build(&dockerfile_tar(&test_image("kiln/add-git-refused"), &dockerfile));
    assert_ne!(status, 200, "{reply}");
    let error = reply["error"].as_str().unwrap();
    assert!(error.contains("ls-remote failed") && error.contains("Failed to connect"), "{error}");
    let port = files.daemon.addr.rsplit(':').next().unwrap();
    let private = format!("FROM {reg}/busybox\nADD http://10.0.0.1:{port}/repo.git /x/\n");
    let (status, reply) = strict.build(&dockerfile_tar(&test_image("kiln/add-git-refused"), &private));
    assert_ne!(status, 200, "{reply}");
    let log = log_text(&reply);
    assert!(log.contains(&format!("[egress] blocked tcp 10.0.0.1:{port}: a private address")), "{log}");
}

/// A tar archive holding one file.
fn one_file_tar(name: &str, content: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    tar_entry(&mut b, name, tar::EntryType::Regular, 0o644, 0, content, None);
    b.into_inner().unwrap()
}

/// BuildKit's testDockerfileAddArchive, testDockerfileAddArchiveWildcard,
/// testAddURLChmod and testDockerfileAddChownExpand: a local tar (plain or
/// gzip, also matched by a wildcard) is extracted, not with
/// `--unpack=false` and never by COPY; a downloaded archive is kept as a
/// file unless `--unpack=true`, and may be renamed; `--chmod` (also from an
/// ARG) on downloads; `--chown` from ARG and ENV values.
#[test]
fn add_archives_urls_and_modes_like_buildkit_tests() {
    use std::io::Write;
    let files = FileServer::start("kiln-bk-add");
    let plain = one_file_tar("foo", b"content0");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&plain).unwrap();
    let gzipped = gz.finish().unwrap();
    std::fs::write(files.dir.join("t.tar.gz"), &gzipped).unwrap();
    std::fs::write(files.dir.join("foo"), b"content1").unwrap();
    let server = Server::start(ServerOptions { args: files.allow(), ..Default::default() });
    let reg = registry();
    let (archive, foo) = (files.url("t.tar.gz"), files.url("foo"));
    let dockerfile = format!(
        "FROM {reg}/busybox AS build\nRUN sed -i s/^nogroup:/nobody:/ /etc/group\n\
         ADD --chmod=644 {foo} /tmp/foo1\nADD --chmod=755 {foo} /tmp/foo2\nADD --chmod=0413 {foo} /tmp/foo3\n\
         ARG mode\nADD --chmod=${{mode}} {foo} /tmp/foo4\n\
         RUN stat -c \"%04a\" /tmp/foo1 >> /dest && stat -c \"%04a\" /tmp/foo2 >> /dest && \
         stat -c \"%04a\" /tmp/foo3 >> /dest && stat -c \"%04a\" /tmp/foo4 >> /dest\n\
         ARG group\nENV owner 1000\nADD --chown=${{owner}}:${{group}} local /\n\
         RUN [ \"$(stat -c \"%u %G\" /local)\" == \"1000 nobody\" ]\n\
         FROM scratch\nCOPY --from=build /dest /dest\n\
         ADD t.tar /plain/\nADD t.tar.gz /gz/\nADD --unpack=false t.tar.gz /packed/\nCOPY t.tar.gz /copied/\n\
         ADD *.tar /wild\nADD {archive} /url/\nADD --unpack=true {archive} /unpacked/\nADD {archive} /newname.tar.gz\n"
    );
    let image = test_image("kiln/bk-add");
    let config = json!({"image": image, "buildArgs": {"mode": "400", "group": "nobody"}});
    let context: [(&str, &[u8]); 6] = [
        ("Dockerfile", dockerfile.as_bytes()),
        ("t.tar", &plain),
        ("t.tar.gz", &gzipped),
        ("b.tar", &one_file_tar("bar", b"content1")),
        ("local", b"foo-contents"),
        ("unused", b""),
    ];
    let (status, reply) = server.build(&request_tar(&config, &context));
    assert_success(status, &reply);
    let img = unpack_image(&image, None);
    let read = |p: &str| std::fs::read(img.rootfs.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(read("dest"), b"0644\n0755\n0413\n0400\n");
    for extracted in ["plain/foo", "gz/foo", "wild/foo", "unpacked/foo"] {
        assert_eq!(read(extracted), b"content0", "{extracted}");
    }
    assert_eq!(read("wild/bar"), b"content1");
    for kept in ["packed/t.tar.gz", "copied/t.tar.gz", "url/t.tar.gz", "newname.tar.gz"] {
        assert_eq!(read(kept), gzipped, "{kept} is the archive itself");
    }
    assert!(!img.rootfs.join("packed/foo").exists() && !img.rootfs.join("url/foo").exists());
}

/// BuildKit's testAddChecksum: `--checksum` (also from ENV) pins a
/// download; a mismatch, an unsupported or unknown algorithm, a digest
/// without its algorithm and a checksum on a local file all fail.
#[test]
fn add_checksum_like_buildkit_tests() {
    let files = FileServer::start("kiln-bk-add-checksum");
    std::fs::write(files.dir.join("foo"), b"content1").unwrap();
    let server = Server::start(ServerOptions { args: files.allow(), ..Default::default() });
    let reg = registry();
    let (url, hex) = (files.url("foo"), sha256_hex(b"content1"));
    let build = |body: String, files: &[(&str, &[u8])]| {
        let dockerfile = format!("FROM {reg}/busybox\n{body}");
        let mut all = vec![("Dockerfile", dockerfile.as_bytes())];
        all.extend_from_slice(files);
        server.build(&request_tar(&json!({"image": test_image("kiln/bk-add-checksum")}), &all))
    };
    use sha2::Digest;
    let (sha384, sha512) =
        (hex::encode(sha2::Sha384::digest(b"content1")), hex::encode(sha2::Sha512::digest(b"content1")));
    for ok in [
        format!("ADD --checksum=sha256:{hex} {url} /tmp/foo\n"),
        format!("ENV DIGEST=sha256:{hex}\nENV LINK={url}\nADD --checksum=${{DIGEST}} ${{LINK}} /tmp/foo\n"),
        format!("ADD --checksum=sha384:{sha384} {url} /tmp/foo\n"),
        format!("ADD --checksum=sha512:{sha512} {url} /tmp/foo\n"),
    ] {
        let (status, reply) = build(ok, &[]);
        assert_success(status, &reply);
    }
    let empty = sha256_hex(b"");
    for bad in [
        format!("ADD --checksum=sha256:{empty} {url} /tmp/foo\n"),
        format!("ADD --checksum=md5:7e55db001d319a94b0b713529a756623 {url} /tmp/foo\n"),
        format!("ADD --checksum=unknown:{hex} {url} /tmp/foo\n"),
        format!("ADD --checksum={hex} {url} /tmp/foo\n"),
        format!("ADD --checksum=sha512:{} {url} /tmp/foo\n", hex::encode(sha2::Sha512::digest(b""))),
    ] {
        let (status, reply) = build(bad.clone(), &[]);
        assert_ne!(status, 200, "{bad}: {reply}");
    }
    let (status, reply) =
        build(format!("ADD --checksum=sha256:{} foo /tmp/foo\n", sha256_hex(b"local file")), &[("foo", b"local file")]);
    assert_ne!(status, 200, "{reply}");
}

/// BuildKit's testGitQueryString (the ADD half; the other half takes the
/// build context from a Git URL, which the Function Builder API does not
/// do) and testAddGitChecksumCache.
#[test]
fn add_git_url_options_like_buildkit() {
    let files = FileServer::start("kiln-add-git-query");
    let git = "git -c user.name=t -c user.email=t@example.com -c protocol.file.allow=always";
    let sub_work = files.dir.join("subwork");
    std::fs::create_dir_all(&sub_work).unwrap();
    sh(&sub_work, &format!("git init -q . && echo 123 > file && {git} add file && {git} commit -qm initial"));
    sh(&files.dir, "git clone -q --bare subwork sub.git && cd sub.git && git update-server-info");
    let work = files.dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let sub_url = files.url("sub.git");
    sh(
        &work,
        &format!(
            "git init -q -b master . && echo base > foo && {git} submodule -q add {sub_url} submod && \
             {git} add foo submod && {git} commit -qm initial && git tag v0.0.1 && git branch base && \
             echo feature > foo && mkdir sub && echo subfeature > sub/foo && {git} add foo sub && \
             {git} commit -qm feature && git branch feature && git checkout -q -B master base && \
             echo v0.0.2 > foo && {git} commit -qam v0.0.2 && git tag v0.0.2 && \
             echo latest > foo && GIT_COMMITTER_DATE='@1600000000 +0000' {git} commit -qam latest && git tag latest"
        ),
    );
    let v2 = sh(&work, "git rev-parse v0.0.2").trim().to_string();
    let latest = sh(&work, "git rev-parse latest").trim().to_string();
    sh(&files.dir, "git clone -q --bare work repo.git && cd repo.git && git update-server-info");
    let repo = files.url("repo.git");
    let server = Server::start(ServerOptions { args: files.allow(), ..Default::default() });

    let cases: Vec<(String, &str, Result<String, &str>)> = vec![
        (format!("?tag=v0.0.2&commit={latest}"), "", Err("expected checksum to match")),
        ("#v0.0.2".into(), "", Ok("v0.0.2\n".into())),
        ("?ref=base".into(), "", Ok("base\n".into())),
        ("?branch=base".into(), "", Ok("base\n".into())),
        ("?branch=invalid".into(), "", Err("repository does not contain ref")),
        ("?branch=v0.0.2".into(), "", Err("repository does not contain ref")),
        ("?tag=v0.0.2#refs/tags/v0.0.2".into(), "", Ok("v0.0.2\n".into())),
        (format!("?commit={latest}"), "", Ok("latest\n".into())),
        (format!("?commit={}", &v2[..8]), "", Err("expected checksum to match")),
        (format!("?commit={}", &latest[..8]), "", Ok("latest\n".into())),
        (format!("?ref={v2}"), "", Ok("v0.0.2\n".into())),
        (format!("?ref={}", &v2[..8]), "", Err("repository does not contain ref")),
        (format!("?tag=v0.0.2&commit={v2}"), "", Ok("v0.0.2\n".into())),
        (format!("?ref={v2}&commit={v2}"), "", Ok("v0.0.2\n".into())),
        ("?tag=v0.0.2#refs/heads/master".into(), "", Err("ref conflicts")),
        ("#feature:sub".into(), "", Ok("subfeature\n".into())),
        ("?subdir=sub&ref=feature".into(), "", Ok("subfeature\n".into())),
        ("?keep-git-dir=true".into(), "withgit", Ok(format!("{latest}\n"))),
        ("?tag=v0.0.2&keep-git-dir=true".into(), "withgit", Ok(format!("{v2}\n"))),
        ("".into(), "withgit", Err(".git/HEAD")),
        ("?keep-git-dir&submodules".into(), "withgit", Ok(format!("{latest}\n"))),
        ("?keep-git-dir=false".into(), "withgit", Err(".git/HEAD")),
        ("".into(), "withsubmod", Ok("123\n".into())),
        ("?submodules=true".into(), "withsubmod", Ok("123\n".into())),
        ("?submodules".into(), "withsubmod", Ok("123\n".into())),
        ("?submodules=false".into(), "withsubmod", Err("submod/file")),
    ];
    let image = test_image("kiln/add-git-query");
    for (options, target, want) in cases {
        let dockerfile = format!(
            "FROM scratch AS main\nADD {repo}{options} /repo/\nFROM scratch AS withsubmod\n\
             COPY --from=main /repo/submod/file /repo/foo\nFROM scratch AS withgit\n\
             COPY --from=main /repo/.git/HEAD /repo/foo\nFROM main\n"
        );
        let mut config = json!({ "image": image });
        if !target.is_empty() {
            config["target"] = json!(target);
        }
        let (status, reply) = server.build(&request_tar(&config, &[("Dockerfile", dockerfile.as_bytes())]));
        match want {
            Ok(out) => {
                assert_success(status, &reply);
                let img = unpack_image(&image, None);
                assert_eq!(std::fs::read_to_string(img.rootfs.join("repo/foo")).unwrap(), out, "{options} {target}");
            }
            Err(needle) => {
                assert_ne!(status, 200, "{options} {target}: {reply}");
                let err = reply["error"].as_str().unwrap();
                assert!(err.contains(needle), "{options} {target}: {err}");
            }
        }
    }

    // A submodule that points at a path on the node (file://) is not
    // fetched: git runs with the http(s), git and ssh transports only. The
    // same repository without its submodules builds (the control).
    let file_sub = files.dir.join("filesub");
    std::fs::create_dir_all(&file_sub).unwrap();
    let host_repo = format!("file://{}", sub_work.display());
    sh(
        &file_sub,
        &format!("git init -q . && echo a > a && {git} submodule -q add {host_repo} leak && {git} add a leak && {git} commit -qm one"),
    );
    sh(&files.dir, "git clone -q --bare filesub filesub.git && cd filesub.git && git update-server-info");
    let leak = |options: &str| {
        let dockerfile = format!("FROM scratch\nADD {}{options} /repo/\n", files.url("filesub.git"));
        server.build(&request_tar(&json!({ "image": image }), &[("Dockerfile", dockerfile.as_bytes())]))
    };
    let (status, reply) = leak("");
    assert_ne!(status, 200, "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("transport 'file' not allowed"), "{reply}");
    let (status, reply) = leak("?submodules=false");
    assert_success(status, &reply);

    // ?mtime=commit: the files get the commit's time (with real times on);
    // a symlink in the repository to a file on the node gets the time
    // itself, and the node's file is left alone.
    let host_file = files.dir.join("host-file");
    sh(&files.dir, "echo host > host-file && touch -d @1000000000 host-file");
    let linked = files.dir.join("linked");
    std::fs::create_dir_all(&linked).unwrap();
    sh(
        &linked,
        &format!(
            "git init -q . && echo foo > foo && ln -s {} hostlink && {git} add foo hostlink && \
             GIT_COMMITTER_DATE='@1600000000 +0000' {git} commit -qm one",
            host_file.display()
        ),
    );
    sh(&files.dir, "git clone -q --bare linked linked.git && cd linked.git && git update-server-info");
    let now = vec![("SOURCE_DATE_EPOCH".to_string(), "now".to_string())];
    let dated = Server::start(ServerOptions { env: now, args: files.allow(), ..Default::default() });
    let dockerfile = format!("FROM scratch\nADD {}?mtime=commit /repo/\n", files.url("linked.git"));
    let (status, reply) =
        dated.build(&request_tar(&json!({ "image": image }), &[("Dockerfile", dockerfile.as_bytes())]));
    assert_success(status, &reply);
    let img = unpack_image(&image, None);
    assert_eq!(std::fs::metadata(img.rootfs.join("repo/foo")).unwrap().mtime(), 1_600_000_000, "?mtime=commit");
    assert_eq!(std::fs::symlink_metadata(img.rootfs.join("repo/hostlink")).unwrap().mtime(), 1_600_000_000);
    assert_eq!(std::fs::metadata(&host_file).unwrap().mtime(), 1_000_000_000, "the node's file is untouched");

    // testAddGitChecksumCache: the same checkout with and without
    // --checksum is one cache entry, so the RUN after it stays cached.
    let unique = |checksum: &str| {
        let dockerfile = format!(
            "FROM {}/busybox AS src\nADD --keep-git-dir {checksum} {repo}#v0.0.2 /repo\n\
             RUN head -c 16 /dev/urandom | base64 > /repo/unique.txt\nFROM scratch\nCOPY --from=src /repo/unique.txt /\n",
            registry()
        );
        let (status, reply) =
            server.build(&request_tar(&json!({ "image": image }), &[("Dockerfile", dockerfile.as_bytes())]));
        assert_success(status, &reply);
        std::fs::read_to_string(unpack_image(&image, None).rootfs.join("unique.txt")).unwrap()
    };
    assert_eq!(unique(""), unique(&format!("--checksum={v2}")), "the checksum does not change the step's key");
}

/// BuildKit's testAddGitSHA1 and testAddGitSHA256: tags of SHA-1 and
/// SHA-256 repositories, `--checksum`, `--chown` and `--keep-git-dir`.
#[test]
fn add_git_from_sha1_and_sha256_repositories() {
    let files = FileServer::start("kiln-add-git-formats");
    let server = Server::start(ServerOptions { args: files.allow(), ..Default::default() });
    let git = "git -c user.name=t -c user.email=t@example.com";
    for format in ["sha1", "sha256"] {
        let work = files.dir.join(format!("work-{format}"));
        std::fs::create_dir_all(&work).unwrap();
        let commits = (1..=3).map(|n| {
            format!("echo 'foo of v0.0.{n}' > foo && {git} add foo && {git} commit -qm v{n} && git tag v0.0.{n}")
        });
        sh(&work, &format!("git init -q --object-format={format} . && {}", commits.collect::<Vec<_>>().join(" && ")));
        let v2 = sh(&work, "git rev-parse v0.0.2").trim().to_string();
        assert_eq!(v2.len(), if format == "sha1" { 40 } else { 64 });
        sh(
            &files.dir,
            &format!("git clone -q --bare work-{format} {format}.git && cd {format}.git && git update-server-info"),
        );
        let repo = files.url(&format!("{format}.git"));
        let image = test_image(&format!("kiln/add-git-{format}"));
        let dockerfile = format!(
            "FROM {}/busybox\nADD {repo}#v0.0.1 /x\nARG REPO=\"{repo}\"\nARG TAG=\"v0.0.2\"\n\
             ADD --keep-git-dir=true --chown=4242:8484 --checksum={v2} ${{REPO}}#${{TAG}} /chowned\n\
             ADD --checksum={v2} {repo}#v0.0.2 /nogitdir\n",
            registry()
        );
        let (status, reply) =
            server.build(&request_tar(&json!({ "image": image }), &[("Dockerfile", dockerfile.as_bytes())]));
        assert_success(status, &reply);
        let img = unpack_image(&image, None);
        let r = &img.rootfs;
        assert_eq!(std::fs::read_to_string(r.join("x/foo")).unwrap(), "foo of v0.0.1\n", "{format}");
        assert_eq!(std::fs::read_to_string(r.join("chowned/foo")).unwrap(), "foo of v0.0.2\n", "{format}");
        assert_eq!(owner_mode(&r.join("chowned/foo")).0, 4242, "{format}");
        assert_eq!(owner_mode(&r.join("chowned/foo")).1, 8484, "{format}");
        assert!(r.join("chowned/.git").is_dir() && !r.join("nogitdir/.git").exists(), "{format}");
        let head = std::fs::read_to_string(r.join("chowned/.git/HEAD")).unwrap();
        assert_eq!(head.trim(), v2, "{format}: the checkout is the tag's commit");
    }
}
