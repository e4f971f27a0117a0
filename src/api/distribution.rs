//! The read-only OCI distribution pull API over kiln's own content store
//! (`--serve-images`), so a single node can pull what kiln built with
//! `skipPush` without running a registry: `GET`/`HEAD` `/v2/`,
//! `/v2/<name>/manifests/<tag|digest>`, `/v2/<name>/blobs/<digest>` and
//! `/v2/<name>/tags/list`.
//!
//! `<name>` is the built image's repository path without its registry host
//! (`fn/hello` for `registry.example.com/fn/hello:1`, `library/alpine` for
//! `alpine`). A name serves only what its tagged images reach (the
//! manifest or index, their manifests, configs and layers): nothing else in
//! the store is readable through it. The cache's garbage collection keeps
//! what a tag reaches ([`crate::worker::tags::pinned`]), so a served image
//! stays pullable until its tag points elsewhere.

use super::state::AppState;
use crate::worker::tags::{manifest_of, reachable, LocalTags};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use kiln_snapshotter::content::Store;
use kiln_snapshotter::Digest;

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

/// `GET`/`HEAD` `/v2/<name>/manifests/<ref>`, `/v2/<name>/blobs/<digest>`
/// and `/v2/<name>/tags/list`.
pub async fn pull(State(state): State<AppState>, method: Method, Path(rest): Path<String>) -> Response {
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return tag_list(&state, name);
    }
    let route = rest.rsplit_once("/manifests/").map(|(n, r)| (n, r, true));
    let route = route.or_else(|| rest.rsplit_once("/blobs/").map(|(n, r)| (n, r, false)));
    let Some((name, reference, is_manifest)) = route else {
        return oci_error(StatusCode::NOT_FOUND, "NAME_UNKNOWN", format!("no such route: /v2/{rest}")).into_response();
    };
    let (worker, tags) = (state.worker.clone(), LocalTags::new(&state.cfg.data_dir));
    let (name, reference) = (name.to_string(), reference.to_string());
    let found =
        tokio::task::spawn_blocking(move || locate(worker.store(), &tags, &name, &reference, is_manifest)).await;
    let (digest, media_type) = match found {
        Ok(Ok(found)) => found,
        Ok(Err(refused)) => return refused.into_response(),
        Err(e) => return oci_error(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", e.to_string()).into_response(),
    };
    serve_blob(state.worker.store(), &digest, &media_type, method == Method::HEAD)
}

/// `{"name": …, "tags": […]}`, or 404 for a name with no tags.
fn tag_list(state: &AppState, name: &str) -> Response {
    let tags = LocalTags::new(&state.cfg.data_dir).tags_of(name);
    if tags.is_empty() {
        return oci_error(StatusCode::NOT_FOUND, "NAME_UNKNOWN", format!("no image named {name}")).into_response();
    }
    let body = serde_json::json!({"name": name, "tags": tags});
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// Finds what a pull asks for: the blob's digest and media type.
fn locate(
    store: &dyn Store,
    tags: &LocalTags,
    name: &str,
    reference: &str,
    is_manifest: bool,
) -> Result<(Digest, String), PullError> {
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
    if !allowed || !matches!(store.info(&digest), Ok(Some(_))) {
        return Err(unknown(digest.as_str()));
    }
    let media_type = match is_manifest {
        true => manifest_of(store, &digest)
            .and_then(|m| m.media_type)
            .unwrap_or_else(|| crate::registry::MediaType::OCI_MANIFEST.to_string()),
        false => "application/octet-stream".to_string(),
    };
    Ok((digest, media_type))
}

fn serve_blob(store: &dyn Store, digest: &Digest, media_type: &str, head_only: bool) -> Response {
    let opened = store.info(digest).and_then(|info| Ok((info, store.open(digest)?)));
    let (size, reader) = match opened {
        Ok((Some(info), reader)) => (info.size, reader),
        Ok((None, _)) => {
            return oci_error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", format!("{digest} not found")).into_response()
        }
        Err(e) => return oci_error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", format!("{digest}: {e}")).into_response(),
    };
    let body = match head_only {
        true => Body::empty(),
        false => Body::from_stream(crate::chunks::blob_chunks(Box::new(reader), 64 << 10)),
    };
    let headers = [
        (header::CONTENT_TYPE, media_type.to_string()),
        (header::CONTENT_LENGTH, size.to_string()),
        (header::HeaderName::from_static("docker-content-digest"), digest.to_string()),
        (header::ETAG, format!("\"{digest}\"")),
    ];
    (StatusCode::OK, headers, body).into_response()
}
