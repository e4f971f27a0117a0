//! Snapshots: the [`Snapshotter`] trait and its overlay implementation,
//! [`Snapshots`], over `snapshots/<id>/{fs,work,parents}`. A committed
//! snapshot's `fs` is one layer's content in overlay form (whiteouts as 0/0
//! character devices, opaque directories marked `user.overlay.opaque`) and
//! serves as a lowerdir; an active one (it still has `work`) is an
//! upperdir over the parents it was prepared on. Unlike containerd, a
//! committed snapshot is a standalone layer diff: any chain of them can be
//! stacked, so one unpacked layer serves every image that contains it.
//! Ids are short random hex strings so that long lowerdir lists stay
//! within the mount option limit.

use crate::overlay::Mount;
use crate::{Error, IoContext, Result};
use serde::{Deserialize, Serialize};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Whether a snapshot can still change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Prepared, writable, not yet committed.
    Active,
    /// Committed: immutable, usable as a parent.
    Committed,
}

/// Disk used by a snapshot's own content.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes allocated.
    pub size: u64,
    /// Inodes.
    pub inodes: u64,
}

/// A snapshotter (containerd's `snapshots.Snapshotter`, with parent chains
/// given explicitly).
pub trait Snapshotter: Send + Sync {
    /// A new active snapshot on top of the committed `parents` (topmost
    /// first).
    fn prepare(&self, parents: &[SnapshotId]) -> Result<SnapshotId>;
    /// The read-write mounts of an active snapshot.
    fn mounts(&self, id: &SnapshotId) -> Result<Vec<Mount>>;
    /// Read-only mounts of a committed chain (topmost first); an empty
    /// chain needs no mount.
    fn view(&self, chain: &[SnapshotId]) -> Result<Vec<Mount>>;
    /// Freezes an active snapshot.
    fn commit(&self, id: &SnapshotId) -> Result<()>;
    /// Deletes a snapshot; removing an absent one succeeds.
    fn remove(&self, id: &SnapshotId) -> Result<()>;
    /// Disk used by the snapshot's own content (remembered once committed).
    fn usage(&self, id: &SnapshotId) -> Result<Usage>;
    /// The snapshot's kind, or `None` when absent.
    fn stat(&self, id: &SnapshotId) -> Result<Option<Kind>>;
    /// Every snapshot.
    fn walk(&self) -> Result<Vec<(SnapshotId, Kind)>>;
    /// The directory holding the snapshot's own content (to apply a layer
    /// into, or to diff).
    fn dir(&self, id: &SnapshotId) -> PathBuf;
}

/// A snapshot identifier (12 lowercase hex characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SnapshotId(String);

impl SnapshotId {
    /// A fresh random id.
    pub fn random() -> Self {
        let mut b = [0u8; 6];
        let f = fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b));
        f.expect("read /dev/urandom");
        SnapshotId(hex::encode(b))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SnapshotId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        if s.len() == 12 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(SnapshotId(s))
        } else {
            Err(Error::InvalidLayer(format!("bad snapshot id {s:?}")))
        }
    }
}

impl From<SnapshotId> for String {
    fn from(s: SnapshotId) -> String {
        s.0
    }
}

/// The snapshot directory tree.
#[derive(Debug, Clone)]
pub struct Snapshots {
    root: PathBuf,
}

impl Snapshots {
    /// Name of the always-present empty lowerdir (for `FROM scratch`).
    pub const EMPTY: &'static str = "empty";

    /// Opens (and creates) the tree under `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        fs::create_dir_all(root.join(Self::EMPTY)).ctx(|| format!("create {}", root.display()))?;
        if let Err(e) = crate::fsx::mark_top_directory(&root) {
            tracing::debug!(root = %root.display(), error = %e, "snapshot root left without the top-directory flag");
        }
        Ok(Self { root })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The content directory of a snapshot.
    fn fs_path(&self, id: &SnapshotId) -> PathBuf {
        self.root.join(id.as_str()).join("fs")
    }

    fn parents(&self, id: &SnapshotId) -> Result<Vec<SnapshotId>> {
        let path = self.root.join(id.as_str()).join("parents");
        match fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| Error::InvalidLayer(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e).ctx(|| format!("read {}", path.display())),
        }
    }

    fn require(&self, id: &SnapshotId, want: Kind) -> Result<()> {
        match self.stat(id)? {
            Some(k) if k == want => Ok(()),
            Some(k) => Err(Error::InvalidLayer(format!("snapshot {} is {k:?}, not {want:?}", id.as_str()))),
            None => Err(Error::InvalidLayer(format!("snapshot {} does not exist", id.as_str()))),
        }
    }

    fn lowerdirs(&self, chain: &[SnapshotId]) -> Result<String> {
        for p in chain {
            self.require(p, Kind::Committed)?;
        }
        let dirs: Vec<String> = chain.iter().map(|id| format!("{}/fs", id.as_str())).collect();
        Ok(if dirs.is_empty() { Self::EMPTY.to_string() } else { dirs.join(":") })
    }

    /// Removes active snapshots: after a restart no build owns them (a
    /// crash mid-step leaves one behind). Returns how many were removed.
    pub fn clean_active(&self) -> Result<usize> {
        let active: Vec<SnapshotId> =
            self.walk()?.into_iter().filter(|(_, k)| *k == Kind::Active).map(|(id, _)| id).collect();
        for id in &active {
            Snapshotter::remove(self, id)?;
        }
        Ok(active.len())
    }
}

impl Snapshotter for Snapshots {
    fn prepare(&self, parents: &[SnapshotId]) -> Result<SnapshotId> {
        self.lowerdirs(parents)?;
        let id = SnapshotId::random();
        let dir = self.root.join(id.as_str());
        fs::create_dir(&dir).ctx(|| format!("create {}", dir.display()))?;
        fs::write(dir.join("parents"), serde_json::to_vec(parents).expect("ids serialize"))
            .ctx(|| format!("write {}/parents", dir.display()))?;
        for sub in ["fs", "work"] {
            fs::create_dir(dir.join(sub)).ctx(|| format!("create {}", dir.join(sub).display()))?;
        }
        Ok(id)
    }

    fn mounts(&self, id: &SnapshotId) -> Result<Vec<Mount>> {
        self.require(id, Kind::Active)?;
        let lowers = self.lowerdirs(&self.parents(id)?)?;
        let up = id.as_str();
        Ok(vec![Mount {
            fstype: "overlay".into(),
            source: "overlay".into(),
            options: vec![
                format!("lowerdir={lowers}"),
                format!("upperdir={up}/fs"),
                format!("workdir={up}/work"),
                "userxattr".into(),
            ],
            cwd: Some(self.root.clone()),
        }])
    }

    fn view(&self, chain: &[SnapshotId]) -> Result<Vec<Mount>> {
        let lowers = self.lowerdirs(chain)?;
        Ok(match chain {
            [] => Vec::new(),
            [only] => {
                vec![Mount { fstype: "bind".into(), source: self.fs_path(only), options: vec!["ro".into()], cwd: None }]
            }
            _ => vec![Mount {
                fstype: "overlay".into(),
                source: "overlay".into(),
                options: vec!["ro".into(), format!("lowerdir={lowers}"), "userxattr".into()],
                cwd: Some(self.root.clone()),
            }],
        })
    }

    fn commit(&self, id: &SnapshotId) -> Result<()> {
        self.require(id, Kind::Active)?;
        let work = self.root.join(id.as_str()).join("work");
        fs::remove_dir_all(&work).ctx(|| format!("remove {}", work.display()))
    }

    fn remove(&self, id: &SnapshotId) -> Result<()> {
        let dir = self.root.join(id.as_str());
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).ctx(|| format!("remove {}", dir.display())),
            _ => Ok(()),
        }
    }

    fn usage(&self, id: &SnapshotId) -> Result<Usage> {
        fn walk(path: &Path, u: &mut Usage) -> Result<()> {
            let md = fs::symlink_metadata(path).ctx(|| format!("stat {}", path.display()))?;
            u.size += md.blocks() * 512;
            u.inodes += 1;
            if md.is_dir() {
                for e in fs::read_dir(path).ctx(|| format!("read {}", path.display()))? {
                    walk(&e.ctx(|| "read entry".into())?.path(), u)?;
                }
            }
            Ok(())
        }
        let cached = self.root.join(id.as_str()).join("usage");
        if let Some((size, inodes)) = fs::read_to_string(&cached).ok().and_then(|t| {
            let (a, b) = t.trim().split_once(' ')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        }) {
            return Ok(Usage { size, inodes });
        }
        let mut u = Usage::default();
        walk(&self.fs_path(id), &mut u)?;
        if self.stat(id)? == Some(Kind::Committed) {
            let _ = fs::write(&cached, format!("{} {}", u.size, u.inodes));
        }
        Ok(u)
    }

    fn stat(&self, id: &SnapshotId) -> Result<Option<Kind>> {
        let dir = self.root.join(id.as_str());
        if !dir.is_dir() {
            return Ok(None);
        }
        let complete = dir.join("fs").is_dir() && !dir.join("work").exists();
        Ok(Some(if complete { Kind::Committed } else { Kind::Active }))
    }

    fn walk(&self) -> Result<Vec<(SnapshotId, Kind)>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.root).ctx(|| format!("read {}", self.root.display()))? {
            let name = e.ctx(|| "read snapshot entry".into())?.file_name().to_string_lossy().into_owned();
            let Ok(id) = SnapshotId::try_from(name) else { continue };
            if let Some(kind) = self.stat(&id)? {
                out.push((id, kind));
            }
        }
        Ok(out)
    }

    fn dir(&self, id: &SnapshotId) -> PathBuf {
        self.fs_path(id)
    }
}
