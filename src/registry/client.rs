//! The HTTP side of the registry client.

use super::auth::{parse_challenge, Challenge, Credential, Credentials};
use super::seam::{check_manifest_digest, manifest_media_type, verified, Registry};
use super::{Error, Reference, Result};
use crate::oci::{Descriptor, ImageManifest, MediaType};
use base64::Engine;
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use kiln_snapshotter::content::Store;
use kiln_snapshotter::Digest;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use reqwest::{RequestBuilder, Response, StatusCode};
use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;

/// Client settings.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Use plain HTTP for every registry (pro-builder's `insecure=true`).
    /// Loopback registries always use plain HTTP.
    pub insecure: bool,
    /// Credentials by registry host.
    pub credentials: Credentials,
    /// Pull mirrors: registry host → mirror host (`docker.io` →
    /// `registry.internal:5000`). Pushes are never redirected.
    pub mirrors: HashMap<String, String>,
    /// Extra trusted CA certificates (PEM bundles) for registries with
    /// private certificates.
    pub ca_bundles: Vec<Vec<u8>>,
    /// Registries that always get HTTPS, even on loopback.
    pub tls_hosts: Vec<String>,
    /// Registries that get plain HTTP (`--insecure-registry`).
    pub plain_hosts: Vec<String>,
    /// Longest wait for data from a registry before the request is retried
    /// (`None`: 60 s).
    pub idle_timeout: Option<std::time::Duration>,
}

/// A manifest resolved for one platform.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Digest of the platform manifest.
    pub digest: Digest,
    /// The manifest.
    pub manifest: ImageManifest,
    /// The config blob's bytes.
    pub config: Vec<u8>,
}

/// What `push_blob` had to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// The registry already had it.
    Existed,
    /// Mounted from another repository on the same registry.
    Mounted,
    /// Uploaded.
    Uploaded,
}

/// A registry client shared by all builds (auth tokens are cached).
pub struct RegistryClient {
    http: reqwest::Client,
    opts: RegistryOptions,
    auth: Mutex<HashMap<String, String>>,
    /// Per blob digest: held while it downloads, so concurrent builds
    /// wanting the same blob fetch it once.
    downloads: crate::keylock::KeyLocks,
    /// Per repository and blob: held while it uploads, so two pushes of one
    /// blob (two attestations' `{}` config, two builds' shared layer) never
    /// race in the registry, which can lose the blob to the second commit.
    uploads: crate::keylock::KeyLocks,
    /// Registries that answered they have no referrers API: not asked
    /// again while this server runs (a registry upgrade needs a restart).
    without_referrers: Mutex<std::collections::HashSet<String>>,
    /// Blobs each repository is known to hold (asked about no more).
    known: super::present::KnownBlobs,
}

/// Bytes read from a blob file per chunk of an upload body.
const UPLOAD_CHUNK: usize = 1 << 20;

/// A streaming request body over `file`, read 1 MiB at a time (reqwest's
/// own file body reads 4 KiB at a time, which halves upload throughput).
fn blob_body(blob: Box<dyn kiln_snapshotter::content::BlobReader>) -> reqwest::Body {
    reqwest::Body::wrap_stream(crate::chunks::blob_chunks(Box::new(blob), UPLOAD_CHUNK))
}

/// Attempts per registry request.
const ATTEMPTS: u32 = 3;

/// Statuses worth another attempt.
fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

fn unavailable(what: &str) -> impl Fn(reqwest::Error) -> Error + '_ {
    move |e| {
        let mut msg = format!("{what}: {}", crate::text::error_chain(&e));
        if msg.contains("certificate") {
            // Not transient: say how to fix it instead of retrying.
            msg.push_str(
                " (the registry's TLS certificate is not trusted: pass its CA with --registry-ca HOST=ca.pem)",
            );
            return Error::Protocol(msg);
        }
        Error::Unavailable(msg)
    }
}

/// Maps a non-success response to an error naming `what`.
async fn check(resp: Response, what: &str) -> Result<Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.text().await.unwrap_or_default();
    let detail = registry_error_text(&body);
    let msg = format!("{what}: {status}{detail}");
    Err(match status {
        StatusCode::NOT_FOUND => Error::NotFound(msg),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Error::Unauthorized(msg),
        s if s.is_server_error() => Error::Unavailable(msg),
        _ => Error::Protocol(msg),
    })
}

fn registry_error_text(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let errs: Vec<String> = v["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| format!("{} {}", e["code"].as_str().unwrap_or(""), e["message"].as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    if errs.is_empty() {
        String::new()
    } else {
        format!(" ({})", errs.join("; "))
    }
}

fn is_loopback(host: &str) -> bool {
    let h = host.rsplit_once(':').map_or(host, |(h, p)| if p.bytes().all(|b| b.is_ascii_digit()) { h } else { host });
    h == "localhost" || h.starts_with("127.") || h == "[::1]"
}

/// Idle connections kept per registry: a build's parallel uploads reuse
/// them; what concurrent builds open beyond is closed after use, so the
/// server's open sockets stay bounded however many builds came before.
const MAX_IDLE_PER_REGISTRY: usize = 4;

impl RegistryClient {
    /// Creates a client.
    pub fn new(opts: RegistryOptions) -> Result<Self> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(MAX_IDLE_PER_REGISTRY)
            .connect_timeout(std::time::Duration::from_secs(15))
            .read_timeout(opts.idle_timeout.unwrap_or(std::time::Duration::from_secs(60)));
        for pem in &opts.ca_bundles {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| Error::Invalid(format!("registry CA bundle: {e}")))?;
            if certs.is_empty() {
                return Err(Error::Invalid("registry CA bundle holds no PEM certificate".into()));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| Error::Invalid(format!("http client: {e}")))?;
        Ok(Self {
            http,
            opts,
            auth: Mutex::new(HashMap::new()),
            downloads: Default::default(),
            uploads: Default::default(),
            without_referrers: Default::default(),
            known: Default::default(),
        })
    }

    fn route(&self, r: &Reference) -> Reference {
        match self.opts.mirrors.get(&r.registry) {
            Some(mirror) => Reference { registry: mirror.clone(), ..r.clone() },
            None => r.clone(),
        }
    }

    fn base(&self, r: &Reference) -> String {
        let tls = self.opts.tls_hosts.contains(&r.registry);
        let marked = self.opts.plain_hosts.contains(&r.registry);
        let plain = !tls && (self.opts.insecure || marked || is_loopback(&r.registry));
        format!("{}://{}", if plain { "http" } else { "https" }, r.api_host())
    }

    fn url(&self, r: &Reference, tail: &str) -> String {
        format!("{}/v2/{}/{tail}", self.base(r), r.repository)
    }

    /// Sends a request, retrying connection failures, timeouts and 429/5xx
    /// answers with backoff (0.2 s, 0.8 s) before giving up.
    async fn send(
        &self,
        r: &Reference,
        push: bool,
        make: &(dyn Fn() -> Result<RequestBuilder> + Sync),
    ) -> Result<Response> {
        let mut delay = std::time::Duration::from_millis(200);
        for attempt in 1..ATTEMPTS {
            match self.send_once(r, push, make).await {
                Ok(resp) if retryable(resp.status()) => {
                    tracing::warn!(registry = %r.registry, status = %resp.status(), attempt, "registry error, retrying");
                }
                Err(Error::Unavailable(msg)) => {
                    tracing::warn!(registry = %r.registry, error = %msg, attempt, "retrying")
                }
                other => return other,
            }
            tokio::time::sleep(delay).await;
            delay *= 4;
        }
        self.send_once(r, push, make).await
    }

    /// Sends a request, answering one auth challenge if the registry asks.
    async fn send_once(
        &self,
        r: &Reference,
        push: bool,
        make: &(dyn Fn() -> Result<RequestBuilder> + Sync),
    ) -> Result<Response> {
        let scope = format!("repository:{}:{}", r.repository, if push { "pull,push" } else { "pull" });
        let key = format!("{}|{scope}", r.registry);
        let cached = self.auth.lock().expect("auth lock").get(&key).cloned();
        let mut req = make()?;
        if let Some(h) = &cached {
            req = req.header(AUTHORIZATION, h);
        }
        let resp = req.send().await.map_err(unavailable(&format!("connect to {}", r.registry)))?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenge = resp.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).and_then(parse_challenge);
        let header = self.authorize(r, challenge, &scope).await?;
        self.auth.lock().expect("auth lock").insert(key, header.clone());
        let resp = make()?.header(AUTHORIZATION, header).send().await.map_err(unavailable(&r.registry))?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(Error::Unauthorized(format!(
                "{}: the registry refused the configured credentials",
                r.registry
            )));
        }
        Ok(resp)
    }

    async fn authorize(&self, r: &Reference, challenge: Option<Challenge>, scope: &str) -> Result<String> {
        let (creds, registry) = (self.opts.credentials.clone(), r.registry.clone());
        let cred = tokio::task::spawn_blocking(move || creds.get(&registry))
            .await
            .map_err(|e| Error::Invalid(e.to_string()))?
            .map_err(|e| Error::Unauthorized(format!("{}: {e}", r.registry)))?;
        match challenge {
            Some(Challenge::Bearer { realm, service, scope: asked }) => {
                let scope = asked.as_deref().unwrap_or(scope);
                let token = self.bearer_token(r, &realm, service.as_deref(), scope, cred.as_ref()).await?;
                Ok(format!("Bearer {token}"))
            }
            Some(Challenge::Basic) | None => match cred {
                Some(Credential::Basic { username, password }) => {
                    let raw = format!("{username}:{password}");
                    Ok(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw)))
                }
                _ => Err(Error::Unauthorized(format!(
                    "{}: authentication required and no credentials are configured for it (docker config.json)",
                    r.registry
                ))),
            },
        }
    }

    /// Gets a bearer token from the realm: OAuth2 refresh-token POST for an
    /// identity token, otherwise a GET with Basic credentials (or none).
    async fn bearer_token(
        &self,
        r: &Reference,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        cred: Option<&Credential>,
    ) -> Result<String> {
        let req = match cred {
            Some(Credential::IdentityToken(refresh)) => {
                let mut form = vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh.as_str()),
                    ("scope", scope),
                    ("client_id", "kiln"),
                ];
                form.extend(service.map(|s| ("service", s)));
                self.http.post(realm).header(CONTENT_TYPE, "application/x-www-form-urlencoded").body(form_encode(&form))
            }
            other => {
                let mut req = self.http.get(realm).query(&[("scope", scope)]);
                if let Some(s) = service {
                    req = req.query(&[("service", s)]);
                }
                if let Some(Credential::Basic { username, password }) = other {
                    req = req.basic_auth(username, Some(password));
                }
                req
            }
        };
        let resp = req.send().await.map_err(unavailable(&format!("token service {realm}")))?;
        let resp = check(resp, &format!("get a token for {} from {realm}", r.registry)).await?;
        let body = resp.bytes().await.map_err(unavailable("token response"))?;
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let token = v["token"].as_str().or(v["access_token"].as_str());
        token.map(str::to_string).ok_or_else(|| Error::Protocol(format!("token service {realm} returned no token")))
    }

    async fn download_manifest(&self, r: &Reference) -> Result<(Digest, String, Vec<u8>)> {
        let url = self.url(r, &format!("manifests/{}", r.reference()));
        let resp = self.send(r, false, &|| Ok(self.http.get(&url).header(ACCEPT, MediaType::accept()))).await?;
        let resp = check(resp, &format!("pull {r}")).await?;
        let ct = resp.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let bytes = resp.bytes().await.map_err(unavailable(&format!("read manifest {r}")))?.to_vec();
        let digest = Digest::of(&bytes);
        check_manifest_digest(r, &digest)?;
        let media_type = manifest_media_type(r, &bytes, ct)?;
        Ok((digest, media_type, bytes))
    }

    /// Downloads a blob into `store` unless it is already there;
    /// concurrent calls for one blob download it once.
    async fn download_blob(&self, r: &Reference, desc: &Descriptor, store: &dyn Store) -> Result<u64> {
        let mirrored = self.route(r);
        let r = &mirrored;
        let digest = Digest::parse(&desc.digest)?;
        let _only_download = self.downloads.lock(digest.as_str()).await;
        if store.info(&digest)?.is_some() {
            return Ok(0);
        }
        let url = self.url(r, &format!("blobs/{}", desc.digest));
        let resp = self.send(r, false, &|| Ok(self.http.get(&url))).await?;
        let resp = check(resp, &format!("fetch layer {} from {r}", desc.digest)).await?;
        let mut writer = store.ingest()?;
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(unavailable("download layer"))?;
            writer.write_all(&chunk).map_err(|e| {
                Error::Storage(kiln_snapshotter::Error::Io { context: "write layer".into(), source: e })
            })?;
        }
        let n = writer.written();
        verified(r, &digest, writer.commit(Some(desc.size), Some(&digest)))?;
        Ok(n)
    }

    async fn head_blob(&self, r: &Reference, digest: &Digest) -> Result<bool> {
        let url = self.url(r, &format!("blobs/{digest}"));
        if self.known.contains(&r.registry, &r.repository, digest.as_str()) {
            return Ok(true);
        }
        let resp = self.send(r, true, &|| Ok(self.http.head(&url))).await?;
        match resp.status() {
            s if s.is_success() => {
                self.known.insert(&r.registry, &r.repository, [digest.as_str()]);
                Ok(true)
            }
            StatusCode::NOT_FOUND => Ok(false),
            _ => check(resp, &format!("check blob {digest} in {r}")).await.map(|_| false),
        }
    }

    /// Uploads in one PUT unless present (when `ask`: a blob known to be
    /// new is not asked about) or mountable.
    async fn upload_blob(
        &self,
        r: &Reference,
        digest: &Digest,
        store: &dyn Store,
        mount_from: Option<&Reference>,
        ask: bool,
    ) -> Result<PushOutcome> {
        let _only_upload = self.uploads.lock(&format!("{}/{}@{digest}", r.registry, r.repository)).await;
        if ask && self.head_blob(r, digest).await? {
            return Ok(PushOutcome::Existed);
        }
        let mut start = self.url(r, "blobs/uploads/");
        if let Some(src) = mount_from.filter(|s| s.registry == r.registry && s.repository != r.repository) {
            start = format!("{start}?mount={digest}&from={}", src.repository);
        }
        let resp = self.send(r, true, &|| Ok(self.http.post(&start).header(CONTENT_LENGTH, 0))).await?;
        let resp = check(resp, &format!("start upload to {r}")).await?;
        if resp.status() == StatusCode::CREATED {
            self.known.insert(&r.registry, &r.repository, [digest.as_str()]);
            return Ok(PushOutcome::Mounted);
        }
        let location = self.location(r, &resp)?;
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{sep}digest={digest}");
        let size =
            store.info(digest)?.ok_or_else(|| Error::NotLocal(format!("blob {digest} is not stored here")))?.size;
        let make = || -> Result<RequestBuilder> {
            Ok(self
                .http
                .put(&put)
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, size)
                .body(blob_body(store.open(digest)?)))
        };
        let resp = self.send(r, true, &make).await?;
        check(resp, &format!("upload {digest} to {r}")).await?;
        self.known.insert(&r.registry, &r.repository, [digest.as_str()]);
        Ok(PushOutcome::Uploaded)
    }

    fn location(&self, r: &Reference, resp: &Response) -> Result<String> {
        let loc = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Error::Protocol(format!("{r}: upload session without Location")))?;
        Ok(if loc.starts_with("http://") || loc.starts_with("https://") {
            loc.to_string()
        } else {
            format!("{}{loc}", self.base(r))
        })
    }

    /// `GET /v2/<name>/referrers/<digest>`: `None` when the registry
    /// answers that it has no such API (404, 400, 405 or 501), as
    /// distribution 2.x does.
    async fn get_referrers(&self, r: &Reference, digest: &Digest) -> Result<Option<Vec<u8>>> {
        if self.without_referrers.lock().expect("referrers lock").contains(&r.registry) {
            return Ok(None);
        }
        let answer = self.ask_referrers(r, digest).await?;
        if answer.is_none() {
            self.without_referrers.lock().expect("referrers lock").insert(r.registry.clone());
        }
        Ok(answer)
    }

    async fn ask_referrers(&self, r: &Reference, digest: &Digest) -> Result<Option<Vec<u8>>> {
        let url = self.url(r, &format!("referrers/{digest}"));
        let resp = self.send(r, false, &|| Ok(self.http.get(&url).header(ACCEPT, MediaType::OCI_INDEX))).await?;
        let unsupported = [StatusCode::NOT_FOUND, StatusCode::BAD_REQUEST, StatusCode::METHOD_NOT_ALLOWED];
        if unsupported.contains(&resp.status()) || resp.status() == StatusCode::NOT_IMPLEMENTED {
            return Ok(None);
        }
        let resp = check(resp, &format!("list referrers of {r}@{digest}")).await?;
        let ct = resp.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        if !ct.starts_with(MediaType::OCI_INDEX) {
            return Ok(None);
        }
        if resp.content_length().is_some_and(|n| n > MAX_REFERRERS_BYTES) {
            return Err(Error::Protocol(format!("{r}: referrers index over {MAX_REFERRERS_BYTES} bytes")));
        }
        let bytes = resp.bytes().await.map_err(unavailable(&format!("read referrers of {r}")))?;
        Ok(Some(bytes.to_vec()))
    }

    async fn send_manifest(&self, r: &Reference, bytes: &[u8], media_type: &str) -> Result<Digest> {
        let url = self.url(r, &format!("manifests/{}", r.reference()));
        let body = bytes.to_vec();
        let make = || Ok(self.http.put(&url).header(CONTENT_TYPE, media_type).body(body.clone()));
        let resp = self.send(r, true, &make).await?;
        if let Err(e) = check(resp, &format!("push manifest to {r}")).await {
            // It may name a blob the registry lost: ask about each again.
            self.known.forget_repository(&r.registry, &r.repository);
            return Err(e);
        }
        Ok(Digest::of(bytes))
    }
}

/// The largest referrers index read.
const MAX_REFERRERS_BYTES: u64 = 4 << 20;

/// `application/x-www-form-urlencoded` body.
fn form_encode(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                b' ' => "+".to_string(),
                b => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

impl Registry for RegistryClient {
    fn pull_route(&self, r: &Reference) -> Reference {
        self.route(r)
    }

    fn get_manifest<'a>(&'a self, r: &'a Reference) -> BoxFuture<'a, Result<(Digest, String, Vec<u8>)>> {
        Box::pin(self.download_manifest(r))
    }

    fn fetch_blob<'a>(
        &'a self,
        r: &'a Reference,
        desc: &'a Descriptor,
        store: &'a dyn Store,
    ) -> BoxFuture<'a, Result<u64>> {
        Box::pin(self.download_blob(r, desc, store))
    }

    fn blob_exists<'a>(&'a self, r: &'a Reference, digest: &'a Digest) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.head_blob(r, digest))
    }

    fn push_blob<'a>(
        &'a self,
        r: &'a Reference,
        digest: &'a Digest,
        store: &'a dyn Store,
        mount_from: Option<&'a Reference>,
    ) -> BoxFuture<'a, Result<PushOutcome>> {
        Box::pin(self.upload_blob(r, digest, store, mount_from, true))
    }

    fn put_manifest<'a>(
        &'a self,
        r: &'a Reference,
        bytes: &'a [u8],
        media_type: &'a str,
    ) -> BoxFuture<'a, Result<Digest>> {
        Box::pin(self.send_manifest(r, bytes, media_type))
    }

    fn referrers<'a>(&'a self, r: &'a Reference, digest: &'a Digest) -> BoxFuture<'a, Result<Option<Vec<u8>>>> {
        Box::pin(self.get_referrers(r, digest))
    }

    fn push_unseen_blob<'a>(
        &'a self,
        r: &'a Reference,
        digest: &'a Digest,
        store: &'a dyn Store,
    ) -> BoxFuture<'a, Result<PushOutcome>> {
        Box::pin(self.upload_blob(r, digest, store, None, false))
    }

    fn delete_manifest<'a>(&'a self, r: &'a Reference) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let url = self.url(r, &format!("manifests/{}", r.reference()));
            let resp = self.send(r, true, &|| Ok(self.http.delete(&url))).await?;
            Ok(resp.status().is_success())
        })
    }

    fn note_present(&self, r: &Reference, digests: &[&str]) {
        self.known.insert(&r.registry, &r.repository, digests.iter().copied());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scheme(opts: RegistryOptions, registry: &str) -> String {
        let client = RegistryClient::new(opts).unwrap();
        let r = Reference::parse(&format!("{registry}/app:v1")).unwrap();
        client.base(&r).split("://").next().unwrap().to_string()
    }

    #[test]
    fn schemes_follow_the_trust_settings() {
        assert_eq!(scheme(RegistryOptions::default(), "ghcr.io"), "https");
        assert_eq!(scheme(RegistryOptions::default(), "127.0.0.1:5000"), "http", "loopback is plain");
        let marked = RegistryOptions { plain_hosts: vec!["registry.internal:5000".into()], ..Default::default() };
        assert_eq!(scheme(marked.clone(), "registry.internal:5000"), "http");
        assert_eq!(scheme(marked, "ghcr.io"), "https", "only the marked registry is plain");
        let tls = RegistryOptions { tls_hosts: vec!["127.0.0.1:5443".into()], ..Default::default() };
        assert_eq!(scheme(tls, "127.0.0.1:5443"), "https", "a registry with a CA is TLS even on loopback");
        let all = RegistryOptions { insecure: true, ..Default::default() };
        assert_eq!(scheme(all, "ghcr.io"), "http");
    }
}
