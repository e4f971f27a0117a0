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

impl From<&crate::registry::Error> for ErrorKind {
    fn from(e: &crate::registry::Error) -> Self {
        use crate::registry::Error as E;
        match e {
            E::NotFound(_) => ErrorKind::NotFound,
            E::Unauthorized(_) => ErrorKind::Unauthenticated,
            E::Unavailable(_) | E::Protocol(_) => ErrorKind::Unavailable,
            E::Invalid(_) => ErrorKind::InvalidArgument,
            E::Storage(_) => ErrorKind::Internal,
        }
    }
}

/// The kind of a local storage failure: [`ErrorKind::OutOfSpace`] (with
/// the message saying so) for a full disk, `otherwise` for anything else.
pub fn storage_failure(message: String, otherwise: ErrorKind) -> (ErrorKind, String) {
    if is_out_of_space(&message) {
        (ErrorKind::OutOfSpace, format!("{message}: the data directory is out of space"))
    } else {
        (otherwise, message)
    }
}

/// Whether an error message reports a full disk (`ENOSPC`).
pub fn is_out_of_space(message: &str) -> bool {
    message.contains("os error 28") || message.to_ascii_lowercase().contains("no space left on device")
}

/// Free bytes for unprivileged writers on the filesystem holding `dir`.
pub fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    let st = nix::sys::statvfs::statvfs(dir).ok()?;
    Some(st.blocks_available() as u64 * st.fragment_size() as u64)
}
