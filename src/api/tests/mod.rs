//! The HTTP API in process: `app(state).oneshot(request)` against a server
//! state whose blobs live in an in-memory content store and snapshots in a
//! temporary directory, pulling from and pushing to an in-memory registry
//! — no listener, no registry process, no root, no helper process: RUN
//! steps go to a fake runner that writes into the step's upper directory.
//! Builds run to the end (base layers pulled and unpacked, steps diffed,
//! committed, cached, exported and pushed).

mod build;
mod registry;
mod solve;
mod surface;

use super::audit::AuditSink;
use super::auth::SIGNATURE_HEADER;
use super::limit::Limiter;
use super::upload::UploadGate;
use super::{app, metrics_app, AppState, ServeConfig};
use crate::egress::{policy::EgressPolicy, NetworkConfig, StepNetworks};
use crate::registry::memory::MemoryRegistry;
use crate::solver::{Solver, SolverConfig};
use crate::wire::{sign, CONFIG_ENTRY};
use crate::worker::fake_runner::ScriptRunner;
use crate::worker::{Backends, Worker, WorkerConfig};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use kiln_snapshotter::conformance::MemoryStore;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tower::ServiceExt;

pub(super) const SECRET: &[u8] = b"in-process-secret";

/// A server state over a temporary data directory, and its audit file.
pub(super) struct Fixture {
    _dir: tempfile::TempDir,
    pub(super) state: AppState,
    audit_file: PathBuf,
    /// The fake step runner the solver uses.
    pub(super) runner: Arc<ScriptRunner>,
    /// The in-memory registry the worker pulls from and pushes to.
    pub(super) registry: Arc<MemoryRegistry>,
}

fn config(data_dir: PathBuf) -> ServeConfig {
    ServeConfig {
        data_dir,
        disable_hmac: false,
        max_body_bytes: 1 << 20,
        max_entries: 100,
        max_unpacked_bytes: 1 << 20,
        source_date_epoch: None,
        registry_cache: None,
        cache_mount_export: None,
        serve_images: false,
        max_instructions: 100,
        max_reply_log: 1 << 20,
        allow_cloud_signature: false,
        allow_network_host: false,
        tenant_scope: Default::default(),
        allowed_images: Default::default(),
        provenance: crate::attest::provenance::Mode::Off,
        sbom: false,
        docker_attestations: false,
        builder_digest: "sha256:00".into(),
        layer_compression: "gzip".into(),
    }
}

pub(super) fn fixture_with(max_inflight: usize, tweak: impl FnOnce(&mut ServeConfig)) -> Fixture {
    fixture_on(Arc::new(MemoryRegistry::default()), max_inflight, tweak)
}

/// A fixture whose worker talks to `registry` (several fixtures on one
/// registry are replicas sharing it).
pub(super) fn fixture_on(
    registry: Arc<MemoryRegistry>,
    max_inflight: usize,
    tweak: impl FnOnce(&mut ServeConfig),
) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    std::fs::create_dir(&data_dir).unwrap();
    let network = NetworkConfig {
        policy: Arc::new(EgressPolicy::new(Vec::new(), Vec::new(), Vec::new())),
        resolvers: Arc::new(Vec::new()),
        nft: "nft".into(),
        spare: 0,
    };
    let runner = Arc::new(ScriptRunner::default());
    let snapshots = kiln_snapshotter::Snapshots::open(data_dir.join("snapshots")).unwrap();
    let backends = Backends {
        store: Arc::new(MemoryStore::default()),
        snapshots: Arc::new(snapshots),
        runner: runner.clone(),
        registry: registry.clone(),
    };
    let worker_cfg = WorkerConfig { data_dir: data_dir.clone(), diff: Default::default(), cache_budget: None };
    let worker = Arc::new(Worker::with(worker_cfg, backends).unwrap());
    let solver_cfg = SolverConfig {
        step_limits: Default::default(),
        max_archive_bytes: 1 << 20,
        networks: StepNetworks::new(network),
    };
    let solver = Solver::new(worker.clone(), solver_cfg).unwrap();
    let audit_file = dir.path().join("audit.log");
    let audit = std::fs::File::create(&audit_file).unwrap();
    let mut cfg = config(data_dir);
    tweak(&mut cfg);
    let state = AppState {
        cfg: Arc::new(cfg),
        secret: Arc::new(SECRET.to_vec()),
        solver: Arc::new(solver),
        worker,
        limiter: Limiter::new(max_inflight),
        uploads: UploadGate::new(4),
        metrics: Default::default(),
        build_key: None,
        signing_key: None,
        lifecycle: Default::default(),
        audit: Arc::new(AuditSink::File(std::sync::Mutex::new(audit), audit_file.clone())),
        startup_checks: Arc::new(Vec::new()),
        history: None,
    };
    Fixture { _dir: dir, state, audit_file, runner, registry }
}

pub(super) fn fixture() -> Fixture {
    fixture_with(4, |_| {})
}

impl Fixture {
    /// The image config of a successful build's reply, from the store.
    pub(super) fn image_config(&self, reply: &Value) -> Value {
        let read = |digest: &str| -> Value {
            let digest = kiln_snapshotter::Digest::parse(digest).unwrap();
            serde_json::from_slice(&self.blob(&digest)).unwrap()
        };
        let manifest = read(reply["digest"].as_str().unwrap());
        read(manifest["config"]["digest"].as_str().unwrap())
    }

    /// A blob of the worker's store.
    pub(super) fn blob(&self, digest: &kiln_snapshotter::Digest) -> Vec<u8> {
        kiln_snapshotter::content::read_blob(self.state.worker.store(), digest, 1 << 30).unwrap()
    }

    pub(super) fn audit_lines(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.audit_file).unwrap();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

/// A request tar of `files`.
pub(super) fn tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// A pro-builder request: config entry plus `context/Dockerfile`.
pub(super) fn request(config: Value, dockerfile: &str) -> Vec<u8> {
    let config = serde_json::to_vec(&config).unwrap();
    tar(&[(CONFIG_ENTRY, &config), ("context/Dockerfile", dockerfile.as_bytes())])
}

/// `POST /build` with `body`, signed unless `signature` says otherwise.
pub(super) fn post_build(body: Vec<u8>, signature: Option<String>, headers: &[(&str, &str)]) -> Request<Body> {
    let mut req = Request::post("/build");
    if let Some(sig) = signature {
        req = req.header(SIGNATURE_HEADER, sig);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut req = req.body(Body::from(body)).unwrap();
    req.extensions_mut().insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    req
}

pub(super) fn signed(body: Vec<u8>) -> Request<Body> {
    let sig = sign(SECRET, &body);
    post_build(body, Some(sig), &[])
}

pub(super) async fn send(router: Router, req: Request<Body>) -> (StatusCode, HeaderMap, Vec<u8>) {
    let resp = router.oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    (parts.status, parts.headers, bytes.to_vec())
}

pub(super) async fn send_json(router: Router, req: Request<Body>) -> (StatusCode, Value) {
    let (status, _, body) = send(router, req).await;
    let value = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body)));
    (status, value)
}

pub(super) const LAYERLESS: &str = "FROM scratch\nLABEL org.example.team=functions\nENV MODE=fast\nCMD [\"/fn\"]\n";

pub(super) fn local_only(image: &str) -> Value {
    json!({"image": image, "skipPush": true})
}
