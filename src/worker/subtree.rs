//! Content keys of paths in a layer chain, for the steps that read a stage
//! through `--from` (`COPY --from`, `RUN --mount=from=`): as BuildKit keys
//! such a read by the content it selects, a change elsewhere in the stage
//! leaves the step cached. The key covers, layer by layer, every entry
//! under each path — kind, mode, owner, xattrs, file contents, link
//! targets, whiteouts and opaque directories — and the kind of each
//! ancestor; mtimes do not count. A symlink on the way to a path (or the
//! path itself) is not keyed by content: what it points at may be
//! anywhere.

use super::{LayerRecord, Worker, WorkerError};
use kiln_snapshotter::fsx::{self, OPAQUE_XATTR};
use kiln_snapshotter::SnapshotId;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::fs::Metadata;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Per-layer hashes by snapshot and path: a committed snapshot never
/// changes, so a layer is read once however many builds select from it.
#[derive(Debug, Clone, Default)]
pub struct LayerHashes(Arc<Mutex<HashMap<(SnapshotId, String), LayerHash>>>);

/// A layer's hash at a path (`None`: a symlink on the way).
type LayerHash = Option<[u8; 32]>;

/// Most hashes kept; past it the map starts again (they are recomputed).
const MAX_LAYER_HASHES: usize = 100_000;

impl LayerHashes {
    fn get_or(
        &self,
        key: (SnapshotId, String),
        compute: impl FnOnce() -> io::Result<LayerHash>,
    ) -> io::Result<LayerHash> {
        if let Some(hit) = self.0.lock().expect("layer hashes").get(&key) {
            return Ok(*hit);
        }
        let value = compute()?;
        let mut map = self.0.lock().expect("layer hashes");
        if map.len() >= MAX_LAYER_HASHES {
            map.clear();
        }
        map.insert(key, value);
        Ok(value)
    }
}

impl Worker {
    /// The content key of `paths` (absolute, no wildcards) in `chain`;
    /// `None` when one of them cannot be keyed by content — also when a
    /// file cannot be read, since the stage's own key is always a correct
    /// (if coarser) key.
    pub async fn content_key(&self, chain: &[LayerRecord], paths: &[String]) -> Result<Option<String>, WorkerError> {
        let mut layers: Vec<(SnapshotId, PathBuf)> = Vec::with_capacity(chain.len());
        for l in chain {
            let s = super::layers::snapshot_of(l)?;
            layers.push((s.clone(), self.snapshots.dir(&s)));
        }
        let (paths, hashes) = (paths.to_vec(), self.layer_hashes.clone());
        let key = tokio::task::spawn_blocking(move || subtree_key(&layers, &paths, &hashes)).await?;
        Ok(key.unwrap_or_else(|e| {
            tracing::debug!(error = %e, "a stage read is keyed by the stage: its files could not be hashed");
            None
        }))
    }
}

/// The key of `paths` over `layers` (base first); `None` for a wildcard or
/// a symlink on the way.
pub fn subtree_key(
    layers: &[(SnapshotId, PathBuf)],
    paths: &[String],
    hashes: &LayerHashes,
) -> io::Result<Option<String>> {
    let mut h = Sha256::new();
    for path in paths {
        if path.contains(['*', '?', '[', '\\']) {
            return Ok(None);
        }
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
        if parts.contains(&"..") {
            return Ok(None);
        }
        let normal = parts.join("/");
        h.update(b"path\0");
        h.update(normal.as_bytes());
        for (id, dir) in layers {
            match hashes.get_or((id.clone(), normal.clone()), || layer_hash(dir, &parts))? {
                Some(layer) => h.update(layer),
                None => return Ok(None),
            }
        }
    }
    Ok(Some(format!("content:{}", hex::encode(h.finalize()))))
}

/// What one layer holds at `parts` and on the way there; `None` when a
/// symlink is on the way.
fn layer_hash(layer: &Path, parts: &[&str]) -> io::Result<LayerHash> {
    let mut h = Sha256::new();
    let mut at = layer.to_path_buf();
    for (depth, part) in parts.iter().enumerate() {
        at.push(part);
        let md = match std::fs::symlink_metadata(&at) {
            Ok(md) => md,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                h.update(format!("absent {depth}\0").as_bytes());
                return Ok(Some(h.finalize().into()));
            }
            Err(e) => return Err(e),
        };
        if md.file_type().is_symlink() {
            return Ok(None);
        }
        let last = depth + 1 == parts.len();
        if !last && !md.is_dir() {
            // A file or whiteout where a parent should be hides the path.
            entry(&mut h, &at, &md, &format!("ancestor {depth}"))?;
            return Ok(Some(h.finalize().into()));
        }
        if !last {
            h.update(format!("dir {depth} {}\0", is_opaque(&at)?).as_bytes());
        }
    }
    let md = std::fs::symlink_metadata(&at)?;
    if md.file_type().is_symlink() {
        return Ok(None);
    }
    walk(&mut h, &at, &md, "")?;
    Ok(Some(h.finalize().into()))
}

/// Hashes `abs` and, for a directory, everything under it.
fn walk(h: &mut Sha256, abs: &Path, md: &Metadata, rel: &str) -> io::Result<()> {
    entry(h, abs, md, rel)?;
    if md.is_dir() {
        let mut names: Vec<_> = std::fs::read_dir(abs)?.map(|e| e.map(|e| e.file_name())).collect::<io::Result<_>>()?;
        names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
        for name in names {
            let child = abs.join(&name);
            let child_md = std::fs::symlink_metadata(&child)?;
            walk(h, &child, &child_md, &format!("{rel}/{}", name.to_string_lossy()))?;
        }
    }
    Ok(())
}

/// One entry's kind, mode, owner, xattrs and content (no times).
fn entry(h: &mut Sha256, abs: &Path, md: &Metadata, rel: &str) -> io::Result<()> {
    let ft = md.file_type();
    let kind = match () {
        _ if ft.is_char_device() && md.rdev() == 0 => "whiteout",
        _ if ft.is_dir() && is_opaque(abs)? => "opaque-dir",
        _ if ft.is_dir() => "dir",
        _ if ft.is_file() => "file",
        _ if ft.is_symlink() => "symlink",
        _ if ft.is_fifo() => "fifo",
        _ => "other",
    };
    h.update(format!("{rel}\0{kind}\0{:o} {} {}\0", md.mode() & 0o7777, md.uid(), md.gid()).as_bytes());
    for name in fsx::list_xattrs(abs)?.into_iter().filter(|n| !fsx::is_overlay_xattr(n)) {
        h.update(&name);
        h.update(fsx::get_xattr(abs, &name)?.unwrap_or_default());
    }
    if ft.is_file() {
        io::copy(&mut std::fs::File::open(abs)?, h)?;
    } else if ft.is_symlink() {
        h.update(std::fs::read_link(abs)?.as_os_str().as_encoded_bytes());
    }
    Ok(())
}

fn is_opaque(dir: &Path) -> io::Result<bool> {
    Ok(fsx::get_xattr(dir, OPAQUE_XATTR)?.as_deref() == Some(b"y"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        dir
    }

    fn key(layers: &[&tempfile::TempDir], path: &str) -> Option<String> {
        let dirs: Vec<(SnapshotId, PathBuf)> =
            layers.iter().map(|d| (SnapshotId::random(), d.path().to_path_buf())).collect();
        subtree_key(&dirs, &[path.to_string()], &LayerHashes::default()).unwrap()
    }

    #[test]
    fn only_what_the_path_holds_counts() {
        let (base, bust0, bust1) =
            (layer(&[("bin/sh", "sh")]), layer(&[("cachebust", "0")]), layer(&[("cachebust", "1")]));
        let out = layer(&[("out/foo", "foo")]);
        let first = key(&[&base, &bust0, &out], "/out");
        assert!(first.is_some());
        assert_eq!(first, key(&[&base, &bust1, &out], "out"), "a change outside /out does not count");
        assert_ne!(first, key(&[&base, &bust1, &out], "/cachebust"), "other paths differ");
        assert_ne!(key(&[&base, &bust0, &out], "/cachebust"), key(&[&base, &bust1, &out], "/cachebust"));
        let changed = layer(&[("out/foo", "bar")]);
        assert_ne!(first, key(&[&base, &bust0, &changed], "/out"), "a change inside /out counts");
        std::fs::write(out.path().join("out/foo"), "foo").unwrap();
        let touched = filetime_now(&out.path().join("out/foo"));
        assert!(touched);
        assert_eq!(first, key(&[&base, &bust0, &out], "/out"), "mtimes do not count");
    }

    fn filetime_now(p: &Path) -> bool {
        let f = std::fs::File::options().write(true).open(p).unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).is_ok()
    }

    #[test]
    fn wildcards_and_symlinks_are_not_keyed_by_content() {
        let base = layer(&[("srv/app/a", "a")]);
        std::os::unix::fs::symlink("/srv/app", base.path().join("app")).unwrap();
        assert_eq!(key(&[&base], "/srv/*"), None);
        assert_eq!(key(&[&base], "/app"), None, "the link itself");
        assert_eq!(key(&[&base], "/app/a"), None, "a link on the way");
        assert!(key(&[&base], "/srv/app").is_some());

        // A link inside the selection counts by its target's name, never
        // by what it points at on the node.
        let host = layer(&[("secret", "one")]);
        std::os::unix::fs::symlink(host.path().join("secret"), base.path().join("srv/app/leak")).unwrap();
        let before = key(&[&base], "/srv/app");
        std::fs::write(host.path().join("secret"), "two").unwrap();
        assert_eq!(key(&[&base], "/srv/app"), before, "the node's file is not read");
    }
}
