//! The read-only OCI distribution pull API over kiln's own content store
//! (`--serve-images`), so a single node can pull what kiln built with
//! `skipPush` without running a registry: `GET`/`HEAD` `/v2/`,
//! `/v2/<name>/manifests/<tag|digest>` and `/v2/<name>/blobs/<digest>`.
//!
//! `<name>` is the built image's repository path without its registry host
//! (`fn/hello` for `registry.example.com/fn/hello:1`, `library/alpine` for
//! `alpine`). A name serves only what its tagged images reach (the
//! manifest or index, their manifests, configs and layers): nothing else in
//! the store is readable through it. Content evicted by the cache's
//! garbage collection answers 404 until the image is built again.

use super::state::AppState;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use kiln_snapshotter::{ContentStore, Digest};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::PathBuf;

/// Tags of the images kiln built, under `<data-dir>/images`.
#[derive(Debug, Clone)]
pub struct LocalTags {
    dir: PathBuf,
}

/// One tag.
#[derive(Debug, Serialize, Deserialize)]
struct TagRecord {
    repository: String,
    tag: String,
    digest: String,
}

impl LocalTags {
    /// The tag directory under `data_dir`.
    pub fn new(data_dir: &std::path::Path) -> Self {
        LocalTags { dir: data_dir.join("images") }
    }

    fn file(&self, repository: &str, tag: &str) -> PathBuf {
        self.dir.join(Digest::of(format!("{repository}:{tag}").as_bytes()).hex())
    }

    /// Points `repository:tag` at `digest` (atomically replacing the old one).
    pub fn set(&self, repository: &str, tag: &str, digest: &Digest) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let record = TagRecord { repository: repository.into(), tag: tag.into(), digest: digest.to_string() };
        let tmp = self.dir.join(format!(".tmp-{}", kiln_snapshotter::SnapshotId::random().as_str()));
        std::fs::write(&tmp, serde_json::to_vec(&record).expect("record serializes"))?;
        std::fs::rename(&tmp, self.file(repository, tag))
    }

    /// The digest `repository:tag` points at.
    pub fn get(&self, repository: &str, tag: &str) -> Option<Digest> {
        let raw = std::fs::read(self.file(repository, tag)).ok()?;
        let record: TagRecord = serde_json::from_slice(&raw).ok()?;
        (record.repository == repository && record.tag == tag).then(|| Digest::parse(&record.digest).ok())?
    }

    /// Every tag of `repository`.
    fn digests_of(&self, repository: &str) -> Vec<Digest> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        entries
            .flatten()
            .filter_map(|e| serde_json::from_slice::<TagRecord>(&std::fs::read(e.path()).ok()?).ok())
            .filter(|r| r.repository == repository)
            .filter_map(|r| Digest::parse(&r.digest).ok())
            .collect()
    }
}

/// Media type and references of a manifest or index.
#[derive(Deserialize)]
struct Descriptorish {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
}

fn parse_manifest(store: &ContentStore, digest: &Digest) -> Option<Descriptorish> {
    serde_json::from_slice(&std::fs::read(store.blob_path(digest)).ok()?).ok()
}

/// Every digest `repository`'s tags reach, with which of them are manifests.
fn reachable(store: &ContentStore, tags: &LocalTags, repository: &str) -> (HashSet<String>, HashSet<String>) {
    let (mut all, mut manifests) = (HashSet::new(), HashSet::new());
    let mut queue = tags.digests_of(repository);
    while let Some(d) = queue.pop() {
        if !manifests.insert(d.to_string()) {
            continue;
        }
        all.insert(d.to_string());
        let Some(m) = parse_manifest(store, &d) else { continue };
        all.extend(m.config.into_iter().chain(m.layers).map(|c| c.digest));
        queue.extend(m.manifests.iter().filter_map(|c| Digest::parse(&c.digest).ok()));
    }
    (all, manifests)
}

/// A refused pull, answered in the distribution API's error format.
struct PullError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl IntoResponse for PullError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"errors": [{"code": self.code, "message": self.message}]});
        (self.status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
    }
}

fn oci_error(status: StatusCode, code: &'static str, message: String) -> PullError {
    PullError { status, code, message }
}

/// `GET /v2/`: the API version check.
pub async fn version() -> Response {
    (StatusCode::OK, [("docker-distribution-api-version", "registry/2.0")], "{}").into_response()
}

/// `GET`/`HEAD` `/v2/<name>/manifests/<ref>` and `/v2/<name>/blobs/<digest>`.
pub async fn pull(State(state): State<AppState>, method: Method, Path(rest): Path<String>) -> Response {
    let route = rest.rsplit_once("/manifests/").map(|(n, r)| (n, r, true));
    let route = route.or_else(|| rest.rsplit_once("/blobs/").map(|(n, r)| (n, r, false)));
    let Some((name, reference, is_manifest)) = route else {
        return oci_error(StatusCode::NOT_FOUND, "NAME_UNKNOWN", format!("no such route: /v2/{rest}")).into_response();
    };
    let (store, tags) = (state.solver.store().clone(), LocalTags::new(&state.cfg.data_dir));
    let (name, reference) = (name.to_string(), reference.to_string());
    let found = tokio::task::spawn_blocking(move || locate(&store, &tags, &name, &reference, is_manifest)).await;
    let (path, digest, media_type) = match found {
        Ok(Ok(found)) => found,
        Ok(Err(refused)) => return refused.into_response(),
        Err(e) => return oci_error(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", e.to_string()).into_response(),
    };
    serve_file(path, &digest, &media_type, method == Method::HEAD).await
}

/// Finds what a pull asks for: the blob's path, digest and media type.
fn locate(
    store: &ContentStore,
    tags: &LocalTags,
    name: &str,
    reference: &str,
    is_manifest: bool,
) -> Result<(PathBuf, Digest, String), PullError> {
    let unknown = |what: &str| {
        let code = if is_manifest { "MANIFEST_UNKNOWN" } else { "BLOB_UNKNOWN" };
        oci_error(StatusCode::NOT_FOUND, code, format!("{what} not found in {name}"))
    };
    let digest = match Digest::parse(reference) {
        Ok(d) => d,
        Err(_) if is_manifest => tags.get(name, reference).ok_or_else(|| unknown(&format!("tag {reference}")))?,
        Err(_) => return Err(oci_error(StatusCode::BAD_REQUEST, "DIGEST_INVALID", format!("bad digest {reference}"))),
    };
    let (all, manifests) = reachable(store, tags, name);
    let allowed = if is_manifest { manifests.contains(digest.as_str()) } else { all.contains(digest.as_str()) };
    if !allowed || !store.blob_path(&digest).is_file() {
        return Err(unknown(digest.as_str()));
    }
    let media_type = match is_manifest {
        true => parse_manifest(store, &digest)
            .and_then(|m| m.media_type)
            .unwrap_or_else(|| crate::registry::MediaType::OCI_MANIFEST.to_string()),
        false => "application/octet-stream".to_string(),
    };
    Ok((store.blob_path(&digest), digest, media_type))
}

async fn serve_file(path: PathBuf, digest: &Digest, media_type: &str, head_only: bool) -> Response {
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) => return oci_error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", format!("{digest}: {e}")).into_response(),
    };
    let size = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let body = match head_only {
        true => Body::empty(),
        false => Body::from_stream(file_chunks(file)),
    };
    let headers = [
        (header::CONTENT_TYPE, media_type.to_string()),
        (header::CONTENT_LENGTH, size.to_string()),
        (header::HeaderName::from_static("docker-content-digest"), digest.to_string()),
        (header::ETAG, format!("\"{digest}\"")),
    ];
    (StatusCode::OK, headers, body).into_response()
}

/// A file as a stream of 64 KiB chunks; a read error ends it.
fn file_chunks(
    file: tokio::fs::File,
) -> impl futures_util::Stream<Item = std::io::Result<axum::body::Bytes>> + Send + 'static {
    futures_util::stream::unfold(Some(file), |file| async move {
        use tokio::io::AsyncReadExt;
        let mut file = file?;
        let mut buf = vec![0u8; 64 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(axum::body::Bytes::from(buf)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}
