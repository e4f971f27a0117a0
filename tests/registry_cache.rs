//! Scale-out: a second server with an empty data dir, pointed at the same
//! registry, rebuilds a pushed image entirely from the registry cache the
//! first one exported, runs no RUN, and pushes the identical image.

mod support;

use serde_json::json;
use support::*;

/// A replica sharing the registry cache beside each image.
fn replica_options() -> ServerOptions {
    ServerOptions { args: vec!["--registry-cache".into(), "image".into()], ..Default::default() }
}

/// The GETs of `layers` among the proxy's requests from `from` on.
fn layer_gets(proxy: &RegistryProxy, from: usize, layers: &[String]) -> Vec<String> {
    let requests = proxy.lines("request").split_off(from);
    requests.into_iter().filter(|r| r.starts_with("request GET") && layers.iter().any(|d| r.contains(d))).collect()
}

#[test]
fn a_fresh_replica_builds_from_the_registry_cache() {
    let proxy = RegistryProxy::start("log");
    let reg = proxy.addr().to_string();
    let image = format!("{reg}/{}:v1", unique("kiln/regcache"));
    let dockerfile = format!(
        "FROM {reg}/busybox AS build\nRUN echo built > /artifact\n\
         FROM {reg}/busybox\nCOPY --from=build /artifact /app/artifact\nRUN echo final > /app/final\n"
    );
    let body = request_tar(&json!({"image": image}), &[("Dockerfile", dockerfile.as_bytes())]);

    let first = Server::start(replica_options());
    let (status, reply) = first.build(&body);
    assert_success(status, &reply);
    assert_eq!(executed_runs(&reply), 2);
    assert!(log_text(&reply).contains("exporting the build cache to"), "{}", log_text(&reply));
    let direct = image.replacen(&reg, &registry(), 1);
    let pushed = image_manifest(&direct);
    drop(first); // a graceful stop waits for the export that follows the reply
    let repo = direct.split_once('/').unwrap().1.rsplit_once(':').unwrap().0;
    let cache = registry_get(&format!("{repo}/manifests/buildcache"), "application/vnd.oci.image.manifest.v1+json");
    let cache: serde_json::Value = serde_json::from_slice(&cache).unwrap();

    let replica = Server::start(replica_options());
    let before = proxy.lines("request").len();
    let (status, reply) = replica.build(&body);
    assert_success(status, &reply);
    let log = log_text(&reply);
    assert_eq!(executed_runs(&reply), 0, "every step came from the registry cache:\n{log}");
    assert!(log.contains("found in the registry cache"), "{log}");
    let cached: Vec<String> = cache["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["mediaType"].as_str().unwrap().contains(".layer.v1.tar"))
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(cached.len(), 4, "busybox, the stage's RUN, the COPY, the final RUN: {cache}");
    let gets = layer_gets(&proxy, before, &cached);
    assert!(gets.is_empty(), "the COPY --from was keyed without fetching the stage: {gets:?}");
    assert_eq!(image_manifest(&direct), pushed, "the replica pushed the identical image");
    let img = unpack_image(&direct, None);
    assert_eq!(std::fs::read_to_string(img.rootfs.join("app/artifact")).unwrap(), "built\n");
    assert_eq!(std::fs::read_to_string(img.rootfs.join("app/final")).unwrap(), "final\n");
}

/// A fresh replica answering a build whose every step the registry cache
/// holds downloads no layer (only manifests, configs, the SBOM inventories
/// and HEADs), pushes the identical image with the identical SBOM; a
/// handler change then fetches only what its steps read.
#[test]
fn a_fresh_replica_downloads_no_layer_for_a_cached_build() {
    let proxy = RegistryProxy::start("log");
    let reg = proxy.addr().to_string();
    let repo = unique("kiln/lazy");
    let image = format!("{reg}/{repo}:v1");
    let dockerfile = format!(
        "FROM {reg}/busybox\nRUN mkdir /deps && for i in $(seq 300); do echo $i > /deps/$i; done\n\
         COPY handler.sh /app/\nRUN cat /app/handler.sh > /app/ran\n"
    );
    let body = |handler: &str| {
        let files = [("Dockerfile", dockerfile.as_bytes()), ("handler.sh", handler.as_bytes())];
        request_tar(&json!({"image": image}), &files)
    };
    let first = Server::start(replica_options());
    let (status, reply) = first.build(&body("echo v1\n"));
    assert_success(status, &reply);
    drop(first);
    let direct = image.replacen(&reg, &registry(), 1);
    let manifest = image_manifest(&direct);
    let layers: Vec<String> =
        manifest["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_string()).collect();
    assert_eq!(layers.len(), 4, "{manifest}");

    let replica = Server::start(replica_options());
    let before = proxy.lines("request").len();
    let (status, reply) = replica.build(&body("echo v1\n"));
    let requests = proxy.lines("request").split_off(before);
    assert_success(status, &reply);
    let log = log_text(&reply);
    assert_eq!(executed_runs(&reply), 0, "every step came from the registry cache:\n{log}");
    let gets = layer_gets(&proxy, before, &layers);
    assert!(gets.is_empty(), "the replica downloaded layers: {gets:?}\nall requests: {requests:#?}");
    assert!(requests.iter().any(|r| r.starts_with("request HEAD")), "pushes were answered by HEAD: {requests:#?}");
    assert!(log.contains("(0 of 4 layers scanned"), "inventories came with the cache:\n{log}");
    assert_eq!(image_manifest(&direct), manifest, "the replica pushed the identical image");

    let before = proxy.lines("request").len();
    let (status, reply) = replica.build(&body("echo v2\n"));
    let requests = proxy.lines("request").split_off(before);
    assert_success(status, &reply);
    assert_eq!(executed_runs(&reply), 1, "only the RUN after the handler ran:\n{}", log_text(&reply));
    let fetched = |d: &str| requests.iter().any(|r| r.starts_with("request GET") && r.contains(d));
    assert!(layers[..2].iter().all(|d| fetched(d)), "the COPY's parent was fetched: {requests:#?}");
    let img = unpack_image(&direct, None);
    assert_eq!(std::fs::read_to_string(img.rootfs.join("app/ran")).unwrap(), "echo v2\n");
    assert_eq!(std::fs::read_to_string(img.rootfs.join("deps/300")).unwrap(), "300\n");
}

/// `COPY --link` makes its layer on nothing, so a fresh replica builds a
/// handler change on a lazy parent without downloading any layer.
#[test]
fn a_linked_copy_on_a_fresh_replica_downloads_no_layer() {
    let proxy = RegistryProxy::start("log");
    let reg = proxy.addr().to_string();
    let image = format!("{reg}/{}:v1", unique("kiln/lazy-link"));
    let dockerfile = format!("FROM {reg}/busybox\nRUN echo deps > /deps\nCOPY --link handler.sh /app/\n");
    let body = |handler: &str| {
        let files = [("Dockerfile", dockerfile.as_bytes()), ("handler.sh", handler.as_bytes())];
        request_tar(&json!({"image": image}), &files)
    };
    let first = Server::start(replica_options());
    let (status, reply) = first.build(&body("v1\n"));
    assert_success(status, &reply);
    drop(first);
    let direct = image.replacen(&reg, &registry(), 1);
    let below: Vec<String> = image_manifest(&direct)["layers"].as_array().unwrap()[..2]
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();

    let replica = Server::start(replica_options());
    let before = proxy.lines("request").len();
    let (status, reply) = replica.build(&body("v2\n"));
    assert_success(status, &reply);
    let gets = layer_gets(&proxy, before, &below);
    assert!(gets.is_empty(), "the linked COPY read its parent: {gets:?}");
    let img = unpack_image(&direct, None);
    assert_eq!(std::fs::read_to_string(img.rootfs.join("app/handler.sh")).unwrap(), "v2\n");
    assert_eq!(std::fs::read_to_string(img.rootfs.join("deps")).unwrap(), "deps\n");
}

/// A COPY or WORKDIR on layers a fresh replica never fetched is made from
/// the layers' header indexes in the registry cache: no layer below it is
/// downloaded, and each layer is byte-identical to the one the warm
/// replica makes over the real layers — through symlinks on the way, an
/// owner name from the image's /etc/passwd, replaced files, odd modes.
#[test]
fn a_copy_on_a_fresh_replica_needs_no_layer_below_it_and_makes_the_same_layer() {
    let proxy = RegistryProxy::start("log");
    let reg = proxy.addr().to_string();
    let image = format!("{reg}/{}:v1", unique("kiln/skeleton"));
    let dockerfile = format!(
        "FROM {reg}/busybox\n\
         RUN mkdir -p /srv/data/sub /opt/real /etc && echo 'app:x:1234:1235::/srv:/bin/sh' >> /etc/passwd \
         && echo 'app:x:1235:' >> /etc/group && chmod 2750 /srv/data && chown 1234:50 /srv/data/sub \
         && ln -s /opt/real /srv/link && ln -s ../opt /srv/rel && echo old > /srv/data/replaced && echo keep > /srv/data/kept\n\
         WORKDIR /srv/data\n\
         COPY --chown=app:app handler.sh tree/ ./\n\
         COPY handler.sh /srv/link/h.sh\n\
         COPY --chmod=640 handler.sh /srv/rel/new/\n\
         COPY handler.sh replaced\n\
         COPY --parents tree/./sub/deep.txt /srv/p/\n\
         COPY <<EOF /srv/data/sub/inline.txt\ninline\nEOF\n\
         WORKDIR /srv/link/work\n"
    );
    let body = |handler: &str| {
        let files = [
            ("Dockerfile", dockerfile.as_bytes()),
            ("handler.sh", handler.as_bytes()),
            ("tree/sub/deep.txt", b"deep\n".as_slice()),
            ("tree/top.txt", b"top\n".as_slice()),
        ];
        request_tar(&json!({"image": image, "buildArgs": {"SOURCE_DATE_EPOCH": "1700000000"}}), &files)
    };
    let direct = image.replacen(&reg, &registry(), 1);
    let layers = |m: &serde_json::Value| -> Vec<String> {
        m["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_string()).collect()
    };
    let warm = Server::start(replica_options());
    let (status, reply) = warm.build(&body("v1\n"));
    assert_success(status, &reply);
    let below = layers(&image_manifest(&direct))[..2].to_vec();
    std::thread::sleep(std::time::Duration::from_secs(2)); // the cache export follows the reply

    let fresh = Server::start(replica_options());
    let before = proxy.lines("request").len();
    let (status, reply) = fresh.build(&body("v2\n"));
    assert_success(status, &reply);
    let gets = layer_gets(&proxy, before, &below);
    assert!(gets.is_empty(), "the COPYs read the layers below them: {gets:?}\n{}", log_text(&reply));
    let made_fresh = layers(&image_manifest(&direct));

    let (status, reply) = warm.build(&body("v2\n"));
    assert_success(status, &reply);
    assert_eq!(layers(&image_manifest(&direct)), made_fresh, "the warm replica made the same layers");
    let img = unpack_image(&direct, None);
    let owner = |p: &str| {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::symlink_metadata(img.rootfs.join(p)).unwrap();
        (m.uid(), m.gid(), m.mode() & 0o7777)
    };
    assert_eq!(owner("srv/data/handler.sh"), (1234, 1235, 0o644));
    assert_eq!(owner("srv/data/sub/deep.txt"), (1234, 1235, 0o644));
    assert_eq!(owner("srv/data"), (0, 0, 0o2750));
    assert_eq!(std::fs::read_to_string(img.rootfs.join("opt/real/h.sh")).unwrap(), "v2\n");
    assert_eq!(owner("opt/new/handler.sh"), (0, 0, 0o640));
    assert_eq!(std::fs::read_to_string(img.rootfs.join("srv/data/replaced")).unwrap(), "v2\n");
    assert_eq!(std::fs::read_to_string(img.rootfs.join("srv/data/kept")).unwrap(), "keep\n");
    assert!(img.rootfs.join("opt/real/work").is_dir());
    assert_eq!(std::fs::read_to_string(img.rootfs.join("srv/p/sub/deep.txt")).unwrap(), "deep\n");
    assert_eq!(std::fs::read_to_string(img.rootfs.join("srv/data/sub/inline.txt")).unwrap(), "inline\n");
}

/// What a push asks the registry is what it cannot already know: a blob
/// seen in the repository lately (pushed, HEADed, listed by the cache
/// manifest) is not asked about again, and the evidence of an image whose
/// config was new to the repository — so no manifest could name it yet —
/// neither reads the `sha256-<hex>` tags nor HEADs documents that name it.
/// A rebuild of an image already there reads the tag index again, to keep
/// what is attached to it.
#[test]
fn pushes_ask_the_registry_only_what_they_cannot_know() {
    let proxy = RegistryProxy::start("log");
    let reg = proxy.addr().to_string();
    let image = format!("{reg}/{}:v1", unique("kiln/asks"));
    let dockerfile = format!("FROM {reg}/busybox\nCOPY handler.sh /handler.sh\nRUN chmod 755 /handler.sh\n");
    let body = |handler: &str| {
        let files = [("Dockerfile", dockerfile.as_bytes()), ("handler.sh", handler.as_bytes())];
        request_tar(&json!({"image": image, "buildArgs": {"SOURCE_DATE_EPOCH": "1700000000"}}), &files)
    };
    let server = Server::start(replica_options());
    let (status, reply) = server.build(&body("v1\n"));
    assert_success(status, &reply);
    std::thread::sleep(std::time::Duration::from_secs(1)); // the cache export follows the reply
    let busybox_layer =
        image_manifest(&image.replacen(&reg, &registry(), 1))["layers"][0]["digest"].as_str().unwrap().to_string();

    let before = proxy.lines("request").len();
    let (status, reply) = server.build(&body("v2\n"));
    assert_success(status, &reply);
    std::thread::sleep(std::time::Duration::from_secs(1));
    let requests = proxy.lines("request").split_off(before);
    let asked = |prefix: &str| requests.iter().filter(|r| r.starts_with(prefix)).cloned().collect::<Vec<_>>();
    let tag_reads: Vec<String> =
        asked("request GET").into_iter().filter(|r| r.contains("/manifests/sha256-")).collect();
    assert!(tag_reads.is_empty(), "a new image's tags were read: {tag_reads:?}");
    let heads = asked("request HEAD");
    assert!(!heads.iter().any(|r| r.contains(&busybox_layer)), "a known blob was asked about: {heads:#?}");
    let mut unique_heads = heads.clone();
    unique_heads.sort();
    unique_heads.dedup();
    assert_eq!(unique_heads.len(), heads.len(), "a blob was asked about twice: {heads:#?}");
    assert!(heads.len() <= 3, "only the new layers and config are asked about: {requests:#?}");

    let again = Server::start(replica_options());
    let before = proxy.lines("request").len();
    let (status, reply) = again.build(&body("v2\n"));
    assert_success(status, &reply);
    let requests = proxy.lines("request").split_off(before);
    let reads_tags = requests.iter().any(|r| r.starts_with("request GET") && r.contains("/manifests/sha256-"));
    assert!(reads_tags, "a rebuild of an image already there must read what is attached to it: {requests:#?}");
}
