//! Image export: the image config (our own type, so digests are stable),
//! the OCI manifest, and the push — every blob checked with HEAD first,
//! mounted from its origin repository when possible, uploaded otherwise.
//!
//! Timestamps come from the layers (when each was built), not from the
//! export, so a fully cached rebuild yields the same config and manifest
//! and uploads nothing.

pub mod attach;
pub mod docker_attest;
pub mod signature;

use crate::graph::{History, HistoryStep, ImageConfig, LayerRecord};
use crate::oci::{Descriptor, ImageIndex, ImageManifest};
use crate::platform::Platform;
use crate::registry::{MediaType, PushOutcome, Reference, Registry};
use crate::timefmt::rfc3339;
use futures_util::{StreamExt, TryStreamExt};
use kiln_snapshotter::content::{write_blob, Store};
use kiln_snapshotter::Digest;

/// What was exported.
#[derive(Debug, Clone)]
pub struct Exported {
    /// Manifest digest.
    pub manifest: Digest,
    /// Manifest size in bytes.
    pub manifest_size: u64,
    /// Compressed bytes uploaded (blobs the registry already had or mounted
    /// do not count).
    pub pushed_bytes: u64,
    /// The repository had no such manifest before: its config had to be
    /// uploaded (a manifest cannot be there without its config).
    pub unseen: bool,
}

/// Export settings for one image.
pub struct ExportInput<'a> {
    /// Where to push.
    pub target: &'a Reference,
    /// The layer chain, base first.
    pub layers: &'a [LayerRecord],
    /// The image config from the Dockerfile (rootfs and history are filled
    /// in here).
    pub config: &'a ImageConfig,
    /// The image's history, base entries first.
    pub history: &'a [HistoryStep],
    /// Push, or only write blobs locally.
    pub push: bool,
    /// Push the manifest by digest only (it becomes an index entry) rather
    /// than under the target's tag.
    pub by_digest: bool,
    /// `SOURCE_DATE_EPOCH`: every new timestamp becomes this.
    pub epoch: Option<i64>,
}

/// Export failures.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Pushing failed.
    #[error("push {target}: {source}")]
    Push {
        /// The target.
        target: String,
        /// The registry error.
        #[source]
        source: crate::registry::Error,
    },
    /// Local storage failed.
    #[error("export: {0}")]
    Storage(#[from] kiln_snapshotter::Error),
}

/// Builds the final image config.
pub fn image_config(
    config: &ImageConfig,
    steps: &[HistoryStep],
    layers: &[LayerRecord],
    epoch: Option<i64>,
) -> ImageConfig {
    let mut config = config.clone();
    config.rootfs.diff_ids = layers.iter().map(|l| l.diff_id.to_string()).collect();
    let built = &layers[first_built(steps, layers)..];
    let stamp = |secs: i64| rfc3339(epoch.unwrap_or(secs));
    let mut built_iter = built.iter();
    let mut last_time = built.first().map(|l| l.created);
    let mut history: Vec<History> = Vec::with_capacity(steps.len());
    for HistoryStep { entry, node, from_base } in steps {
        let mut entry = entry.clone();
        if !from_base {
            if node.is_some() {
                last_time = built_iter.next().map(|l| l.created).or(last_time);
            }
            entry.created = last_time.map(stamp);
        }
        history.push(entry);
    }
    config.history = history;
    config.created = match built.iter().map(|l| l.created).max() {
        Some(t) => Some(stamp(t)),
        None => config.created.or_else(|| epoch.map(rfc3339)),
    };
    config
}

/// Where the build's own layers start in `layers`: after the base image's.
fn first_built(steps: &[HistoryStep], layers: &[LayerRecord]) -> usize {
    let new_layers = steps.iter().filter(|h| h.node.is_some() && !h.from_base).count();
    layers.len().saturating_sub(new_layers)
}

/// BuildKit's layer annotation: the layer's mtimes are clamped to this
/// `SOURCE_DATE_EPOCH` (its `rewrite-timestamp`).
pub const REWRITTEN_TIMESTAMP: &str = "buildkit/rewritten-timestamp";

/// The OCI manifest for `config` and `layers`; the layers from
/// `first_built` on were clamped to `epoch` and say so.
pub fn manifest(
    config_digest: &Digest,
    config_size: usize,
    layers: &[LayerRecord],
    first_built: usize,
    epoch: Option<i64>,
) -> Vec<u8> {
    let config = Descriptor::new(MediaType::OCI_CONFIG, config_digest, config_size as u64);
    let layers = layers
        .iter()
        .enumerate()
        .map(|(i, l)| Descriptor {
            annotations: epoch
                .filter(|_| i >= first_built)
                .map(|e| [(REWRITTEN_TIMESTAMP.to_string(), e.to_string())].into()),
            ..Descriptor::new(&l.media_type, &l.digest, l.size)
        })
        .collect();
    ImageManifest::oci(config, layers).to_bytes()
}

/// The image config of a manifest that carries documents rather than a
/// filesystem (cosign's signature manifests: platform `""`; BuildKit's
/// attestation manifests: `unknown`): the documents as its layers' diff ids.
pub fn attachment_config(platform: &str, layers: &[Descriptor]) -> Vec<u8> {
    let diff_ids: Vec<&str> = layers.iter().map(|l| l.digest.as_str()).collect();
    let config = serde_json::json!({
        "architecture": platform, "os": platform, "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    serde_json::to_vec(&config).expect("config serializes")
}

/// Layers uploaded at the same time.
pub const PARALLEL_UPLOADS: usize = 4;

/// Writes config and manifest to the store and pushes everything: the
/// layers in parallel, then the config, then the manifest (so a tag never
/// points at a missing blob).
pub async fn export(
    store: &dyn Store,
    registry: &dyn Registry,
    input: &ExportInput<'_>,
    log: &(dyn Fn(String) + Sync),
) -> Result<Exported, ExportError> {
    // A config can be megabytes (thousands of labels and history entries).
    let (config_bytes, config_digest, manifest_bytes, manifest_digest) = crate::blocking::in_place(|| {
        let config = image_config(input.config, input.history, input.layers, input.epoch);
        let config_bytes = serde_json::to_vec(&config).expect("config serializes");
        let config_digest = write_blob(store, &config_bytes)?;
        let first_built = first_built(input.history, input.layers);
        let manifest_bytes = manifest(&config_digest, config_bytes.len(), input.layers, first_built, input.epoch);
        let manifest_digest = write_blob(store, &manifest_bytes)?;
        Ok::<_, ExportError>((config_bytes, config_digest, manifest_bytes, manifest_digest))
    })?;
    let manifest_size = manifest_bytes.len() as u64;
    if !input.push {
        return Ok(Exported { manifest: manifest_digest, manifest_size, pushed_bytes: 0, unseen: false });
    }
    let target = input.target;
    let push_err = |source| ExportError::Push { target: target.to_string(), source };
    let mut uploads = Vec::new();
    for layer in input.layers {
        uploads.push(push_layer(store, registry, target, layer, log));
    }
    let sizes: Vec<u64> =
        futures_util::stream::iter(uploads).buffer_unordered(PARALLEL_UPLOADS).try_collect().await.map_err(push_err)?;
    let mut pushed_bytes: u64 = sizes.iter().sum();
    let outcome = registry.push_blob(target, &config_digest, store, None).await.map_err(push_err)?;
    pushed_bytes += if outcome == PushOutcome::Uploaded { config_bytes.len() as u64 } else { 0 };
    log(format!("pushing config {config_digest} {}", describe(outcome)));
    let manifest_ref = match input.by_digest {
        true => target.with_digest(manifest_digest.as_str()),
        false => target.clone(),
    };
    registry.put_manifest(&manifest_ref, &manifest_bytes, MediaType::OCI_MANIFEST).await.map_err(push_err)?;
    log(format!("pushing manifest for {target}@{manifest_digest}"));
    pushed_bytes += manifest_size;
    let unseen = outcome == PushOutcome::Uploaded;
    Ok(Exported { manifest: manifest_digest, manifest_size, pushed_bytes, unseen })
}

/// The OCI image index over per-platform manifests, then `extra` entries
/// (BuildKit-layout attestation manifests).
pub fn index(images: &[(Platform, Exported)], extra: &[Descriptor]) -> Vec<u8> {
    let manifests = images
        .iter()
        .map(|(platform, e)| Descriptor {
            platform: Some(platform.spec()),
            ..Descriptor::new(MediaType::OCI_MANIFEST, &e.manifest, e.manifest_size)
        })
        .chain(extra.iter().cloned())
        .collect();
    ImageIndex::oci(manifests).to_bytes()
}

/// Writes the index over `images` (already pushed by digest) to the store
/// and, when `push`, tags it in the registry; returns its digest.
pub async fn export_index(
    store: &dyn Store,
    registry: &dyn Registry,
    target: &Reference,
    images: &[(Platform, Exported)],
    extra: &[Descriptor],
    push: bool,
    log: &(dyn Fn(String) + Sync),
) -> Result<Digest, ExportError> {
    let bytes = index(images, extra);
    let digest = write_blob(store, &bytes)?;
    if push {
        let push_err = |source| ExportError::Push { target: target.to_string(), source };
        registry.put_manifest(target, &bytes, MediaType::OCI_INDEX).await.map_err(push_err)?;
        log(format!("pushing manifest list for {target}@{digest}"));
    }
    Ok(digest)
}

/// Pushes one layer (mounting it from its origin repository when it came
/// from another one); returns the bytes uploaded.
async fn push_layer(
    store: &dyn Store,
    registry: &dyn Registry,
    target: &Reference,
    layer: &LayerRecord,
    log: &(dyn Fn(String) + Sync),
) -> Result<u64, crate::registry::Error> {
    let origin = layer.origin.as_deref().and_then(|o| Reference::parse(o).ok());
    let desc = Descriptor::new(&layer.media_type, layer.digest.as_str(), layer.size);
    let outcome = crate::registry::push_layer_blob(registry, store, target, &desc, origin.as_ref()).await?;
    log(format!("pushing layer {} {}", layer.digest, describe(outcome)));
    Ok(if outcome == PushOutcome::Uploaded { layer.size } else { 0 })
}

fn describe(o: PushOutcome) -> &'static str {
    match o {
        PushOutcome::Existed => "(already exists)",
        PushOutcome::Mounted => "(mounted)",
        PushOutcome::Uploaded => "(uploaded)",
    }
}

#[cfg(test)]
mod tests;
