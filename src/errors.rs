//! The one list of error kinds every module maps its errors to; the API
//! turns a kind into an HTTP status in exactly one place.

/// What sort of failure an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request or its content is malformed (bad tar, bad Dockerfile).
    InvalidArgument,
    /// Missing or wrong signature or registry credentials.
    Unauthenticated,
    /// An image, file or stage does not exist.
    NotFound,
    /// The build ran and failed (a RUN exited non-zero).
    FailedPrecondition,
    /// A dependency (registry) is unreachable or failing.
    Unavailable,
    /// Too many concurrent requests.
    ResourceExhausted,
    /// The data directory's disk is full.
    OutOfSpace,
    /// The server is shutting down.
    ShuttingDown,
    /// A bug or local failure.
    Internal,
}

impl ErrorKind {
    /// The `reason` label of `kiln_build_failures_total`.
    pub fn reason(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "invalid_request",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::NotFound => "not_found",
            ErrorKind::FailedPrecondition => "step_failed",
            ErrorKind::Unavailable => "registry_unavailable",
            ErrorKind::ResourceExhausted => "resource_exhausted",
            ErrorKind::OutOfSpace => "out_of_space",
            ErrorKind::ShuttingDown => "shutting_down",
            ErrorKind::Internal => "internal",
        }
    }
}

impl From<&crate::registry::Error> for ErrorKind {
    fn from(e: &crate::registry::Error) -> Self {
        use crate::registry::Error as E;
        match e {
            E::NotFound(_) => ErrorKind::NotFound,
            E::Unauthorized(_) => ErrorKind::Unauthenticated,
            E::Unavailable(_) | E::Protocol(_) => ErrorKind::Unavailable,
            E::Invalid(_) => ErrorKind::InvalidArgument,
            E::NotLocal(_) | E::Storage(_) => ErrorKind::Internal,
        }
    }
}

/// The kind and message of a local storage failure, from the error itself:
/// [`ErrorKind::OutOfSpace`] (the message saying so) when it or an error
/// it wraps is `ENOSPC`, `otherwise` for anything else.
pub fn storage_error(
    context: Option<&str>,
    e: &(dyn std::error::Error + 'static),
    otherwise: ErrorKind,
) -> (ErrorKind, String) {
    let message = match context {
        Some(c) => format!("{c}: {e}"),
        None => e.to_string(),
    };
    if is_disk_full(e) {
        (ErrorKind::OutOfSpace, format!("{message}: the data directory is out of space"))
    } else {
        (otherwise, message)
    }
}

/// Whether `e` or any error in its source chain is a full disk.
pub fn is_disk_full(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(e);
    while let Some(err) = current {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::StorageFull || io.raw_os_error() == Some(libc::ENOSPC) {
                return true;
            }
        }
        current = err.source();
    }
    false
}

/// Free bytes for unprivileged writers on the filesystem holding `dir`.
pub fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    let st = nix::sys::statvfs::statvfs(dir).ok()?;
    Some(st.blocks_available() as u64 * st.fragment_size() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Wrapper {
        #[error("spool request body: {0}")]
        Io(#[from] std::io::Error),
    }

    #[test]
    fn a_full_disk_is_found_through_the_source_chain() {
        let full = Wrapper::from(std::io::Error::from_raw_os_error(libc::ENOSPC));
        let (kind, message) = storage_error(Some("write"), &full, ErrorKind::Internal);
        assert_eq!(kind, ErrorKind::OutOfSpace);
        assert!(message.starts_with("write: spool request body:") && message.ends_with("out of space"), "{message}");
        let other = Wrapper::from(std::io::Error::from_raw_os_error(libc::EACCES));
        assert_eq!(storage_error(None, &other, ErrorKind::Internal).0, ErrorKind::Internal);
        let text_only = std::io::Error::other("No space left on device (as text)");
        assert_eq!(storage_error(None, &text_only, ErrorKind::Internal).0, ErrorKind::Internal, "types, not text");
    }
}
