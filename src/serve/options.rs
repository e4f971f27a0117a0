//! `kiln serve`'s flags turned into the settings of its parts: the data
//! dir, the ID range, registry credentials and options, layer compression
//! and step limits (shared with `kiln doctor`).

use crate::cli::ServeArgs;
use kiln::registry::{Credentials, RegistryOptions};
use kiln_snapshotter::diff::DiffOptions;
use kiln_snapshotter::encode::LayerCompression;
use std::path::{Path, PathBuf};

pub(crate) fn default_data_dir() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/kiln");
    }
    let base = std::env::var_os("XDG_DATA_HOME").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into())).join(".local/share")
    });
    base.join("kiln")
}

pub(crate) fn parse_range(s: &str) -> anyhow::Result<(u32, u32)> {
    let (a, b) = s.split_once(':').ok_or_else(|| anyhow::anyhow!("--root-id-range must be start:count"))?;
    Ok((a.parse()?, b.parse()?))
}

/// Where registry credentials are read from: `--docker-config`, else
/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub(crate) fn docker_config_path(explicit: Option<&Path>) -> PathBuf {
    match explicit {
        Some(p) => p.to_path_buf(),
        None => match std::env::var_os("DOCKER_CONFIG") {
            Some(dir) => PathBuf::from(dir).join("config.json"),
            None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".docker/config.json"),
        },
    }
}

/// The operator's secret files, for `kiln doctor`'s mode check.
pub(crate) fn secret_files(opts: &crate::cli::ServeArgs, data_dir: &Path) -> kiln::doctor::Check {
    let generated = data_dir.join("payload-secret");
    let config = docker_config_path(opts.docker_config.as_deref());
    let mut files: Vec<(&str, &Path)> = vec![
        ("payload secret", opts.payload_secret.as_ref()),
        ("generated payload secret", &generated),
        ("registry config", &config),
    ];
    if let Some(key) = &opts.build_secrets_key {
        files.push(("build-secrets key", key));
    }
    if let Some(key) = &opts.signing_key {
        files.push(("signing key", key));
    }
    kiln::doctor::secret_files_check(&files)
}

pub(crate) fn read_docker_config(explicit: Option<&Path>) -> anyhow::Result<Option<Vec<u8>>> {
    let path = docker_config_path(explicit);
    match std::fs::read(&path) {
        Ok(b) => {
            tracing::info!("registry credentials from {}", path.display());
            Ok(Some(b))
        }
        Err(e) if explicit.is_none() && e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("read {}: {e}", path.display())),
    }
}

/// `docker.io=mirror:5000` pairs; `index.docker.io` means `docker.io`.
pub(crate) fn parse_mirrors(specs: &[String]) -> anyhow::Result<std::collections::HashMap<String, String>> {
    let mut out = std::collections::HashMap::new();
    for spec in specs.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let (from, to) = spec
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--registry-mirror {spec:?}: expected REGISTRY=MIRROR"))?;
        let from = if from == "index.docker.io" { "docker.io" } else { from };
        out.insert(
            from.trim().to_string(),
            to.trim().trim_start_matches("http://").trim_start_matches("https://").to_string(),
        );
    }
    if !out.is_empty() {
        tracing::info!(?out, "registry mirrors");
    }
    Ok(out)
}

/// How layers are written, from the command line.
pub(crate) fn diff_options(opts: &ServeArgs) -> DiffOptions {
    let compression = match opts.compression.as_str() {
        "zstd" => LayerCompression::Zstd(opts.compression_level.clamp(1, 19) as i32),
        _ => LayerCompression::Gzip(opts.compression_level.min(9)),
    };
    let defaults = DiffOptions::default();
    let threads = opts.compression_threads.unwrap_or(defaults.threads).max(1);
    DiffOptions { compression, threads, mtime_clamp: opts.source_date_epoch.seconds() }
}

/// Step limits from the command line; cgroup limits only where the host
/// delegates cgroup v2 (otherwise a warning says why they are off).
pub(crate) fn step_limits(opts: &ServeArgs) -> kiln_runtime::spec::StepLimits {
    let wanted = opts.step_memory_limit > 0 || opts.step_pids_limit > 0;
    let available = kiln_runtime::cgroups::limits_available();
    match (&available, wanted) {
        (Err(why), true) => tracing::warn!("--step-memory-limit/--step-pids-limit ignored: {why}"),
        (Err(why), false) => tracing::info!("cgroup step limits unavailable: {why}"),
        (Ok(()), _) => tracing::info!("cgroup v2 delegated: step memory and pids limits available"),
    }
    let cgroup = available.is_ok();
    kiln_runtime::spec::StepLimits {
        max_processes: opts.step_max_processes,
        no_new_privileges: opts.step_no_new_privileges,
        memory_bytes: (cgroup && opts.step_memory_limit > 0).then_some(opts.step_memory_limit),
        pids: (cgroup && opts.step_pids_limit > 0).then_some(opts.step_pids_limit),
    }
}

/// Registry client settings, with the CA bundles named by `--registry-ca`
/// read (they are public certificates, so the namespaced server reads them).
pub(crate) fn registry_options(
    opts: &ServeArgs,
    credentials: Credentials,
    mirrors: std::collections::HashMap<String, String>,
) -> anyhow::Result<RegistryOptions> {
    let (mut ca_bundles, mut tls_hosts) = (Vec::new(), Vec::new());
    for spec in opts.registry_ca.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let (host, path) = match spec.split_once('=') {
            Some((h, p)) => (Some(h.trim()), p.trim()),
            None => (None, spec),
        };
        let pem = std::fs::read(path).map_err(|e| anyhow::anyhow!("--registry-ca {path}: {e}"))?;
        ca_bundles.push(pem);
        tls_hosts.extend(host.map(str::to_string));
    }
    let idle_timeout = Some(std::time::Duration::from_secs(opts.registry_timeout.max(1)));
    let plain_hosts = opts.insecure_registries.iter().map(|h| h.trim().to_string()).filter(|h| !h.is_empty()).collect();
    Ok(RegistryOptions {
        insecure: opts.insecure,
        credentials,
        mirrors,
        ca_bundles,
        tls_hosts,
        plain_hosts,
        idle_timeout,
    })
}

/// Step networks from `--step-egress-*`, `--step-dns` and `--nft`.
pub(crate) fn step_networks(opts: &ServeArgs) -> anyhow::Result<std::sync::Arc<kiln::egress::StepNetworks>> {
    use kiln::egress::policy::{node_addresses, parse_rule, EgressPolicy};
    let allow =
        opts.step_egress_allow.iter().map(|v| parse_rule("--step-egress-allow", v)).collect::<Result<_, _>>()?;
    let deny = opts.step_egress_deny.iter().map(|v| parse_rule("--step-egress-deny", v)).collect::<Result<_, _>>()?;
    let resolvers = if opts.step_dns.is_empty() {
        kiln::egress::host_resolvers()
    } else {
        opts.step_dns.iter().map(|v| parse_resolver(v)).collect::<anyhow::Result<_>>()?
    };
    let cfg = kiln::egress::NetworkConfig {
        policy: std::sync::Arc::new(EgressPolicy::new(allow, deny, node_addresses())),
        resolvers: std::sync::Arc::new(resolvers),
        nft: opts.nft.clone(),
        spare: 2,
    };
    Ok(kiln::egress::StepNetworks::new(cfg))
}

fn parse_resolver(v: &str) -> anyhow::Result<std::net::SocketAddr> {
    let v = v.trim();
    if let Ok(ip) = v.parse::<std::net::IpAddr>() {
        return Ok(std::net::SocketAddr::new(ip, 53));
    }
    v.parse().map_err(|_| anyhow::anyhow!("--step-dns {v:?}: expected IP or IP:PORT"))
}
