//! Attaching artifacts and signatures, against the in-memory registry
//! with and without the referrers API.

use super::*;
use crate::exporter::signature::{existing, push_signature};
use crate::registry::memory::MemoryRegistry;
use kiln_snapshotter::ContentStore;

fn setup(referrers_api: bool) -> (tempfile::TempDir, ContentStore, MemoryRegistry, Reference, Subject) {
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::at(dir.path()).unwrap();
    let mut registry = MemoryRegistry::default();
    registry.referrers_api = referrers_api;
    let target = Reference::parse("127.0.0.1:5000/team/fn:1").unwrap();
    let digest = registry.seed_image(&target, &crate::platform::Platform::host().spec(), &[("a", "b")]);
    let size = registry.manifest(&target).unwrap().1.len() as u64;
    let subject = Subject { digest, size, media_type: MediaType::OCI_MANIFEST.into(), unseen: false };
    (dir, store, registry, target, subject)
}

fn artifact(kind: &str, content: &str) -> Artifact {
    Artifact {
        artifact_type: kind.into(),
        media_type: "application/vnd.in-toto+json".into(),
        content: content.as_bytes().to_vec(),
        annotations: [("in-toto.io/predicate-type".to_string(), kind.to_string())].into(),
    }
}

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
}

#[test]
fn without_a_referrers_api_the_tag_schema_lists_each_kind_once() {
    let (_dir, store, registry, target, subject) = setup(false);
    run(async {
        attach(&store, &registry, &target, &subject, &[artifact("a", "1")], true).await.unwrap();
        let b = attach(&store, &registry, &target, &subject, &[artifact("b", "2")], true).await.unwrap().remove(0);
        let pair = [artifact("a", "3"), artifact("c", "4")];
        let both = attach(&store, &registry, &target, &subject, &pair, true).await.unwrap();
        let again = both[0].clone();
        let found = referrers(&registry, &target, &subject.digest).await.unwrap();
        let digests: Vec<&str> = found.iter().map(|d| d.digest.as_str()).collect();
        assert_eq!(digests, [b.as_str(), again.as_str(), both[1].as_str()]);
        let tag = Reference { tag: Some(subject.tag()), ..target.clone() };
        let (_, index) = registry.manifest(&tag).unwrap();
        assert_eq!(serde_json::from_slice::<ImageIndex>(&index).unwrap().manifests.len(), 3);
        let (_, manifest) = registry.manifest(&target.with_digest(again.as_str())).unwrap();
        let manifest: ImageManifest = serde_json::from_slice(&manifest).unwrap();
        assert_eq!(manifest.subject.unwrap().digest, subject.digest.as_str());
        assert_eq!(manifest.artifact_type.as_deref(), Some("a"));
    });
}

#[test]
fn with_a_referrers_api_no_tag_is_written() {
    let (_dir, store, registry, target, subject) = setup(true);
    run(async {
        let a = attach(&store, &registry, &target, &subject, &[artifact("a", "1")], true).await.unwrap().remove(0);
        let found = referrers(&registry, &target, &subject.digest).await.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].digest.as_str(), found[0].artifact_type.as_deref()), (a.as_str(), Some("a")));
        assert!(registry.manifest(&Reference { tag: Some(subject.tag()), ..target.clone() }).is_none());
    });
}

#[test]
fn a_signature_joins_the_ones_already_there_once() {
    let (_dir, store, registry, target, subject) = setup(false);
    run(async {
        push_signature(&store, &registry, &target, &subject, b"payload-1", "c2lnLTE=").await.unwrap();
        push_signature(&store, &registry, &target, &subject, b"payload-2", "c2lnLTI=").await.unwrap();
        push_signature(&store, &registry, &target, &subject, b"payload-2", "c2lnLTI=").await.unwrap();
        let manifest = existing(&registry, &target, &subject.digest).await.unwrap().unwrap();
        let sigs: Vec<&str> = manifest
            .layers
            .iter()
            .map(|l| l.annotations.as_ref().unwrap()[super::super::signature::SIGNATURE_ANNOTATION].as_str())
            .collect();
        assert_eq!(sigs, ["c2lnLTE=", "c2lnLTI="]);
    });
}
