//! Tags of the images kiln built, for the read-only `/v2/` pull API
//! (`--serve-images`), under `<data-dir>/images/<repository hash>/`: one
//! small JSON file per tag, replaced atomically, so a pull reads only its
//! own repository's tags. What the tags reach (manifests,
//! configs, layers) is pinned against the cache's garbage collection.

use kiln_snapshotter::content::{read_blob, Store};
use kiln_snapshotter::Digest;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

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
    pub fn new(data_dir: &Path) -> Self {
        LocalTags { dir: data_dir.join("images") }
    }

    fn repository_dir(&self, repository: &str) -> PathBuf {
        self.dir.join(Digest::of(repository.as_bytes()).hex())
    }

    fn file(&self, repository: &str, tag: &str) -> PathBuf {
        self.repository_dir(repository).join(Digest::of(tag.as_bytes()).hex())
    }

    /// Points `repository:tag` at `digest` (atomically replacing the old one).
    pub fn set(&self, repository: &str, tag: &str, digest: &Digest) -> std::io::Result<()> {
        let dir = self.repository_dir(repository);
        std::fs::create_dir_all(&dir)?;
        let record = TagRecord { repository: repository.into(), tag: tag.into(), digest: digest.to_string() };
        let tmp = dir.join(format!(".tmp-{}", kiln_snapshotter::SnapshotId::random().as_str()));
        std::fs::write(&tmp, serde_json::to_vec(&record).expect("record serializes"))?;
        std::fs::rename(&tmp, self.file(repository, tag))
    }

    /// The digest `repository:tag` points at.
    pub fn get(&self, repository: &str, tag: &str) -> Option<Digest> {
        let raw = std::fs::read(self.file(repository, tag)).ok()?;
        let record: TagRecord = serde_json::from_slice(&raw).ok()?;
        (record.repository == repository && record.tag == tag).then(|| Digest::parse(&record.digest).ok())?
    }

    /// The tag records of `repository` (every repository: `None`).
    fn records(&self, repository: Option<&str>) -> Vec<TagRecord> {
        let dirs: Vec<PathBuf> = match repository {
            Some(repo) => vec![self.repository_dir(repo)],
            None => std::fs::read_dir(&self.dir).into_iter().flatten().flatten().map(|e| e.path()).collect(),
        };
        dirs.iter()
            .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
            .filter_map(|e| serde_json::from_slice::<TagRecord>(&std::fs::read(e.path()).ok()?).ok())
            .filter(|r| repository.is_none_or(|repo| r.repository == repo))
            .collect()
    }

    /// The tags of `repository`, sorted.
    pub fn tags_of(&self, repository: &str) -> Vec<String> {
        let mut tags: Vec<String> = self.records(Some(repository)).into_iter().map(|r| r.tag).collect();
        tags.sort();
        tags
    }

    /// What the tags of `repository` (every repository: `None`) point at.
    fn digests_of(&self, repository: Option<&str>) -> Vec<Digest> {
        self.records(repository).iter().filter_map(|r| Digest::parse(&r.digest).ok()).collect()
    }
}

/// Media type and references of a manifest or index.
#[derive(Deserialize)]
pub struct ManifestRefs {
    /// `mediaType`.
    #[serde(rename = "mediaType")]
    pub media_type: Option<String>,
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

/// A stored manifest or index, parsed.
pub fn manifest_of(store: &dyn Store, digest: &Digest) -> Option<ManifestRefs> {
    serde_json::from_slice(&read_blob(store, digest, crate::oci::MAX_MANIFEST_BYTES).ok()?).ok()
}

/// Every digest `repository`'s tags reach, with which of them are manifests.
pub fn reachable(store: &dyn Store, tags: &LocalTags, repository: &str) -> (HashSet<String>, HashSet<String>) {
    reach(store, tags.digests_of(Some(repository)))
}

/// Every blob some tag reaches: kept by the garbage collection.
pub fn pinned(store: &dyn Store, tags: &LocalTags) -> HashSet<String> {
    reach(store, tags.digests_of(None)).0
}

/// Blobs reachable from the manifests or indexes `roots`, and which of
/// them are manifests.
fn reach(store: &dyn Store, roots: Vec<Digest>) -> (HashSet<String>, HashSet<String>) {
    let (mut all, mut manifests) = (HashSet::new(), HashSet::new());
    let mut queue = roots;
    while let Some(d) = queue.pop() {
        if !manifests.insert(d.to_string()) {
            continue;
        }
        all.insert(d.to_string());
        let Some(m) = manifest_of(store, &d) else { continue };
        all.extend(m.config.into_iter().chain(m.layers).map(|c| c.digest));
        queue.extend(m.manifests.iter().filter_map(|c| Digest::parse(&c.digest).ok()));
    }
    (all, manifests)
}
