//! The worker's typed error: what failed in storage, the cache index, the
//! registry or the store's upkeep, with the [`ErrorKind`] each maps to.

use super::cache::CacheError;
use crate::errors::ErrorKind;

/// A failure of the worker.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The content store or the snapshots.
    #[error(transparent)]
    Storage(#[from] kiln_snapshotter::Error),
    /// The cache index.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// A pull or push.
    #[error(transparent)]
    Registry(#[from] crate::registry::Error),
    /// A file system operation outside the stores.
    #[error("{context}: {source}")]
    Io {
        /// What the worker was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A layer whose content does not match what its image says.
    #[error("{0}")]
    BadLayer(String),
    /// A layer that could not be unpacked (a corrupt or hostile blob, or
    /// a full disk).
    #[error("unpack layer {diff_id}: {source}")]
    Unpack {
        /// The layer.
        diff_id: kiln_snapshotter::Digest,
        /// Why.
        #[source]
        source: kiln_snapshotter::Error,
    },
    /// Blocking work panicked or was cancelled.
    #[error("background task: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// Maintenance found no moment without builds.
    #[error("builds kept running for {0} s: try again later")]
    Busy(u64),
}

impl WorkerError {
    /// An I/O failure with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        WorkerError::Io { context: context.into(), source }
    }

    /// The kind of failure, for status mapping: a full disk anywhere in the
    /// source chain is [`ErrorKind::OutOfSpace`].
    pub fn kind(&self) -> ErrorKind {
        if crate::errors::is_disk_full(self) {
            return ErrorKind::OutOfSpace;
        }
        match self {
            WorkerError::Registry(e) => ErrorKind::from(e),
            WorkerError::BadLayer(_) | WorkerError::Unpack { .. } | WorkerError::Busy(_) => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_out_of_space_whatever_the_layer() {
        let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
        let storage = kiln_snapshotter::Error::Io { context: "write blob".into(), source: full };
        assert_eq!(WorkerError::from(storage).kind(), ErrorKind::OutOfSpace);
        let other = WorkerError::io("create", std::io::Error::from_raw_os_error(libc::EACCES));
        assert_eq!(other.kind(), ErrorKind::Internal);
        assert_eq!(WorkerError::BadLayer("x".into()).kind(), ErrorKind::Unavailable);
        let denied = crate::registry::Error::Unauthorized("no".into());
        assert_eq!(WorkerError::from(denied).kind(), ErrorKind::Unauthenticated);
    }
}
