//! The seam between kiln and a registry: the distribution API operations
//! kiln uses ([`Registry`]), implemented by the HTTP client in production
//! and by an in-memory registry in the fast tier, and the resolution of a
//! reference to one platform's manifest and config, written once over it.

use super::{Error, PushOutcome, Reference, Resolved, Result};
use crate::oci::{Descriptor, ImageIndex, ImageManifest, MediaType, PlatformSpec};
use crate::platform::Platform;
use futures_util::future::BoxFuture;
use kiln_snapshotter::content::{read_blob, Store};
use kiln_snapshotter::Digest;

/// The registry operations kiln needs (OCI distribution API).
pub trait Registry: Send + Sync {
    /// Where pulls of `r` go (its mirror, when one is configured).
    fn pull_route(&self, r: &Reference) -> Reference;

    /// The manifest or index `r` names: its digest (verified against a
    /// digest reference), media type and bytes. Schema 1 is refused.
    fn get_manifest<'a>(&'a self, r: &'a Reference) -> BoxFuture<'a, Result<(Digest, String, Vec<u8>)>>;

    /// Downloads a blob into `store` (verifying size and digest) unless it
    /// is there; returns the bytes downloaded.
    fn fetch_blob<'a>(
        &'a self,
        r: &'a Reference,
        desc: &'a Descriptor,
        store: &'a dyn Store,
    ) -> BoxFuture<'a, Result<u64>>;

    /// Whether the repository has a blob.
    fn blob_exists<'a>(&'a self, r: &'a Reference, digest: &'a Digest) -> BoxFuture<'a, Result<bool>>;

    /// Pushes a blob from `store`: skipped when present, mounted from
    /// `mount_from` (same registry) when that repository has it, uploaded
    /// otherwise.
    fn push_blob<'a>(
        &'a self,
        r: &'a Reference,
        digest: &'a Digest,
        store: &'a dyn Store,
        mount_from: Option<&'a Reference>,
    ) -> BoxFuture<'a, Result<PushOutcome>>;

    /// Pushes manifest bytes under the reference's tag (or digest).
    fn put_manifest<'a>(
        &'a self,
        r: &'a Reference,
        bytes: &'a [u8],
        media_type: &'a str,
    ) -> BoxFuture<'a, Result<Digest>>;

    /// Deletes the manifest `r` names by digest; false when the registry
    /// does not allow it (deletion disabled, or not permitted).
    fn delete_manifest<'a>(&'a self, _r: &'a Reference) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async { Ok(false) })
    }

    /// Uploads a blob known to be new to the repository of `r` (it names
    /// a manifest new there), without asking whether it is there first.
    fn push_unseen_blob<'a>(
        &'a self,
        r: &'a Reference,
        digest: &'a Digest,
        store: &'a dyn Store,
    ) -> BoxFuture<'a, Result<PushOutcome>> {
        self.push_blob(r, digest, store, None)
    }

    /// Records that the repository of `r` holds `digests` (listed by a
    /// manifest read there), so pushing them asks nothing.
    fn note_present(&self, _r: &Reference, _digests: &[&str]) {}

    /// The referrers API's index of the manifests whose `subject` is
    /// `digest` (OCI distribution 1.1), or `None` when the registry has no
    /// referrers API (clients then use the `sha256-<hex>` tag schema).
    fn referrers<'a>(&'a self, r: &'a Reference, digest: &'a Digest) -> BoxFuture<'a, Result<Option<Vec<u8>>>>;
}

/// Resolves a tag or digest to the manifest for `platform`, through the
/// pull route. The config blob lands in `store` (a rebuild reads it from
/// there and fetches only the manifest).
pub async fn resolve(
    registry: &dyn Registry,
    r: &Reference,
    platform: &PlatformSpec,
    store: &dyn Store,
) -> Result<Resolved> {
    let routed = registry.pull_route(r);
    let r = &routed;
    let (digest, media_type, bytes) = registry.get_manifest(r).await?;
    let (digest, manifest) = match media_type.as_str() {
        MediaType::OCI_INDEX | MediaType::DOCKER_LIST => {
            let index: ImageIndex =
                serde_json::from_slice(&bytes).map_err(|e| Error::Protocol(format!("{r}: bad image index: {e}")))?;
            let entry = pick_platform(&index, platform).ok_or_else(|| {
                Error::NotFound(format!("{r}: no image for platform {}/{}", platform.os, platform.architecture))
            })?;
            let (d, _, b) = registry.get_manifest(&r.with_digest(&entry.digest)).await?;
            (d, parse_manifest(r, &b)?)
        }
        _ => (digest, parse_manifest(r, &bytes)?),
    };
    if manifest.config.size > crate::oci::MAX_MANIFEST_BYTES {
        let size = manifest.config.size;
        return Err(Error::Protocol(format!("{r}: the image config is {size} bytes, more than kiln reads")));
    }
    registry.fetch_blob(r, &manifest.config, store).await?;
    let config = read_blob(store, &Digest::parse(&manifest.config.digest)?, crate::oci::MAX_MANIFEST_BYTES)?;
    Ok(Resolved { digest, manifest, config })
}

/// Pushes a layer's blob to `target`: nothing when it is there, a mount
/// when `origin` is another repository of the same registry holding it,
/// else an upload from `store` — downloaded from `origin` first when the
/// store lacks it (a lazy layer bound for another registry).
pub async fn push_layer_blob(
    registry: &dyn Registry,
    store: &dyn Store,
    target: &Reference,
    desc: &Descriptor,
    origin: Option<&Reference>,
) -> Result<PushOutcome> {
    let digest = Digest::parse(&desc.digest)?;
    match registry.push_blob(target, &digest, store, origin).await {
        Err(Error::NotLocal(why)) => {
            let from = origin.ok_or(Error::NotLocal(why))?;
            registry.fetch_blob(from, desc, store).await?;
            registry.push_blob(target, &digest, store, None).await
        }
        pushed => pushed,
    }
}

fn parse_manifest(r: &Reference, bytes: &[u8]) -> Result<ImageManifest> {
    serde_json::from_slice(bytes).map_err(|e| Error::Protocol(format!("{r}: bad image manifest: {e}")))
}

/// The index entry for `want`: the same normalised platform, or (when no
/// variant is asked for) the first entry of the same os and architecture.
fn pick_platform<'a>(index: &'a ImageIndex, want: &PlatformSpec) -> Option<&'a Descriptor> {
    let want = Platform::from_spec(want);
    let entries = || index.manifests.iter().filter_map(|d| Some((d, Platform::from_spec(d.platform.as_ref()?))));
    entries().find(|(_, p)| *p == want).map(|(d, _)| d).or_else(|| {
        let loose = |p: &Platform| want.variant.is_none() && p.os == want.os && p.architecture == want.architecture;
        entries().find(|(_, p)| loose(p)).map(|(d, _)| d)
    })
}

/// The media type a manifest's bytes declare, else the one the server
/// sent; schema 1 is refused.
pub(super) fn manifest_media_type(r: &Reference, bytes: &[u8], served: String) -> Result<String> {
    let field: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    if field["schemaVersion"] == 1 {
        return Err(Error::Protocol(format!("{r}: schema 1 manifests are not supported")));
    }
    Ok(field["mediaType"].as_str().map(str::to_string).unwrap_or(served))
}

/// A downloaded blob's commit, with a size or digest mismatch reported as
/// the registry's fault (it served other bytes than the descriptor names).
pub(super) fn verified<T>(r: &Reference, digest: &Digest, committed: kiln_snapshotter::Result<T>) -> Result<T> {
    committed.map_err(|e| match e {
        kiln_snapshotter::Error::Mismatch(m) => {
            Error::Protocol(format!("{r}: blob {digest} failed digest verification ({m})"))
        }
        other => Error::Storage(other),
    })
}

/// `Err` unless the bytes hash to the digest `r` names (when it names one).
pub(super) fn check_manifest_digest(r: &Reference, digest: &Digest) -> Result<()> {
    match &r.digest {
        Some(want) if want != digest.as_str() => {
            Err(Error::Protocol(format!("{r}: manifest digest mismatch (got {digest})")))
        }
        _ => Ok(()),
    }
}
