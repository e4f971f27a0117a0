//! Attaching documents to a pushed image: OCI 1.1 artifact manifests
//! whose `subject` is the image manifest, found through the registry's
//! referrers API when it has one and through the referrers tag schema
//! (an index tagged `sha256-<hex>`) when it does not; and sigstore
//! signatures under cosign's `sha256-<hex>.sig` tag, which `cosign verify`
//! and the containers tools (`use-sigstore-attachments`) read.

use super::ExportError;
use crate::oci::{Descriptor, ImageIndex, ImageManifest, MediaType};
use crate::registry::{self, Reference, Registry};
use kiln_snapshotter::content::{write_blob, Store};
use kiln_snapshotter::Digest;
use std::collections::BTreeMap;

/// The image manifest an artifact is about.
#[derive(Debug, Clone)]
pub struct Subject {
    /// Its digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// Its media type.
    pub media_type: String,
    /// It is new to the repository ([`super::Exported::unseen`]): nothing
    /// is attached to it yet, and every blob naming it is new there too.
    pub unseen: bool,
}

impl Subject {
    fn descriptor(&self) -> Descriptor {
        Descriptor::new(&self.media_type, &self.digest, self.size)
    }

    /// `sha256-<hex>`: the tag schema's name for this subject.
    pub fn tag(&self) -> String {
        self.digest.as_str().replacen(':', "-", 1)
    }
}

/// One document to attach.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// The manifest's `artifactType`.
    pub artifact_type: String,
    /// The media type of the one layer holding the document.
    pub media_type: String,
    /// The document.
    pub content: Vec<u8>,
    /// Annotations of the layer and the manifest
    /// (`in-toto.io/predicate-type`, …).
    pub annotations: BTreeMap<String, String>,
}

/// The artifact manifest for `artifact` about `subject`, with its blobs
/// written to `store`.
fn artifact_manifest(store: &dyn Store, subject: &Subject, artifact: &Artifact) -> Result<Vec<u8>, ExportError> {
    write_blob(store, crate::oci::EMPTY_CONFIG)?;
    let layer = write_blob(store, &artifact.content)?;
    let annotations = Some(artifact.annotations.clone()).filter(|a| !a.is_empty());
    let mut manifest = ImageManifest::artifact(
        &artifact.artifact_type,
        vec![Descriptor {
            annotations: annotations.clone(),
            ..Descriptor::new(&artifact.media_type, &layer, artifact.content.len() as u64)
        }],
    );
    manifest.annotations = annotations;
    manifest.subject = Some(subject.descriptor());
    Ok(manifest.to_bytes())
}

fn push_err(target: &Reference) -> impl Fn(registry::Error) -> ExportError + '_ {
    move |source| ExportError::Push { target: target.to_string(), source }
}

/// Pushes one artifact's blobs and manifest (by digest); returns the
/// referrers index entry for it.
async fn push_artifact(
    store: &dyn Store,
    registry: &dyn Registry,
    target: &Reference,
    subject: &Subject,
    artifact: &Artifact,
    push: bool,
) -> Result<Descriptor, ExportError> {
    let bytes = crate::blocking::in_place(|| artifact_manifest(store, subject, artifact))?;
    let digest = write_blob(store, &bytes)?;
    let manifest: ImageManifest = serde_json::from_slice(&bytes).expect("written above");
    if push {
        let err = push_err(target);
        let [config, document] =
            [&manifest.config.digest, &manifest.layers[0].digest].map(|d| Digest::parse(d).expect("written"));
        let config = registry.push_blob(target, &config, store, None);
        // The document names the subject: when that is new, so is it.
        let document = match subject.unseen {
            true => registry.push_unseen_blob(target, &document, store),
            false => registry.push_blob(target, &document, store, None),
        };
        futures_util::future::try_join(config, document).await.map_err(&err)?;
        let by_digest = target.with_digest(digest.as_str());
        registry.put_manifest(&by_digest, &bytes, MediaType::OCI_MANIFEST).await.map_err(&err)?;
    }
    Ok(Descriptor {
        annotations: manifest.annotations.clone(),
        artifact_type: manifest.artifact_type.clone(),
        ..Descriptor::new(MediaType::OCI_MANIFEST, &digest, bytes.len() as u64)
    })
}

/// Pushes `artifacts` about `subject` into `target`'s repository (at the
/// same time) and makes them discoverable: through the registry's
/// referrers API when it lists them, else with one update of the tag
/// schema's index. Returns the artifact manifests' digests, in order. With
/// `push` false they are only written to the store.
pub async fn attach(
    store: &dyn Store,
    registry: &dyn Registry,
    target: &Reference,
    subject: &Subject,
    artifacts: &[Artifact],
    push: bool,
) -> Result<Vec<Digest>, ExportError> {
    let pushes = artifacts.iter().map(|a| push_artifact(store, registry, target, subject, a, push));
    let err = push_err(target);
    // The tag schema's index is read while the artifacts go up (one round
    // trip less; unused when the registry lists them itself).
    let index = async {
        match push && !subject.unseen {
            true => current_tag_index(registry, target, subject).await.map_err(&err),
            false => Ok(ImageIndex::oci(Vec::new())),
        }
    };
    let (entries, index) = futures_util::future::try_join(futures_util::future::try_join_all(pushes), index).await?;
    let digests = entries.iter().map(|e| Digest::parse(&e.digest).expect("written above")).collect();
    if !push {
        return Ok(digests);
    }
    let listed = registry.referrers(target, &subject.digest).await.map_err(&err)?;
    let found = listed.as_deref().and_then(|b| serde_json::from_slice::<ImageIndex>(b).ok());
    let unlisted: Vec<Descriptor> = entries
        .into_iter()
        .filter(|e| !found.as_ref().is_some_and(|index| index.manifests.iter().any(|m| m.digest == e.digest)))
        .collect();
    if !unlisted.is_empty() {
        add_to_tag_index(registry, target, subject, index, unlisted).await.map_err(&err)?;
    }
    Ok(digests)
}

/// The referrers tag schema: adds `entries` to the index tagged
/// `sha256-<hex>`, each replacing an earlier entry of its artifact type and
/// annotations (a rebuild of the same image attaches its own documents
/// instead).
async fn add_to_tag_index(
    registry: &dyn Registry,
    target: &Reference,
    subject: &Subject,
    mut index: ImageIndex,
    entries: Vec<Descriptor>,
) -> Result<(), registry::Error> {
    let tag_ref = Reference { tag: Some(subject.tag()), digest: None, ..target.clone() };
    for entry in entries {
        let same_kind = |m: &Descriptor| m.artifact_type == entry.artifact_type && m.annotations == entry.annotations;
        index.manifests.retain(|m| !same_kind(m) && m.digest != entry.digest);
        index.manifests.push(entry);
    }
    registry.put_manifest(&tag_ref, &index.to_bytes(), MediaType::OCI_INDEX).await?;
    Ok(())
}

/// The index tagged `sha256-<hex>` for `subject` (empty when there is none).
async fn current_tag_index(
    registry: &dyn Registry,
    target: &Reference,
    subject: &Subject,
) -> Result<ImageIndex, registry::Error> {
    let tag_ref = Reference { tag: Some(subject.tag()), digest: None, ..target.clone() };
    match registry.get_manifest(&tag_ref).await {
        Ok((_, media_type, bytes)) if media_type == MediaType::OCI_INDEX => {
            Ok(serde_json::from_slice::<ImageIndex>(&bytes).unwrap_or_else(|_| ImageIndex::oci(Vec::new())))
        }
        Ok(_) | Err(registry::Error::NotFound(_)) => Ok(ImageIndex::oci(Vec::new())),
        Err(e) => Err(e),
    }
}

/// The artifacts about `subject`: the referrers API's list, else the tag
/// schema's index (empty when neither has any).
pub async fn referrers(
    registry: &dyn Registry,
    target: &Reference,
    subject: &Digest,
) -> Result<Vec<Descriptor>, registry::Error> {
    if let Some(bytes) = registry.referrers(target, subject).await? {
        let index: ImageIndex = serde_json::from_slice(&bytes)
            .map_err(|e| registry::Error::Protocol(format!("{target}: referrers index: {e}")))?;
        if !index.manifests.is_empty() {
            return Ok(index.manifests);
        }
    }
    let tag_ref = Reference { tag: Some(subject.as_str().replacen(':', "-", 1)), digest: None, ..target.clone() };
    match registry.get_manifest(&tag_ref).await {
        Ok((_, _, bytes)) => Ok(serde_json::from_slice::<ImageIndex>(&bytes).map(|i| i.manifests).unwrap_or_default()),
        Err(registry::Error::NotFound(_)) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
#[path = "attach_tests.rs"]
mod tests;
