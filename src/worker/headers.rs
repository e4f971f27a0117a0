//! Each layer's tar headers ([`LayerHeaders`]), recorded when the layer is
//! unpacked or built and kept under `headers/<diff id hex>.json.gz`; the
//! registry cache carries them too, so a replica that never held a layer
//! knows its paths, owners and modes. A COPY uses them to make its layer
//! without the bytes of the chain below it (see `solver::skeleton`).

use super::regcache::RegistryCache;
use super::{LayerRecord, Worker};
use flate2::{read::GzDecoder, write::GzEncoder, Compression};
use kiln_snapshotter::headers::LayerHeaders;
use kiln_snapshotter::Digest;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

/// Largest index read back (gzip-compressed, and again once inflated).
pub const MAX_HEADERS_BYTES: u64 = 64 << 20;

/// The directory under the data dir that holds the indexes.
pub(super) const HEADERS_DIR: &str = "headers";

/// Encodes an index as it is stored and exported (gzip-compressed JSON).
pub fn encode_headers(headers: &LayerHeaders) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::new(3));
    gz.write_all(&serde_json::to_vec(headers).expect("headers serialize")).expect("write to memory");
    gz.finish().expect("write to memory")
}

/// Decodes [`encode_headers`]' bytes; `None` for another format version,
/// an overflowed index, or bytes that do not parse.
pub fn decode_headers(bytes: &[u8]) -> Option<LayerHeaders> {
    let mut json = Vec::new();
    GzDecoder::new(bytes).take(MAX_HEADERS_BYTES).read_to_end(&mut json).ok()?;
    serde_json::from_slice::<LayerHeaders>(&json).ok().filter(LayerHeaders::usable)
}

impl Worker {
    fn headers_path(&self, diff_id: &Digest) -> PathBuf {
        self.data_dir().join(HEADERS_DIR).join(format!("{}.json.gz", diff_id.hex()))
    }

    /// Keeps `headers` as the index of the layer `diff_id` (blocking). A
    /// failure only costs a later COPY its shortcut, so it is logged.
    pub(super) fn keep_headers(&self, diff_id: &Digest, headers: &LayerHeaders) {
        if headers.usable() {
            self.keep_headers_bytes(diff_id, &encode_headers(headers));
        }
    }

    fn keep_headers_bytes(&self, diff_id: &Digest, bytes: &[u8]) {
        let path = self.headers_path(diff_id);
        let parent = path.parent().expect("under the data dir").to_path_buf();
        let kept = std::fs::create_dir_all(&parent).and_then(|_| {
            let tmp = tempfile::NamedTempFile::new_in(&parent)?;
            std::fs::write(tmp.path(), bytes)?;
            tmp.persist(&path).map(|_| ()).map_err(|e| e.error)
        });
        if let Err(e) = kept {
            tracing::warn!(layer = %diff_id, error = %e, "could not keep the layer's header index");
        }
    }

    /// The stored index bytes of the layer `diff_id`, if any (blocking).
    pub fn cached_headers_bytes(&self, diff_id: &Digest) -> Option<Vec<u8>> {
        let file = std::fs::File::open(self.headers_path(diff_id)).ok()?;
        let mut bytes = Vec::new();
        file.take(MAX_HEADERS_BYTES).read_to_end(&mut bytes).ok()?;
        Some(bytes)
    }

    /// The indexes of every layer of `chain`, base first: each one kept
    /// here, else exported by another replica to `cache`. `None` when any
    /// layer has none (the caller then reads the layers themselves).
    pub async fn chain_headers(
        self: &Arc<Self>,
        chain: &[LayerRecord],
        cache: Option<&RegistryCache>,
    ) -> Option<Vec<LayerHeaders>> {
        let lookups = chain.iter().map(|layer| self.layer_headers(&layer.diff_id, cache));
        futures_util::future::join_all(lookups).await.into_iter().collect()
    }

    async fn layer_headers(self: &Arc<Self>, diff_id: &Digest, cache: Option<&RegistryCache>) -> Option<LayerHeaders> {
        let (this, id) = (self.clone(), diff_id.clone());
        let local =
            tokio::task::spawn_blocking(move || this.cached_headers_bytes(&id).and_then(|b| decode_headers(&b)));
        if let Some(found) = local.await.ok().flatten() {
            return Some(found);
        }
        let bytes = match cache?.headers(self, diff_id).await {
            Ok(bytes) => bytes?,
            Err(e) => {
                tracing::debug!(layer = %diff_id, error = %e, "registry cache header index unusable");
                return None;
            }
        };
        let (this, id) = (self.clone(), diff_id.clone());
        tokio::task::spawn_blocking(move || {
            let headers = decode_headers(&bytes)?;
            this.keep_headers_bytes(&id, &bytes);
            Some(headers)
        })
        .await
        .ok()
        .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_snapshotter::headers::{EntryKind, HeaderEntry};

    #[test]
    fn an_index_round_trips_and_a_bad_one_is_refused() {
        let mut h = LayerHeaders::new();
        h.push(HeaderEntry {
            path: "usr/lib".into(),
            kind: EntryKind::Symlink,
            mode: 0o777,
            uid: 0,
            gid: 0,
            mtime: 7,
            link: Some("lib".into()),
            xattrs: false,
        });
        assert_eq!(decode_headers(&encode_headers(&h)), Some(h.clone()));
        assert_eq!(decode_headers(b"not gzip"), None);
        let old = LayerHeaders { version: 0, ..h };
        assert_eq!(decode_headers(&encode_headers(&old)), None, "another format version is not used");
    }
}
