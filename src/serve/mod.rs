//! `kiln serve`. The process the user starts (the supervisor) reads what
//! only it may read — the payload secret and registry credentials, which
//! can be owned by host root and unreadable inside the namespace — prepares
//! the data directory, then re-executes itself into a user namespace with
//! a full subordinate ID range and hands those secrets over on the child's
//! stdin. The namespaced child runs the HTTP server; the supervisor
//! forwards signals and exits with the child's status. Rotating the
//! payload secret or credentials takes a restart.

pub(crate) mod options;

use crate::cli::ServeArgs;
use kiln::api::{app, AppState, ServeConfig};
use kiln::registry::{Credentials, RegistryClient};
use kiln::solver::{Solver, SolverConfig};
use kiln::worker::runner::HelperRunner;
use kiln::worker::{Worker, WorkerConfig};
use kiln_runtime::userns::{spawn_mapped, IdMap};
pub(crate) use options::{
    default_data_dir, parse_mirrors, parse_range, read_docker_config, registry_options, secret_files,
};
use options::{diff_options, step_limits};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

/// What the supervisor hands the namespaced server.
#[derive(Serialize, Deserialize)]
struct Handover {
    payload_secret: Vec<u8>,
    docker_config: Option<Vec<u8>>,
    build_key: Option<String>,
    /// The signing key as PKCS#8 PEM (opened outside the namespace, where
    /// a root-owned key file is readable).
    signing_key: Option<String>,
    data_dir: PathBuf,
    /// The doctor's outside checks, as the supervisor saw them at start.
    startup_checks: Vec<kiln::doctor::Check>,
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KILN_LOG").unwrap_or_else(|_| "info".into());
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal();
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
}

/// Entry point for `kiln serve`.
pub fn main(opts: ServeArgs, in_namespace: bool) -> ExitCode {
    init_tracing();
    let result = if in_namespace { server(opts) } else { supervise(opts) };
    match result {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::from(1)
        }
    }
}

static CHILD: AtomicI32 = AtomicI32::new(0);

/// Environment variable naming the server's end of the credential broker.
const BROKER_ENV: &str = "_KILN_CRED_FD";

/// Environment variable naming the audit file the supervisor opened.
const AUDIT_FD_ENV: &str = "_KILN_AUDIT_FD";

/// Opens an `--audit-log` file with the supervisor's own rights (the
/// namespaced server may not reach the path), for the server to inherit.
fn open_audit_file(spec: &str) -> anyhow::Result<Option<std::fs::File>> {
    use std::os::unix::fs::OpenOptionsExt;
    if kiln::api::audit::AuditSink::is_stream(spec) {
        return Ok(None);
    }
    let file = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(spec);
    Ok(Some(file.map_err(|e| anyhow::anyhow!("--audit-log {spec}: {e}"))?))
}

extern "C" fn forward_signal(sig: libc::c_int) {
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Refuses to start, at once, when builds could not run: names the cause
/// and its fix, and points to `kiln doctor`.
/// `checks` are `kiln doctor`'s outside checks, made once at start and
/// handed to the server for `/doctor`.
fn refuse_unless_namespaces_work(checks: &[kiln::doctor::Check], root_range: (u32, u32)) -> anyhow::Result<IdMap> {
    const DOCTOR: &str = "`kiln doctor` checks every requirement and prints its fix";
    if let Some(failed) = checks.iter().find(|c| c.status == kiln::doctor::Status::Fail) {
        let fix = failed.fix.as_deref().unwrap_or("see `kiln doctor`");
        anyhow::bail!("kiln cannot build here: {}.\nfix: {fix}.\n{DOCTOR}", failed.detail);
    }
    IdMap::detect(root_range).map_err(|e| anyhow::anyhow!("kiln cannot build here: {e}.\n{DOCTOR}"))
}

/// Reads and opens `--signing-key` (a cosign-format key with
/// `COSIGN_PASSWORD`), so a bad key stops the server at start.
fn read_signing_key(path: Option<&std::path::Path>) -> anyhow::Result<Option<String>> {
    let Some(path) = path else { return Ok(None) };
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("read signing key {}: {e}", path.display()))?;
    let password = std::env::var("COSIGN_PASSWORD").ok();
    let key = kiln::attest::SigningKey::from_pem(&text, password.as_deref())
        .map_err(|e| anyhow::anyhow!("signing key {}: {e}", path.display()))?;
    tracing::info!(key_id = key.public().key_id(), "images are signed with {}", path.display());
    Ok(Some(key.to_pem()))
}

fn supervise(opts: ServeArgs) -> anyhow::Result<ExitCode> {
    let data_dir = opts.data_dir.clone().unwrap_or_else(default_data_dir);
    let range = parse_range(&opts.root_id_range)?;
    let mut startup_checks = kiln::doctor::probes::outside(range);
    let map = refuse_unless_namespaces_work(&startup_checks, range)?;
    prepare_data_dir(&data_dir, map.ns_root_owner())?;
    let data_dir = data_dir.canonicalize()?;
    let modes = secret_files(&opts, &data_dir);
    if modes.status != kiln::doctor::Status::Ok {
        tracing::warn!("{}: {}; {}", modes.name, modes.detail, modes.fix.as_deref().unwrap_or_default());
    }
    startup_checks.push(modes);
    let handover = Handover {
        payload_secret: load_or_generate_secret(&opts.payload_secret, &data_dir)?,
        docker_config: read_docker_config(opts.docker_config.as_deref())?,
        build_key: match &opts.build_secrets_key {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .map_err(|e| anyhow::anyhow!("read build secrets key {}: {e}", p.display()))?,
            ),
            None => None,
        },
        signing_key: read_signing_key(opts.signing_key.as_deref())?,
        data_dir: data_dir.clone(),
        startup_checks,
    };
    let (broker, broker_child) = UnixStream::pair()?;
    let broker_fd = broker_child.as_raw_fd();
    let audit_file = open_audit_file(&opts.audit_log)?;
    let mut inherited = vec![broker_fd];
    let mut cmd = Command::new("/proc/self/exe");
    cmd.args(std::env::args_os().skip(1))
        .env("KILN_DATA_DIR", &data_dir)
        .env(BROKER_ENV, broker_fd.to_string())
        .env_remove("COSIGN_PASSWORD")
        .stdin(Stdio::piped());
    if let Some(file) = &audit_file {
        cmd.env(AUDIT_FD_ENV, file.as_raw_fd().to_string());
        inherited.push(file.as_raw_fd());
    }
    // SAFETY: only fcntl(2) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            for fd in &inherited {
                if libc::fcntl(*fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = spawn_mapped(cmd, &map)?;
    drop(broker_child);
    drop(audit_file);
    std::thread::spawn(move || kiln::registry::helpers::serve_broker(broker));
    CHILD.store(child.id() as i32, Ordering::SeqCst);
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: installing a handler that only calls kill(2).
        unsafe { libc::signal(sig, forward_signal as *const () as libc::sighandler_t) };
    }
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(&serde_json::to_vec(&handover)?)?;
    drop(stdin);
    let status = child.wait()?;
    Ok(ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8))
}

/// Creates the data dir (0700) owned by whoever is root in the namespace.
pub(crate) fn prepare_data_dir(dir: &Path, owner: (u32, u32)) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    if nix::unistd::geteuid().is_root() {
        std::os::unix::fs::chown(dir, Some(owner.0), Some(owner.1))?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

fn load_or_generate_secret(path: &Path, data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    if let Ok(raw) = std::fs::read(path) {
        let secret = String::from_utf8_lossy(&raw).trim().as_bytes().to_vec();
        anyhow::ensure!(!secret.is_empty(), "payload secret {} is empty", path.display());
        tracing::info!("payload secret read from {}", path.display());
        return Ok(secret);
    }
    let generated = data_dir.join("payload-secret");
    if let Ok(raw) = std::fs::read(&generated) {
        tracing::info!("no {}; using the generated secret in {}", path.display(), generated.display());
        return Ok(String::from_utf8_lossy(&raw).trim().as_bytes().to_vec());
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("random: {e}"))?;
    use base64::Engine;
    let secret = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode_0600().open(&generated)?;
    f.write_all(secret.as_bytes())?;
    tracing::warn!("no payload secret at {}; generated one into {}", path.display(), generated.display());
    Ok(secret.into_bytes())
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for std::fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::mode(self, 0o600)
    }
}

/// `sha256:…` of the running binary (the provenance's builder id).
fn own_binary_digest() -> String {
    match std::fs::File::open("/proc/self/exe") {
        Ok(mut f) => {
            let mut h = <sha2::Sha256 as sha2::Digest>::new();
            match std::io::copy(&mut f, &mut h) {
                Ok(_) => format!("sha256:{}", hex::encode(sha2::Digest::finalize(h))),
                Err(_) => "unknown".into(),
            }
        }
        Err(_) => "unknown".into(),
    }
}

fn server(opts: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut raw = Vec::new();
    std::io::stdin().read_to_end(&mut raw)?;
    let handover: Handover =
        serde_json::from_slice(&raw).map_err(|e| anyhow::anyhow!("handover from supervisor: {e}"))?;
    let mut credentials = match &handover.docker_config {
        Some(b) => Credentials::from_docker_config(b)?,
        None => Credentials::default(),
    };
    if let Some(fd) = std::env::var(BROKER_ENV).ok().and_then(|v| v.parse::<i32>().ok()) {
        std::env::remove_var(BROKER_ENV);
        // SAFETY: the supervisor handed us this socket and nothing else owns it.
        let sock = unsafe { UnixStream::from_raw_fd(fd) };
        credentials = credentials.with_broker(Arc::new(kiln::registry::helpers::BrokerClient::new(sock)?));
    }
    let builder_digest = own_binary_digest();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let mirrors = parse_mirrors(&opts.registry_mirrors)?;
        let registry = Arc::new(RegistryClient::new(registry_options(&opts, credentials, mirrors)?)?);
        let networks = options::step_networks(&opts)?;
        networks.warm();
        let worker_cfg = WorkerConfig {
            data_dir: handover.data_dir.clone(),
            diff: diff_options(&opts),
            cache_budget: (opts.cache_max_size > 0).then_some(opts.cache_max_size),
        };
        let runner = Arc::new(HelperRunner {
            helper_exe: PathBuf::from("/proc/self/exe"),
            step_timeout: (opts.step_timeout > 0).then(|| std::time::Duration::from_secs(opts.step_timeout)),
            networks: networks.clone(),
        });
        let worker = Arc::new(Worker::open(worker_cfg, runner, registry)?);
        let solver_cfg = SolverConfig {
            max_archive_bytes: opts.max_unpacked_mb << 20,
            step_limits: step_limits(&opts),
            networks: networks.clone(),
        };
        let solver = Solver::new(worker.clone(), solver_cfg)?;
        let registry_cache = Some(opts.registry_cache.trim().to_string()).filter(|c| !c.is_empty() && c != "off");
        if opts.cache_mount_export && registry_cache.is_none() {
            anyhow::bail!("--cache-mount-export keeps cache mounts beside the registry cache: set --registry-cache");
        }
        let history = open_history(&handover.data_dir, opts.history_size)?;
        let cfg = ServeConfig {
            data_dir: handover.data_dir,
            disable_hmac: opts.disable_hmac,
            max_body_bytes: opts.max_body_mb << 20,
            max_entries: opts.max_entries,
            max_unpacked_bytes: opts.max_unpacked_mb << 20,
            source_date_epoch: opts.source_date_epoch.seconds(),
            registry_cache: registry_cache.clone(),
            cache_mount_export: opts.cache_mount_export.then_some(opts.cache_mount_export_max_size),
            serve_images: opts.serve_images,
            max_instructions: opts.max_dockerfile_instructions,
            max_reply_log: opts.max_reply_log as usize,
            allow_cloud_signature: opts.allow_cloud_signature,
            tenant_scope: opts.tenant_scope,
            allow_network_host: opts.allow_insecure_entitlement.iter().any(|e| e == "network.host"),
            allowed_images: kiln::imagepolicy::ImagePolicy::new(&opts.allowed_images),
            provenance: opts.provenance.parse().map_err(|e: String| anyhow::anyhow!(e))?,
            sbom: opts.sbom,
            docker_attestations: opts.docker_attestations,
            builder_digest,
            layer_compression: opts.compression.clone(),
        };
        if cfg.disable_hmac {
            tracing::warn!("disable_hmac is set: /build accepts unsigned requests");
        }
        let state = AppState {
            cfg: Arc::new(cfg),
            secret: Arc::new(handover.payload_secret),
            solver: Arc::new(solver),
            worker,
            limiter: kiln::api::limit::Limiter::new(opts.max_inflight),
            uploads: kiln::api::upload::UploadGate::new(opts.max_pending_uploads),
            metrics: Default::default(),
            signing_key: match &handover.signing_key {
                Some(pem) => Some(Arc::new(kiln::attest::SigningKey::from_pem(pem, None)?)),
                None => None,
            },
            build_key: match &handover.build_key {
                Some(text) => Some(Arc::new(kiln::buildsecrets::BuildKey::from_private_b64(text)?)),
                None => None,
            },
            lifecycle: Default::default(),
            audit: Arc::new(open_audit_sink(&opts.audit_log)?),
            startup_checks: Arc::new(handover.startup_checks),
            history: history.clone(),
        };
        let listener = tokio::net::TcpListener::bind(&opts.listen).await?;
        tracing::info!("kiln listening on {}", listener.local_addr()?);
        if !opts.metrics_listen.is_empty() {
            let metrics_listener = tokio::net::TcpListener::bind(&opts.metrics_listen).await?;
            tracing::info!("metrics on http://{}/metrics", metrics_listener.local_addr()?);
            let metrics = kiln::api::metrics_app(state.clone());
            tokio::spawn(async move { axum::serve(metrics_listener, metrics).await });
        }
        let drain = std::time::Duration::from_secs(opts.shutdown_timeout);
        let service = app(state.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>();
        let lifecycle = state.lifecycle.clone();
        axum::serve(listener, service).with_graceful_shutdown(shutdown(state, drain)).await?;
        let left = lifecycle.wait_deferred(drain).await;
        if left > 0 {
            tracing::warn!(left, "cache exports still running at the drain timeout were abandoned");
        }
        if let Some(history) = history {
            tokio::task::spawn_blocking(move || history.close()).await?;
        }
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// The build history in the data dir, unless `--history-size 0`.
fn open_history(data_dir: &std::path::Path, size: u64) -> anyhow::Result<Option<Arc<kiln::history::History>>> {
    if size == 0 {
        return Ok(None);
    }
    let history = kiln::history::History::open(&data_dir.join("history.redb"), size)?;
    Ok(Some(Arc::new(history)))
}

/// The `--audit-log` sink; a file is created 0600 and appended to.
fn open_audit_sink(spec: &str) -> anyhow::Result<kiln::api::audit::AuditSink> {
    let inherited = std::env::var(AUDIT_FD_ENV).ok().and_then(|v| v.parse::<i32>().ok());
    std::env::remove_var(AUDIT_FD_ENV);
    let sink = match inherited {
        // SAFETY: the supervisor opened this file for us and nothing else owns it.
        Some(fd) => kiln::api::audit::AuditSink::File(
            std::sync::Mutex::new(unsafe { std::fs::File::from_raw_fd(fd) }),
            PathBuf::from(spec),
        ),
        None => kiln::api::audit::AuditSink::open(spec).map_err(|e| anyhow::anyhow!("--audit-log {spec}: {e}"))?,
    };
    match &sink {
        kiln::api::audit::AuditSink::Off => tracing::warn!("--audit-log off: no audit trail is kept"),
        kiln::api::audit::AuditSink::File(_, path) => tracing::info!("audit records to {}", path.display()),
        _ => tracing::info!("audit records to {spec}"),
    }
    Ok(sink)
}

/// Resolves on SIGTERM or SIGINT, which stops the listener; builds in
/// flight then get `drain` to finish before they are cancelled, and the
/// process exits at the latest a few seconds after that.
async fn shutdown(state: AppState, drain: std::time::Duration) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
    let in_flight = state.limiter.in_flight();
    tracing::info!(in_flight, "shutting down: no new builds; draining for up to {}s", drain.as_secs());
    state.lifecycle.begin_drain();
    tokio::spawn(async move {
        let limiter = state.limiter.clone();
        let started = tokio::time::Instant::now();
        let cancelled = state.lifecycle.drain(drain, move || limiter.in_flight()).await;
        // Exports deferred past their replies get what is left of the drain.
        state.lifecycle.wait_deferred(drain.saturating_sub(started.elapsed())).await;
        if cancelled > 0 {
            tracing::warn!(cancelled, "builds still running after the drain timeout were cancelled");
        }
        tokio::time::sleep(AFTER_CANCEL).await;
        tracing::error!("requests still open {}s after the drain: exiting", AFTER_CANCEL.as_secs());
        std::process::exit(1);
    });
}

/// How long cancelled builds get to answer their clients before the
/// process exits regardless.
const AFTER_CANCEL: std::time::Duration = std::time::Duration::from_secs(10);
