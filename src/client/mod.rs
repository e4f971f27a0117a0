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

/// Why a build could not be sent or followed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A builder URL without `http://` or `https://` and a host.
    #[error("invalid builder URL {0:?}: want http(s)://host[:port]")]
    BadUrl(String),
    /// The context could not be packed.
    #[error("tar {path}: {source}")]
    Tar {
        /// The context directory.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A request failed on the way.
    #[error("{request}: {source}")]
    Http {
        /// `METHOD url`.
        request: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// The builder refused the build.
    #[error("builder responded with status code {status}: {detail}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// Its error text.
        detail: String,
    },
    /// A line of the NDJSON stream does not parse.
    #[error("bad stream line: {0}")]
    Stream(#[source] serde_json::Error),
    /// The builder has no key for build secrets.
    #[error("failed to fetch builder public key, status code {status}: {detail}")]
    PublicKey {
        /// The HTTP status.
        status: u16,
        /// Its error text.
        detail: String,
    },
    /// A secret file could not be read.
    #[error("read secret {id:?} from {path}: {source}")]
    SecretFile {
        /// The secret's id.
        id: String,
        /// Its file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Sealing the secrets failed.
    #[error(transparent)]
    Secrets(#[from] crate::buildsecrets::SecretsError),
}

fn http_error(request: String) -> impl FnOnce(reqwest::Error) -> ClientError {
    move |source| ClientError::Http { request, source }
}

/// The base URL (scheme and authority) of a builder URL, as faas-cli does.
pub fn base_url(url: &str) -> Result<String, ClientError> {
    let bad = || ClientError::BadUrl(url.to_string());
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || !(scheme == "http" || scheme == "https") {
        return Err(bad());
    }
    Ok(format!("{scheme}://{host}"))
}

/// Runs a build; `Ok(true)` on success, `Ok(false)` when the build failed.
pub async fn build(req: &BuildRequest) -> Result<bool, ClientError> {
    Ok(build_reply(req).await?.is_none_or(|last| last["status"] == "success"))
}

/// Runs a build; its final NDJSON line (status, digest and the evidence
/// attached), if the stream had one.
pub async fn build_reply(req: &BuildRequest) -> Result<Option<serde_json::Value>, ClientError> {
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
    let tar_error = |source| ClientError::Tar { path: req.dir.display().to_string(), source };
    let mut body = tarball::context_tar(&req.dir, &config).map_err(tar_error)?;
    if !req.secret_files.is_empty() {
        let envelope = seal_secrets(&http, &base, req).await?;
        body =
            tarball::append_entry(body, crate::wire::SECRETS_ENTRY, envelope.as_bytes(), 0o600).map_err(tar_error)?;
    }
    let resp = http
        .post(format!("{base}/build"))
        .header("X-Build-Signature", sign(&req.payload_secret, &body))
        .header("Accept", "application/x-ndjson")
        .header("Content-Type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .map_err(http_error(format!("POST {base}/build")))?;
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        let detail = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or(text);
        return Err(ClientError::Refused { status: status.as_u16(), detail: detail.trim().to_string() });
    }
    stream(resp).await
}

async fn stream(resp: reqwest::Response) -> Result<Option<serde_json::Value>, ClientError> {
    let mut renderer = Renderer::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut chunks = resp.bytes_stream();
    let mut outcome = None;
    while let Some(chunk) = chunks.next().await {
        pending.extend_from_slice(&chunk.map_err(http_error("read the build stream".into()))?);
        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            let v: serde_json::Value = serde_json::from_slice(&line).map_err(ClientError::Stream)?;
            if renderer.event(&v).is_some() {
                outcome = Some(v);
            }
        }
    }
    renderer.done();
    Ok(outcome)
}

async fn seal_secrets(http: &reqwest::Client, base: &str, req: &BuildRequest) -> Result<String, ClientError> {
    let public = match &req.public_key {
        Some(k) => k.clone(),
        None => {
            let url = format!("{base}/publickey");
            let resp = http.get(&url).send().await.map_err(http_error(format!("GET {url}")))?;
            let code = resp.status().as_u16();
            let v: serde_json::Value =
                serde_json::from_slice(&resp.bytes().await.unwrap_or_default()).unwrap_or_default();
            let detail = |d: &str| ClientError::PublicKey { status: code, detail: d.to_string() };
            if code != 200 {
                return Err(detail(v["error"].as_str().unwrap_or("")));
            }
            v["public_key"].as_str().ok_or_else(|| detail("the reply has no public_key"))?.to_string()
        }
    };
    let mut values = BTreeMap::new();
    for (id, path) in &req.secret_files {
        let data = std::fs::read(path).map_err(|source| ClientError::SecretFile {
            id: id.clone(),
            path: path.display().to_string(),
            source,
        })?;
        values.insert(id.clone(), data);
    }
    Ok(crate::buildsecrets::seal(&public, &values)?)
}
