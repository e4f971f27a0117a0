//! Scale-out: a second server with an empty data dir, pointed at the same
//! registry, rebuilds a pushed image entirely from the registry cache the
//! first one exported, runs no RUN, and pushes the identical image.

mod support;

use serde_json::json;
use support::*;

#[test]
fn a_fresh_replica_builds_from_the_registry_cache() {
    let args = || ServerOptions { args: vec!["--registry-cache".into(), "image".into()], ..Default::default() };
    let reg = registry();
    let image = test_image("kiln/regcache");
    let dockerfile = format!(
        "FROM {reg}/busybox AS build\nRUN echo built > /artifact\n\
         FROM {reg}/busybox\nCOPY --from=build /artifact /app/artifact\nRUN echo final > /app/final\n"
    );
    let body = request_tar(&json!({"image": image}), &[("Dockerfile", dockerfile.as_bytes())]);

    let first = Server::start(args());
    let (status, reply) = first.build(&body);
    assert_success(status, &reply);
    assert_eq!(executed_runs(&reply), 2);
    assert!(log_text(&reply).contains("cache entries to"), "{}", log_text(&reply));
    let pushed = image_manifest(&image);
    drop(first);

    let replica = Server::start(args());
    let (status, reply) = replica.build(&body);
    assert_success(status, &reply);
    let log = log_text(&reply);
    assert_eq!(executed_runs(&reply), 0, "every step came from the registry cache:\n{log}");
    assert!(log.contains("found in the registry cache"), "{log}");
    assert_eq!(image_manifest(&image), pushed, "the replica pushed the identical image");
    let img = unpack_image(&image, None);
    assert_eq!(std::fs::read_to_string(img.rootfs.join("app/artifact")).unwrap(), "built\n");
    assert_eq!(std::fs::read_to_string(img.rootfs.join("app/final")).unwrap(), "final\n");
}
