//! `kiln build`: a client of the Function Builder API for people and CI.
//! It tars a context directory the way the go-sdk does (honouring
//! `.dockerignore`), seals `--secret-file`s for the builder's public key,
//! signs the request, streams the NDJSON reply and renders it.

mod render;
pub mod tarball;

use crate::wire::sign;
use futures_util::StreamExt;
use render::Renderer;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What to build and where.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// Context directory (holds the Dockerfile).
    pub dir: PathBuf,
    /// Image to push.
    pub image: String,
    /// `--build-arg K=V`.
    pub build_args: BTreeMap<String, String>,
    /// `--platform`.
    pub platforms: Vec<String>,
    /// `--target`.
    pub target: Option<String>,
    /// Builder URL (scheme and host are used, `/build` is appended).
    pub url: String,
    /// `(id, file)` build secrets.
    pub secret_files: Vec<(String, PathBuf)>,
    /// Build without pushing.
    pub skip_push: bool,
    /// The HMAC key.
    pub payload_secret: Vec<u8>,
    /// The builder's public key (fetched from `/publickey` when absent).
    pub public_key: Option<String>,
}

/// The base URL (scheme and authority) of a builder URL, as faas-cli does.
pub fn base_url(url: &str) -> Result<String, String> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| format!("invalid builder URL {url:?}: missing scheme"))?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || !(scheme == "http" || scheme == "https") {
        return Err(format!("invalid builder URL {url:?}"));
    }
    Ok(format!("{scheme}://{host}"))
}

/// Runs a build; `Ok(true)` on success, `Ok(false)` when the build failed.
pub async fn build(req: &BuildRequest) -> Result<bool, String> {
    let base = base_url(&req.url)?;
    let http = reqwest::Client::new();
    let mut config = serde_json::json!({"image": req.image, "buildArgs": req.build_args});
    if !req.platforms.is_empty() {
        config["platforms"] = serde_json::json!(req.platforms);
    }
    if let Some(t) = &req.target {
        config["target"] = serde_json::json!(t);
    }
    if req.skip_push {
        config["skipPush"] = serde_json::json!(true);
    }
    let mut body = tarball::context_tar(&req.dir, &config).map_err(|e| format!("tar {}: {e}", req.dir.display()))?;
    if !req.secret_files.is_empty() {
        let envelope = seal_secrets(&http, &base, req).await?;
        body = tarball::append_entry(body, crate::wire::SECRETS_ENTRY, envelope.as_bytes(), 0o600)
            .map_err(|e| format!("tar: {e}"))?;
    }
    let resp = http
        .post(format!("{base}/build"))
        .header("X-Build-Signature", sign(&req.payload_secret, &body))
        .header("Accept", "application/x-ndjson")
        .header("Content-Type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("POST {base}/build: {e}"))?;
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        let detail = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or(text);
        return Err(format!("builder responded with status code {}: {}", status.as_u16(), detail.trim()));
    }
    stream(resp).await
}

async fn stream(resp: reqwest::Response) -> Result<bool, String> {
    let mut renderer = Renderer::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut chunks = resp.bytes_stream();
    let mut outcome = None;
    while let Some(chunk) = chunks.next().await {
        pending.extend_from_slice(&chunk.map_err(|e| format!("reading the build stream: {e}"))?);
        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            let v: serde_json::Value = serde_json::from_slice(&line).map_err(|e| format!("bad stream line: {e}"))?;
            outcome = renderer.event(&v).or(outcome);
        }
    }
    renderer.done();
    Ok(outcome.unwrap_or(true))
}

async fn seal_secrets(http: &reqwest::Client, base: &str, req: &BuildRequest) -> Result<String, String> {
    let public = match &req.public_key {
        Some(k) => k.clone(),
        None => {
            let resp =
                http.get(format!("{base}/publickey")).send().await.map_err(|e| format!("GET {base}/publickey: {e}"))?;
            let code = resp.status().as_u16();
            let v: serde_json::Value =
                serde_json::from_slice(&resp.bytes().await.unwrap_or_default()).unwrap_or_default();
            if code != 200 {
                return Err(format!(
                    "failed to fetch builder public key, status code {code}: {}",
                    v["error"].as_str().unwrap_or("")
                ));
            }
            v["public_key"].as_str().ok_or("the builder's /publickey reply has no public_key")?.to_string()
        }
    };
    let mut values = BTreeMap::new();
    for (id, path) in &req.secret_files {
        let data = std::fs::read(path).map_err(|e| format!("read secret {id:?} from {}: {e}", path.display()))?;
        values.insert(id.clone(), data);
    }
    crate::buildsecrets::seal(&public, &values).map_err(|e| e.to_string())
}
