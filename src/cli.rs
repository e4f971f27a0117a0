//! Command-line definitions and the helper-process entry points.

use clap::{Args, Parser, Subcommand};
use kiln::worker::fileop::{run_file_op, FileOpRequest};
use kiln_runtime::step::{StepRequest, StepResult};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// kiln: a rootless container image builder for the OpenFaaS Function Builder API.
#[derive(Parser)]
#[command(version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// Run the Function Builder API server.
    Serve(Box<ServeArgs>),
    /// Build (and push) an image with a running kiln or pro-builder.
    Build(BuildArgs),
    /// Write a build-secrets key pair (`key`, `key.pub`) for `serve
    /// --build-secrets-key`, or with --signing an image-signing pair
    /// (`signing.key`, `signing.pub`) for `serve --signing-key`.
    Keygen {
        /// Directory to write into.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Write an ECDSA P-256 signing key pair instead (PEM; sealed in
        /// cosign's format when COSIGN_PASSWORD is set).
        #[arg(long)]
        signing: bool,
    },
    /// Check an image's signature, provenance and SBOM (and, with
    /// --rebuild, rebuild it from its provenance and compare digests).
    Verify(Box<VerifyArgs>),
    /// Inspect or prune a running server's build cache (through its
    /// internal metrics listener).
    Cache {
        /// What to do.
        #[command(subcommand)]
        action: CacheAction,
        /// The server's internal listener (`--metrics-listen`).
        #[arg(long, env = "KILN_ADMIN_URL", default_value = "http://127.0.0.1:8081", global = true)]
        url: String,
        /// The server's payload secret, which signs admin requests
        /// (default: the first of /var/openfaas/secrets/payload-secret,
        /// /var/lib/kiln/payload-secret, ~/.local/share/kiln/payload-secret).
        #[arg(long, env = "KILN_PAYLOAD_SECRET_FILE", global = true)]
        payload_secret: Option<PathBuf>,
    },
    /// A running server's build history: recent builds (newest first), or
    /// one build's steps, timings and log (through its internal listener).
    History(Box<HistoryArgs>),
    /// Print a login link to a running server's build history page
    /// (`/ui/` on its internal listener), signed with the payload secret.
    Ui {
        /// The server's internal listener, as the browser reaches it.
        #[arg(long, env = "KILN_ADMIN_URL", default_value = "http://127.0.0.1:8081")]
        url: String,
        /// The server's payload secret (default: as for `kiln cache`).
        #[arg(long, env = "KILN_PAYLOAD_SECRET_FILE")]
        payload_secret: Option<std::path::PathBuf>,
        /// Seconds the link stays valid (the session it opens lasts 12 hours).
        #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(i64).range(1..=600))]
        valid_for: i64,
    },
    /// Check that builds can run here: user namespaces, ID mapping,
    /// overlayfs, /proc, cgroups, disk and (with --image) a registry; exit
    /// code 0 only when a build can run.
    Doctor(Box<DoctorArgs>),
    /// (internal) The doctor's checks inside kiln's namespace.
    #[command(name = "__doctor-probe", hide = true)]
    DoctorProbe {
        /// Data directory to probe in.
        data_dir: PathBuf,
    },
    /// (internal) Run one RUN step; used by the server.
    #[command(name = "__run-step", hide = true)]
    RunStep {
        /// Request file.
        request: PathBuf,
    },
    /// (internal) Apply one file op; used by the server.
    #[command(name = "__file-op", hide = true)]
    FileOp {
        /// Request file.
        request: PathBuf,
    },
}

/// `kiln history` options.
#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// One build: its position in the history or its request id.
    pub build: Option<String>,
    /// Only images whose reference contains this.
    #[arg(long)]
    pub image: Option<String>,
    /// Only builds that did not succeed.
    #[arg(long)]
    pub failed: bool,
    /// Most builds listed.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=500))]
    pub limit: u64,
    /// Print the server's JSON.
    #[arg(long)]
    pub json: bool,
    /// The server's internal listener (`--metrics-listen`).
    #[arg(long, env = "KILN_ADMIN_URL", default_value = "http://127.0.0.1:8081")]
    pub url: String,
    /// The server's payload secret, which signs admin requests (default:
    /// as for `kiln cache`).
    #[arg(long, env = "KILN_PAYLOAD_SECRET_FILE")]
    pub payload_secret: Option<std::path::PathBuf>,
}

/// `kiln cache` actions.
#[derive(Subcommand)]
pub enum CacheAction {
    /// List cache entries, most recently used first.
    Ls,
    /// Evict least recently used entries until the store fits.
    Prune {
        /// Disk to keep (e.g. 5GiB; 0 removes everything not in use).
        #[arg(long, default_value = "0")]
        keep_storage: String,
    },
    /// Verify the store (blob digests, cache entries, leftovers) once no
    /// build runs; exit code 1 when a problem is found.
    Check,
}

/// `kiln serve` options; each can also come from the environment.
#[derive(Args, Clone, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "KILN_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: String,
    /// Address of the Prometheus metrics listener (empty: none).
    #[arg(long, env = "KILN_METRICS_LISTEN", default_value = "0.0.0.0:8081")]
    pub metrics_listen: String,
    /// Data directory (cache, layers, snapshots). Default: /var/lib/kiln as
    /// root, $XDG_DATA_HOME/kiln (~/.local/share/kiln) otherwise.
    #[arg(long, env = "KILN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// File holding the HMAC payload secret. When it does not exist, a
    /// secret is generated into <data-dir>/payload-secret.
    #[arg(long, env = "KILN_PAYLOAD_SECRET", default_value = "/var/openfaas/secrets/payload-secret")]
    pub payload_secret: PathBuf,
    /// Accept unsigned requests (pro-builder's disable_hmac). Never in production.
    #[arg(long, env = "disable_hmac", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub disable_hmac: bool,
    /// Talk plain HTTP to every registry (pro-builder's insecure).
    #[arg(long, env = "insecure", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub insecure: bool,
    /// Docker config.json with registry credentials. Default:
    /// $DOCKER_CONFIG/config.json or ~/.docker/config.json.
    #[arg(long, env = "KILN_DOCKER_CONFIG")]
    pub docker_config: Option<PathBuf>,
    /// Pull mirror `REGISTRY=MIRROR` (repeatable, or comma-separated in
    /// the env), e.g. `docker.io=registry.internal:5000`.
    #[arg(long = "registry-mirror", env = "KILN_REGISTRY_MIRRORS", value_delimiter = ',')]
    pub registry_mirrors: Vec<String>,
    /// Host ID range real root maps into the build namespace (start:count).
    /// The default lies above useradd's SUB_UID_MAX (600100000), so it
    /// never overlaps a user's subordinate range.
    #[arg(long, env = "KILN_ROOT_ID_RANGE", default_value = "700000000:65536")]
    pub root_id_range: String,
    /// Compression of new layers: gzip (every client pulls it) or zstd
    /// (smaller and faster; Docker 23+, containerd 1.5+).
    #[arg(long, env = "KILN_COMPRESSION", default_value = "gzip", value_parser = ["gzip", "zstd"])]
    pub compression: String,
    /// Compression level (gzip 0-9, zstd 1-19; default 3 for both).
    #[arg(long, env = "KILN_COMPRESSION_LEVEL", default_value_t = 3)]
    pub compression_level: u32,
    /// SLSA provenance attached to every pushed image: off, min (inputs,
    /// parameters, builder) or max (also each step and its cache hit).
    #[arg(long, env = "KILN_PROVENANCE", default_value = "min", value_parser = ["off", "min", "max"])]
    pub provenance: String,
    /// Attach an SPDX SBOM, made from the image's own files, to every
    /// pushed image.
    #[arg(long, env = "KILN_SBOM", default_value_t = true, action = clap::ArgAction::Set)]
    pub sbom: bool,
    /// ECDSA P-256 private key (PEM: PKCS#8, SEC1, or cosign's encrypted
    /// form, opened with COSIGN_PASSWORD) that signs every pushed image
    /// (cosign/sigstore format) and its attestations (DSSE). Read once at
    /// start, before any step runs; mount it from a Secret.
    #[arg(long, env = "KILN_SIGNING_KEY")]
    pub signing_key: Option<PathBuf>,
    /// Also write BuildKit's attestation layout: attestation manifests in
    /// the image index (platform unknown/unknown), for tools that read
    /// Docker's; the tag then names an index for single-platform images too.
    #[arg(long, env = "KILN_DOCKER_ATTESTATIONS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub docker_attestations: bool,
    /// Cores one layer's compression may use (default: all).
    #[arg(long, env = "KILN_COMPRESSION_THREADS")]
    pub compression_threads: Option<usize>,
    /// Most disk the layer store and snapshots may use (e.g. 20GiB; 0: no
    /// limit). Least recently used cache entries are evicted first.
    #[arg(long, env = "KILN_CACHE_MAX_SIZE", default_value = "20GiB", value_parser = kiln::units::parse_size)]
    pub cache_max_size: u64,
    /// Longest a RUN step may take, in seconds (0: no limit); the step's
    /// whole process tree is killed when it is exceeded.
    #[arg(long, env = "KILN_STEP_TIMEOUT", default_value_t = 3600)]
    pub step_timeout: u64,
    /// Processes one user of a step may own (RLIMIT_NPROC): stops fork
    /// bombs. Counted per step (each has a user namespace of its own).
    #[arg(long, env = "KILN_STEP_MAX_PROCESSES", default_value_t = 4096)]
    pub step_max_processes: u64,
    /// cgroup v2 memory limit of a step (e.g. 2GiB; 0: none). Needs a host
    /// that delegates cgroup v2 to kiln; elsewhere it is ignored with a warning.
    #[arg(long, env = "KILN_STEP_MEMORY_LIMIT", default_value = "0", value_parser = kiln::units::parse_size)]
    pub step_memory_limit: u64,
    /// cgroup v2 pids limit of a step (0: none); same condition as memory.
    #[arg(long, env = "KILN_STEP_PIDS_LIMIT", default_value_t = 0)]
    pub step_pids_limit: u64,
    /// Run steps with no_new_privs (setuid binaries like sudo stop working).
    #[arg(long, env = "KILN_STEP_NO_NEW_PRIVILEGES")]
    pub step_no_new_privileges: bool,
    /// Share the build cache through the registry: `image` keeps it beside
    /// each image (tag `buildcache`), a reference keeps one cache there;
    /// empty or `off` disables it.
    #[arg(long, env = "KILN_REGISTRY_CACHE", default_value = "")]
    pub registry_cache: String,
    /// Keep the contents of cache mounts in the registry beside the
    /// registry cache (per tenant), so every replica has them; exported
    /// after the reply. Needs --registry-cache.
    #[arg(long, env = "KILN_CACHE_MOUNT_EXPORT")]
    pub cache_mount_export: bool,
    /// Largest cache mount exported or imported (bigger ones stay local).
    #[arg(long, env = "KILN_CACHE_MOUNT_EXPORT_MAX_SIZE", default_value = "1GiB", value_parser = kiln::units::parse_size)]
    pub cache_mount_export_max_size: u64,
    /// Talk plain HTTP to this registry only (repeatable; `--insecure`
    /// does it for every registry).
    #[arg(long = "insecure-registry", env = "KILN_INSECURE_REGISTRIES", value_delimiter = ',')]
    pub insecure_registries: Vec<String>,
    /// Trust a CA for registries with private certificates:
    /// `PATH` (PEM bundle) or `HOST=PATH`, which also makes kiln use HTTPS
    /// for HOST even on loopback. Repeatable.
    #[arg(long = "registry-ca", env = "KILN_REGISTRY_CA", value_delimiter = ',')]
    pub registry_ca: Vec<String>,
    /// Seconds without data from a registry before a request is retried.
    #[arg(long, env = "KILN_REGISTRY_TIMEOUT", default_value_t = 60)]
    pub registry_timeout: u64,
    /// Largest request body in MiB.
    #[arg(long, env = "KILN_MAX_BODY_MB", default_value_t = 512)]
    pub max_body_mb: usize,
    /// Most entries in a request tar.
    #[arg(long, env = "KILN_MAX_ENTRIES", default_value_t = kiln::api::intake::DEFAULT_MAX_ENTRIES)]
    pub max_entries: u64,
    /// Most unpacked bytes of a request tar (and of an archive ADD
    /// extracts), in MiB.
    #[arg(long, env = "KILN_MAX_UNPACKED_MB", default_value_t = kiln::api::intake::DEFAULT_MAX_UNPACKED_MB)]
    pub max_unpacked_mb: u64,
    /// Most request bodies received at once: a body is streamed to disk
    /// and its signature checked before it is unpacked, and until then it
    /// counts here; a request waits up to 30 s for a slot, then gets 429.
    #[arg(long, env = "KILN_MAX_PENDING_UPLOADS", default_value_t = kiln::api::upload::DEFAULT_MAX_PENDING)]
    pub max_pending_uploads: usize,
    /// Most instructions in a Dockerfile.
    #[arg(long, env = "KILN_MAX_DOCKERFILE_INSTRUCTIONS", default_value_t = kiln::frontend::MAX_INSTRUCTIONS)]
    pub max_dockerfile_instructions: usize,
    /// Most build log kept for a reply that is one JSON object (faas-cli
    /// without streaming, of-builder clients): the start and the end are
    /// kept and the log says how much was dropped between. NDJSON streams
    /// every line.
    #[arg(long, env = "KILN_MAX_REPLY_LOG", default_value = "8MiB", value_parser = kiln::units::parse_size)]
    pub max_reply_log: u64,
    /// Also accept of-builder's X-Cloud-Signature (sha1 or sha256) on
    /// pro-builder requests (com.openfaas.docker.config); by default it is
    /// accepted only on of-builder requests (a config entry).
    #[arg(long, env = "KILN_ALLOW_CLOUD_SIGNATURE", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub allow_cloud_signature: bool,
    /// Entitlements a Dockerfile may use, as BuildKit's daemon flag of the
    /// same name: `network.host` (`RUN --network=host`, refused without it).
    #[arg(long = "allow-insecure-entitlement", env = "KILN_ALLOW_INSECURE_ENTITLEMENT", value_delimiter = ',', value_parser = ["network.host"])]
    pub allow_insecure_entitlement: Vec<String>,
    /// How widely builds share cache-mount contents (and the layers of
    /// steps that use them): `repository` (each image's
    /// repository apart), `namespace` (the repository path without its
    /// last component) or `registry`.
    #[arg(long, env = "KILN_TENANT_SCOPE", default_value = "repository")]
    pub tenant_scope: kiln::tenant::TenantScope,
    /// Registry images a Dockerfile may name (in FROM, and as the source
    /// of COPY and of RUN mounts), as patterns over the normalised reference
    /// (`registry.example.com/acme/*`; `*` stops at `/`, `**` does not);
    /// repeatable; none: any image.
    #[arg(long = "allowed-images", env = "KILN_ALLOWED_IMAGES", value_delimiter = ',')]
    pub allowed_images: Vec<String>,
    /// Destinations RUN steps may connect to although the default policy
    /// refuses them (loopback, private, link-local and other non-internet
    /// ranges, and the node's own addresses): `CIDR`, `IP` or `HOST`
    /// (resolved at start-up), each with an optional `:PORT`; repeatable.
    #[arg(long = "step-egress-allow", env = "KILN_STEP_EGRESS_ALLOW", value_delimiter = ',')]
    pub step_egress_allow: Vec<String>,
    /// Further destinations RUN steps may not connect to (same forms as
    /// `--step-egress-allow`, which wins); repeatable.
    #[arg(long = "step-egress-deny", env = "KILN_STEP_EGRESS_DENY", value_delimiter = ',')]
    pub step_egress_deny: Vec<String>,
    /// Resolvers that answer RUN steps' DNS queries (`IP` or `IP:PORT`;
    /// default: the nameservers of the host's /etc/resolv.conf).
    #[arg(long = "step-dns", env = "KILN_STEP_DNS", value_delimiter = ',')]
    pub step_dns: Vec<String>,
    /// The nftables program that loads each step namespace's ruleset.
    #[arg(long = "nft", env = "KILN_NFT", default_value = "nft")]
    pub nft: String,
    /// Private key file for build secrets (base64, from `kiln keygen` or
    /// `faas-cli secret keygen`); enables GET /publickey and sealed secrets.
    #[arg(long, env = "build_secrets_private_key_path")]
    pub build_secrets_key: Option<PathBuf>,
    /// Most builds at once (0 = unlimited); over it /build answers 429 and
    /// /ready 503 (pro-builder's max_inflight). A request holds its slot
    /// from its first byte.
    #[arg(long, env = "max_inflight", default_value_t = 16)]
    pub max_inflight: usize,
    /// Accepted for pro-builder compatibility; kiln always unpacks the
    /// context as the namespace's root and sets owners explicitly on COPY.
    #[arg(long, env = "enable_lchown", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", hide = true)]
    pub enable_lchown: bool,
    /// Serve the images kiln built (also with skipPush) through the
    /// read-only OCI pull API at /v2/ on the main listener, without
    /// authentication: for a single node (faasd) pulling from kiln itself.
    #[arg(long, env = "KILN_SERVE_IMAGES", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub serve_images: bool,
    /// Audit trail: one JSON line per /build request to `-` (stdout, the
    /// default), `stderr`, a file (appended, created 0600), or `off`.
    #[arg(long, env = "KILN_AUDIT_LOG", default_value = "-")]
    pub audit_log: String,
    /// Builds kept in the build history (`history.redb` in the data dir,
    /// served as `/builds` and `/ui/` on the internal listener); 0: none.
    #[arg(long, env = "KILN_HISTORY_SIZE", default_value_t = kiln::history::DEFAULT_SIZE, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    pub history_size: u64,
    /// Seconds builds in flight may take to finish after SIGTERM before
    /// they are cancelled (with Kubernetes, keep
    /// terminationGracePeriodSeconds above it).
    #[arg(long, env = "KILN_SHUTDOWN_TIMEOUT", default_value_t = 120)]
    pub shutdown_timeout: u64,
    /// Timestamp (seconds since 1970) that every new file's mtime is
    /// clamped to and that the image config's dates become, so the same
    /// inputs give the same digests (reproducible by default: 0, i.e.
    /// 1970-01-01). `now` keeps real times.
    #[arg(long, env = "SOURCE_DATE_EPOCH", default_value = "0", value_parser = parse_epoch)]
    pub source_date_epoch: Epoch,
}

/// `--source-date-epoch`: fixed seconds, or real times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Epoch {
    /// Clamp to these seconds since 1970.
    Fixed(i64),
    /// Keep the build's real times.
    Now,
}

impl Epoch {
    /// The clamp, if any.
    pub fn seconds(self) -> Option<i64> {
        match self {
            Epoch::Fixed(s) => Some(s),
            Epoch::Now => None,
        }
    }
}

fn parse_epoch(s: &str) -> Result<Epoch, String> {
    match s.trim() {
        "now" => Ok(Epoch::Now),
        t => t.parse::<i64>().map(Epoch::Fixed).map_err(|_| format!("{s:?}: expected seconds since 1970 or `now`")),
    }
}

/// `kiln doctor` options: the server's, plus what to check.
#[derive(Args, Clone, Debug)]
pub struct DoctorArgs {
    /// Also check that this image reference's registry is reachable and
    /// the credentials may push to it.
    #[arg(long)]
    pub image: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// The server configuration to check against.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// `kiln verify` options.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The image (`registry/repo:tag` or `@sha256:…`).
    pub image: String,
    /// Public key (PEM) the image and its attestations must be signed by.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Which image of a multi-platform index to check (default: this host's).
    #[arg(long)]
    pub platform: Option<String>,
    /// Write the verified SPDX document here.
    #[arg(long)]
    pub sbom_out: Option<PathBuf>,
    /// Write the verified provenance statement here.
    #[arg(long)]
    pub provenance_out: Option<PathBuf>,
    /// Rebuild from the provenance's inputs on a kiln server and check the
    /// digest is the same (needs --context).
    #[arg(long)]
    pub rebuild: bool,
    /// The build context to rebuild from; its digest must be the one the
    /// provenance names.
    #[arg(long)]
    pub context: Option<PathBuf>,
    /// Builder URL for --rebuild.
    #[arg(long, env = "OPENFAAS_REMOTE_BUILDER", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The builder's payload secret for --rebuild.
    #[arg(long, env = "OPENFAAS_PAYLOAD_SECRET")]
    pub payload_secret: Option<PathBuf>,
    /// Registry credentials (default: $DOCKER_CONFIG/config.json, then
    /// ~/.docker/config.json).
    #[arg(long)]
    pub docker_config: Option<PathBuf>,
}

/// `kiln build` options.
#[derive(Args, Clone, Debug)]
pub struct BuildArgs {
    /// Context directory (with the Dockerfile).
    pub dir: PathBuf,
    /// Image reference to build and push.
    #[arg(long, short = 't')]
    pub image: String,
    /// Build argument `KEY=VALUE` (repeatable).
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_args: Vec<String>,
    /// Target platform (repeatable or comma-separated).
    #[arg(long = "platform")]
    pub platforms: Vec<String>,
    /// Stage to build.
    #[arg(long)]
    pub target: Option<String>,
    /// Builder URL.
    #[arg(long, env = "OPENFAAS_REMOTE_BUILDER", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Build secret `ID=PATH`, or `PATH` (id = file name) (repeatable).
    #[arg(long = "secret-file", value_name = "ID=PATH")]
    pub secret_files: Vec<String>,
    /// The builder's public key (base64); fetched from /publickey when unset.
    #[arg(long, env = "OPENFAAS_BUILDER_PUBLIC_KEY")]
    pub builder_public_key: Option<String>,
    /// File with the HMAC payload secret. Default: the first that exists of
    /// /var/openfaas/secrets/payload-secret and kiln serve's generated one.
    #[arg(long, env = "OPENFAAS_PAYLOAD_SECRET")]
    pub payload_secret: Option<PathBuf>,
    /// Build without pushing.
    #[arg(long)]
    pub skip_push: bool,
}

/// Runs a helper verb: reads the JSON request, writes `result.json` into
/// the bundle directory beside it.
pub fn helper<R: serde::de::DeserializeOwned, T: serde::Serialize>(request: &Path, run: fn(&R) -> T) -> ExitCode {
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("KILN_LOG") {
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(false).init();
    }
    let req: R = match std::fs::read(request)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kiln helper: bad request {}: {e}", request.display());
            return ExitCode::from(2);
        }
    };
    let result = run(&req);
    let out = request.with_file_name("result.json");
    match std::fs::write(&out, serde_json::to_vec(&result).expect("result serializes")) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kiln helper: write {}: {e}", out.display());
            ExitCode::from(2)
        }
    }
}

/// `__run-step` body.
pub fn run_step(req: &StepRequest) -> StepResult {
    kiln_runtime::step::run_step(req).unwrap_or_else(|e| StepResult { exit_code: -1, error: Some(e.to_string()) })
}

/// `__file-op` body.
pub fn file_op(req: &FileOpRequest) -> kiln::worker::fileop::FileOpResult {
    kiln::worker::fileop::FileOpResult { error: run_file_op(req).err() }
}
