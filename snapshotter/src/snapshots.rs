//! Snapshot directories: `snapshots/<id>/{fs,work}`. A committed snapshot's
//! `fs` is one layer's content in overlay form (whiteouts as 0/0 character
//! devices) and serves as an overlay lowerdir; an active one is an upperdir.
//! Committed snapshots are immutable; ids are short random hex strings so
//! that long lowerdir lists stay within the mount option limit.

use crate::{Error, IoContext, Result};
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

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
        Ok(Self { root })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates a new active snapshot with empty `fs` and `work`.
    pub fn prepare(&self) -> Result<SnapshotId> {
        let id = SnapshotId::random();
        let dir = self.root.join(id.as_str());
        fs::create_dir(&dir).ctx(|| format!("create {}", dir.display()))?;
        for sub in ["fs", "work"] {
            fs::create_dir(dir.join(sub)).ctx(|| format!("create {}", dir.join(sub).display()))?;
        }
        Ok(id)
    }

    /// The content directory of a snapshot.
    pub fn fs_path(&self, id: &SnapshotId) -> PathBuf {
        self.root.join(id.as_str()).join("fs")
    }

    /// Whether a snapshot exists.
    pub fn exists(&self, id: &SnapshotId) -> bool {
        self.fs_path(id).is_dir()
    }

    /// Freezes an active snapshot: drops overlay's work dir.
    pub fn commit(&self, id: &SnapshotId) -> Result<()> {
        let work = self.root.join(id.as_str()).join("work");
        match fs::remove_dir_all(&work) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).ctx(|| format!("remove {}", work.display())),
            _ => Ok(()),
        }
    }

    /// Deletes a snapshot and everything in it.
    pub fn remove(&self, id: &SnapshotId) -> Result<()> {
        let dir = self.root.join(id.as_str());
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).ctx(|| format!("remove {}", dir.display())),
            _ => Ok(()),
        }
    }
}
