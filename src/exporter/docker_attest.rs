//! BuildKit's (Docker's) attestation layout: per platform image, an
//! "attestation manifest" whose layers are the in-toto statements, listed
//! in the image index beside the image with platform `unknown/unknown`
//! and the annotations `vnd.docker.reference.type: attestation-manifest`
//! and `vnd.docker.reference.digest: <image manifest digest>` — what
//! `docker buildx imagetools inspect` and Docker Desktop read.

use super::ExportError;
use crate::oci::{Descriptor, ImageManifest, MediaType, PlatformSpec};
use crate::registry::{Reference, Registry};
use kiln_snapshotter::content::{write_blob, Store};
use kiln_snapshotter::Digest;

/// The annotation naming what an index entry refers to.
pub const REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
/// The annotation saying an index entry is an attestation manifest.
pub const REFERENCE_TYPE: &str = "vnd.docker.reference.type";
/// [`REFERENCE_TYPE`]'s value.
pub const ATTESTATION_MANIFEST: &str = "attestation-manifest";

/// One statement to put in the attestation manifest.
pub struct Statement<'a> {
    /// Its JSON bytes.
    pub bytes: &'a [u8],
    /// Its predicate type.
    pub predicate_type: &'a str,
}

/// Writes (and, with `push`, pushes by digest) the attestation manifest
/// about `image`; returns its index entry.
pub async fn attestation_manifest(
    store: &dyn Store,
    registry: &dyn Registry,
    target: &Reference,
    image: &Digest,
    statements: &[Statement<'_>],
    push: bool,
) -> Result<Descriptor, ExportError> {
    let err = |source| ExportError::Push { target: target.to_string(), source };
    let mut layers = Vec::with_capacity(statements.len());
    for s in statements {
        let digest = write_blob(store, s.bytes)?;
        let annotations = [(crate::attest::PREDICATE_ANNOTATION.to_string(), s.predicate_type.to_string())].into();
        layers.push(Descriptor {
            annotations: Some(annotations),
            ..Descriptor::new(crate::attest::sign::IN_TOTO_PAYLOAD_TYPE, &digest, s.bytes.len() as u64)
        });
    }
    let config_bytes = super::attachment_config("unknown", &layers);
    let config_digest = write_blob(store, &config_bytes)?;
    let manifest =
        ImageManifest::oci(Descriptor::new(MediaType::OCI_CONFIG, &config_digest, config_bytes.len() as u64), layers);
    let bytes = manifest.to_bytes();
    let digest = write_blob(store, &bytes)?;
    if push {
        for blob in manifest.layers.iter().map(|l| &l.digest).chain([&manifest.config.digest]) {
            let blob = Digest::parse(blob)?;
            registry.push_blob(target, &blob, store, None).await.map_err(err)?;
        }
        registry
            .put_manifest(&target.with_digest(digest.as_str()), &bytes, MediaType::OCI_MANIFEST)
            .await
            .map_err(err)?;
    }
    let annotations = [
        (REFERENCE_DIGEST.to_string(), image.to_string()),
        (REFERENCE_TYPE.to_string(), ATTESTATION_MANIFEST.to_string()),
    ]
    .into();
    Ok(Descriptor {
        annotations: Some(annotations),
        platform: Some(PlatformSpec { architecture: "unknown".into(), os: "unknown".into(), variant: None }),
        ..Descriptor::new(MediaType::OCI_MANIFEST, &digest, bytes.len() as u64)
    })
}
