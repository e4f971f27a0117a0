//! The rules every [`Registry`] implementation follows, as one suite run
//! against the HTTP client on a real registry (end-to-end tier) and
//! against the in-memory registry (fast tier): blobs are pushed once,
//! then exist; a blob another repository of the registry holds is
//! mounted; manifests are found by tag and by digest; a download lands
//! verified in the store; what is absent is `NotFound` or `false`.

use super::{Error, PushOutcome, Reference, Registry};
use crate::oci::{Descriptor, ImageManifest, MediaType};
use kiln_snapshotter::content::{read_blob, write_blob, Store};
use kiln_snapshotter::Digest;

/// Runs the suite in repositories under `base` (`registry/prefix`), which
/// must be fresh: blobs unique to this run are made from `nonce`.
pub async fn registry(registry: &dyn Registry, base: &str, nonce: &str) {
    let store = kiln_snapshotter::conformance::MemoryStore::default();
    let one = Reference::parse(&format!("{base}/one:v1")).unwrap();
    let two = Reference::parse(&format!("{base}/two:v1")).unwrap();
    let layer = write_blob(&store, format!("layer {nonce}").as_bytes()).unwrap();
    let config = write_blob(&store, format!("{{\"nonce\":\"{nonce}\"}}").as_bytes()).unwrap();

    assert!(!registry.blob_exists(&one, &layer).await.unwrap(), "a blob never pushed is absent");
    let pushed = registry.push_blob(&one, &layer, &store, None).await.unwrap();
    assert_eq!(pushed, PushOutcome::Uploaded);
    assert!(registry.blob_exists(&one, &layer).await.unwrap(), "a pushed blob exists");
    let again = registry.push_blob(&one, &layer, &store, None).await.unwrap();
    assert_eq!(again, PushOutcome::Existed, "a blob is pushed once");
    let mounted = registry.push_blob(&two, &layer, &store, Some(&one)).await.unwrap();
    assert_eq!(mounted, PushOutcome::Mounted, "another repository of the registry mounts it");
    registry.push_blob(&one, &config, &store, None).await.unwrap();

    let size = |d: &Digest| store.info(d).unwrap().unwrap().size;
    let manifest = ImageManifest::oci(
        Descriptor::new(MediaType::OCI_CONFIG, &config, size(&config)),
        vec![Descriptor::new("application/vnd.oci.image.layer.v1.tar+gzip", &layer, size(&layer))],
    )
    .to_bytes();
    let digest = registry.put_manifest(&one, &manifest, MediaType::OCI_MANIFEST).await.unwrap();
    assert_eq!(digest, Digest::of(&manifest));
    for r in [one.clone(), one.with_digest(digest.as_str())] {
        let (got, media_type, bytes) = registry.get_manifest(&r).await.unwrap();
        assert_eq!(
            (got, media_type.as_str(), bytes.as_slice()),
            (digest.clone(), MediaType::OCI_MANIFEST, &manifest[..])
        );
    }
    let wrong = one.with_digest(Digest::of(b"another manifest").as_str());
    assert!(registry.get_manifest(&wrong).await.is_err(), "an unknown digest is not served");
    let missing = Reference::parse(&format!("{base}/one:missing")).unwrap();
    assert!(matches!(registry.get_manifest(&missing).await, Err(Error::NotFound(_))), "an unknown tag");

    let fresh = kiln_snapshotter::conformance::MemoryStore::default();
    let desc = Descriptor::new("application/octet-stream", &layer, size(&layer));
    assert_eq!(registry.fetch_blob(&one, &desc, &fresh).await.unwrap(), size(&layer), "downloaded");
    assert_eq!(read_blob(&fresh, &layer, 1 << 20).unwrap(), format!("layer {nonce}").as_bytes());
    assert_eq!(registry.fetch_blob(&one, &desc, &fresh).await.unwrap(), 0, "a stored blob is not downloaded again");
    let lying = Descriptor::new("application/octet-stream", &layer, size(&layer) + 1);
    let other = kiln_snapshotter::conformance::MemoryStore::default();
    let refused = registry.fetch_blob(&one, &lying, &other).await;
    assert!(matches!(refused, Err(Error::Protocol(_))), "a size mismatch is refused as the registry's fault");
    assert!(other.info(&layer).unwrap().is_none(), "and stores nothing");
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_memory_registry_passes_the_conformance_suite() {
        super::registry(&super::super::memory::MemoryRegistry::default(), "r.example/conformance", "n1").await;
    }
}
