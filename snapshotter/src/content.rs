//! A content-addressed blob store on the filesystem, modelled on
//! containerd's: `blobs/sha256/<hex>` plus an `ingest/` area. A blob is
//! written to ingest, fsynced, verified against its expected size and
//! digest, and only then renamed into place, so a crash leaves either the
//! whole blob or garbage in `ingest/` that [`ContentStore::clean_ingest`]
//! removes.

use crate::{Digest, Error, IoContext, Result};
use sha2::{Digest as _, Sha256};
use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::path::PathBuf;

/// What the store knows about a committed blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// The blob's digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
}

/// A readable, seekable committed blob.
pub trait BlobReader: Read + Seek + Send {}
impl<T: Read + Seek + Send> BlobReader for T {}

/// An open ingest (containerd's `content.Writer`).
pub trait Writer: Write + Send {
    /// Bytes written so far.
    fn written(&self) -> u64;
    /// Verifies the content against the expected size and digest (when
    /// given) and publishes it atomically; content that already exists is
    /// success. On error nothing becomes visible.
    fn commit(self: Box<Self>, size: Option<u64>, expected: Option<&Digest>) -> Result<(Digest, u64)>;
}

/// A content-addressed store (containerd's `content.Store`: provider,
/// ingester and manager in one).
pub trait Store: Send + Sync {
    /// The size of a committed blob, or `None` when absent.
    fn info(&self, digest: &Digest) -> Result<Option<Info>>;
    /// Opens a committed blob.
    fn open(&self, digest: &Digest) -> Result<Box<dyn BlobReader>>;
    /// Starts a new ingest.
    fn ingest(&self) -> Result<Box<dyn Writer>>;
    /// Deletes a blob; deleting an absent blob succeeds.
    fn remove(&self, digest: &Digest) -> Result<()>;
    /// Every committed blob, in no particular order.
    fn walk(&self) -> Result<Vec<Info>>;
    /// Ingests not committed: in progress, or left by a crash
    /// (containerd's `ListStatuses`).
    fn ingests(&self) -> Result<usize>;
}

/// The blob store rooted at a directory.
#[derive(Clone, Debug)]
pub struct ContentStore {
    root: PathBuf,
}

impl ContentStore {
    /// The store under `root`, created when missing (the trait's `open`
    /// reads a blob).
    pub fn at(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        for sub in ["blobs/sha256", "ingest"] {
            fs::create_dir_all(root.join(sub)).ctx(|| format!("create {}", root.join(sub).display()))?;
        }
        Ok(Self { root })
    }

    /// Where a blob lives (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// Starts a new blob in the ingest area.
    fn writer(&self) -> Result<ContentWriter> {
        let tmp = tempfile::Builder::new()
            .prefix("ingest-")
            .tempfile_in(self.root.join("ingest"))
            .ctx(|| "create ingest file".into())?;
        Ok(ContentWriter { store: self.clone(), tmp, hasher: Sha256::new(), written: 0 })
    }

    /// Removes ingest leftovers from a previous crash.
    pub fn clean_ingest(&self) -> Result<usize> {
        let dir = self.root.join("ingest");
        let mut removed = 0;
        for entry in fs::read_dir(&dir).ctx(|| format!("read {}", dir.display()))? {
            let entry = entry.ctx(|| "read ingest entry".into())?;
            fs::remove_file(entry.path()).ctx(|| format!("remove {}", entry.path().display()))?;
            removed += 1;
        }
        Ok(removed)
    }
}

/// An open ingest: bytes written are hashed on the way to disk.
struct ContentWriter {
    store: ContentStore,
    tmp: tempfile::NamedTempFile,
    hasher: Sha256,
    written: u64,
}

impl Write for ContentWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.tmp.as_file_mut().write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.tmp.as_file_mut().flush()
    }
}

impl Store for ContentStore {
    fn info(&self, digest: &Digest) -> Result<Option<Info>> {
        match fs::metadata(self.blob_path(digest)) {
            Ok(m) => Ok(Some(Info { digest: digest.clone(), size: m.len() })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).ctx(|| format!("stat blob {digest}")),
        }
    }
    fn open(&self, digest: &Digest) -> Result<Box<dyn BlobReader>> {
        Ok(Box::new(File::open(self.blob_path(digest)).ctx(|| format!("open blob {digest}"))?))
    }
    fn ingest(&self) -> Result<Box<dyn Writer>> {
        Ok(Box::new(self.writer()?))
    }
    fn remove(&self, digest: &Digest) -> Result<()> {
        match fs::remove_file(self.blob_path(digest)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e).ctx(|| format!("delete {digest}")),
            _ => Ok(()),
        }
    }
    fn walk(&self) -> Result<Vec<Info>> {
        let dir = self.root.join("blobs/sha256");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).ctx(|| format!("read {}", dir.display()))? {
            let entry = entry.ctx(|| "read blob entry".into())?;
            let Ok(digest) = Digest::parse(&format!("sha256:{}", entry.file_name().to_string_lossy())) else {
                continue;
            };
            let size = entry.metadata().ctx(|| format!("stat blob {digest}"))?.len();
            out.push(Info { digest, size });
        }
        Ok(out)
    }
    fn ingests(&self) -> Result<usize> {
        let dir = self.root.join("ingest");
        Ok(fs::read_dir(&dir).ctx(|| format!("read {}", dir.display()))?.count())
    }
}

impl Writer for ContentWriter {
    fn written(&self) -> u64 {
        self.written
    }

    /// Verifies and atomically publishes the blob. A blob that already
    /// exists counts as success (content addressing makes them equal).
    fn commit(self: Box<Self>, size: Option<u64>, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        let mut this = *self;
        let digest = Digest::from_hasher(this.hasher.clone());
        if let Some(want) = size.filter(|s| *s != this.written) {
            return Err(Error::Mismatch(format!("size {} but expected {want}", this.written)));
        }
        if let Some(want) = expected.filter(|d| **d != digest) {
            return Err(Error::Mismatch(format!("got {digest}, expected {want}")));
        }
        let target = this.store.blob_path(&digest);
        // A blob already there is the same content: nothing to sync.
        if !target.exists() {
            this.tmp.as_file_mut().sync_all().ctx(|| "fsync ingest".into())?;
            this.tmp.persist(&target).map_err(|e| e.error).ctx(|| format!("commit {digest}"))?;
            let dir = target.parent().expect("blobs have a directory");
            File::open(dir).and_then(|d| d.sync_all()).ctx(|| format!("fsync {}", dir.display()))?;
        }
        Ok((digest, this.written))
    }
}

/// Stores `data` as a blob and returns its digest (containerd's
/// `content.WriteBlob`).
pub fn write_blob(store: &dyn Store, data: &[u8]) -> Result<Digest> {
    let mut w = store.ingest()?;
    w.write_all(data).ctx(|| "write blob".into())?;
    Ok(w.commit(Some(data.len() as u64), None)?.0)
}

/// Reads a whole blob of at most `limit` bytes (manifests, configs): a
/// larger one is refused rather than read into memory.
pub fn read_blob(store: &dyn Store, digest: &Digest, limit: u64) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    store.open(digest)?.take(limit + 1).read_to_end(&mut bytes).ctx(|| format!("read blob {digest}"))?;
    if bytes.len() as u64 > limit {
        return Err(Error::Mismatch(format!("blob {digest} is larger than {limit} bytes")));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_verifies_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::at(dir.path()).unwrap();
        let d = write_blob(&store, b"hello").unwrap();
        assert_eq!(store.info(&d).unwrap().map(|i| i.size), Some(5));
        assert_eq!(write_blob(&store, b"hello").unwrap(), d);
        assert_eq!(read_blob(&store, &d, 5).unwrap(), b"hello");
        assert!(read_blob(&store, &d, 4).is_err(), "a blob over the limit is refused");
        let mut w = store.ingest().unwrap();
        w.write_all(b"hello").unwrap();
        assert!(w.commit(Some(4), None).is_err());
        let mut w = store.ingest().unwrap();
        w.write_all(b"other").unwrap();
        assert!(w.commit(None, Some(&d)).is_err());
        assert_eq!(store.clean_ingest().unwrap(), 0, "failed commits leave nothing behind");
        store.remove(&d).unwrap();
        assert_eq!(store.info(&d).unwrap(), None);
    }

    #[test]
    fn filesystem_store_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::at(dir.path()).unwrap();
        crate::conformance::content_store(&store);
        assert_eq!(store.clean_ingest().unwrap(), 0, "abandoned and failed ingests leave nothing behind");
    }

    #[test]
    fn memory_store_passes_the_conformance_suite() {
        crate::conformance::content_store(&crate::conformance::MemoryStore::default());
    }
}
