//! Typed OCI values, a leaf every other module may use: descriptors,
//! manifests, indexes and their platform objects ([`manifest`]), and
//! kiln's own image config type ([`config`]). Nothing here does I/O.

pub mod config;
pub mod manifest;

pub use config::{ContainerConfig, HealthConfig, History, ImageConfig, RootFs};
pub use manifest::{Descriptor, ImageIndex, ImageManifest, MediaType, PlatformSpec, EMPTY_CONFIG};

/// Largest manifest, index or config kiln reads into memory: the 4 MiB
/// the distribution spec says registries should accept for manifests.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
