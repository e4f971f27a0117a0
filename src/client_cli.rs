//! `kiln build` and `kiln keygen`.

use crate::cli::BuildArgs;
use kiln::client::BuildRequest;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Default places for the payload secret, in order.
fn default_secret_paths() -> Vec<PathBuf> {
    let mut v =
        vec![PathBuf::from("/var/openfaas/secrets/payload-secret"), PathBuf::from("/var/lib/kiln/payload-secret")];
    if let Some(home) = std::env::var_os("HOME") {
        v.push(PathBuf::from(home).join(".local/share/kiln/payload-secret"));
    }
    v
}

pub(crate) fn read_payload_secret(explicit: Option<&Path>) -> Result<Vec<u8>, String> {
    let candidates = match explicit {
        Some(p) => vec![p.to_path_buf()],
        None => default_secret_paths(),
    };
    for p in &candidates {
        if let Ok(raw) = std::fs::read(p) {
            return Ok(String::from_utf8_lossy(&raw).trim().as_bytes().to_vec());
        }
    }
    Err(format!(
        "no payload secret: pass --payload-secret (tried {})",
        candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    ))
}

fn request(opts: BuildArgs) -> Result<BuildRequest, String> {
    let mut build_args = std::collections::BTreeMap::new();
    for a in &opts.build_args {
        let (k, v) = a.split_once('=').ok_or_else(|| format!("--build-arg {a:?}: expected KEY=VALUE"))?;
        build_args.insert(k.to_string(), v.to_string());
    }
    let secret_files = opts
        .secret_files
        .iter()
        .map(|s| match s.split_once('=') {
            Some((id, path)) => (id.to_string(), PathBuf::from(path)),
            None => {
                let id = Path::new(s).file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
                (id, PathBuf::from(s))
            }
        })
        .collect();
    Ok(BuildRequest {
        payload_secret: read_payload_secret(opts.payload_secret.as_deref())?,
        dir: opts.dir,
        image: opts.image,
        build_args,
        platforms: opts
            .platforms
            .iter()
            .flat_map(|p| p.split(','))
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect(),
        target: opts.target,
        url: opts.url,
        secret_files,
        skip_push: opts.skip_push,
        public_key: opts.builder_public_key,
    })
}

/// `kiln build`: exit 0 on success, 1 on any failure.
pub fn build(opts: BuildArgs) -> ExitCode {
    let outcome = request(opts).and_then(|req| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        rt.block_on(kiln::client::build(&req)).map_err(|e| e.to_string())
    });
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("kiln build: {e}");
            ExitCode::from(1)
        }
    }
}

/// `kiln keygen`: writes `key` (0600) and `key.pub` (0644), base64.
pub fn keygen(out: &Path) -> ExitCode {
    let result = kiln::buildsecrets::BuildKey::generate().map_err(|e| e.to_string()).and_then(|(private, public)| {
        let write = |name: &str, text: &str, mode: u32| {
            let path = out.join(name);
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&path)
                .and_then(|mut f| std::io::Write::write_all(&mut f, format!("{text}\n").as_bytes()))
                .map_err(|e| format!("write {}: {e}", path.display()))
        };
        write("key", &private, 0o600)?;
        write("key.pub", &public, 0o644)?;
        println!("wrote {} and {} (key id {})", out.join("key").display(), out.join("key.pub").display(), &public[..8]);
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kiln keygen: {e}");
            ExitCode::from(1)
        }
    }
}

/// `kiln cache ls|prune|check` against a server's internal listener,
/// signed with the payload secret.
pub fn cache(action: crate::cli::CacheAction, url: &str, secret: Option<&Path>) -> ExitCode {
    let outcome = read_payload_secret(secret).and_then(|secret| block_on(cache_request(action, url, &secret)));
    print_outcome("cache", outcome)
}

/// Runs `work` to its end on a runtime of its own (a CLI verb's request).
pub(crate) fn block_on<T>(work: impl std::future::Future<Output = Result<T, String>>) -> Result<T, String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(work)
}

/// Prints a verb's text (exit 0) or its error (exit 1).
pub(crate) fn print_outcome(verb: &str, outcome: Result<String, String>) -> ExitCode {
    match outcome {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kiln {verb}: {e}");
            ExitCode::from(1)
        }
    }
}

async fn cache_request(action: crate::cli::CacheAction, url: &str, secret: &[u8]) -> Result<String, String> {
    let base = url.trim_end_matches('/');
    let (method, path) = match &action {
        crate::cli::CacheAction::Ls => (reqwest::Method::GET, "/cache".to_string()),
        crate::cli::CacheAction::Prune { keep_storage } => {
            kiln::units::parse_size(keep_storage).map_err(|e| e.to_string())?;
            (reqwest::Method::POST, format!("/cache/prune?keep_storage={keep_storage}"))
        }
        crate::cli::CacheAction::Check => (reqwest::Method::POST, "/cache/check".to_string()),
    };
    let body = admin_call(method, base, &path, secret).await?;
    match action {
        crate::cli::CacheAction::Ls => {
            let entries: Vec<kiln::worker::CacheEntry> = serde_json::from_str(&body).map_err(|e| e.to_string())?;
            Ok(render_entries(&entries))
        }
        crate::cli::CacheAction::Prune { .. } | crate::cli::CacheAction::Check => Ok(format!("{body}\n")),
    }
}

/// Sends an admin request signed with the payload secret; the body of a
/// 2xx reply, or the status and body of another.
pub(crate) async fn admin_call(
    method: reqwest::Method,
    base: &str,
    path: &str,
    secret: &[u8],
) -> Result<String, String> {
    let now = kiln::timefmt::now_secs();
    let signature = kiln::wire::admin_signature(secret, method.as_str(), path, now, b"");
    let req = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .header(kiln::wire::ADMIN_TIMESTAMP_HEADER, now.to_string())
        .header(kiln::wire::ADMIN_SIGNATURE_HEADER, signature);
    let resp = req.send().await.map_err(|e| format!("{base}: {e}"))?;
    let status = resp.status();
    let body = resp.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{status}: {body}"));
    }
    Ok(body)
}

fn render_entries(entries: &[kiln::worker::CacheEntry]) -> String {
    let mut out = format!("{:<14} {:<20} {:>6} {:>10}  {}\n", "KEY", "LAST USED", "LAYERS", "SIZE", "STEP");
    for e in entries {
        let used = if e.last_used > 0 { kiln::timefmt::rfc3339(e.last_used) } else { "-".into() };
        let size = format!("{:.1} MiB", e.top_layer_bytes as f64 / (1u64 << 20) as f64);
        out.push_str(&format!(
            "{:<14} {:<20} {:>6} {:>10}  {}\n",
            &e.key[..12.min(e.key.len())],
            used,
            e.layers,
            size,
            e.description
        ));
    }
    out
}
