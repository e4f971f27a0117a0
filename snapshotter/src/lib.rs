//! Storage for kiln: a content-addressed blob store, overlay snapshots, and
//! the two layer transforms (apply a layer tar into a snapshot directory,
//! diff an overlay upper directory into a layer tar).
//!
//! Everything here works unprivileged inside a user namespace: whiteouts are
//! overlay character devices 0/0 and opaque directories carry
//! `user.overlay.opaque=y` (mounts use `userxattr`).

pub mod apply;
pub mod compression;
pub mod conformance;
pub mod content;
pub mod diff;
pub mod digest;
pub mod encode;
pub mod fsx;
pub mod headers;
pub mod overlay;
mod readahead;
pub mod snapshots;

pub use content::{ContentStore, Store};
pub use digest::Digest;
pub use snapshots::{SnapshotId, Snapshots};

/// Errors raised by the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O failure, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What kiln was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Content did not match its expected digest or size.
    #[error("content mismatch: {0}")]
    Mismatch(String),
    /// A malformed or hostile layer or path.
    #[error("invalid layer: {0}")]
    InvalidLayer(String),
    /// A malformed digest string.
    #[error("invalid digest {0:?}")]
    InvalidDigest(String),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Attaches a context message to an I/O result.
pub trait IoContext<T> {
    /// Wraps the error with `what`.
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io { context: what(), source })
    }
}

impl<T> IoContext<T> for nix::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::Io { context: what(), source: e.into() })
    }
}
