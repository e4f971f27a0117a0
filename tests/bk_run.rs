//! Ports of BuildKit's `RUN --mount` integration tests
//! (`dockerfile_mount_test.go`), written from what each asserts: the
//! checks are RUN steps that fail the build (as upstream's are) or files
//! read from the pushed image.

mod support;

use serde_json::json;
use support::*;

/// Builds `dockerfile` with `files` and extra request fields as `image`.
fn build_as(
    server: &Server,
    image: &str,
    dockerfile: &str,
    files: &[(&str, &[u8])],
    extra: serde_json::Value,
) -> serde_json::Value {
    let mut config = json!({"image": image});
    config.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let mut all = vec![("Dockerfile", dockerfile.as_bytes())];
    all.extend_from_slice(files);
    let (status, reply) = server.build(&request_tar(&config, &all));
    assert_success(status, &reply);
    reply
}

fn read(image: &str, path: &str) -> String {
    std::fs::read_to_string(unpack_image(image, None).rootfs.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// testCacheMountDefaultID, testCacheMountUser, testMountArg,
/// testMountEnvVar, testMountEnvAcrossStages, testMountMetaArg,
/// testMountTmpfs, testMountTmpfsSize and testMountContext: a cache's id
/// defaults to its target; `uid`/`gid`/`mode` set the new cache's owner and
/// mode; mount values expand ARGs, ENVs (also inherited from the parent
/// stage) and global ARGs; a tmpfs is empty afterwards and takes `size`;
/// a mount without a type binds the context.
#[test]
fn mount_options_and_expansion() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let image = test_image("kiln/bk-mounts");
    let df = format!(
        "ARG META_PATH=/tmp/meta\nFROM {reg}/busybox AS stage1\nARG META_PATH\n\
         RUN --mount=type=cache,target=/mycache touch /mycache/foo\n\
         RUN --mount=type=cache,target=/mycache2 [ ! -f /mycache2/foo ]\n\
         RUN --mount=type=cache,target=/mycache [ -f /mycache/foo ]\n\
         RUN --mount=type=cache,target=/usercache,uid=1001,gid=1002,mode=0751 [ \"$(stat -c \"%u %g %f\" /usercache)\" == \"1001 1002 41e9\" ]\n\
         ARG MNT_TYPE=cache\n\
         RUN --mount=type=$MNT_TYPE,target=/mycache3 touch /mycache3/foo\n\
         RUN --mount=type=cache,target=/mycache3 [ -f /mycache3/foo ]\n\
         ENV SOME_PATH=/mycache\n\
         RUN --mount=type=cache,target=$SOME_PATH [ -f $SOME_PATH/foo ]\n\
         ENV MNT_ID=idcache\nENV MNT_TYPE2=cache\n\
         RUN --mount=type=cache,id=idcache,target=/abcabc touch /abcabc/foo\n\
         RUN --mount=type=$MNT_TYPE2,id=$MNT_ID,target=/cbacba [ -f /cbacba/foo ]\n\
         RUN --mount=type=cache,id=metacache,target=/tmp/meta touch /tmp/meta/foo\n\
         RUN --mount=type=cache,id=metacache,target=$META_PATH [ -f /tmp/meta/foo ]\n\
         RUN --mount=target=/mytmp,type=tmpfs touch /mytmp/foo\n\
         RUN [ ! -f /mytmp/foo ]\n\
         RUN --mount=type=tmpfs,target=/dev/shm,size=128m mount | grep /dev/shm > /tmpfssize\n\
         RUN --mount=target=/context [ \"$(cat /context/testfile)\" == \"contents0\" ]\n\
         FROM stage1\n\
         RUN --mount=type=$MNT_TYPE2,id=$MNT_ID,target=/whatever [ -f /whatever/foo ]\n"
    );
    build_as(&server, &image, &df, &[("testfile", b"contents0")], json!({}));
    let size = read(&image, "tmpfssize");
    assert!(size.contains("size=131072k"), "{size}");
}

/// testMountDuplicate: a context bind and a bind of one of its files
/// together see the current context on a rebuild.
#[test]
fn context_binds_follow_the_context() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let image = test_image("kiln/bk-mount-duplicate");
    let df = format!(
        "FROM {reg}/busybox AS base\nRUN --mount=source=.,target=/tmp/test --mount=source=b.txt,target=/tmp/b.txt \
         cat /tmp/test/a.txt /tmp/b.txt > /combined.txt\nFROM scratch\nCOPY --from=base /combined.txt /\n"
    );
    for text in ["foo\n", "updated\n"] {
        build_as(&server, &image, &df, &[("a.txt", text.as_bytes()), ("b.txt", b"bar\n")], json!({}));
        assert_eq!(read(&image, "combined.txt"), format!("{text}bar\n"));
    }
}

/// testCacheMountSourceEscape: a cache whose subdirectory was replaced by
/// a symlink to `/etc` cannot be mounted by `source=` to read the host (or
/// anything outside the cache): the build fails.
#[test]
fn cache_mount_source_cannot_escape() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let df = format!(
        "FROM {reg}/busybox AS init\n\
         RUN --mount=type=cache,id=sourceescape,target=/cache mkdir -p /cache/sel && echo benign > /cache/sel/benign.txt\n\
         FROM init AS link\nRUN --mount=type=cache,id=sourceescape,target=/cache rm -rf /cache/sel && ln -s /etc /cache/sel\n\
         FROM link AS victim\nRUN --mount=type=cache,id=sourceescape,source=sel,target=/victim cat /victim/hostname\n\
         FROM scratch\nCOPY --from=victim /etc/hostname /hostname\n"
    );
    let image = test_image("kiln/bk-mount-escape");
    let (status, reply) = server.build(&request_tar(&json!({"image": image}), &[("Dockerfile", df.as_bytes())]));
    assert_eq!(status, 400, "{reply}");
    assert!(reply.to_string().contains("type=cache,from="), "{reply}");
}

/// testCacheMountParallel: stages running at once each mount a cache
/// nested in another cache; repeated (each time re-run by a new ARG value).
#[test]
fn nested_cache_mounts_in_parallel_stages() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let image = test_image("kiln/bk-mount-parallel");
    let df = format!(
        "FROM {reg}/busybox AS b1\nARG N\nRUN --mount=type=cache,target=/foo/bar --mount=type=cache,target=/foo/bar/baz echo 1 $N\n\
         FROM {reg}/busybox AS b2\nARG N\nRUN --mount=type=cache,target=/foo/bar --mount=type=cache,target=/foo/bar/baz echo 2 $N\n\
         FROM scratch\nCOPY --from=b1 /etc/passwd p1\nCOPY --from=b2 /etc/passwd p2\n"
    );
    for n in 0..5 {
        let reply = build_as(&server, &image, &df, &[], json!({"buildArgs": {"N": n.to_string()}}));
        assert_eq!(executed_runs(&reply), 2, "both steps ran");
    }
}

/// testRunNoNetwork, testRunHostNetwork, testRunSecurityDefault and
/// testRunSecuritySandbox: a `--network=none` step has no `eth0`, a
/// `--network=host` step reaches a server on the host's loopback (with the
/// `network.host` entitlement) and a default step does not; steps get
/// Docker's default capability bounding set, also with
/// `--security=sandbox`.
#[test]
fn network_modes_and_capabilities() {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = conn.write_all(b"foo\n");
        }
    });
    let args = vec!["--allow-insecure-entitlement".into(), "network.host".into()];
    let server = Server::start(ServerOptions { args, ..Default::default() });
    let reg = registry();
    let caps = "[ \"$(cat /proc/self/status | grep CapBnd)\" == \"CapBnd:\t00000000a80425fb\" ]";
    let df = format!(
        "FROM {reg}/busybox\nRUN --network=none ! ip link show eth0\n\
         RUN --network=host nc 127.0.0.1 {port} | grep foo\nRUN ! nc -w 2 127.0.0.1 {port} | grep foo\n\
         RUN {caps}\nRUN --security=sandbox {caps}\n"
    );
    build_as(&server, &test_image("kiln/bk-run-network"), &df, &[], json!({}));
}

/// testMountRWCache: a step reading a stage through a bind mount (or
/// `COPY --from`) is keyed by the content it selects, so changing a file
/// elsewhere in that stage keeps it cached; changing what it selects does
/// not.
#[test]
fn stage_reads_are_keyed_by_the_content_they_select() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let image = test_image("kiln/bk-mount-rw-cache");
    let df = format!(
        "from {reg}/busybox AS build\ncopy cachebust /\nrun mkdir out && echo foo > out/foo\n\
         from {reg}/busybox as second\n\
         RUN --mount=from=build,src=out,target=/out,rw touch /out/bar && cat /dev/urandom | head -c 100 | sha256sum > /unique\n\
         COPY --from=build /out /copied\nRUN cat /dev/urandom | head -c 100 | sha256sum > /unique2\n\
         from scratch\nCOPY --from=second /unique /unique2 /\n"
    );
    let run = |bust: &[u8]| {
        build_as(&server, &image, &df, &[("cachebust", bust)], json!({}));
        (read(&image, "unique"), read(&image, "unique2"))
    };
    let first = run(b"0");
    assert_eq!(run(b"1"), first, "a change outside the selected path keeps both steps cached");
    let df_changed = df.replace("echo foo > out/foo", "echo bar > out/foo");
    build_as(&server, &image, &df_changed, &[("cachebust", b"1")], json!({}));
    assert_ne!(read(&image, "unique"), first.0, "a change inside it runs the mount step again");
    assert_ne!(read(&image, "unique2"), first.1, "and the COPY --from step");
}
