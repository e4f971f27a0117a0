//! `kiln verify`: fetches an image, its sigstore signature and its
//! attestations, and checks them: the signature against a public key, each
//! attestation's subject against the image digest (and its DSSE signature
//! when a key is given). What it found is returned for printing, with the
//! verified provenance and SBOM documents.

mod documents;

pub use documents::{inputs_of, Attestation};

use crate::attest::{simplesign, PublicKey};
use crate::exporter::signature::{existing, SIGNATURE_ANNOTATION, SIMPLE_SIGNING};
use crate::oci::{Descriptor, ImageIndex, MediaType};
use crate::platform::Platform;
use crate::registry::{self, Reference, Registry};
use base64::Engine;
use kiln_snapshotter::content::{read_blob, Store};
use kiln_snapshotter::Digest;

/// The largest signature payload or attestation read.
pub const MAX_DOCUMENT_BYTES: u64 = 64 << 20;

/// Why verification failed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The registry failed or lacks something.
    #[error(transparent)]
    Registry(#[from] registry::Error),
    /// Local scratch storage failed.
    #[error(transparent)]
    Storage(#[from] kiln_snapshotter::Error),
    /// A check failed.
    #[error("{0}")]
    Failed(String),
}

fn failed(msg: impl Into<String>) -> VerifyError {
    VerifyError::Failed(msg.into())
}

/// What was checked.
#[derive(Debug)]
pub struct Verified {
    /// The digest the reference names (an index for multi-platform images).
    pub digest: Digest,
    /// The platform manifest the attestations are about.
    pub manifest: Digest,
    /// The signature's claimed reference, when one verified.
    pub signed_as: Option<String>,
    /// The provenance statement, when attached.
    pub provenance: Option<Attestation>,
    /// The SBOM statement, when attached.
    pub sbom: Option<Attestation>,
}

/// Downloads a blob into `store` and reads it (bounded).
async fn blob(
    registry: &dyn Registry,
    store: &dyn Store,
    r: &Reference,
    desc: &Descriptor,
) -> Result<Vec<u8>, VerifyError> {
    if desc.size > MAX_DOCUMENT_BYTES {
        return Err(failed(format!("{} is {} bytes, over {MAX_DOCUMENT_BYTES}", desc.digest, desc.size)));
    }
    registry.fetch_blob(r, desc, store).await?;
    Ok(read_blob(store, &Digest::parse(&desc.digest)?, MAX_DOCUMENT_BYTES)?)
}

/// The signature on `digest` that `key` made and that names `image`'s
/// repository: its claimed reference.
async fn check_signature(
    registry: &dyn Registry,
    store: &dyn Store,
    image: &Reference,
    digest: &Digest,
    key: &PublicKey,
) -> Result<String, VerifyError> {
    let manifest = existing(registry, image, digest).await?.ok_or_else(|| {
        failed(format!("no signature: {image} has no {} tag", crate::exporter::signature::signature_tag(digest)))
    })?;
    let mut reasons = Vec::new();
    for layer in manifest.layers.iter().filter(|l| l.media_type == SIMPLE_SIGNING) {
        let Some(sig) = layer.annotations.as_ref().and_then(|a| a.get(SIGNATURE_ANNOTATION)) else { continue };
        let payload = blob(registry, store, image, layer).await?;
        let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(sig) else { continue };
        if !key.verify(&payload, &sig) {
            reasons.push("a signature by another key".to_string());
            continue;
        }
        match simplesign::claims(&payload) {
            Some((_, signed)) if signed != digest.as_str() => reasons.push(format!("a signature of {signed}")),
            Some((reference, _)) => {
                let claimed = Reference::parse(&reference).map_err(|e| failed(e.to_string()))?;
                if (claimed.registry.as_str(), claimed.repository.as_str())
                    != (image.registry.as_str(), image.repository.as_str())
                {
                    reasons.push(format!("a signature for another repository ({reference})"));
                    continue;
                }
                return Ok(reference);
            }
            None => reasons.push("a payload that is not a cosign signature".into()),
        }
    }
    let found = if reasons.is_empty() { "no signature".to_string() } else { reasons.join(", ") };
    Err(failed(format!("{image}@{digest} is not signed by the key: found {found}")))
}

/// The platform manifest to check attestations of: `digest` itself, or the
/// index entry for `platform`.
fn platform_manifest(
    media_type: &str,
    bytes: &[u8],
    digest: &Digest,
    platform: &Platform,
) -> Result<Digest, VerifyError> {
    if media_type != MediaType::OCI_INDEX && media_type != MediaType::DOCKER_LIST {
        return Ok(digest.clone());
    }
    let index: ImageIndex = serde_json::from_slice(bytes).map_err(|e| failed(format!("index: {e}")))?;
    let spec = platform.spec();
    let entry = index
        .manifests
        .iter()
        .find(|m| m.platform.as_ref().is_some_and(|p| p.os == spec.os && p.architecture == spec.architecture))
        .ok_or_else(|| failed(format!("the index has no {platform} image")))?;
    Ok(Digest::parse(&entry.digest)?)
}

/// Verifies `image` (a tag or digest reference).
pub async fn verify(
    registry: &dyn Registry,
    store: &dyn Store,
    image: &Reference,
    key: Option<&PublicKey>,
    platform: &Platform,
) -> Result<Verified, VerifyError> {
    let (digest, media_type, bytes) = registry.get_manifest(image).await?;
    let signed_as = match key {
        Some(key) => Some(check_signature(registry, store, image, &digest, key).await?),
        None => None,
    };
    let manifest = platform_manifest(&media_type, &bytes, &digest, platform)?;
    let (provenance, sbom) = documents::attestations(registry, store, image, &manifest, key).await?;
    Ok(Verified { digest, manifest, signed_as, provenance, sbom })
}
