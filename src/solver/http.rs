//! `ADD <url>`: downloads become one-file snapshots (mode 0600, mtime from
//! `Last-Modified`, owner 0:0) that a copy action then reads, as BuildKit's
//! HTTP source does. A `--checksum` keys the cache without a download and
//! is verified when one happens; otherwise each build asks the server with
//! `If-None-Match`/`If-Modified-Since` and keys by the body's digest.

use super::{keys, LayerRecord, SolveError, Solver};
use crate::errors::ErrorKind;
use crate::graph::{HttpOp, NodeId, Op};
use crate::worker::HttpRecord;
use kiln_snapshotter::Digest;
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// The largest download ADD accepts.
pub const MAX_DOWNLOAD_BYTES: u64 = 4 << 30;

/// A body saved to a temporary file (removed on drop).
pub(super) struct Download {
    pub(super) path: PathBuf,
    pub(super) digest: Digest,
    /// From `Last-Modified` (0 without it).
    pub(super) mtime: i64,
    /// The server sent `Last-Modified`.
    pub(super) dated: bool,
}

impl Drop for Download {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A response whose body is still to be read, or the cached record a
/// conditional request confirmed.
pub(super) enum Answer {
    NotModified(HttpRecord),
    Body(reqwest::Response),
}

/// A header's value as text.
fn header(resp: &reqwest::Response, name: reqwest::header::HeaderName) -> Option<String> {
    resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// The response's `Last-Modified`, as sent.
pub(super) fn last_modified(resp: &reqwest::Response) -> Option<String> {
    header(resp, reqwest::header::LAST_MODIFIED)
}

pub(super) enum Fetched {
    NotModified(HttpRecord),
    Body(Download),
}

/// The HTTP client downloads use, under the step egress policy.
pub(super) fn client(
    policy: &std::sync::Arc<crate::egress::policy::EgressPolicy>,
) -> Result<reqwest::Client, reqwest::Error> {
    use crate::egress::fetch::{redirect_policy, PolicyResolver};
    reqwest::Client::builder()
        .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(std::sync::Arc::new(PolicyResolver(policy.clone())))
        .redirect(redirect_policy(policy.clone()))
        .connect_timeout(std::time::Duration::from_secs(30))
        .read_timeout(std::time::Duration::from_secs(120))
        .timeout(std::time::Duration::from_secs(1800))
        .build()
}

impl Solver {
    /// The cache key of a download: its checksum when pinned, else the
    /// digest of what the server serves now (fetched unless unchanged);
    /// and the content's digest (`algorithm:hex`) as far as it is known.
    pub(super) async fn http_key(
        &self,
        id: NodeId,
        op: &HttpOp,
    ) -> Result<(String, Option<Download>, String), SolveError> {
        let whole = Op::Http(op.clone());
        if let Some(pinned) = &op.checksum {
            return Ok((keys::remote_key(&whole, "pinned"), None, pinned.clone()));
        }
        let previous = self.worker.cache().get_http(&op.url)?;
        match self.fetch(id, &op.url, previous).await? {
            Fetched::NotModified(rec) => {
                let key = keys::remote_key(&whole, &resolved(&rec.digest, rec.mtime));
                Ok((key, None, rec.digest.to_string()))
            }
            Fetched::Body(d) => {
                let digest = d.digest.to_string();
                Ok((keys::remote_key(&whole, &resolved(&d.digest, d.mtime)), Some(d), digest))
            }
        }
    }

    /// Materialises a download (fetching it if the key step did not) as a
    /// one-file snapshot and layer.
    pub(super) async fn run_http(
        &self,
        id: NodeId,
        op: &HttpOp,
        download: Option<Download>,
        epoch: Option<i64>,
    ) -> Result<Vec<LayerRecord>, SolveError> {
        let download = match download {
            Some(d) => d,
            None => match self.fetch(id, &op.url, None).await? {
                Fetched::Body(d) => d,
                Fetched::NotModified(_) => return Err(SolveError::internal(id, "unconditional request got 304")),
            },
        };
        if let Some(want) = &op.checksum {
            let got = checksum_of(&download, want).await.map_err(|e| SolveError::internal(id, e))?;
            if got != *want {
                let msg = format!("ADD {}: checksum mismatch: expected {want}, the download is {got}", op.url);
                return Err(SolveError::new(Some(id), ErrorKind::InvalidArgument, msg));
            }
        }
        let snap = self.worker.prepare_empty().map_err(|e| SolveError::worker(id, e))?;
        let placed = place_file(&download, &snap.dir().join(&op.filename));
        let result = placed.map_err(|e| {
            let (kind, message) =
                crate::errors::storage_error(Some(&format!("ADD {}", op.url)), &e, ErrorKind::Internal);
            SolveError::new(Some(id), kind, message)
        });
        self.finish(id, snap, Vec::new(), result, epoch).await
    }

    /// GETs `url` (conditionally when `previous` is known) into a temporary
    /// file under the data dir, hashing as it streams.
    pub(super) async fn fetch(
        &self,
        id: NodeId,
        url: &str,
        previous: Option<HttpRecord>,
    ) -> Result<Fetched, SolveError> {
        match self.request(id, url, previous).await? {
            Answer::NotModified(rec) => Ok(Fetched::NotModified(rec)),
            Answer::Body(resp) => self.save(id, url, resp).await.map(Fetched::Body),
        }
    }

    /// Sends the GET (under the steps' egress policy) and checks the
    /// status; the body is not read yet.
    pub(super) async fn request(
        &self,
        id: NodeId,
        url: &str,
        previous: Option<HttpRecord>,
    ) -> Result<Answer, SolveError> {
        let fail = |kind, msg: String| SolveError::new(Some(id), kind, format!("ADD {url}: {msg}"));
        let parsed = reqwest::Url::parse(url).map_err(|e| fail(ErrorKind::InvalidArgument, e.to_string()))?;
        crate::egress::fetch::check_url(self.cfg.networks.policy(), &parsed).await.map_err(|e| {
            fail(ErrorKind::InvalidArgument, format!("{e} (ADD URLs follow the RUN steps' egress policy)"))
        })?;
        let mut req = self.http.get(url);
        if let Some(p) = &previous {
            if let Some(etag) = &p.etag {
                req = req.header(reqwest::header::IF_NONE_MATCH, etag);
            }
            if let Some(lm) = &p.last_modified {
                req = req.header(reqwest::header::IF_MODIFIED_SINCE, lm);
            }
        }
        let resp = req.send().await.map_err(|e| fail(ErrorKind::Unavailable, crate::text::error_chain(&e)))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_MODIFIED {
            if let Some(p) = previous {
                return Ok(Answer::NotModified(p));
            }
        }
        if !status.is_success() {
            let kind = if status.is_client_error() { ErrorKind::InvalidArgument } else { ErrorKind::Unavailable };
            return Err(fail(kind, format!("the server answered {status}")));
        }
        if resp.content_length().is_some_and(|n| n > MAX_DOWNLOAD_BYTES) {
            return Err(fail(ErrorKind::InvalidArgument, too_large()));
        }
        Ok(Answer::Body(resp))
    }

    /// Streams a response's body (at most [`MAX_DOWNLOAD_BYTES`]) into a
    /// temporary file, hashing it, and records its validators.
    pub(super) async fn save(
        &self,
        id: NodeId,
        url: &str,
        mut resp: reqwest::Response,
    ) -> Result<Download, SolveError> {
        let fail = |kind, msg: String| SolveError::new(Some(id), kind, format!("ADD {url}: {msg}"));
        let (etag, last_modified) = (header(&resp, reqwest::header::ETAG), last_modified(&resp));
        let mtime = last_modified.as_deref().and_then(crate::timefmt::parse_http_date).unwrap_or(0);
        let dir = self.worker.data_dir().join("run/downloads");
        tokio::fs::create_dir_all(&dir).await.map_err(|e| SolveError::internal(id, e))?;
        let path = dir.join(kiln_snapshotter::SnapshotId::random().as_str());
        let mut file = tokio::fs::File::create(&path).await.map_err(|e| SolveError::internal(id, e))?;
        let mut download = Download { path, digest: Digest::of(b""), mtime, dated: last_modified.is_some() };
        let (mut hasher, mut written) = (Sha256::new(), 0u64);
        while let Some(chunk) =
            resp.chunk().await.map_err(|e| fail(ErrorKind::Unavailable, crate::text::error_chain(&e)))?
        {
            written += chunk.len() as u64;
            if written > MAX_DOWNLOAD_BYTES {
                return Err(fail(ErrorKind::InvalidArgument, too_large()));
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(|e| SolveError::internal(id, e))?;
        }
        file.sync_all().await.map_err(|e| SolveError::internal(id, e))?;
        download.digest = Digest::from_hasher(hasher);
        let record = HttpRecord { etag, last_modified, digest: download.digest.clone(), mtime };
        self.worker.cache().put_http(url, &record)?;
        Ok(download)
    }
}

/// The download's digest in `want`'s algorithm (`sha256:` is known from
/// the download; `sha384:` and `sha512:` read the file again).
pub(super) async fn checksum_of(download: &Download, want: &str) -> std::io::Result<String> {
    let algorithm = want.split_once(':').map_or("", |(a, _)| a).to_string();
    if algorithm == "sha256" {
        return Ok(download.digest.to_string());
    }
    let path = download.path.clone();
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&path)?;
        let hex = match algorithm.as_str() {
            "sha384" => hash_with(sha2::Sha384::new(), &mut file)?,
            "sha512" => hash_with(sha2::Sha512::new(), &mut file)?,
            other => return Err(std::io::Error::other(format!("unsupported checksum algorithm {other:?}"))),
        };
        Ok(format!("{algorithm}:{hex}"))
    })
    .await
    .map_err(std::io::Error::other)?
}

fn hash_with<D: sha2::Digest + std::io::Write>(mut hasher: D, file: &mut std::fs::File) -> std::io::Result<String> {
    std::io::copy(file, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

fn resolved(digest: &Digest, mtime: i64) -> String {
    format!("{digest}@{mtime}")
}

fn too_large() -> String {
    format!("the download is larger than {} GiB, the most ADD accepts", MAX_DOWNLOAD_BYTES >> 30)
}

/// Moves (or copies) the body to `dest` as a 0600 file with the
/// download's mtime.
fn place_file(download: &Download, dest: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if std::fs::rename(&download.path, dest).is_err() {
        std::fs::copy(&download.path, dest)?;
    }
    let file = std::fs::File::options().write(true).open(dest)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    let mtime = std::time::UNIX_EPOCH + std::time::Duration::from_secs(download.mtime.max(0) as u64);
    file.set_modified(mtime)
}
