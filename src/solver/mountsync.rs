//! Cache mounts that follow the function (`--cache-mount-export`): a
//! tenant's `RUN --mount=type=cache` directory is kept in the registry
//! beside the registry cache, as an OCI artifact tagged
//! `cachemount-<hash of tenant and id>` whose one layer is the directory's
//! content. A replica without the directory imports it the first time a
//! step mounts it; after a build's reply has been sent, the caches its
//! steps used are packed and pushed again when their content changed. The
//! tag is computed from the tenant, so no tenant can name another's.

use super::cachemount::{self, CacheSpec};
use crate::oci::{Descriptor, ImageManifest, MediaType};
use crate::registry::Reference;
use crate::worker::Worker;
use kiln_snapshotter::content::write_blob;
use kiln_snapshotter::Digest;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The `artifactType` of a cache mount's manifest.
pub const ARTIFACT_TYPE: &str = "application/vnd.kiln.cache-mount.v1";

/// Most caches one build exports: the work after a reply is bounded
/// whatever the Dockerfile mounts.
pub const MAX_EXPORTED_CACHES: usize = 16;

/// One build's cache mount exchange with the registry.
pub struct MountSync {
    /// The registry cache reference: the artifacts go beside it.
    pub cache: Reference,
    /// Largest cache (uncompressed bytes) exported or imported.
    pub max_bytes: u64,
    /// Tenant and id of every cache a step of this build mounted.
    used: Mutex<BTreeSet<(String, String)>>,
}

/// Why a cache mount could not be exchanged.
#[derive(Debug, thiserror::Error)]
pub enum MountSyncError {
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] crate::registry::Error),
    /// The store or unpacking failed.
    #[error(transparent)]
    Storage(#[from] kiln_snapshotter::Error),
    /// A local file operation failed.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// The cache is larger than the bound.
    #[error("{0} bytes, more than --cache-mount-export-max-size {1}")]
    TooLarge(u64, u64),
    /// The artifact is not one kiln wrote.
    #[error("not a cache mount artifact: {0}")]
    Foreign(String),
}

impl MountSync {
    /// The exchange for one build.
    pub fn new(cache: Reference, max_bytes: u64) -> Self {
        Self { cache, max_bytes, used: Default::default() }
    }

    /// Where the cache `id` of `tenant` lives in the registry.
    pub fn reference(&self, tenant: &str, id: &str) -> Reference {
        let tag = format!("cachemount-{}", cachemount::dir_name(tenant, id));
        Reference { tag: Some(tag), digest: None, ..self.cache.clone() }
    }

    /// Notes that a step mounted the cache; false when the build already
    /// mounted [`MAX_EXPORTED_CACHES`] others (this one stays local).
    pub fn used(&self, tenant: &str, id: &str) -> bool {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        let key = (tenant.to_string(), id.to_string());
        if used.len() >= MAX_EXPORTED_CACHES && !used.contains(&key) {
            return false;
        }
        used.insert(key);
        true
    }

    /// The caches the build's steps mounted (at most [`MAX_EXPORTED_CACHES`]).
    pub fn used_caches(&self) -> Vec<(String, String)> {
        self.used.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
    }

    /// Fills the local cache of `spec` from the registry when this replica
    /// has none yet; true when it did.
    pub async fn import(&self, worker: &Worker, root: &Path, spec: &CacheSpec<'_>) -> Result<bool, MountSyncError> {
        let base = root.join(cachemount::dir_name(spec.tenant, spec.id));
        if base.join("data").is_dir() {
            return Ok(false);
        }
        let reference = self.reference(spec.tenant, spec.id);
        let registry = worker.registry();
        let bytes = match registry.get_manifest(&reference).await {
            Ok((_, _, bytes)) => bytes,
            Err(crate::registry::Error::NotFound(_)) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let layer = content_layer(&bytes)?;
        registry.fetch_blob(&reference, &layer, worker.store()).await?;
        let digest = Digest::parse(&layer.digest)?;
        let (store, max) = (worker.shared_store(), self.max_bytes);
        let owner = (spec.uid, spec.gid, spec.mode);
        let unpacked = tokio::task::spawn_blocking(move || unpack_into(&*store, &digest, &base, owner, max))
            .await
            .map_err(|e| MountSyncError::Io("unpack the cache".into(), std::io::Error::other(e)))?;
        let _ = worker.store().remove(&Digest::parse(&layer.digest)?);
        unpacked
    }

    /// Packs the local cache `id` of `tenant` and pushes it unless the
    /// registry already holds this content; the packed blob is not kept.
    pub async fn export(&self, worker: &Worker, root: &Path, tenant: &str, id: &str) -> Result<bool, MountSyncError> {
        let base = root.join(cachemount::dir_name(tenant, id));
        let (store, max, dir) = (worker.shared_store(), self.max_bytes, base.clone());
        let layer = tokio::task::spawn_blocking(move || pack(&*store, &dir, max))
            .await
            .map_err(|e| MountSyncError::Io("pack the cache".into(), std::io::Error::other(e)))??;
        let marker = base.join("exported");
        if std::fs::read_to_string(&marker).ok().as_deref() == Some(layer.digest.as_str()) {
            let _ = worker.store().remove(&layer.digest);
            return Ok(false);
        }
        let reference = self.reference(tenant, id);
        let replaced = current_artifact(worker, &reference).await;
        let pushed = push_artifact(worker, &reference, &layer).await;
        let _ = worker.store().remove(&layer.digest);
        let pushed = pushed?;
        if let Some(old) = replaced.filter(|old| *old != pushed) {
            delete_replaced(worker, &reference, &old).await;
        }
        std::fs::write(&marker, layer.digest.as_str())
            .map_err(|e| MountSyncError::Io("record the export".into(), e))?;
        Ok(true)
    }
}

/// The one content layer of a cache mount artifact.
fn content_layer(manifest: &[u8]) -> Result<Descriptor, MountSyncError> {
    let manifest: ImageManifest =
        serde_json::from_slice(manifest).map_err(|e| MountSyncError::Foreign(format!("manifest: {e}")))?;
    if manifest.artifact_type.as_deref() != Some(ARTIFACT_TYPE) || manifest.layers.len() != 1 {
        return Err(MountSyncError::Foreign(format!("artifactType {:?}", manifest.artifact_type)));
    }
    Ok(manifest.layers[0].clone())
}

/// Unpacks the blob into `<base>/data` (blocking): into a fresh directory
/// owned as the mount asks, renamed into place unless a step made the
/// cache meanwhile. Records the blob as the last exported content.
fn unpack_into(
    store: &dyn kiln_snapshotter::content::Store,
    blob: &Digest,
    base: &Path,
    (uid, gid, mode): (u32, u32, u32),
    max: u64,
) -> Result<bool, MountSyncError> {
    let io = |what: &str| {
        let what = what.to_string();
        move |e| MountSyncError::Io(what, e)
    };
    std::fs::create_dir_all(base).map_err(io("create the cache"))?;
    let tmp: PathBuf = base.join(format!("import-{}", kiln_snapshotter::SnapshotId::random().as_str()));
    std::fs::create_dir(&tmp).map_err(io("create the cache"))?;
    let filled = (|| {
        std::os::unix::fs::chown(&tmp, Some(uid), Some(gid)).map_err(io("own the cache"))?;
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .map_err(io("mode the cache"))?;
        kiln_snapshotter::apply::apply_layer_limited(store.open(blob)?, &tmp, max)?;
        Ok::<_, MountSyncError>(())
    })();
    let placed = filled.is_ok() && std::fs::rename(&tmp, base.join("data")).is_ok();
    if !placed {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    filled?;
    if placed {
        let _ = std::fs::write(base.join("exported"), blob.as_str());
    }
    Ok(placed)
}

/// Packs `<base>/data` into a layer blob in `store` (blocking), refusing a
/// cache over `max` bytes before packing it.
fn pack(
    store: &dyn kiln_snapshotter::content::Store,
    base: &Path,
    max: u64,
) -> Result<kiln_snapshotter::diff::Layer, MountSyncError> {
    let data = base.join("data");
    let _steps_wait = cachemount::lock_exclusive(base).map_err(|e| MountSyncError::Io("lock the cache".into(), e))?;
    let size = tree_size(&data, max).map_err(|e| MountSyncError::Io(format!("measure {}", data.display()), e))?;
    if size > max {
        return Err(MountSyncError::TooLarge(size, max));
    }
    let opts = kiln_snapshotter::diff::DiffOptions { threads: 1, ..Default::default() };
    Ok(kiln_snapshotter::diff::diff_upper(&data, store, &opts)?)
}

/// Bytes of the regular files under `dir`, counted until past `max`.
fn tree_size(dir: &Path, max: u64) -> std::io::Result<u64> {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                total += entry.metadata()?.len();
                if total > max {
                    return Ok(total);
                }
            }
        }
    }
    Ok(total)
}

/// The annotation naming the tag an artifact was pushed under: two tags'
/// artifacts never share a digest, so deleting one's old version never
/// takes the other's tag with it.
pub const TAG_ANNOTATION: &str = "io.kiln.cache-mount.tag";

/// Pushes the artifact holding `layer` under `reference`'s tag; returns
/// the manifest's digest.
async fn push_artifact(
    worker: &Worker,
    reference: &Reference,
    layer: &kiln_snapshotter::diff::Layer,
) -> Result<Digest, MountSyncError> {
    let (store, registry) = (worker.store(), worker.registry());
    let config = write_blob(store, crate::oci::EMPTY_CONFIG)?;
    let content = Descriptor::new(&layer.media_type, &layer.digest, layer.size);
    let tag = reference.tag.clone().unwrap_or_default();
    let manifest = ImageManifest {
        annotations: Some([(TAG_ANNOTATION.to_string(), tag)].into()),
        ..ImageManifest::artifact(ARTIFACT_TYPE, vec![content])
    };
    for blob in [&config, &layer.digest] {
        registry.push_blob(reference, blob, store, None).await?;
    }
    Ok(registry.put_manifest(reference, &manifest.to_bytes(), MediaType::OCI_MANIFEST).await?)
}

/// The digest of the artifact `reference`'s tag names now, when it is one
/// kiln pushed under that very tag (only those are deleted when replaced).
async fn current_artifact(worker: &Worker, reference: &Reference) -> Option<Digest> {
    let (digest, _, bytes) = worker.registry().get_manifest(reference).await.ok()?;
    let manifest: ImageManifest = serde_json::from_slice(&bytes).ok()?;
    let tagged = manifest.annotations.as_ref().and_then(|a| a.get(TAG_ANNOTATION));
    (manifest.artifact_type.as_deref() == Some(ARTIFACT_TYPE) && tagged == reference.tag.as_ref()).then_some(digest)
}

/// Deletes the artifact a new export replaced, so the registry's garbage
/// collection can free its content; a registry that refuses keeps it.
async fn delete_replaced(worker: &Worker, reference: &Reference, old: &Digest) {
    let by_digest = Reference { tag: None, ..reference.with_digest(old.as_str()) };
    match worker.registry().delete_manifest(&by_digest).await {
        Ok(true) => tracing::debug!(%by_digest, "deleted the replaced cache mount artifact"),
        Ok(false) => tracing::debug!(%by_digest, "the registry keeps the replaced cache mount artifact"),
        Err(e) => tracing::warn!(%by_digest, error = %e, "could not delete the replaced cache mount artifact"),
    }
}

impl super::Solver {
    /// Imports a cache mount this replica lacks, saying so in the step's
    /// output; a failure leaves the step an empty cache, as on a first use.
    pub(super) async fn import_cache_mount(
        &self,
        id: crate::graph::NodeId,
        sync: &MountSync,
        root: &Path,
        spec: &CacheSpec<'_>,
        input: &super::BuildInput<'_>,
    ) {
        if !sync.used(spec.tenant, spec.id) {
            let line = format!(
                "cache mount {:?} stays on this replica: a build exports at most {MAX_EXPORTED_CACHES} caches",
                spec.id
            );
            let _ = input.progress.send(super::Event::Output(id, line));
            return;
        }
        let line = match sync.import(&self.worker, root, spec).await {
            Ok(true) => format!("cache mount {:?} imported from {}", spec.id, sync.reference(spec.tenant, spec.id)),
            Ok(false) => return,
            Err(e) => format!("WARNING: cache mount {:?} not imported, starting empty: {e}", spec.id),
        };
        let _ = input.progress.send(super::Event::Output(id, line));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_kiln_s_cache_artifacts_are_imported() {
        let layer = Descriptor::new("application/vnd.oci.image.layer.v1.tar+gzip", "sha256:00", 1);
        let mut manifest = ImageManifest::oci(Descriptor::new(MediaType::OCI_EMPTY, "sha256:11", 2), vec![layer]);
        assert!(matches!(content_layer(&manifest.to_bytes()), Err(MountSyncError::Foreign(_))), "an image");
        manifest.artifact_type = Some(ARTIFACT_TYPE.into());
        assert_eq!(content_layer(&manifest.to_bytes()).unwrap().digest, "sha256:00");
    }

    #[test]
    fn tenants_and_ids_get_their_own_tags() {
        let sync = MountSync::new(Reference::parse("reg.example/kiln/cache:main").unwrap(), 1 << 20);
        let a = sync.reference("reg.example/team-a/fn", "npm");
        assert_eq!(
            (a.repository.as_str(), a.tag.as_deref().map(|t| t.starts_with("cachemount-"))),
            ("kiln/cache", Some(true))
        );
        assert_ne!(a.tag, sync.reference("reg.example/team-b/fn", "npm").tag);
        assert_ne!(a.tag, sync.reference("reg.example/team-a/fn", "pip").tag);
    }

    #[test]
    fn a_build_exports_a_bounded_number_of_caches() {
        let sync = MountSync::new(Reference::parse("reg.example/kiln/cache:main").unwrap(), 1 << 20);
        for n in 0..MAX_EXPORTED_CACHES {
            assert!(sync.used("t", &format!("c{n}")));
        }
        assert!(!sync.used("t", "one-too-many"));
        assert!(sync.used("t", "c0"), "a cache already counted stays counted");
        assert_eq!(sync.used_caches().len(), MAX_EXPORTED_CACHES);
    }

    #[test]
    fn a_cache_over_the_bound_is_not_packed() {
        let base = tempfile::tempdir().unwrap();
        std::fs::create_dir(base.path().join("data")).unwrap();
        std::fs::write(base.path().join("data/f"), vec![1u8; 4096]).unwrap();
        let store = kiln_snapshotter::conformance::MemoryStore::default();
        assert!(matches!(pack(&store, base.path(), 1024), Err(MountSyncError::TooLarge(4096, 1024))));
        let layer = pack(&store, base.path(), 1 << 20).unwrap();
        assert!(kiln_snapshotter::content::Store::info(&store, &layer.digest).unwrap().is_some());
    }
}
