//! Manifest, index and descriptor types (OCI and Docker v2 schema 2).

use serde::{Deserialize, Serialize};

/// The empty JSON object OCI 1.1 artifacts use as their config.
pub const EMPTY_CONFIG: &[u8] = b"{}";

/// Media types kiln reads and writes.
pub struct MediaType;

impl MediaType {
    /// OCI image manifest.
    pub const OCI_MANIFEST: &'static str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image index.
    pub const OCI_INDEX: &'static str = "application/vnd.oci.image.index.v1+json";
    /// Docker v2 schema 2 manifest.
    pub const DOCKER_MANIFEST: &'static str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker manifest list.
    pub const DOCKER_LIST: &'static str = "application/vnd.docker.distribution.manifest.list.v2+json";
    /// OCI image config.
    pub const OCI_CONFIG: &'static str = "application/vnd.oci.image.config.v1+json";
    /// OCI 1.1's empty descriptor (`{}`), the config of artifacts.
    pub const OCI_EMPTY: &'static str = "application/vnd.oci.empty.v1+json";
    /// Docker gzip layer (same bytes as the OCI one).
    pub const DOCKER_LAYER_GZIP: &'static str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    /// OCI gzip layer.
    pub const OCI_LAYER_GZIP: &'static str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// OCI uncompressed layer.
    pub const OCI_LAYER_TAR: &'static str = "application/vnd.oci.image.layer.v1.tar";

    /// The `Accept` header for manifest requests.
    pub fn accept() -> String {
        [Self::OCI_INDEX, Self::DOCKER_LIST, Self::OCI_MANIFEST, Self::DOCKER_MANIFEST].join(", ")
    }

    /// The OCI equivalent of a layer media type (Docker's gzip layers are
    /// byte-identical to OCI ones).
    pub fn oci_layer(media_type: &str) -> &str {
        match media_type {
            Self::DOCKER_LAYER_GZIP => Self::OCI_LAYER_GZIP,
            "application/vnd.docker.image.rootfs.diff.tar" => Self::OCI_LAYER_TAR,
            other => other,
        }
    }
}

/// A content descriptor. Fields are declared in the sorted order of their
/// JSON keys (as for every type here), so what kiln writes is canonical
/// JSON: the same bytes, and digests, as a sorted-key encoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Annotations (a layer's `buildkit/rewritten-timestamp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
    /// The artifact type (entries of a referrers index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Digest.
    pub digest: String,
    /// Media type.
    pub media_type: String,
    /// Platform (index entries only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<PlatformSpec>,
    /// Size in bytes.
    pub size: u64,
}

impl Descriptor {
    /// A descriptor without a platform.
    pub fn new(media_type: &str, digest: impl ToString, size: u64) -> Self {
        Descriptor {
            annotations: None,
            artifact_type: None,
            digest: digest.to_string(),
            media_type: media_type.to_string(),
            platform: None,
            size,
        }
    }
}

/// The platform of an index entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformSpec {
    /// CPU architecture.
    pub architecture: String,
    /// OS.
    pub os: String,
    /// Variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
    /// What kind of artifact this is (OCI 1.1 artifacts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// Layers, base first.
    pub layers: Vec<Descriptor>,
    /// Media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Always 2.
    pub schema_version: u32,
    /// The manifest this one is about (OCI 1.1 referrers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
}

impl ImageManifest {
    /// An OCI image manifest over `config` and `layers`.
    pub fn oci(config: Descriptor, layers: Vec<Descriptor>) -> Self {
        ImageManifest {
            annotations: None,
            artifact_type: None,
            config,
            layers,
            media_type: Some(MediaType::OCI_MANIFEST.into()),
            schema_version: 2,
            subject: None,
        }
    }

    /// An OCI 1.1 artifact manifest: `artifact_type`, the empty config
    /// (whose blob is [`EMPTY_CONFIG`]) and `layers`.
    pub fn artifact(artifact_type: &str, layers: Vec<Descriptor>) -> Self {
        let config = Descriptor::new(
            MediaType::OCI_EMPTY,
            kiln_snapshotter::Digest::of(EMPTY_CONFIG),
            EMPTY_CONFIG.len() as u64,
        );
        ImageManifest { artifact_type: Some(artifact_type.to_string()), ..Self::oci(config, layers) }
    }

    /// The manifest's JSON bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("manifest serializes")
    }
}

/// An image index / manifest list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    /// Per-platform manifests.
    pub manifests: Vec<Descriptor>,
    /// Media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Always 2.
    pub schema_version: u32,
}

impl ImageIndex {
    /// An OCI image index over `manifests`.
    pub fn oci(manifests: Vec<Descriptor>) -> Self {
        ImageIndex { manifests, media_type: Some(MediaType::OCI_INDEX.into()), schema_version: 2 }
    }

    /// The index's JSON bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("index serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn typed_values_write_the_bytes_of_sorted_key_json() {
        let layer = Descriptor::new(MediaType::OCI_LAYER_GZIP, "sha256:aa", 3);
        let manifest = ImageManifest::oci(Descriptor::new(MediaType::OCI_CONFIG, "sha256:cc", 7), vec![layer]);
        let expected = json!({
            "schemaVersion": 2,
            "mediaType": MediaType::OCI_MANIFEST,
            "config": {"mediaType": MediaType::OCI_CONFIG, "digest": "sha256:cc", "size": 7},
            "layers": [{"mediaType": MediaType::OCI_LAYER_GZIP, "digest": "sha256:aa", "size": 3}],
        });
        assert_eq!(manifest.to_bytes(), serde_json::to_vec(&expected).unwrap());
        let platform = PlatformSpec { architecture: "arm".into(), os: "linux".into(), variant: Some("v7".into()) };
        let entry =
            Descriptor { platform: Some(platform.clone()), ..Descriptor::new(MediaType::OCI_MANIFEST, "sha256:dd", 9) };
        let expected = json!({"schemaVersion": 2, "mediaType": MediaType::OCI_INDEX, "manifests": [
            {"mediaType": MediaType::OCI_MANIFEST, "digest": "sha256:dd", "size": 9, "platform": platform}]});
        assert_eq!(ImageIndex::oci(vec![entry]).to_bytes(), serde_json::to_vec(&expected).unwrap());
    }
}
