//! The evidence kiln attaches to every image it pushes: SLSA provenance
//! and an SPDX SBOM as OCI artifacts about the image manifest (DSSE
//! envelopes when a signing key is configured), and a sigstore signature
//! of the manifest. See `docs/supply-chain.md`.

pub use super::attached::{Attached, Evidence, EvidenceInputs, ImageFacts};
use super::failure::{emit, export_failure, fail, BuildFailure};
use super::image::SharedBuild;
use crate::attest::provenance::{self, Dependency, Mode, ProvenanceInput, StepRun};
use crate::attest::sbom::{self, spdx};
use crate::attest::{sign, simplesign, Envelope, SigningKey};
use crate::exporter::attach::{attach, Artifact, Subject};
use crate::exporter::docker_attest;
use crate::oci::Descriptor;
use crate::platform::Platform;
use crate::solver::Bases;
use base64::Engine;
use kiln_snapshotter::conformance::MemoryStore;
use kiln_snapshotter::Store;
use std::collections::BTreeMap;

pub use crate::attest::{DSSE_MEDIA_TYPE, PREDICATE_ANNOTATION, PROVENANCE_ARTIFACT, SBOM_ARTIFACT};

fn in_toto_artifact(key: Option<&SigningKey>, artifact_type: &str, statement: &serde_json::Value) -> Artifact {
    let predicate = statement["predicateType"].as_str().unwrap_or_default().to_string();
    let body = serde_json::to_vec(statement).expect("statement serializes");
    let (media_type, content) = match key {
        Some(key) => {
            let envelope = Envelope::sign(key, sign::IN_TOTO_PAYLOAD_TYPE, &body);
            (DSSE_MEDIA_TYPE, serde_json::to_vec(&envelope).expect("envelope serializes"))
        }
        None => (sign::IN_TOTO_PAYLOAD_TYPE, body),
    };
    Artifact {
        artifact_type: artifact_type.to_string(),
        media_type: media_type.to_string(),
        content,
        annotations: [(PREDICATE_ANNOTATION.to_string(), predicate)].into(),
    }
}

/// An image as BuildKit's provenance names it: `pkg:docker/<familiar
/// name>@<tag>?platform=<os%2Farch>` (`digest=` qualifier when pinned).
pub fn docker_purl(reference: &crate::registry::Reference, platform: &Platform) -> String {
    let repository = match reference.registry.as_str() {
        "docker.io" => reference.repository.strip_prefix("library/").unwrap_or(&reference.repository).to_string(),
        registry => format!("{registry}/{}", reference.repository),
    };
    let mut qualifiers = Vec::new();
    if let Some(d) = &reference.digest {
        qualifiers.push(format!("digest={}", d.replace(':', "%3A")));
    }
    qualifiers.push(format!("platform={}", platform.to_string().replace('/', "%2F")));
    let version = match (&reference.tag, &reference.digest) {
        (Some(tag), _) => format!("@{tag}"),
        (None, Some(_)) => String::new(),
        (None, None) => "@latest".to_string(),
    };
    format!("pkg:docker/{repository}{version}?{}", qualifiers.join("&"))
}

/// The base images, sorted by reference, deduplicated.
fn base_list(bases: &Bases) -> Vec<(String, String)> {
    let mut list: Vec<(String, String)> =
        bases.values().map(|(r, res)| (r.to_string(), res.digest.to_string())).collect();
    list.sort();
    list.dedup();
    list
}

impl SharedBuild<'_> {
    /// Where documents that are only pushed are written: `scratch` (no
    /// file, no sync), unless this server serves its images itself, which
    /// keeps everything it pushed.
    fn documents_store<'s>(&'s self, scratch: &'s MemoryStore) -> &'s dyn Store {
        match self.state.cfg.serve_images {
            true => self.state.worker.store(),
            false => scratch,
        }
    }

    /// Whether this build attaches anything.
    pub fn attests(&self) -> bool {
        let cfg = &self.state.cfg;
        self.push && (cfg.provenance != Mode::Off || cfg.sbom || self.state.signing_key.is_some())
    }

    /// Makes, signs and attaches one platform image's evidence; with
    /// BuildKit's layout also its attestation manifest (the index entry).
    pub async fn attest(&self, facts: &ImageFacts<'_>) -> Result<(Attached, Option<Descriptor>), BuildFailure> {
        if !self.attests() {
            return Ok((Attached::default(), None));
        }
        let (state, target) = (self.state, self.target);
        let key = state.signing_key.as_deref();
        let subject = Subject {
            digest: facts.exported.manifest.clone(),
            size: facts.exported.manifest_size,
            media_type: crate::oci::MediaType::OCI_MANIFEST.into(),
            unseen: facts.exported.unseen,
        };
        let refer = |d: &kiln_snapshotter::Digest| format!("{}/{}@{d}", target.registry, target.repository);
        let mut attached = Attached::default();
        let mut statements = Vec::new();
        let scratch = MemoryStore::default();
        let (store, registry) = (self.documents_store(&scratch), state.worker.registry());
        if state.cfg.sbom {
            statements.push((SBOM_ARTIFACT, self.sbom_statement(facts).await?));
        }
        if state.cfg.provenance != Mode::Off {
            self.warn_redacted_args();
            statements.push((PROVENANCE_ARTIFACT, self.provenance_statement(facts)));
        }
        let artifacts: Vec<Artifact> = crate::blocking::in_place(|| {
            statements.iter().map(|(kind, statement)| in_toto_artifact(key, kind, statement)).collect()
        });
        // The documents and the signature go up at the same time.
        let documents = attach(store, registry, target, &subject, &artifacts, true);
        let signature = async {
            match key {
                Some(key) => self.sign(key, &subject).await.map(Some),
                None => Ok(None),
            }
        };
        let (documents, signature) = futures_util::future::join(documents, signature).await;
        for ((kind, _), d) in statements.iter().zip(documents.map_err(export_failure)?) {
            let slot = if *kind == SBOM_ARTIFACT { &mut attached.sbom } else { &mut attached.provenance };
            let what = if *kind == SBOM_ARTIFACT { "SBOM" } else { "provenance" };
            emit(self.log, format!("attaching {what} {d}"));
            *slot = Some(refer(&d));
        }
        attached.signature = signature?.map(|d| refer(&d));
        let statements: Vec<serde_json::Value> = statements.into_iter().map(|(_, s)| s).collect();
        let entry = match state.cfg.docker_attestations && !statements.is_empty() {
            true => Some(self.docker_attestation(&subject.digest, &statements).await?),
            false => None,
        };
        Ok((attached, entry))
    }

    /// Warns about the build args whose values the provenance leaves out.
    fn warn_redacted_args(&self) {
        let (_, redacted) = recorded_build_args(&self.intake.config.build_args.clone().unwrap_or_default());
        for name in redacted {
            self.warn(format!(
                "WARNING: build arg {name:?} looks like a secret: its value is left out of the provenance (pass \
                 secrets as build secrets, RUN --mount=type=secret)"
            ));
        }
    }

    /// BuildKit's attestation manifest for `image`, pushed by digest.
    async fn docker_attestation(
        &self,
        image: &kiln_snapshotter::Digest,
        statements: &[serde_json::Value],
    ) -> Result<Descriptor, BuildFailure> {
        let bytes: Vec<(Vec<u8>, String)> = statements
            .iter()
            .map(|s| {
                let predicate = s["predicateType"].as_str().unwrap_or_default().to_string();
                (serde_json::to_vec(s).expect("statement serializes"), predicate)
            })
            .collect();
        let statements: Vec<docker_attest::Statement<'_>> =
            bytes.iter().map(|(b, p)| docker_attest::Statement { bytes: b, predicate_type: p }).collect();
        let (store, registry) = (self.state.worker.store(), self.state.worker.registry());
        let entry = docker_attest::attestation_manifest(store, registry, self.target, image, &statements, true)
            .await
            .map_err(export_failure)?;
        emit(self.log, format!("attaching attestation manifest {} (BuildKit layout)", entry.digest));
        Ok(entry)
    }

    /// Signs `subject` as pushed under the target's reference.
    pub async fn sign(&self, key: &SigningKey, subject: &Subject) -> Result<kiln_snapshotter::Digest, BuildFailure> {
        let payload = simplesign::payload(&self.target.to_string(), subject.digest.as_str());
        let signature = base64::engine::general_purpose::STANDARD.encode(key.sign(&payload));
        let scratch = MemoryStore::default();
        let (store, registry) = (self.documents_store(&scratch), self.state.worker.registry());
        let d = crate::exporter::signature::push_signature(store, registry, self.target, subject, &payload, &signature)
            .await
            .map_err(export_failure)?;
        emit(self.log, format!("signing {}@{} (signature {d})", self.target, subject.digest));
        Ok(d)
    }

    /// The SBOM statement: the layers' inventories (scanned once per
    /// layer, off the async threads) merged into an SPDX document.
    async fn sbom_statement(&self, facts: &ImageFacts<'_>) -> Result<serde_json::Value, BuildFailure> {
        let (inventories, scanned) = (self.state.worker.layer_inventories(facts.layers, self.cache).await)
            .map_err(|e| fail(e.kind(), format!("SBOM: {e}")))?;
        // Thousands of packages make a document of megabytes.
        let inventory = crate::blocking::in_place(|| sbom::merge(&inventories));
        emit(
            self.log,
            format!(
                "[internal] SBOM: {} packages ({} of {} layers scanned, the rest cached)",
                inventory.packages.len(),
                scanned,
                inventories.len()
            ),
        );
        let (name, digest, platform) =
            (self.target.to_string(), facts.exported.manifest.to_string(), facts.platform.to_string());
        let created = crate::timefmt::rfc3339(facts.epoch.unwrap_or(self.evidence.started));
        let bases = base_list(facts.bases);
        let base_refs: Vec<spdx::BaseImage<'_>> =
            bases.iter().map(|(r, d)| spdx::BaseImage { reference: r, digest: d }).collect();
        let subject = spdx::Subject { name: &name, digest: &digest, platform: &platform, created: &created };
        let document = crate::blocking::in_place(|| spdx::document(&subject, &inventory, &base_refs));
        Ok(crate::attest::sbom_statement(&name, &digest, document))
    }
}

/// The build args as provenance records them: credential-like names keep
/// their name, never their value.
pub fn recorded_build_args(args: &BTreeMap<String, String>) -> (BTreeMap<String, String>, Vec<String>) {
    let mut redacted = Vec::new();
    let recorded = args
        .iter()
        .map(|(k, v)| {
            if crate::frontend::lint::credential_like(k) {
                redacted.push(k.clone());
                (k.clone(), "<redacted>".to_string())
            } else {
                (k.clone(), v.clone())
            }
        })
        .collect();
    (recorded, redacted)
}

/// The build secrets the target's steps mount, as BuildKit records them:
/// id, and whether the build runs without it (`required=false`).
fn secret_mounts(lowered: &crate::frontend::Lowered) -> Vec<(String, bool)> {
    let nodes = lowered.root.map(|r| lowered.definition.ancestry(r)).unwrap_or_default();
    let mut found: BTreeMap<String, bool> = BTreeMap::new();
    for id in nodes {
        if let crate::graph::Op::Exec(e) = &lowered.definition.nodes[id].op {
            for s in &e.secrets {
                let optional = found.get(&s.id).copied().unwrap_or(true) && !s.required;
                found.insert(s.id.clone(), optional);
            }
        }
    }
    found.into_iter().collect()
}

/// The provenance's resolved dependencies.
fn dependencies(context: Option<&str>, facts: &ImageFacts<'_>) -> Vec<Dependency> {
    let mut deps = Vec::new();
    if let Some(c) = context {
        deps.push(Dependency::new("kiln:context", "sha256", c.trim_start_matches("sha256:"), Some("context")));
    }
    let mut images: Vec<_> =
        facts.bases.values().map(|(r, res)| (docker_purl(r, facts.platform), res.digest.clone())).collect();
    images.sort();
    images.dedup();
    for (uri, digest) in images {
        deps.push(Dependency::new(uri, "sha256", digest.hex(), Some("image")));
    }
    for (url, resolved) in &facts.solved.remotes {
        let dep = match resolved.strip_prefix("git:") {
            // SLSA's `gitCommit`, and BuildKit's object-format key.
            Some(commit) => {
                let mut dep = Dependency::new(url.clone(), "gitCommit", commit, Some("git"));
                let format = if commit.len() == 64 { "sha256" } else { "sha1" };
                dep.digest.insert(format.to_string(), commit.to_string());
                dep
            }
            None => {
                let (alg, hex) = resolved.split_once(':').unwrap_or(("sha256", resolved));
                Dependency::new(url.clone(), alg, hex, Some("download"))
            }
        };
        if !deps.contains(&dep) {
            deps.push(dep);
        }
    }
    deps
}

impl SharedBuild<'_> {
    /// The provenance statement of one platform image.
    fn provenance_statement(&self, facts: &ImageFacts<'_>) -> serde_json::Value {
        let state = self.state;
        let config = &self.intake.config;
        let (args, _) = recorded_build_args(&config.build_args.clone().unwrap_or_default());
        let secrets = secret_mounts(facts.lowered);
        let dockerfile_digest = self.intake.dockerfile.as_ref().map(|d| kiln_snapshotter::Digest::of(d).to_string());
        let dockerfile_digest = dockerfile_digest.unwrap_or_default();
        let mut internal = serde_json::Map::new();
        internal.insert("compression".into(), serde_json::json!(state.cfg.layer_compression));
        internal.insert("sourceDateEpoch".into(), serde_json::json!(facts.epoch));
        internal.insert("cacheKeyVersion".into(), serde_json::json!(crate::solver::CACHE_KEY_VERSION));
        let deps = dependencies(self.evidence.context_digest.as_deref(), facts);
        let steps: Vec<StepRun> = if state.cfg.provenance == Mode::Max { self.step_runs(facts) } else { Vec::new() };
        let image = self.target.to_string();
        let digest = facts.exported.manifest.to_string();
        let platform = facts.platform.to_string();
        let platforms = config.platforms.clone().unwrap_or_else(|| vec![platform.clone()]);
        let (started, finished) = (crate::timefmt::rfc3339(self.evidence.started), crate::timefmt::now());
        let builder_version = [
            ("kiln".to_string(), env!("CARGO_PKG_VERSION").to_string()),
            ("binary".to_string(), state.cfg.builder_digest.clone()),
        ]
        .into();
        let builder_id = format!(
            "pkg:generic/kiln@{}?checksum={}",
            env!("CARGO_PKG_VERSION"),
            state.cfg.builder_digest.replace(':', "%3A")
        );
        let input = ProvenanceInput {
            image: &image,
            digest: &digest,
            platform: &platform,
            platforms: &platforms,
            dockerfile: ("Dockerfile", &dockerfile_digest),
            target: config.target.as_deref().filter(|t| !t.trim().is_empty()),
            build_args: &args,
            secrets: &secrets,
            internal,
            dependencies: &deps,
            builder: (&builder_id, builder_version),
            invocation_id: &self.evidence.request_id,
            started: &started,
            finished: &finished,
            steps: (state.cfg.provenance == Mode::Max).then_some(&steps[..]),
            dockerfile_source: match state.cfg.provenance {
                Mode::Max => self.intake.dockerfile.as_deref().ok(),
                _ => None,
            },
        };
        provenance::statement(&input)
    }

    /// Every step of the graph with its op digest and cache outcome.
    fn step_runs(&self, facts: &ImageFacts<'_>) -> Vec<StepRun> {
        let digests = facts.lowered.definition.digests();
        facts
            .solved
            .steps
            .iter()
            .filter_map(|(node, cached)| {
                let n = facts.lowered.definition.nodes.get(*node)?;
                let name = n.source.as_ref().map_or_else(|| format!("step {node}"), |l| l.text.clone());
                let line = n.source.as_ref().map(|l| l.line);
                Some(StepRun { name, line, op: digests[*node].to_string(), cached: *cached })
            })
            .collect()
    }
}
