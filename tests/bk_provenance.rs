//! Ports of BuildKit's provenance tests (`dockerfile_provenance_test.go`)
//! that apply to kiln: the same image and attestation layout with
//! `--docker-attestations` (attestation manifests in the index, platform
//! `unknown/unknown`, `vnd.docker.reference.*`), the same resolved
//! dependencies (`pkg:docker/<name>@<tag>?platform=…`, Git commits under
//! their object format), and `max`'s steps and Dockerfile source. kiln's
//! own build type and parameters replace BuildKit's (docs/supply-chain.md).

mod support;

use serde_json::{json, Value};
use std::collections::BTreeSet;
use support::*;

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const SLSA1: &str = "https://slsa.dev/provenance/v1";

fn docker_layout_server(mode: &str, extra: &[String]) -> Server {
    let mut args = vec!["--docker-attestations".to_string(), format!("--provenance={mode}")];
    args.extend(extra.iter().cloned());
    Server::start(ServerOptions { args, ..Default::default() })
}

fn repo_of(image: &str) -> String {
    image.rsplit_once(':').unwrap().0.split_once('/').unwrap().1.to_string()
}

/// The image index the tag names.
fn index_of(image: &str) -> Value {
    let tag = image.rsplit_once(':').unwrap().1;
    serde_json::from_slice(&registry_get(&format!("{}/manifests/{tag}", repo_of(image)), OCI_INDEX)).unwrap()
}

fn platform_of(entry: &Value) -> String {
    format!("{}/{}", entry["platform"]["os"].as_str().unwrap(), entry["platform"]["architecture"].as_str().unwrap())
}

/// The index entry for `platform` and its attestation manifest's statement
/// of `predicate_type`.
fn attestation(image: &str, index: &Value, platform: &str, predicate_type: &str) -> (Value, Value) {
    let entries = index["manifests"].as_array().unwrap();
    let img = entries.iter().find(|m| platform_of(m) == platform).unwrap_or_else(|| panic!("no {platform}: {index}"));
    let att = entries
        .iter()
        .find(|m| m["annotations"]["vnd.docker.reference.digest"] == img["digest"])
        .unwrap_or_else(|| panic!("no attestation manifest for {platform}: {index}"));
    assert_eq!(platform_of(att), "unknown/unknown");
    assert_eq!(att["annotations"]["vnd.docker.reference.type"], "attestation-manifest");
    let repo = repo_of(image);
    let manifest: Value = serde_json::from_slice(&registry_get(
        &format!("{repo}/manifests/{}", att["digest"].as_str().unwrap()),
        OCI_MANIFEST,
    ))
    .unwrap();
    let layer = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["annotations"]["in-toto.io/predicate-type"] == predicate_type)
        .unwrap_or_else(|| panic!("no {predicate_type} layer: {manifest}"));
    assert_eq!(layer["mediaType"], "application/vnd.in-toto+json");
    let statement =
        serde_json::from_slice(&registry_get(&format!("{repo}/blobs/{}", layer["digest"].as_str().unwrap()), "*/*"));
    (img.clone(), statement.unwrap())
}

fn build(server: &Server, image: &str, files: &[(&str, &[u8])], config: Value) -> Value {
    let mut config = config;
    config["image"] = json!(image);
    let (status, reply) = server.build(&request_tar(&config, files));
    assert_success(status, &reply);
    reply
}

fn host_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    format!("linux/{arch}")
}

fn secs(rfc3339: &str) -> i64 {
    let out = std::process::Command::new("date").args(["-u", "-d", rfc3339, "+%s"]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().parse().unwrap()
}

/// testProvenanceAttestation (v1; kiln writes no v0.2), min and max.
#[test]
fn provenance_attestation_min_and_max_in_the_docker_layout() {
    let dockerfile = format!("FROM {}/busybox:latest\nRUN echo \"ok\" > /foo\n", registry());
    for mode in ["min", "max"] {
        let server = docker_layout_server(mode, &[]);
        let image = test_image(&format!("buildkit/testwithprovenance-{mode}"));
        let reply =
            build(&server, &image, &[("Dockerfile", dockerfile.as_bytes())], json!({"buildArgs": {"FOO": "bar"}}));
        let index = index_of(&image);
        assert_eq!(reply["digest"], index_digest(&image), "the tag names the index");
        assert_eq!(index["manifests"].as_array().unwrap().len(), 2, "image and attestation manifest: {index}");
        let platform = host_platform();
        let (img, statement) = attestation(&image, &index, &platform, SLSA1);
        let files = unpack_image(&image, None);
        assert_eq!(std::fs::read_to_string(files.rootfs.join("foo")).unwrap(), "ok\n");
        assert_eq!(statement["_type"], "https://in-toto.io/Statement/v1");
        assert_eq!(statement["predicateType"], SLSA1);
        assert_eq!(
            statement["subject"][0]["digest"]["sha256"],
            img["digest"].as_str().unwrap().trim_start_matches("sha256:")
        );
        let pred = &statement["predicate"];
        assert_eq!(pred["buildDefinition"]["externalParameters"]["buildArgs"]["FOO"], "bar");
        assert_eq!(pred["buildDefinition"]["externalParameters"]["dockerfile"]["path"], "Dockerfile");
        let deps = pred["buildDefinition"]["resolvedDependencies"].as_array().unwrap();
        let expected_base =
            format!("pkg:docker/{}/busybox@latest?platform={}", registry(), platform.replace('/', "%2F"));
        let base = deps.iter().find(|d| d["name"] == "image").unwrap();
        assert_eq!(base["uri"], expected_base.as_str());
        assert_eq!(base["digest"]["sha256"].as_str().unwrap().len(), 64);
        let meta = &pred["runDetails"]["metadata"];
        assert!(!meta["invocationId"].as_str().unwrap().is_empty());
        let (started, finished) =
            (secs(meta["startedOn"].as_str().unwrap()), secs(meta["finishedOn"].as_str().unwrap()));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        assert!(started <= finished && now - finished < 300, "{meta}");
        assert_eq!(pred["buildDefinition"]["internalParameters"]["platform"], platform.as_str());
        let byproducts = &pred["runDetails"]["byproducts"];
        match mode {
            "max" => {
                let steps = byproducts[0]["annotations"]["steps"].as_array().unwrap();
                assert_eq!(steps.len(), 2, "FROM and RUN: {steps:?}");
                assert_eq!(byproducts[1]["name"], "Dockerfile");
            }
            _ => assert!(byproducts.is_null(), "min has no steps: {byproducts}"),
        }
    }
}

fn index_digest(image: &str) -> String {
    let tag = image.rsplit_once(':').unwrap().1;
    kiln_snapshotter::Digest::of(&registry_get(&format!("{}/manifests/{tag}", repo_of(image)), OCI_INDEX)).to_string()
}

/// testMultiPlatformProvenance: one attestation manifest per platform.
#[test]
fn multi_platform_provenance() {
    let server = docker_layout_server("max", &[]);
    let image = test_image("buildkit/testmultiprovenance");
    let dockerfile =
        format!("FROM {}/busybox:latest\nARG TARGETARCH\nRUN echo \"ok-$TARGETARCH\" > /foo\n", registry());
    let config = json!({"buildArgs": {"FOO": "bar"}, "platforms": ["linux/amd64", "linux/arm64"]});
    build(&server, &image, &[("Dockerfile", dockerfile.as_bytes())], config);
    let index = index_of(&image);
    assert_eq!(index["manifests"].as_array().unwrap().len(), 4, "{index}");
    for platform in ["linux/amd64", "linux/arm64"] {
        let (_, statement) = attestation(&image, &index, platform, SLSA1);
        let pred = &statement["predicate"];
        let deps = pred["buildDefinition"]["resolvedDependencies"].as_array().unwrap();
        let base = deps.iter().find(|d| d["name"] == "image").unwrap()["uri"].as_str().unwrap().to_string();
        assert!(base.starts_with(&format!("pkg:docker/{}/busybox@latest", registry())), "{base}");
        assert!(base.contains(&platform.replace('/', "%2F")), "{base}");
        assert_eq!(pred["buildDefinition"]["externalParameters"]["buildArgs"]["FOO"], "bar");
        assert_eq!(pred["buildDefinition"]["internalParameters"]["platform"], platform);
    }
    let arm = unpack_image_for(&image, "arm64");
    assert_eq!(std::fs::read_to_string(arm.rootfs.join("foo")).unwrap(), "ok-arm64\n");
}

/// testGitProvenanceAttestationSHA1/SHA256, for kiln's Git source
/// (`ADD <git url>#ref`; kiln's build context is the request's tar): the
/// commit is recorded under its object format, and as SLSA's `gitCommit`.
#[test]
fn git_provenance_sha1_and_sha256() {
    for format in ["sha1", "sha256"] {
        let files = FileServer::start(&format!("kiln-prov-git-{format}"));
        let work = files.dir.join("work");
        std::fs::create_dir_all(&work).unwrap();
        let git = "git -c user.name=t -c user.email=t@example.com";
        let commit = sh(
            &work,
            &format!(
                "git init -q --object-format={format} -b main . && echo git > foo && {git} add foo && \
                 {git} commit -qm one && {git} tag -a v1 -m v1 && git rev-parse HEAD"
            ),
        );
        let commit = commit.trim();
        sh(&files.dir, "git clone -q --bare work repo.git && cd repo.git && git update-server-info");
        let repo = files.url("repo.git");
        let server = docker_layout_server("min", &files.allow());
        let image = test_image(&format!("buildkit/testgitprovenance-{format}"));
        let dockerfile = format!("FROM {}/busybox:latest\nADD {repo}#v1 /src\n", registry());
        build(&server, &image, &[("Dockerfile", dockerfile.as_bytes())], json!({}));
        let (_, statement) = attestation(&image, &index_of(&image), &host_platform(), SLSA1);
        let deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"].as_array().unwrap();
        let git_dep = deps.iter().find(|d| d["name"] == "git").unwrap_or_else(|| panic!("{deps:?}"));
        assert_eq!(git_dep["uri"], format!("{repo}#v1").as_str());
        assert_eq!(git_dep["digest"][format], commit, "{git_dep}");
        assert_eq!(git_dep["digest"]["gitCommit"], commit);
    }
}

/// testSecretSSHProvenance (secrets; kiln has no SSH mounts): the secrets
/// the Dockerfile mounts are named, optional ones as optional, though the
/// request provided none.
#[test]
fn secret_provenance() {
    let server = docker_layout_server("max", &[]);
    let image = test_image("buildkit/testsecretprovenance");
    let dockerfile = format!(
        "FROM {}/busybox:latest\nRUN --mount=type=secret,id=mysecret --mount=type=secret,id=othersecret echo \"ok\" > /foo\n",
        registry()
    );
    build(&server, &image, &[("Dockerfile", dockerfile.as_bytes())], json!({}));
    let (_, statement) = attestation(&image, &index_of(&image), &host_platform(), SLSA1);
    let secrets = &statement["predicate"]["buildDefinition"]["externalParameters"]["secrets"];
    assert_eq!(secrets, &json!([{"id": "mysecret", "optional": true}, {"id": "othersecret", "optional": true}]));
}

/// testNilProvenance: an image with no layer from a registry still gets
/// max provenance.
#[test]
fn nil_provenance() {
    let server = docker_layout_server("max", &[]);
    let image = test_image("buildkit/testnilprovenance");
    build(&server, &image, &[("Dockerfile", b"FROM scratch\nENV FOO=bar\n")], json!({}));
    let (_, statement) = attestation(&image, &index_of(&image), &host_platform(), SLSA1);
    let deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"].as_array().unwrap();
    assert!(deps.iter().all(|d| d["name"] != "image"), "{deps:?}");
}

/// testDuplicatePlatformProvenance: a platform asked for twice builds once.
#[test]
fn duplicate_platform_provenance() {
    let server = docker_layout_server("max", &[]);
    let image = test_image("buildkit/testduplicateplatform");
    let dockerfile = format!("FROM {}/busybox:latest AS base-linux\nFROM base-$TARGETOS\n", registry());
    let config = json!({"platforms": ["linux/amd64", "linux/amd64"]});
    build(&server, &image, &[("Dockerfile", dockerfile.as_bytes())], config);
    let index = index_of(&image);
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2, "one image, one attestation: {index}");
}

/// testCommandSourceMapping: every step of max provenance maps to one
/// Dockerfile line, and every line is covered.
#[test]
fn command_source_mapping() {
    let server = docker_layout_server("max", &[]);
    let image = test_image("buildkit/testsourcemapping");
    let dockerfile = format!(
        "FROM {}/busybox:latest\nRUN echo \"hello\" > foo\nCOPY foo foo2\nCOPY --link foo foo3\nADD bar bar",
        registry()
    );
    let files = [("Dockerfile", dockerfile.as_bytes()), ("foo", b"data".as_slice()), ("bar", b"data2".as_slice())];
    build(&server, &image, &files, json!({}));
    let (_, statement) = attestation(&image, &index_of(&image), &host_platform(), SLSA1);
    let steps =
        statement["predicate"]["runDetails"]["byproducts"][0]["annotations"]["steps"].as_array().unwrap().clone();
    let ops: BTreeSet<&str> = steps.iter().map(|s| s["op"].as_str().unwrap()).collect();
    assert_eq!(ops.len(), steps.len(), "each step once: {steps:?}");
    let lines: BTreeSet<u64> = steps.iter().map(|s| s["line"].as_u64().expect("every step has its line")).collect();
    let count = dockerfile.lines().count() as u64;
    assert_eq!(lines, (1..=count).collect(), "every line covered: {steps:?}");
}

/// testFrontendDeduplicateSources: a multi-stage Dockerfile is recorded
/// once, whole.
#[test]
fn the_dockerfile_source_is_recorded_once() {
    let server = docker_layout_server("max", &[]);
    let image = test_image("buildkit/testdedupesources");
    let dockerfile =
        format!("FROM {}/busybox:latest as base\nCOPY foo foo2\n\nFROM base AS linked\nCOPY bar bar2\n", registry());
    let files = [("Dockerfile", dockerfile.as_bytes()), ("foo", b"data".as_slice()), ("bar", b"data2".as_slice())];
    build(&server, &image, &files, json!({}));
    let (_, statement) = attestation(&image, &index_of(&image), &host_platform(), SLSA1);
    let byproducts = statement["predicate"]["runDetails"]["byproducts"].as_array().unwrap();
    let sources: Vec<&Value> = byproducts.iter().filter(|b| b["mediaType"] == "text/x-dockerfile").collect();
    assert_eq!(sources.len(), 1, "{byproducts:?}");
    assert_eq!(sources[0]["name"], "Dockerfile");
    use base64::Engine;
    let content = base64::engine::general_purpose::STANDARD.decode(sources[0]["content"].as_str().unwrap()).unwrap();
    assert_eq!(content, dockerfile.as_bytes());
}

/// testDuplicateLayersProvenance: in a diamond (two stages from one base)
/// the base step is listed once.
#[test]
fn a_shared_base_step_is_listed_once() {
    let server = docker_layout_server("max", &[]);
    let image = test_image("buildkit/testduplicatelayers");
    let dockerfile = format!(
        "FROM {}/busybox:latest AS base\nRUN echo base > /base\n\nFROM base AS a\nRUN echo a > /a\n\n\
         FROM base AS b\nRUN echo b > /b\n\nFROM base\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n",
        registry()
    );
    build(&server, &image, &[("Dockerfile", dockerfile.as_bytes())], json!({}));
    let (_, statement) = attestation(&image, &index_of(&image), &host_platform(), SLSA1);
    let steps =
        statement["predicate"]["runDetails"]["byproducts"][0]["annotations"]["steps"].as_array().unwrap().clone();
    let base_runs = steps.iter().filter(|s| s["name"] == "RUN echo base > /base").count();
    assert_eq!(base_runs, 1, "{steps:?}");
    let ops: BTreeSet<&str> = steps.iter().map(|s| s["op"].as_str().unwrap()).collect();
    assert_eq!(ops.len(), steps.len(), "{steps:?}");
}
