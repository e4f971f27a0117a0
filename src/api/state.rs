//! Server configuration and shared state.

use super::limit::Limiter;
use crate::solver::Solver;
use crate::worker::Worker;
use std::path::PathBuf;
use std::sync::Arc;

/// What `kiln serve` was configured with.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Data directory (inside the namespace).
    pub data_dir: PathBuf,
    /// Skip signature checks (pro-builder's `disable_hmac`).
    pub disable_hmac: bool,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Most entries in a request tar.
    pub max_entries: u64,
    /// Most unpacked bytes of a request tar.
    pub max_unpacked_bytes: u64,
    /// `SOURCE_DATE_EPOCH` for reproducible timestamps.
    pub source_date_epoch: Option<i64>,
    /// Registry cache: `image` (the image's repository, tag `buildcache`)
    /// or a fixed reference; `None`: off.
    pub registry_cache: Option<String>,
    /// Keep cache mounts in the registry beside the registry cache, each
    /// up to this many bytes (`--cache-mount-export`); `None`: off.
    pub cache_mount_export: Option<u64>,
    /// Serve built images through the read-only `/v2/` pull API.
    pub serve_images: bool,
    /// Most instructions in a Dockerfile.
    pub max_instructions: usize,
    /// Most log bytes kept for a one-object JSON reply.
    pub max_reply_log: usize,
    /// Accept `X-Cloud-Signature` on pro-builder requests too.
    pub allow_cloud_signature: bool,
    /// `RUN --network=host` allowed (the `network.host` entitlement).
    pub allow_network_host: bool,
    /// How widely builds share cache mounts.
    pub tenant_scope: crate::tenant::TenantScope,
    /// Which registry images a Dockerfile may name.
    pub allowed_images: crate::imagepolicy::ImagePolicy,
    /// How much SLSA provenance pushed images get.
    pub provenance: crate::attest::provenance::Mode,
    /// Attach an SBOM to pushed images.
    pub sbom: bool,
    /// Also list attestation manifests in the image index (BuildKit's layout).
    pub docker_attestations: bool,
    /// `sha256:…` of the kiln binary (the provenance's builder id).
    pub builder_digest: String,
    /// Layer compression (`gzip`, `zstd`), recorded in provenance.
    pub layer_compression: String,
}

/// State shared by all requests.
#[derive(Clone)]
pub struct AppState {
    /// Configuration.
    pub cfg: Arc<ServeConfig>,
    /// The payload secret (HMAC key), trimmed.
    pub secret: Arc<Vec<u8>>,
    /// The solver (keys and schedules steps).
    pub solver: Arc<Solver>,
    /// The worker (storage, execution, pushes' bookkeeping, upkeep).
    pub worker: Arc<Worker>,
    /// The `max_inflight` limiter.
    pub limiter: Limiter,
    /// Bounds the request bodies received at once.
    pub uploads: super::upload::UploadGate,
    /// Prometheus metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The key that signs images and attestations, when configured.
    pub signing_key: Option<Arc<crate::attest::SigningKey>>,
    /// The build-secrets key pair, when configured.
    pub build_key: Option<Arc<crate::buildsecrets::BuildKey>>,
    /// Shutdown state (draining, cancelling).
    pub lifecycle: super::lifecycle::Lifecycle,
    /// Where audit records go.
    pub audit: Arc<super::audit::AuditSink>,
    /// `kiln doctor`'s checks from outside the namespace, made at start.
    pub startup_checks: Arc<Vec<crate::doctor::Check>>,
    /// The build history (`None`: `--history-size 0`).
    pub history: Option<Arc<crate::history::History>>,
}
