//! Builds that pull and push, against the in-memory registry: a base image
//! is pulled and unpacked, the result pushed with the base layer mounted
//! and the rest uploaded once; a platform is picked from an index; a
//! missing base names its line; and a second replica on the same registry
//! imports a step from the registry cache instead of running it.

use super::*;
use crate::oci::PlatformSpec;
use crate::registry::Reference;

const BASE: &str = "r.example/library/base:1";
const TARGET: &str = "r.example/team/fn:1";

fn host() -> PlatformSpec {
    crate::platform::Platform::host().spec()
}

fn reference(r: &str) -> Reference {
    Reference::parse(r).unwrap()
}

async fn push_build(f: &Fixture, dockerfile: &str) -> (StatusCode, Value) {
    let config = json!({"image": TARGET});
    send_json(app(f.state.clone()), signed(request(config, dockerfile))).await
}

fn pushed_manifest(f: &Fixture, r: &str) -> Value {
    let (_, bytes) = f.registry.manifest(&reference(r)).expect("a manifest at the target");
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn a_base_image_is_pulled_and_the_result_pushed_with_the_base_layer_mounted() {
    let f = fixture();
    f.registry.seed_image(&reference(BASE), &host(), &[("etc/os-release", "ID=test\n")]);
    let dockerfile = format!("FROM {BASE}\nRUN write /app/handler.py print(1)\n");
    let (status, reply) = push_build(&f, &dockerfile).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let manifest = pushed_manifest(&f, TARGET);
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2, "the base layer, then the step's");
    let base = pushed_manifest(&f, BASE);
    assert_eq!(layers[0]["digest"], base["layers"][0]["digest"], "the base layer is pushed as pulled");
    let traffic = f.registry.traffic();
    assert_eq!(traffic.mounts, 1, "the base layer is mounted from its repository: {traffic:?}");
    assert_eq!(traffic.uploads, 2, "the step's layer and the config are uploaded: {traffic:?}");
    assert_eq!(traffic.downloads, 2, "the base's config and layer: {traffic:?}");
    let config_digest = kiln_snapshotter::Digest::parse(manifest["config"]["digest"].as_str().unwrap()).unwrap();
    let config: Value = serde_json::from_slice(&f.registry.blob(&config_digest).unwrap()).unwrap();
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
    assert_eq!(config["config"]["Env"][0], "PATH=/usr/bin:/bin", "the base's config is inherited");
    assert_eq!(
        reply["digest"].as_str().unwrap(),
        kiln_snapshotter::Digest::of(&f.registry.manifest(&reference(TARGET)).unwrap().1).as_str()
    );

    let (status, again) = push_build(&f, &dockerfile).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["digest"], reply["digest"], "a cached rebuild is the same image");
    assert_eq!(f.runner.runs(), 1, "the step ran once");
    let after = f.registry.traffic();
    assert_eq!((after.uploads, after.mounts, after.downloads), (2, 1, 2), "nothing moves twice: {after:?}");
}

#[tokio::test]
async fn the_host_platform_is_picked_from_an_index() {
    let f = fixture();
    let base = reference(BASE);
    let other = PlatformSpec { os: "linux".into(), architecture: "s390x".into(), variant: None };
    let native = f.registry.seed_image(&base, &host(), &[("which", "native")]);
    let foreign = f.registry.seed_image(&base, &other, &[("which", "foreign")]);
    f.registry.seed_index(&base, &[(other, foreign), (host(), native.clone())]);
    let (status, reply) = push_build(&f, &format!("FROM {BASE}\nRUN write /x 1\n")).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let native_manifest = pushed_manifest(&f, &format!("r.example/library/base@{native}"));
    assert_eq!(pushed_manifest(&f, TARGET)["layers"][0]["digest"], native_manifest["layers"][0]["digest"]);
}

#[tokio::test]
async fn a_missing_base_image_fails_on_its_line() {
    let f = fixture();
    let (status, reply) = push_build(&f, "FROM r.example/library/nothing:1\nRUN write /x 1\n").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "a failed build is a 500 in the contract: {reply}");
    let error = reply["error"].as_str().unwrap();
    assert!(error.starts_with("Dockerfile:1:1: r.example/library/nothing:1: "), "{error}");
    assert!(error.contains("manifest unknown") && error.ends_with("1 | FROM r.example/library/nothing:1"), "{error}");
    assert_eq!(f.runner.runs(), 0);
    assert_eq!(f.registry.traffic().manifests_put, 0, "nothing is pushed");
}

#[tokio::test]
async fn a_second_replica_imports_a_step_from_the_registry_cache() {
    let registry = Arc::new(MemoryRegistry::default());
    registry.seed_image(&reference(BASE), &host(), &[("etc/os-release", "ID=test\n")]);
    let with_cache = |cfg: &mut ServeConfig| cfg.registry_cache = Some("image".into());
    let first = fixture_on(registry.clone(), 4, with_cache);
    let dockerfile = format!("FROM {BASE}\nRUN write /deps/lib.py 1\nRUN write /app/handler.py 2\n");
    let (status, one) = push_build(&first, &dockerfile).await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(first.runner.runs(), 2);
    let cache_ref = reference("r.example/team/fn:buildcache");
    assert_eq!(first.state.lifecycle.wait_deferred(std::time::Duration::from_secs(10)).await, 0);
    assert!(registry.manifest(&cache_ref).is_some(), "the cache is exported after the reply");

    let second = fixture_on(registry.clone(), 4, with_cache);
    let (status, two) = push_build(&second, &dockerfile).await;
    assert_eq!(status, StatusCode::OK, "{two}");
    assert_eq!(second.runner.runs(), 0, "the fresh replica runs nothing");
    assert_eq!(two["digest"], one["digest"], "and builds the same image");
    let log = two["log"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect::<Vec<_>>().join("\n");
    assert!(log.contains("found in the registry cache"), "{log}");
}

/// BuildKit's testBaseImagePlatformMismatch: a single-platform base image
/// used for another platform builds, with the InvalidBaseImagePlatform
/// warning naming its line; the check can be skipped or made an error.
#[tokio::test]
async fn a_base_image_of_another_platform_builds_with_buildkit_s_warning() {
    let f = fixture();
    let other = PlatformSpec { os: "linux".into(), architecture: "s390x".into(), variant: None };
    f.registry.seed_image(&reference(BASE), &other, &[("etc/os-release", "ID=test\n")]);
    let (status, reply) = push_build(&f, &format!("FROM {BASE}\nENV foo=bar\n")).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let log = reply["log"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect::<Vec<_>>().join("\n");
    let host = crate::platform::Platform::host();
    let warning = format!(
        "WARNING: InvalidBaseImagePlatform: Base image {BASE} was pulled with platform \"linux/s390x\", expected \
         \"{host}\" for current build (line 1)"
    );
    assert!(log.contains(&warning), "{log}");

    let skipped = format!("# check=skip=InvalidBaseImagePlatform\nFROM {BASE}\nENV foo=bar\n");
    let (status, reply) = push_build(&f, &skipped).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert!(!reply["log"].to_string().contains("InvalidBaseImagePlatform"), "{reply}");

    let strict = format!("# check=error=true\nFROM {BASE}\nENV foo=bar\n");
    let (status, reply) = push_build(&f, &strict).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("InvalidBaseImagePlatform"), "{reply}");
}

/// Builds `dockerfile` for the host and linux/s390x on a base image that
/// has only the host's platform; the fixture and the log.
async fn multi_platform_log(dockerfile: &str) -> (Fixture, String) {
    let f = fixture();
    f.registry.seed_image(&reference(BASE), &host(), &[("etc/os-release", "ID=test\n")]);
    let host = crate::platform::Platform::host();
    let config = json!({"image": TARGET, "platforms": [host.to_string(), "linux/s390x"]});
    let (status, reply) = send_json(app(f.state.clone()), signed(request(config, dockerfile))).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let log = reply["log"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect::<Vec<_>>().join("\n");
    (f, log)
}

/// The case of the same check: a multi-platform build whose base
/// image has one platform builds every platform from it, with the warning
/// for each platform the image is not.
#[tokio::test]
async fn a_multi_platform_build_on_a_single_platform_base_warns_per_platform() {
    let (f, log) = multi_platform_log(&format!("FROM {BASE}\nENV foo=bar\n")).await;
    let host = crate::platform::Platform::host();
    let warning = format!(
        "InvalidBaseImagePlatform: Base image {BASE} was pulled with platform \"{host}\", expected \"linux/s390x\" \
         for current build (line 1)"
    );
    assert_eq!(log.matches(&warning).count(), 1, "{log}");
    assert_eq!(log.matches("InvalidBaseImagePlatform").count(), 1, "the host platform matches: {log}");
    assert!(f.registry.manifest(&reference(TARGET)).is_some(), "the index is pushed");
}

/// A check that fires the same way for every platform (UndefinedVar) is
/// logged once, not once per platform.
#[tokio::test]
async fn a_multi_platform_build_logs_each_check_warning_once() {
    let (_, log) = multi_platform_log(&format!("FROM {BASE}\nENV foo=$nope\n")).await;
    assert_eq!(log.matches("UndefinedVar: Usage of undefined variable '$nope'").count(), 1, "{log}");
}
