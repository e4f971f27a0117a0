//! RUN features checked from inside real rootless steps and on the built
//! image: every `--mount` type (content seen inside, nothing left in the
//! layer), `--network` modes, `USER` with supplementary groups, and hostile
//! steps that must fail inside the sandbox.

mod support;

use serde_json::json;
use support::*;

fn context_tar(image: &str, dockerfile: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let cfg = serde_json::to_vec(&json!({ "image": image })).unwrap();
    tar_entry(&mut b, "com.openfaas.docker.config", tar::EntryType::Regular, 0o644, 0, &cfg, None);
    tar_entry(&mut b, "context/Dockerfile", tar::EntryType::Regular, 0o644, 0, dockerfile.as_bytes(), None);
    tar_entry(&mut b, "context/req.txt", tar::EntryType::Regular, 0o644, 0, b"flask\n", None);
    b.into_inner().unwrap()
}

fn built(server: &Server, image: &str, dockerfile: &str) -> (serde_json::Value, Unpacked) {
    let (status, reply) = server.build(&context_tar(image, dockerfile));
    assert_success(status, &reply);
    (reply, unpack_image(image, None))
}

fn read(img: &Unpacked, path: &str) -> String {
    std::fs::read_to_string(img.rootfs.join(path)).unwrap_or_else(|e| panic!("{path}: {e}")).trim().to_string()
}

#[test]
fn every_mount_type_works_and_stays_out_of_the_layer() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let image = test_image("kiln/run-mounts");
    let cache_run = |tag: &str| {
        format!("RUN --mount=type=cache,target=/cache,id=pip,uid=1000,mode=0750 echo {tag} >> /cache/log && wc -l < /cache/log > /out/cache-count && stat -c '%u %a' /cache > /out/cache-owner\n")
    };
    let dockerfile = format!(
        "FROM {reg}/busybox AS deps\n\
         RUN mkdir /dist && echo dep > /dist/dep && ln -s / /dist/escape && touch /marker-deps\n\
         FROM {reg}/busybox\n\
         RUN mkdir /out\n\
         {cache}\
         RUN --mount=type=bind,source=req.txt,target=/req.txt cp /req.txt /out/req && (touch /req.txt 2>/dev/null && echo rw || echo ro) > /out/bind-mode\n\
         RUN --mount=type=bind,from=deps,source=/dist,target=/deps,rw cat /deps/dep > /out/dep && echo scribble > /deps/new\n\
         RUN --mount=type=tmpfs,target=/scratch,size=1m grep ' /scratch tmpfs' /proc/mounts > /out/tmpfs && (dd if=/dev/zero of=/scratch/big bs=1024 count=4096 2>/dev/null && echo fits || echo full) > /out/tmpfs-size\n\
         RUN --mount=type=bind,from=deps,source=/dist/escape,target=/esc ls /esc > /out/escape\n",
        cache = cache_run("first"),
    );
    let (_, img) = built(&server, &image, &dockerfile);
    assert_eq!(read(&img, "out/cache-count"), "1");
    assert_eq!(read(&img, "out/cache-owner"), "1000 750", "a new cache dir takes uid and mode");
    assert_eq!(read(&img, "out/req"), "flask", "bind from the context");
    assert_eq!(read(&img, "out/bind-mode"), "ro", "binds are read-only unless rw");
    assert_eq!(read(&img, "out/dep"), "dep", "bind from a stage");
    assert!(read(&img, "out/tmpfs").contains("tmpfs"), "a tmpfs is mounted");
    assert_eq!(read(&img, "out/tmpfs-size"), "full", "size= caps the tmpfs");
    let escape = read(&img, "out/escape");
    assert!(escape.contains("marker-deps"), "a symlink source resolves inside its stage, not on the host: {escape}");
    for gone in ["cache", "req.txt", "deps", "scratch", "esc"] {
        assert!(!img.rootfs.join(gone).exists(), "/{gone} must not reach the layer");
    }

    let again = dockerfile.replace(&cache_run("first"), &cache_run("second"));
    let (_, img) = built(&server, &image, &again);
    assert_eq!(read(&img, "out/cache-count"), "2", "the cache persists across builds");
}

#[test]
fn network_modes() {
    let reg = registry();
    let (host, port) = reg.split_once(':').unwrap();
    let args = vec![
        "--allow-insecure-entitlement".into(),
        "network.host".into(),
        "--step-egress-allow".into(),
        format!("{host}:{port}"),
    ];
    let server = Server::start(ServerOptions { args, ..Default::default() });
    let image = test_image("kiln/run-network");
    let probe = |mode: &str| {
        format!(
            "RUN --network={mode} (printf 'GET /v2/ HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {host} {port} 2>/out/{mode}-wget | grep -q '^HTTP/1.. 200' && echo reach || echo cut) > /out/{mode}-registry && \
             tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort | tr '\\n' ' ' > /out/{mode}-ifaces && \
             (ping -c 1 -W 2 127.0.0.1 >/dev/null 2>&1 && echo up || echo down) > /out/{mode}-loopback\n"
        )
    };
    let dockerfile =
        format!("FROM {reg}/busybox\nRUN mkdir /out\n{}{}{}", probe("none"), probe("host"), probe("default"));
    let (_, img) = built(&server, &image, &dockerfile);
    assert_eq!(read(&img, "out/none-registry"), "cut", "--network=none cannot reach the registry");
    for mode in ["none", "default"] {
        assert_eq!(read(&img, &format!("out/{mode}-ifaces")), "lo", "--network={mode} has only loopback");
        assert_eq!(read(&img, &format!("out/{mode}-loopback")), "up", "…and loopback is up");
    }
    for mode in ["host", "default"] {
        let why = read(&img, &format!("out/{mode}-wget"));
        assert_eq!(
            read(&img, &format!("out/{mode}-registry")),
            "reach",
            "--network={mode} reaches the registry (the default network because --step-egress-allow names it): {why}"
        );
    }

    // Without the allow, the node's loopback is not the step's.
    let plain = Server::start(ServerOptions::default());
    let dockerfile = format!("FROM {reg}/busybox\nRUN mkdir /out\n{}", probe("default"));
    let (_, img) = built(&plain, &test_image("kiln/run-network-default"), &dockerfile);
    assert_eq!(read(&img, "out/default-registry"), "cut", "a default step does not reach the node's loopback");
}

#[test]
fn user_with_supplementary_groups() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let image = test_image("kiln/run-user");
    let dockerfile = format!(
        "FROM {reg}/busybox\n\
         RUN echo 'builders:x:2001:' >> /etc/group && echo 'deploy:x:2002:app' >> /etc/group && \\\n             echo 'app:x:1500:2001::/home/app:/bin/sh' >> /etc/passwd && mkdir -p /home/app && chown 1500:2001 /home/app\n\
         USER app\n\
         RUN id > /home/app/id && echo $HOME > /home/app/home\n"
    );
    let (_, img) = built(&server, &image, &dockerfile);
    let id = read(&img, "home/app/id");
    assert!(id.starts_with("uid=1500(app) gid=2001(builders)"), "{id}");
    assert!(id.contains("2002(deploy)"), "supplementary groups are set: {id}");
    assert_eq!(read(&img, "home/app/home"), "/home/app", "HOME comes from /etc/passwd");

    let unknown = format!("FROM {reg}/busybox\nUSER nobody-here\nRUN true\n");
    let (status, reply) = server.build(&context_tar(&image, &unknown));
    assert_eq!(status, 500, "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("unable to find user nobody-here"), "{reply}");
}

/// WORKDIR and `COPY --chown` resolve users as BuildKit's file ops do
/// (its testWorkdirUser, plus the cases around it): a named user owns its
/// directory; a numeric user with no passwd entry owns it as `N:N`; an
/// unknown name is not an error (the directory is root's) — only a RUN as
/// that user fails.
#[test]
fn workdir_and_chown_resolve_users_like_buildkit_file_ops() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let image = test_image("kiln/workdir-user");
    let dockerfile = format!(
        "FROM {reg}/busybox\nRUN echo 'user:x:1234:1234::/home/user:/bin/sh' >> /etc/passwd && \
         echo 'user:x:1234:' >> /etc/group\nUSER user\nWORKDIR /mydir\n\
         RUN [ \"$(stat -c '%U %G' /mydir)\" = 'user user' ]\nUSER 5000\nWORKDIR /numeric\nUSER ghost\n\
         WORKDIR /ghostdir\nCOPY --chown=ghost:nosuchgroup req.txt /owned/\nUSER root\n\
         RUN stat -c %u:%g /numeric > /numeric.owner && stat -c %u:%g /ghostdir > /ghost.owner && \
         stat -c %u:%g /owned/req.txt > /copy.owner\n"
    );
    let (_, img) = built(&server, &image, &dockerfile);
    assert_eq!(read(&img, "numeric.owner"), "5000:5000");
    assert_eq!(read(&img, "ghost.owner"), "0:0");
    assert_eq!(read(&img, "copy.owner"), "0:0");
}

#[test]
fn hostile_steps_fail_inside_the_sandbox() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let image = test_image("kiln/hostile");
    let host_root = format!("ls /proc/1/root{}", server.data_dir.display());
    let attempts = [
        ("mount", "mount -t tmpfs none /mnt"),
        ("proc-sys", "echo 1 > /proc/sys/kernel/sysrq"),
        ("sys", "echo 1 > /sys/kernel/profiling"),
        ("host-root", host_root.as_str()),
        ("mknod", "mknod /dev/sda-copy b 8 0 && head -c 1 /dev/sda-copy"),
        ("cgroup", "mkdir /sys/fs/cgroup/kiln-escape || echo 1 > /sys/fs/cgroup/cgroup.procs"),
        ("kmsg", "head -c 1 /dev/kmsg"),
        ("ptrace-host", "cat /proc/1/environ | grep -q KILN"),
    ];
    let mut dockerfile = format!("FROM {reg}/busybox\nRUN mkdir /out\n");
    for (name, cmd) in &attempts {
        dockerfile.push_str(&format!(
            "RUN ({cmd}) >/dev/null 2>&1 && echo ESCAPED > /out/{name} || echo blocked > /out/{name}\n"
        ));
    }
    let (_, img) = built(&server, &image, &dockerfile);
    for (name, _) in &attempts {
        assert_eq!(read(&img, &format!("out/{name}")), "blocked", "{name} must fail inside the step");
    }
    let (status, reply) = server.build(&context_tar(&image, &format!("FROM {reg}/busybox\nRUN echo still-serving\n")));
    assert_success(status, &reply);
}

#[test]
fn a_fork_bomb_is_bounded_and_no_new_privs_is_optional() {
    let args = ["--step-timeout", "6", "--step-max-processes", "300", "--step-no-new-privileges"];
    let server = Server::start(ServerOptions { args: args.map(String::from).to_vec(), ..Default::default() });
    let reg = registry();
    let image = test_image("kiln/fork-bomb");
    let bomb = format!(
        "FROM {reg}/busybox\nRUN grep NoNewPrivs /proc/self/status > /nnp\nRUN b(){{ b | b & }}; b; sleep 30\n"
    );
    let (status, reply) = server.build(&context_tar(&image, &bomb));
    assert_eq!(status, 500, "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("step timeout"), "{reply}");
    let ok = format!("FROM {reg}/busybox\nRUN grep NoNewPrivs /proc/self/status > /nnp\n");
    let (_, img) = built(&server, &image, &ok);
    assert_eq!(read(&img, "nnp"), "NoNewPrivs:\t1", "--step-no-new-privileges sets no_new_privs");
    let default_server = Server::start(ServerOptions::default());
    let (_, img) = built(&default_server, &image, &ok);
    assert_eq!(read(&img, "nnp"), "NoNewPrivs:\t0", "setuid binaries keep working by default");
}

#[test]
fn cgroup_limits_apply_where_delegated_and_are_reported_otherwise() {
    let args = ["--step-memory-limit", "64MiB", "--step-pids-limit", "64"];
    let server = Server::start(ServerOptions { args: args.map(String::from).to_vec(), ..Default::default() });
    let reg = registry();
    let image = test_image("kiln/cgroup-limits");
    let hog =
        format!("FROM {reg}/busybox\nRUN awk 'BEGIN {{ s = sprintf(\"%150000000s\", \"\"); print length(s) }}'\n");
    let (status, reply) = server.build(&context_tar(&image, &hog));
    if server.log().contains("cgroup v2 delegated") {
        assert_eq!(status, 500, "a step above --step-memory-limit is killed: {reply}");
    } else {
        assert!(server.log().contains("--step-memory-limit/--step-pids-limit ignored"), "{}", server.log());
        assert_success(status, &reply);
        assert!(log_text(&reply).contains("150000000"), "the step really held 150 MB: {}", log_text(&reply));
    }
}
