//! Ports of BuildKit's core Dockerfile integration tests
//! (`dockerfile_core_test.go`): users and groups of RUN steps, the
//! sandbox hostname, step names in the progress log, and a context whose
//! path changes from directory to file between builds.

mod support;

use serde_json::json;
use support::*;

/// Builds `dockerfile` with `files` and extra request fields as a new image.
fn build(server: &Server, name: &str, dockerfile: &str, files: &[(&str, &[u8])], extra: serde_json::Value) -> String {
    let (image, reply) = try_build(server, name, dockerfile, files, extra);
    assert_success(reply.0, &reply.1);
    image
}

fn try_build(
    server: &Server,
    name: &str,
    dockerfile: &str,
    files: &[(&str, &[u8])],
    extra: serde_json::Value,
) -> (String, (u16, serde_json::Value)) {
    let image = test_image(name);
    let mut config = json!({"image": image});
    config.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let mut all = vec![("Dockerfile", dockerfile.as_bytes())];
    all.extend_from_slice(files);
    let reply = server.build(&request_tar(&config, &all));
    (image, reply)
}

/// The passwd and group files of Docker Hub's busybox, which upstream's
/// expectations assume (the fixture busybox has only root and nobody).
const HUB_USERS: &str = "RUN printf 'root:x:0:0:root:/root:/bin/sh\\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\\n\
nobody:x:65534:65534:nobody:/home:/bin/false\\n' > /etc/passwd && \
printf 'root:x:0:\\ndaemon:x:1:\\nwheel:x:10:root\\nnobody:x:65534:\\n' > /etc/group\n";

/// testUser and testUserAdditionalGids: the uid, gid and supplementary
/// groups a RUN step gets for every USER form (name, id, user:group by
/// name or id, unknown ids, no passwd entry), and USER in the config.
#[test]
fn user_forms_set_ids_and_groups_of_steps() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let ids = "RUN [ \"$(id -u):$(id -g)/$(id -un):$(id -gn)/$(id -G):$(id -Gn)\" = ";
    let dockerio = "'1001:1001/dockerio:dockerio/1001:dockerio' ]\n";
    let supplementary = "'1001:1002/dockerio:supplementary/1002:supplementary' ]\n";
    let with_supplementary = "'1001:1001/dockerio:dockerio/1001 1002:dockerio supplementary' ]\n";
    let mut df = format!(
        "FROM {reg}/busybox AS base\n{HUB_USERS}RUN mkdir -m 0777 /out\nRUN id -un > /out/rootuser\n\
         RUN [ \"$(id -u):$(id -g)/$(id -un):$(id -gn)\" = '0:0/root:root' ]\n\
         USER root\nRUN [ \"$(id -G):$(id -Gn)\" = '0 10:root wheel' ]\n\
         RUN echo 'dockerio:x:1001:1001::/bin:/bin/false' >> /etc/passwd && echo 'dockerio:x:1001:' >> /etc/group\n\
         USER dockerio\n{ids}{dockerio}\
         USER root\n{ids}'0:0/root:root/0 10:root wheel' ] && echo 'supplementary:x:1002:dockerio' >> /etc/group\n\
         USER dockerio\n{ids}{with_supplementary}USER 1001\n{ids}{with_supplementary}"
    );
    for user in ["dockerio:dockerio", "1001:dockerio", "dockerio:1001", "1001:1001"] {
        df.push_str(&format!("USER {user}\n{ids}{dockerio}"));
    }
    for user in ["dockerio:supplementary", "dockerio:1002", "1001:supplementary", "1001:1002"] {
        df.push_str(&format!("USER {user}\n{ids}{supplementary}"));
    }
    df.push_str(&format!(
        "USER 1042:1043\n{ids}'1042:1043/1042:1043/1043:1043' ]\nUSER daemon\nRUN id -un > /out/daemonuser\n\
         FROM scratch\nCOPY --from=base /out /\nCOPY --from=base /etc/passwd /etc/group /etc/\nUSER nobody\n"
    ));
    let image = build(&server, "kiln/bk-user", &df, &[], json!({}));
    let img = unpack_image(&image, None);
    assert_eq!(std::fs::read_to_string(img.rootfs.join("rootuser")).unwrap(), "root\n");
    assert_eq!(std::fs::read_to_string(img.rootfs.join("daemonuser")).unwrap(), "daemon\n");
    assert_eq!(image_config(&image, None)["config"]["User"], "nobody");

    let gids = format!(
        "FROM {reg}/busybox\n{HUB_USERS}SHELL [\"/bin/sh\", \"-euxc\"]\n\
         RUN [ \"$(id)\" = \"uid=0(root) gid=0(root) groups=0(root),10(wheel)\" ]\n\
         USER 1234\nRUN [ \"$(id)\" = \"uid=1234 gid=0(root) groups=0(root)\" ]\n\
         USER 1234:1234\nRUN [ \"$(id)\" = \"uid=1234 gid=1234 groups=1234\" ]\n\
         USER daemon\nRUN [ \"$(id)\" = \"uid=1(daemon) gid=1(daemon) groups=1(daemon)\" ]\n"
    );
    build(&server, "kiln/bk-user-gids", &gids, &[], json!({}));
}

/// testDockerfileCheckHostname: RUN steps see the hostname the build arg
/// `BUILDKIT_SANDBOX_HOSTNAME` names (in `/etc/hosts`, `$HOSTNAME` and
/// `hostname`), and BuildKit's `buildkitsandbox` without it.
#[test]
fn sandbox_hostname_follows_the_build_arg() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let check = |name: &str| {
        format!(
            "FROM {reg}/busybox\nRUN cat /etc/hosts | grep {name}\nRUN echo $HOSTNAME | grep {name}\n\
             \tRUN echo $(hostname) | grep {name}\n"
        )
    };
    let args = json!({"buildArgs": {"BUILDKIT_SANDBOX_HOSTNAME": "foo"}});
    build(&server, "kiln/bk-hostname", &check("foo"), &[], args);
    build(&server, "kiln/bk-hostname-default", &check("buildkitsandbox"), &[], json!({}));

    let bad = json!({"buildArgs": {"BUILDKIT_SANDBOX_HOSTNAME": "a\nb"}});
    let (_, (status, reply)) = try_build(&server, "kiln/bk-hostname-bad", &check("a"), &[], bad);
    assert_eq!(status, 400, "{reply}");
    assert!(reply.to_string().contains("BUILDKIT_SANDBOX_HOSTNAME"), "{reply}");
}

/// testStepNames and testDockerfileDirs: steps are named
/// `[stage n/total] INSTRUCTION` in the log (an unnamed stage is
/// `stage-N`); COPY to a file and into `/`, then RUN steps comparing them.
#[test]
fn step_names_and_copied_files() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let df = format!(
        "FROM {reg}/busybox AS base\nWORKDIR /out\nRUN echo \"base\" > base\n\
         FROM {reg}/busybox AS dirs\nCOPY foo /foo2\nCOPY foo /\nRUN echo -n bar > foo3\nRUN test -f foo\n\
         RUN cmp -s foo foo2\nRUN cmp -s foo foo3\n\
         FROM scratch\nCOPY --from=base --chmod=0644 /out /out\nCOPY --from=dirs /foo3 /\n"
    );
    let image = test_image("kiln/bk-step-names");
    let (status, reply) =
        server.build(&request_tar(&json!({"image": image}), &[("Dockerfile", df.as_bytes()), ("foo", b"bar")]));
    assert_success(status, &reply);
    let log = log_text(&reply);
    for step in [
        "[base 3/3] RUN echo \"base\" > base",
        "[stage-2 1/2] COPY --from=base --chmod=0644 /out /out",
        "[dirs 2/7] COPY foo /foo2",
    ] {
        assert!(log.contains(step), "{step:?} not in the log:\n{log}");
    }
}

/// testContextChangeDirToFile: the same Dockerfile built again after a
/// context directory became a file copies the file (no stale cache hit).
#[test]
fn context_path_changing_from_dir_to_file_is_rebuilt() {
    let server = Server::start(ServerOptions::default());
    let df = "FROM scratch\nCOPY foo /\n";
    build(&server, "kiln/bk-dir-to-file", df, &[("foo/bar", b"contents")], json!({}));
    let image = build(&server, "kiln/bk-dir-to-file", df, &[("foo", b"contents2")], json!({}));
    let img = unpack_image(&image, None);
    assert_eq!(std::fs::read_to_string(img.rootfs.join("foo")).unwrap(), "contents2");
}

/// testBuiltinArgs, testEmptyStringArgInEnv, testEnvEmptyFormatting and
/// testTargetStageNameArg: proxy build args reach RUN without ARG and stay
/// out of the cache key (a changed proxy alone is a cache hit, a changed
/// ARG value is not); an ARG without a value is not in the environment, an
/// empty one is; `%s` in ENV stays as written; `TARGETSTAGE`.
#[test]
fn builtin_and_empty_args() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let df = format!(
        "FROM {reg}/busybox AS build\nARG FOO\nARG BAR\nARG BAZ=bazcontent\n\
         RUN echo -n $HTTP_PROXY::$NO_PROXY::$FOO::$BAR::$BAZ > /out\nFROM scratch\nCOPY --from=build /out /\n"
    );
    let out = |args: serde_json::Value| {
        let image = build(&server, "kiln/bk-builtin-args", &df, &[], json!({ "buildArgs": args }));
        std::fs::read_to_string(unpack_image(&image, None).rootfs.join("out")).unwrap()
    };
    let first = json!({"FOO": "foocontents", "http_proxy": "hpvalue", "NO_PROXY": "npvalue"});
    assert_eq!(out(first), "hpvalue::npvalue::foocontents::::bazcontent");
    let proxy_changed = json!({"FOO": "foocontents", "http_proxy": "hpvalue2"});
    assert_eq!(out(proxy_changed), "hpvalue::npvalue::foocontents::::bazcontent", "the cached step");
    let foo_changed = json!({"FOO": "foocontents2", "http_proxy": "hpvalue2"});
    assert_eq!(out(foo_changed), "hpvalue2::::foocontents2::::bazcontent");

    let env = format!(
        "FROM {reg}/busybox AS build\nARG FOO\nARG BAR=\nENV myenv foo%sbar\nRUN [ \"$myenv\" = 'foo%sbar' ]\n\
         RUN env > env.txt\nFROM scratch\nCOPY --from=build env.txt .\n"
    );
    let image = build(&server, "kiln/bk-empty-args", &env, &[], json!({}));
    let env = std::fs::read_to_string(unpack_image(&image, None).rootfs.join("env.txt")).unwrap();
    assert!(env.lines().any(|l| l == "BAR=") && !env.contains("FOO="), "{env}");

    let stages = format!(
        "FROM {reg}/busybox AS base\nWORKDIR /out\nRUN echo -n \"value:$TARGETSTAGE\" > /out/first\nARG TARGETSTAGE\n\
         RUN echo -n \"value:$TARGETSTAGE\" > /out/second\nFROM scratch AS foo\nCOPY --from=base /out/ /\n\
         FROM scratch\nCOPY --from=base /out/ /\n"
    );
    let image = build(&server, "kiln/bk-targetstage", &stages, &[], json!({"target": "foo"}));
    let img = unpack_image(&image, None);
    assert_eq!(std::fs::read_to_string(img.rootfs.join("first")).unwrap(), "value:");
    assert_eq!(std::fs::read_to_string(img.rootfs.join("second")).unwrap(), "value:foo");
}

/// testWorkdirCreatesDir, testWorkdirExists and
/// testWorkdirCopyIgnoreRelative: WORKDIR creates its directory (kept in a
/// scratch image), leaves an existing one's owner alone, and a relative
/// `COPY --from` source is read from the source stage's root, not its
/// WORKDIR.
#[test]
fn workdir_creates_keeps_and_does_not_move_copy_sources() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let image = build(&server, "kiln/bk-workdir-creates", "FROM scratch\nWORKDIR /foo\nWORKDIR /\n", &[], json!({}));
    assert!(unpack_image(&image, None).rootfs.join("foo").is_dir());

    let exists = format!(
        "FROM {reg}/busybox\nRUN echo user:x:1000:1000::/home/user:/bin/sh >> /etc/passwd && echo user:x:1000: >> /etc/group\n\
         RUN mkdir /mydir && chown user:user /mydir\nWORKDIR /mydir\nRUN [ \"$(stat -c \"%U %G\" /mydir)\" == \"user user\" ]\n"
    );
    build(&server, "kiln/bk-workdir-exists", &exists, &[], json!({}));

    let relative =
        "FROM scratch AS base\nWORKDIR /foo\nCOPY Dockerfile /\nFROM scratch\nCOPY --from=base Dockerfile .\n";
    let image = build(&server, "kiln/bk-workdir-relative", relative, &[], json!({}));
    assert!(unpack_image(&image, None).rootfs.join("Dockerfile").is_file());
}

/// BuildKit's ONBUILD tests (testOnBuildCleared, testOnBuildWithChildStage,
/// testOnBuildWithCacheMount, testOnBuildInheritedStageRun,
/// testOnBuildInheritedStageWithFrom): triggers run once, in the first
/// image or stage built on the one that declares them, not again further
/// down; they may use cache mounts and `COPY --from` another stage.
#[test]
fn onbuild_triggers_run_once_where_inherited() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let base_df = format!(
        "FROM {reg}/busybox\nONBUILD RUN mkdir -p /out && echo -n 11 >> /out/foo && echo -n yes >> /out/didrun\n\
         ONBUILD RUN --mount=type=cache,target=/cache echo -n 42 >> /cache/foo && echo -n 11 >> /bar\n"
    );
    let base = build(&server, "kiln/bk-onbuild-base", &base_df, &[], json!({}));
    let child = build(&server, "kiln/bk-onbuild-child", &format!("FROM {base}\n"), &[], json!({}));
    let cleared = format!("FROM {child} AS base\nFROM scratch\nCOPY --from=base /out/foo /\n");
    let image = build(&server, "kiln/bk-onbuild-cleared", &cleared, &[], json!({}));
    assert_eq!(std::fs::read_to_string(unpack_image(&image, None).rootfs.join("foo")).unwrap(), "11");

    let stages = format!(
        "FROM {base} AS base\nRUN [ -f /out/didrun ] && touch /step1\nRUN rm /out/didrun\n\
         RUN [ ! -f /out/didrun ] && touch /step2\n\
         RUN --mount=type=cache,target=/cache [ \"$(cat /cache/foo)\" = \"42\" ] && [ \"$(cat /bar)\" = \"11\" ]\n\
         FROM base AS child\nRUN [ ! -f /out/didrun ] && touch /step3\nFROM scratch\nCOPY --from=child /step* /\n"
    );
    let image = build(&server, "kiln/bk-onbuild-stage", &stages, &[], json!({}));
    let img = unpack_image(&image, None);
    for step in ["step1", "step2", "step3"] {
        assert!(img.rootfs.join(step).is_file(), "{step}");
    }

    let inherited = format!(
        "FROM {reg}/busybox AS src\nRUN mkdir -p /in && echo -n 12 > /in/file\n\
         FROM {reg}/busybox AS base\nONBUILD RUN mkdir -p /out && echo -n 11 >> /out/foo\n\
         ONBUILD COPY --from=src /in/file /out/from-src\n\
         FROM base AS mid\nRUN cp /out/foo /out/bar\nFROM scratch\nCOPY --from=mid /out/bar /out/from-src /\n"
    );
    let image = build(&server, "kiln/bk-onbuild-inherited", &inherited, &[], json!({}));
    let img = unpack_image(&image, None);
    assert_eq!(std::fs::read_to_string(img.rootfs.join("bar")).unwrap(), "11");
    assert_eq!(std::fs::read_to_string(img.rootfs.join("from-src")).unwrap(), "12");
}

/// testDockerfileInvalidCommand: a RUN whose command does not exist fails
/// with BuildKit's words, naming the command line the shell ran.
#[test]
fn an_unknown_command_fails_like_buildkit() {
    let server = Server::start(ServerOptions::default());
    let df = format!("\tFROM {}/busybox\n\tRUN invalidcmd\n", registry());
    let (_, (status, reply)) = try_build(&server, "kiln/bk-invalid-command", &df, &[], json!({}));
    assert_ne!(status, 200, "{reply}");
    let error = reply["error"].as_str().unwrap();
    assert!(
        error.contains("process \"/bin/sh -c invalidcmd\" did not complete successfully: exit code: 127"),
        "{error}"
    );
}

/// testPullScratch: an image with no layers (scratch and a LABEL) is a base
/// for another build, whose config has one layer and both labels, and can
/// be mounted by a RUN.
#[test]
fn a_zero_layer_image_is_a_base_and_a_mount() {
    let server = Server::start(ServerOptions::default());
    let empty = build(&server, "kiln/bk-pull-scratch", "FROM scratch\nLABEL foo=bar\n", &[], json!({}));
    assert_eq!(image_config(&empty, None)["rootfs"]["diff_ids"].as_array().unwrap().len(), 0);
    let df = format!("FROM {empty}\nLABEL bar=baz\nCOPY foo .\n");
    let image = build(&server, "kiln/bk-pull-scratch2", &df, &[("foo", b"foo-contents")], json!({}));
    let config = image_config(&image, None);
    assert_eq!(config["rootfs"]["type"], "layers");
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 1);
    assert_eq!(
        (config["config"]["Labels"]["foo"].as_str(), config["config"]["Labels"]["bar"].as_str()),
        (Some("bar"), Some("baz"))
    );

    let mount = format!(
        "FROM {}/busybox AS echo\nRUN --mount=from={empty},target=/empty,rw sh -c \"echo -n foo0 > /empty/foo && cat /empty/foo > /out\"\n\
         FROM scratch\nCOPY --from=echo /out /\n",
        registry()
    );
    let image = build(&server, "kiln/bk-pull-scratch-mount", &mount, &[], json!({}));
    assert_eq!(std::fs::read_to_string(unpack_image(&image, None).rootfs.join("out")).unwrap(), "foo0");
}
