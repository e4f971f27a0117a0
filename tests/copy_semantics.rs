//! BuildKit's COPY semantics that builders get wrong (dockerfile.md §3.2),
//! checked on the built image, plus zero-layer scratch images and RUN
//! history with build args.

mod support;

use serde_json::json;
use support::*;

fn context_tar(config: &serde_json::Value, dockerfile: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, kind: tar::EntryType, data: &[u8], link: Option<&str>| {
        tar_entry(&mut b, path, kind, 0o644, 0, data, link);
    };
    add("context/Dockerfile", tar::EntryType::Regular, dockerfile.as_bytes(), None);
    add("context/f.txt", tar::EntryType::Regular, b"f", None);
    add("context/dir/a", tar::EntryType::Regular, b"a", None);
    add("context/links/rel", tar::EntryType::Symlink, b"", Some("../f.txt"));
    add("context/link-to-f", tar::EntryType::Symlink, b"", Some("f.txt"));
    let cfg = serde_json::to_vec(config).unwrap();
    add("com.openfaas.docker.config", tar::EntryType::Regular, &cfg, None);
    b.into_inner().unwrap()
}

#[test]
fn copy_follows_buildkit_semantics() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let image = test_image("kiln/copy-semantics");
    let dockerfile = format!(
        "FROM {reg}/busybox\n\
         RUN mkdir -p /existing && chmod 0700 /existing && chown 1000:1000 /existing\n\
         COPY f.txt /x\n\
         COPY f.txt /existing\n\
         COPY f.txt /newdir/\n\
         COPY dir /dircontents\n\
         COPY dir/ /dircontents2\n\
         COPY --chmod=0770 f.txt /p1/p2/f.txt\n\
         COPY nomatch* /nothing/\n\
         COPY links /links\n\
         COPY link-to-f /followed\n"
    );
    let (status, reply) = server.build(&context_tar(&json!({"image": image}), &dockerfile));
    assert_success(status, &reply);
    let img = unpack_image(&image, None);
    let r = &img.rootfs;
    let read = |p: &str| std::fs::read_to_string(r.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(read("x"), "f", "COPY f /x writes the file /x");
    assert_eq!(read("existing/f.txt"), "f", "…unless /x already is a directory");
    assert_eq!(owner_mode(&r.join("existing")), (1000, 1000, 0o700), "existing directories keep mode and owner");
    assert_eq!(read("newdir/f.txt"), "f", "a trailing slash means into the directory");
    assert_eq!(read("dircontents/a"), "a", "a directory source copies its contents");
    assert!(!r.join("dircontents/dir").exists());
    assert_eq!(read("dircontents2/a"), "a", "a trailing slash on the source changes nothing");
    assert_eq!(owner_mode(&r.join("p1")).2, 0o770, "created parents take --chmod");
    assert_eq!(owner_mode(&r.join("p1/p2")).2, 0o770);
    assert_eq!(owner_mode(&r.join("p1/p2/f.txt")), (0, 0, 0o770));
    let link = std::fs::read_link(r.join("links/rel")).unwrap();
    assert_eq!(link.to_str(), Some("../f.txt"), "symlinks inside a copied directory are kept verbatim");
    let followed = std::fs::symlink_metadata(r.join("followed")).unwrap();
    assert!(followed.is_file() && read("followed") == "f", "a symlink named as the source is followed");
}

#[test]
fn scratch_with_metadata_has_no_layers_and_history_records_args() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let image = test_image("kiln/scratch");
    let (status, reply) =
        server.build(&context_tar(&json!({"image": image}), "FROM scratch\nENV A=1\nCMD [\"/app\"]\n"));
    assert_success(status, &reply);
    let cfg = image_config(&image, None);
    assert_eq!(cfg["rootfs"]["diff_ids"], json!([]), "metadata-only instructions add no layer");
    let env = cfg["config"]["Env"].as_array().unwrap();
    assert!(
        env.iter().any(|e| e == "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        "default PATH"
    );
    assert!(cfg["history"].as_array().unwrap().iter().all(|h| h["empty_layer"] == true));

    let image2 = test_image("kiln/history");
    let dockerfile = format!("FROM {reg}/busybox\nARG A=1\nARG B\nRUN echo $A\n");
    let (status, reply) = server.build(&context_tar(&json!({"image": image2, "buildArgs": {"B": "2"}}), &dockerfile));
    assert_success(status, &reply);
    let cfg = image_config(&image2, None);
    let created: Vec<&str> =
        cfg["history"].as_array().unwrap().iter().filter_map(|h| h["created_by"].as_str()).collect();
    assert!(created.contains(&"RUN |2 A=1 B=2 /bin/sh -c echo $A # buildkit"), "{created:?}");
}

#[test]
fn copy_exclude_and_parents() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let image = test_image("kiln/exclude-parents");
    let dockerfile = format!(
        "FROM {reg}/busybox\nCOPY --exclude=*.log --exclude=tmp src /excl/\nCOPY --parents src/x/a.txt src/y/b.txt /par/\n\
         ADD --exclude=*.log src /added/\n"
    );
    let files: Vec<(&str, &[u8])> = vec![
        ("Dockerfile", dockerfile.as_bytes()),
        ("src/keep.txt", b"k"),
        ("src/drop.log", b"d"),
        ("src/tmp/t", b"t"),
        ("src/x/a.txt", b"a"),
        ("src/y/b.txt", b"b"),
    ];
    let (status, reply) = server.build(&request_tar(&json!({"image": image}), &files));
    assert_success(status, &reply);
    let img = unpack_image(&image, None);
    let r = &img.rootfs;
    assert!(r.join("excl/keep.txt").exists() && r.join("excl/x/a.txt").exists());
    assert!(
        !r.join("excl/drop.log").exists() && !r.join("excl/tmp").exists(),
        "--exclude patterns apply below the source"
    );
    assert!(r.join("added/keep.txt").exists() && !r.join("added/drop.log").exists(), "ADD takes --exclude too");
    assert_eq!(std::fs::read_to_string(r.join("par/src/x/a.txt")).unwrap(), "a", "--parents keeps the source path");
    assert_eq!(std::fs::read_to_string(r.join("par/src/y/b.txt")).unwrap(), "b");
}

#[test]
fn user_owns_workdir_not_copies_and_proxy_args_stay_out_of_the_cache() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let image = test_image("kiln/user-proxy");
    let dockerfile = format!(
        "FROM {reg}/busybox\n\
         RUN echo 'app:x:1000:1000::/home/app:/bin/sh' >> /etc/passwd && echo 'app:x:1000:' >> /etc/group\n\
         USER app\n\
         WORKDIR /work/dir\n\
         COPY f.txt /work/copied.txt\n\
         RUN echo \"proxy=$HTTP_PROXY\" > /work/dir/proxy\n"
    );
    let build = |proxy: &str| {
        let config = json!({"image": image, "buildArgs": {"HTTP_PROXY": proxy}});
        let (status, reply) = server.build(&context_tar(&config, &dockerfile));
        assert_success(status, &reply);
        reply
    };
    let first = build("http://proxy-a:3128");
    let img = unpack_image(&image, None);
    let r = &img.rootfs;
    assert_eq!(owner_mode(&r.join("work/dir")).0, 1000, "WORKDIR is created as the current USER");
    assert_eq!(owner_mode(&r.join("work")).0, 1000);
    assert_eq!(owner_mode(&r.join("work/copied.txt")).0, 0, "USER does not affect COPY");
    assert_eq!(
        std::fs::read_to_string(r.join("work/dir/proxy")).unwrap(),
        "proxy=http://proxy-a:3128\n",
        "proxy args reach RUN"
    );
    let history = image_config(&image, None)["history"].to_string();
    assert!(!history.contains("proxy-a"), "proxy args stay out of history: {history}");

    let second = build("http://proxy-b:3128");
    assert_eq!(executed_runs(&first), 2);
    assert_eq!(executed_runs(&second), 0, "a different proxy does not invalidate the cache");
}

#[test]
fn hardlinks_inside_one_copy_stay_hardlinks() {
    use std::os::unix::fs::MetadataExt;
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let image = test_image("kiln/hardlinks");
    let mut b = tar::Builder::new(Vec::new());
    let dockerfile = format!("FROM {reg}/busybox\nCOPY h /h\n");
    use tar::EntryType::{Link, Regular};
    tar_entry(&mut b, "context/Dockerfile", Regular, 0o644, 0, dockerfile.as_bytes(), None);
    tar_entry(&mut b, "context/h/a", Regular, 0o644, 0, b"same inode", None);
    tar_entry(&mut b, "context/h/b", Link, 0o644, 0, b"", Some("context/h/a"));
    let cfg = serde_json::to_vec(&json!({"image": image})).unwrap();
    tar_entry(&mut b, "com.openfaas.docker.config", Regular, 0o644, 0, &cfg, None);
    let (status, reply) = server.build(&b.into_inner().unwrap());
    assert_success(status, &reply);
    let img = unpack_image(&image, None);
    let (a, bb) =
        (std::fs::metadata(img.rootfs.join("h/a")).unwrap(), std::fs::metadata(img.rootfs.join("h/b")).unwrap());
    assert_eq!(a.ino(), bb.ino(), "one inode in the image");
    assert_eq!(std::fs::read_to_string(img.rootfs.join("h/b")).unwrap(), "same inode");
}

#[test]
fn chown_by_name_takes_the_primary_gid() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let image = test_image("kiln/chown-name");
    let dockerfile = format!(
        "FROM {reg}/busybox\n\
         RUN echo 'app:x:1000:1001::/home/app:/bin/sh' >> /etc/passwd && echo 'grp:x:1001:' >> /etc/group\n\
         COPY --chown=app f.txt /by-name\n\
         COPY --chown=1234 f.txt /by-number\n\
         COPY --chown=app:grp f.txt /by-names\n"
    );
    let (status, reply) = server.build(&context_tar(&json!({"image": image}), &dockerfile));
    assert_success(status, &reply);
    let img = unpack_image(&image, None);
    let owner = |p: &str| {
        let (u, g, _) = owner_mode(&img.rootfs.join(p));
        (u, g)
    };
    assert_eq!(owner("by-name"), (1000, 1001), "--chown=name: uid and primary gid from the stage's passwd");
    assert_eq!(owner("by-number"), (1234, 1234), "--chown=N: gid N");
    assert_eq!(owner("by-names"), (1000, 1001));
}

/// BuildKit's testChmodNonOctal: symbolic `--chmod` (Dockerfile 1.14)
/// changes each copied file's own mode as chmod(1) would — a 0666 file
/// and a 0124 directory made in a stage, through `go-w`, `u=rw,g=r,o=r`,
/// `a+X` and `u+rw,g+r,o-x,o+w`; busybox's own `chmod` on copies of the
/// same inputs is the reference, as upstream.
#[test]
fn symbolic_chmod_changes_each_copied_file_s_own_mode() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let image = test_image("kiln/chmod-symbolic");
    let cases = [("f1", "go-w", false), ("f2", "u=rw,g=r,o=r", false), ("f3", "a+X", false)].into_iter().chain([
        ("d1", "go-w", true),
        ("d2", "u+rw,g+r,o-x,o+w", true),
        ("d3", "a+X", true),
    ]);
    let mut dockerfile = format!(
        "FROM {reg}/busybox AS base\nRUN mkdir /input /expected && touch /input/file && chmod 666 /input/file && \
         mkdir /input/dir && chmod 124 /input/dir\n"
    );
    let (mut copies, mut checks) = (String::new(), String::new());
    for (name, mode, is_dir) in cases {
        if is_dir {
            dockerfile.push_str(&format!(
                "RUN mkdir -p /input/dirs/{name} && cp -a /input/dir /input/dirs/{name}/{name} && \
                 cp -a /input/dirs/{name}/. /expected/ && chmod {mode} /expected/{name}\n"
            ));
            copies.push_str(&format!("COPY --from=base --chmod={mode} /input/dirs/{name} /\n"));
        } else {
            dockerfile.push_str(&format!("RUN cp -a /input/file /expected/{name} && chmod {mode} /expected/{name}\n"));
            copies.push_str(&format!("COPY --from=base --chmod={mode} /input/file /{name}\n"));
        }
        checks.push_str(&format!("RUN [ \"$(stat -c %a /actual/{name})\" = \"$(stat -c %a /expected/{name})\" ]\n"));
    }
    dockerfile.push_str(&format!("FROM scratch AS result\n{copies}FROM base\nCOPY --from=result / /actual/\n{checks}"));
    let (status, reply) = server.build(&context_tar(&json!({"image": image}), &dockerfile));
    assert_success(status, &reply);
    let img = unpack_image(&image, None);
    let mode = |p: &str| owner_mode(&img.rootfs.join("actual").join(p)).2;
    assert_eq!((mode("f1"), mode("f2"), mode("f3")), (0o644, 0o644, 0o666));
    assert_eq!((mode("d1"), mode("d2"), mode("d3")), (0o104, 0o766, 0o135));
}

/// `COPY --link` as BuildKit merges it (its reference, "Incompatibilities
/// with --link=false"; testCopyLinkDotDestDir, testCopyLinkEmptyDestDir):
/// the copy runs on an empty filesystem and its layer goes on top, so a
/// destination that is a symlink in the image becomes a directory (the
/// symlink is not followed) and an existing directory takes the new mode;
/// without `--link` both behave as before. `--chmod` turns linking off.
#[test]
fn copy_link_merges_its_layer_on_top() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let image = test_image("kiln/copy-link");
    let dockerfile = format!(
        "FROM {reg}/busybox\nRUN mkdir -p /srv/real /srv/plain /data /tmpd && ln -s /srv/real /app && \
         ln -s /srv/plain /plain && chmod 1777 /data /tmpd\n\
         COPY --link hello.txt /app/\nCOPY --link hello.txt /data/sub/\nCOPY hello.txt /plain/\n\
         COPY hello.txt /tmpd/sub/\nCOPY --link --chmod=0644 hello.txt /data2/\nWORKDIR /wd\nCOPY --link hello.txt .\nWORKDIR /var/www\nCOPY --link hello.txt $empty\n\
         RUN [ -d /app ] && [ ! -L /app ] && [ -f /app/hello.txt ] && [ ! -e /srv/real/hello.txt ] && \
         [ -L /plain ] && [ -f /srv/plain/hello.txt ] && [ -f /wd/hello.txt ] && [ \"$(cat /var/www/hello.txt)\" = hi ] && \
         stat -c %a /data > /data.mode && stat -c %a /tmpd > /tmpd.mode\n"
    );
    let files: Vec<(&str, &[u8])> = vec![("Dockerfile", dockerfile.as_bytes()), ("hello.txt", b"hi\n")];
    let (status, reply) = server.build(&request_tar(&json!({"image": image}), &files));
    assert_success(status, &reply);
    let img = unpack_image(&image, None);
    let read = |p: &str| std::fs::read_to_string(img.rootfs.join(p)).unwrap().trim().to_string();
    assert_eq!(read("data.mode"), "755", "a linked copy's parent directory replaces the existing one's mode");
    assert_eq!(read("tmpd.mode"), "1777", "an unlinked copy keeps it");
}
