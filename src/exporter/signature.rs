//! Sigstore image signatures under cosign's tag convention: the manifest
//! tagged `sha256-<hex>.sig` in the image's repository holds one layer
//! per signature (the simple-signing payload, its signature in the
//! `dev.cosignproject.cosign/signature` annotation). Signatures already
//! there (another key's, say) are kept.

use super::attach::Subject;
use super::ExportError;
use crate::oci::{Descriptor, ImageManifest, MediaType};
use crate::registry::{self, Reference, Registry};
use kiln_snapshotter::content::{write_blob, Store};
use kiln_snapshotter::Digest;

pub use crate::attest::simplesign::{MEDIA_TYPE as SIMPLE_SIGNING, SIGNATURE_ANNOTATION};

/// `sha256-<hex>.sig` for `subject`.
pub fn signature_tag(subject: &Digest) -> String {
    format!("{}.sig", subject.as_str().replacen(':', "-", 1))
}

/// The signature manifest already tagged for `subject`, if any.
pub async fn existing(
    registry: &dyn Registry,
    target: &Reference,
    subject: &Digest,
) -> Result<Option<ImageManifest>, registry::Error> {
    let tag_ref = Reference { tag: Some(signature_tag(subject)), digest: None, ..target.clone() };
    match registry.get_manifest(&tag_ref).await {
        Ok((_, _, bytes)) => Ok(serde_json::from_slice(&bytes).ok()),
        Err(registry::Error::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Pushes `payload` signed by `signature` (base64) for `subject`, beside
/// the signatures already there; returns the signature manifest's digest.
pub async fn push_signature(
    store: &dyn Store,
    registry: &dyn Registry,
    target: &Reference,
    subject: &Subject,
    payload: &[u8],
    signature: &str,
) -> Result<Digest, ExportError> {
    let err = |source| ExportError::Push { target: target.to_string(), source };
    let payload_digest = write_blob(store, payload)?;
    let layer = Descriptor {
        annotations: Some([(SIGNATURE_ANNOTATION.to_string(), signature.to_string())].into()),
        ..Descriptor::new(SIMPLE_SIGNING, &payload_digest, payload.len() as u64)
    };
    let mut layers = match subject.unseen {
        true => Vec::new(),
        false => existing(registry, target, &subject.digest).await.map_err(err)?.map(|m| m.layers).unwrap_or_default(),
    };
    layers.retain(|l| l != &layer && l.media_type == SIMPLE_SIGNING);
    layers.push(layer);
    let config_bytes = super::attachment_config("", &layers);
    let config_digest = write_blob(store, &config_bytes)?;
    // The signatures already there are in the registry (it accepted their
    // manifest), so only the new payload and the config go up, together;
    // both name the subject, so when it is new they are too.
    let push = |digest| match subject.unseen {
        true => registry.push_unseen_blob(target, digest, store),
        false => registry.push_blob(target, digest, store, None),
    };
    futures_util::future::try_join(push(&payload_digest), push(&config_digest)).await.map_err(err)?;
    let manifest =
        ImageManifest::oci(Descriptor::new(MediaType::OCI_CONFIG, &config_digest, config_bytes.len() as u64), layers);
    let bytes = manifest.to_bytes();
    let tag_ref = Reference { tag: Some(signature_tag(&subject.digest)), digest: None, ..target.clone() };
    registry.put_manifest(&tag_ref, &bytes, MediaType::OCI_MANIFEST).await.map_err(err)?;
    Ok(Digest::of(&bytes))
}
