//! The attestations about a manifest: found through its referrers,
//! opened (DSSE envelopes checked against the key), and their subject
//! checked against the manifest.

use super::{blob, failed, VerifyError};
use crate::attest::provenance::PREDICATE_TYPE;
use crate::attest::{Envelope, PublicKey, SPDX_PREDICATE_TYPE};
use crate::exporter::attach::referrers;
use crate::oci::{Descriptor, ImageManifest};
use crate::registry::{Reference, Registry};
use kiln_snapshotter::content::Store;
use kiln_snapshotter::Digest;

/// A verified in-toto statement.
#[derive(Debug, Clone)]
pub struct Attestation {
    /// The artifact manifest's digest.
    pub artifact: String,
    /// The statement.
    pub statement: serde_json::Value,
    /// Whether a DSSE signature by the key covered it.
    pub signed: bool,
}

/// Opens an attestation layer: a DSSE envelope (checked against `key`
/// when one is given) or a bare statement (refused when a key is given).
fn open(bytes: &[u8], media_type: &str, key: Option<&PublicKey>) -> Result<(serde_json::Value, bool), VerifyError> {
    let (payload, signed) = if media_type == crate::attest::DSSE_MEDIA_TYPE {
        let envelope: Envelope = serde_json::from_slice(bytes).map_err(|e| failed(format!("DSSE envelope: {e}")))?;
        match key {
            Some(k) => {
                let payload =
                    envelope.verified_payload(k).ok_or_else(|| failed("an attestation is not signed by the key"))?;
                (payload, true)
            }
            None => (envelope.payload().ok_or_else(|| failed("DSSE payload is not base64"))?, false),
        }
    } else if key.is_some() {
        return Err(failed("an attestation is unsigned, but a key was given"));
    } else {
        (bytes.to_vec(), false)
    };
    let statement = serde_json::from_slice(&payload).map_err(|e| failed(format!("statement: {e}")))?;
    Ok((statement, signed))
}

/// Whether the statement's subject is `manifest`.
fn about(statement: &serde_json::Value, manifest: &Digest) -> bool {
    statement["subject"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| s["digest"]["sha256"].as_str() == Some(manifest.hex()))
}

async fn read(
    registry: &dyn Registry,
    store: &dyn Store,
    image: &Reference,
    entry: &Descriptor,
    manifest: &Digest,
    key: Option<&PublicKey>,
) -> Result<Attestation, VerifyError> {
    let (_, _, bytes) = registry.get_manifest(&image.with_digest(&entry.digest)).await?;
    let artifact: ImageManifest =
        serde_json::from_slice(&bytes).map_err(|e| failed(format!("artifact manifest: {e}")))?;
    if artifact.subject.as_ref().map(|s| s.digest.as_str()) != Some(manifest.as_str()) {
        return Err(failed(format!("artifact {} is about another manifest", entry.digest)));
    }
    let layer = artifact.layers.first().ok_or_else(|| failed(format!("artifact {} is empty", entry.digest)))?;
    let content = blob(registry, store, image, layer).await?;
    let (statement, signed) = open(&content, &layer.media_type, key)?;
    if !about(&statement, manifest) {
        return Err(failed(format!("the statement in {} names another subject than {manifest}", entry.digest)));
    }
    Ok(Attestation { artifact: entry.digest.clone(), statement, signed })
}

/// The provenance and SBOM attached to `manifest`.
pub(super) async fn attestations(
    registry: &dyn Registry,
    store: &dyn Store,
    image: &Reference,
    manifest: &Digest,
    key: Option<&PublicKey>,
) -> Result<(Option<Attestation>, Option<Attestation>), VerifyError> {
    let (mut provenance, mut sbom) = (None, None);
    for entry in referrers(registry, image, manifest).await? {
        let predicate = entry.annotations.as_ref().and_then(|a| a.get(crate::attest::PREDICATE_ANNOTATION));
        let slot = match predicate.map(String::as_str) {
            Some(PREDICATE_TYPE) => &mut provenance,
            Some(SPDX_PREDICATE_TYPE) => &mut sbom,
            _ => continue,
        };
        *slot = Some(read(registry, store, image, &entry, manifest, key).await?);
    }
    Ok((provenance, sbom))
}

/// The provenance's inputs as lines to print.
pub fn inputs_of(statement: &serde_json::Value) -> Vec<String> {
    let def = &statement["predicate"]["buildDefinition"];
    let run = &statement["predicate"]["runDetails"];
    let mut out = vec![
        format!("builder: {}", run["builder"]["id"].as_str().unwrap_or("?")),
        format!("invocation: {}", run["metadata"]["invocationId"].as_str().unwrap_or("?")),
        format!(
            "built: {} .. {}",
            run["metadata"]["startedOn"].as_str().unwrap_or("?"),
            run["metadata"]["finishedOn"].as_str().unwrap_or("?")
        ),
    ];
    let ext = &def["externalParameters"];
    out.push(format!(
        "dockerfile: {} sha256:{}",
        ext["dockerfile"]["path"].as_str().unwrap_or("?"),
        ext["dockerfile"]["digest"]["sha256"].as_str().unwrap_or("?")
    ));
    for (k, v) in ext["buildArgs"].as_object().into_iter().flatten() {
        out.push(format!("build arg: {k}={}", v.as_str().unwrap_or("")));
    }
    for dep in def["resolvedDependencies"].as_array().into_iter().flatten() {
        let digest: Vec<String> = dep["digest"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}:{}", v.as_str().unwrap_or("")))
            .collect();
        out.push(format!(
            "{}: {} {}",
            dep["name"].as_str().unwrap_or("input"),
            dep["uri"].as_str().unwrap_or("?"),
            digest.join(",")
        ));
    }
    out
}
