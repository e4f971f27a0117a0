//! SLSA provenance v1 (<https://slsa.dev/spec/v1.0/provenance>) for one
//! image, in an in-toto Statement v1. The build type is documented in
//! `docs/supply-chain.md`.

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// The in-toto Statement type.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// SLSA provenance v1's predicate type.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// kiln's build type: what its external and internal parameters mean.
pub const BUILD_TYPE: &str =
    "https://github.com/kiln-builder/kiln/blob/main/docs/supply-chain.md#buildtype-dockerfile-v1";

/// How much the provenance says (`--provenance`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// None is made.
    Off,
    /// Inputs, parameters and builder.
    #[default]
    Min,
    /// Also the op graph and each step's cache hit.
    Max,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "off" | "false" | "0" => Ok(Mode::Off),
            "min" | "true" | "1" => Ok(Mode::Min),
            "max" => Ok(Mode::Max),
            other => Err(format!("--provenance must be off, min or max, not {other:?}")),
        }
    }
}

/// An input the build resolved: an image, a download, a Git commit, the
/// context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// Where it is (`pkg:docker/…`, an URL, `git+…`).
    pub uri: String,
    /// Algorithm → hex (`sha256`, `gitCommit`, …).
    pub digest: BTreeMap<String, String>,
    /// What it was to the build (`context`, `base image`, …).
    pub name: Option<String>,
}

impl Dependency {
    /// A dependency with one digest.
    pub fn new(uri: impl Into<String>, algorithm: &str, hex: &str, name: Option<&str>) -> Self {
        Dependency {
            uri: uri.into(),
            digest: [(algorithm.to_string(), hex.to_string())].into(),
            name: name.map(str::to_string),
        }
    }

    fn to_json(&self) -> Value {
        let mut v = json!({"uri": self.uri, "digest": self.digest});
        if let Some(name) = &self.name {
            v["name"] = json!(name);
        }
        v
    }
}

/// One step, for `max`.
#[derive(Debug, Clone)]
pub struct StepRun {
    /// The instruction's text.
    pub name: String,
    /// Its Dockerfile line.
    pub line: Option<usize>,
    /// Its op digest.
    pub op: String,
    /// Served from the cache.
    pub cached: bool,
}

/// Everything the provenance of one image says.
pub struct ProvenanceInput<'a> {
    /// The image as pushed (`registry/repo:tag`).
    pub image: &'a str,
    /// Its manifest digest (`sha256:…`).
    pub digest: &'a str,
    /// This image's platform.
    pub platform: &'a str,
    /// Every platform the request asked for.
    pub platforms: &'a [String],
    /// Dockerfile path in the context and its digest.
    pub dockerfile: (&'a str, &'a str),
    /// `--target`.
    pub target: Option<&'a str>,
    /// Build args; credential-like ones already redacted by the caller.
    pub build_args: &'a BTreeMap<String, String>,
    /// The build secrets the Dockerfile mounts: id, and whether the build
    /// may run without it (never their values).
    pub secrets: &'a [(String, bool)],
    /// Settings of the builder that change the output.
    pub internal: Map<String, Value>,
    /// The context, images, downloads and commits.
    pub dependencies: &'a [Dependency],
    /// `builder.id`, and the version map.
    pub builder: (&'a str, BTreeMap<String, String>),
    /// The request id (the audit record's).
    pub invocation_id: &'a str,
    /// RFC 3339 start and end.
    pub started: &'a str,
    /// RFC 3339 end.
    pub finished: &'a str,
    /// The steps, reported with `max`.
    pub steps: Option<&'a [StepRun]>,
    /// The Dockerfile's bytes, recorded with `max`.
    pub dockerfile_source: Option<&'a [u8]>,
}

fn external_parameters(p: &ProvenanceInput<'_>) -> Value {
    let (path, digest) = p.dockerfile;
    let mut ext = json!({
        "image": p.image,
        "dockerfile": {"path": path, "digest": {"sha256": digest.trim_start_matches("sha256:")}},
        "platforms": p.platforms,
        "buildArgs": p.build_args,
        "secrets": p.secrets.iter().map(|(id, optional)| json!({"id": id, "optional": optional})).collect::<Vec<_>>(),
    });
    if let Some(target) = p.target {
        ext["target"] = json!(target);
    }
    ext
}

/// The statement.
pub fn statement(p: &ProvenanceInput<'_>) -> Value {
    let mut run_details = json!({
        "builder": {"id": p.builder.0, "version": p.builder.1},
        "metadata": {"invocationId": p.invocation_id, "startedOn": p.started, "finishedOn": p.finished},
    });
    let mut byproducts = Vec::new();
    if let Some(steps) = p.steps {
        let steps: Vec<Value> =
            steps.iter().map(|s| json!({"name": s.name, "line": s.line, "op": s.op, "cached": s.cached})).collect();
        let content = serde_json::to_vec(&steps).expect("steps serialize");
        byproducts.push(json!({
            "name": "steps",
            "mediaType": "application/json",
            "digest": {"sha256": kiln_snapshotter::Digest::of(&content).hex()},
            "annotations": {"steps": steps},
        }));
    }
    if let Some(source) = p.dockerfile_source {
        use base64::Engine;
        byproducts.push(json!({
            "name": p.dockerfile.0,
            "mediaType": "text/x-dockerfile",
            "digest": {"sha256": kiln_snapshotter::Digest::of(source).hex()},
            "content": base64::engine::general_purpose::STANDARD.encode(source),
        }));
    }
    if !byproducts.is_empty() {
        run_details["byproducts"] = json!(byproducts);
    }
    json!({
        "_type": STATEMENT_TYPE,
        "subject": [{"name": p.image, "digest": {"sha256": p.digest.trim_start_matches("sha256:")}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": external_parameters(p),
                "internalParameters": {"platform": p.platform, "settings": p.internal},
                "resolvedDependencies": p.dependencies.iter().map(Dependency::to_json).collect::<Vec<_>>(),
            },
            "runDetails": run_details,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_subject_inputs_and_builder() {
        let deps = [
            Dependency::new("kiln-context:", "sha256", "cc", Some("context")),
            Dependency::new("pkg:docker/r.io/debian@bookworm", "sha256", "bb", Some("base image")),
        ];
        let args = [("VERSION".to_string(), "1".to_string())].into();
        let steps = [StepRun { name: "RUN x".into(), line: Some(2), op: "sha256:op".into(), cached: true }];
        let p = ProvenanceInput {
            image: "r.io/fn:1",
            digest: "sha256:aa",
            platform: "linux/amd64",
            platforms: &["linux/amd64".into()],
            dockerfile: ("Dockerfile", "sha256:dd"),
            target: None,
            build_args: &args,
            secrets: &[("npmrc".into(), true)],
            internal: Map::new(),
            dependencies: &deps,
            builder: ("pkg:generic/kiln@0.1.0", BTreeMap::new()),
            invocation_id: "req-1",
            started: "2026-01-01T00:00:00Z",
            finished: "2026-01-01T00:00:01Z",
            steps: Some(&steps),
            dockerfile_source: Some(b"FROM x\n"),
        };
        let s = statement(&p);
        assert_eq!(s["subject"][0]["digest"]["sha256"], "aa");
        let def = &s["predicate"]["buildDefinition"];
        assert_eq!(def["externalParameters"]["dockerfile"]["digest"]["sha256"], "dd");
        assert_eq!(def["resolvedDependencies"][1]["digest"]["sha256"], "bb");
        assert_eq!(s["predicate"]["runDetails"]["metadata"]["invocationId"], "req-1");
        assert_eq!(s["predicate"]["runDetails"]["byproducts"][0]["annotations"]["steps"][0]["cached"], true);
        assert_eq!(s["predicate"]["runDetails"]["byproducts"][1]["content"], "RlJPTSB4Cg==");
        assert_eq!(def["externalParameters"]["secrets"], json!([{"id": "npmrc", "optional": true}]));
        assert!("max".parse::<Mode>().is_ok() && "most".parse::<Mode>().is_err());
    }
}
