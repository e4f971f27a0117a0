//! COPY without the bytes of the layers below: the file op runs on an
//! overlay whose lower is a *skeleton* — the entries of the merged chain
//! the op can read or touch (the destination's resolution with its
//! symlinks and parents, the entries at the names it writes, the account
//! files owner names resolve against), with their exact types, modes,
//! owners and mtimes but empty files. The helper only reads metadata of
//! what it replaces and overlayfs copies up only directories' metadata,
//! so the upper — and the layer diffed from it — is the same as over the
//! real chain. The skeleton comes from the layers' header indexes
//! ([`kiln_snapshotter::headers`]); what it cannot stand for (ADD's
//! archives, extended attributes, parents a layer did not list) is
//! refused, and the caller reads the real layers instead.

mod create;
mod plan;
pub mod tree;

pub use plan::plan;

use kiln_snapshotter::headers::EntryKind;

/// Most entries a skeleton holds; past it the real layers are read.
pub const MAX_SKELETON_ENTRIES: usize = 50_000;

/// One entry of a skeleton.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkeletonEntry {
    /// Path relative to the root, plain components only.
    pub path: String,
    /// Type (files and other non-directories are made empty regular
    /// files, symlinks with their targets).
    pub kind: EntryKind,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, whole seconds.
    pub mtime: i64,
    /// Symlink target.
    pub link: Option<String>,
    /// File content (the account files).
    pub content: Option<String>,
}

/// The entries to create, parents before children.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skeleton {
    /// Sorted by path.
    pub entries: Vec<SkeletonEntry>,
}

/// Why a file op cannot run on a skeleton.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsupported {
    /// ADD may extract an archive, which can write anywhere below.
    #[error("ADD may extract an archive")]
    Archive,
    /// `COPY --parents` from a stage: its paths are known only once the stage is read.
    #[error("COPY --parents from a stage")]
    ParentsFromStage,
    /// An account file's content is not in the index.
    #[error("{0}: content unknown")]
    AccountFile(String),
    /// An entry carries extended attributes overlayfs would copy up.
    #[error("{0}: has extended attributes")]
    Xattrs(String),
    /// A parent's metadata is the unpacker's, not the layer's.
    #[error("{0}: parent not listed in its layer")]
    UnlistedParent(String),
    /// A path below a non-directory (a malformed index).
    #[error("{0}: below a non-directory")]
    BelowNonDirectory(String),
    /// Too many entries.
    #[error("more than {MAX_SKELETON_ENTRIES} entries")]
    TooLarge,
    /// The build context could not be read.
    #[error("build context: {0}")]
    Context(String),
}
