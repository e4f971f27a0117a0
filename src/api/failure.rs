//! Why a build failed, the helpers that turn other errors into that, and
//! the log-line writer every part of a build uses.

use super::logsink::LogSink;
use crate::errors::ErrorKind;
use crate::exporter;
use crate::frontend::Diagnostic;
use crate::timefmt;

/// Why a build failed.
#[derive(Debug)]
pub struct BuildFailure {
    /// Kind, for the status code.
    pub kind: ErrorKind,
    /// Message for the client.
    pub message: String,
    /// The Dockerfile line it is about, when one is.
    pub line: Option<u32>,
}

impl BuildFailure {
    /// The same failure, about Dockerfile line `line`.
    pub fn at_line(mut self, line: usize) -> Self {
        self.line = u32::try_from(line).ok();
        self
    }
}

pub(super) fn fail(kind: ErrorKind, message: impl Into<String>) -> BuildFailure {
    BuildFailure { kind, message: message.into(), line: None }
}

pub(super) fn emit(log: &LogSink, msg: impl AsRef<str>) {
    log.send(format!("{} {}", timefmt::now(), msg.as_ref()));
}

/// An export error as a build failure.
pub(super) fn export_failure(e: exporter::ExportError) -> BuildFailure {
    match &e {
        exporter::ExportError::Push { source, .. } => fail(ErrorKind::from(source), e.to_string()),
        exporter::ExportError::Storage(_) => {
            let (kind, message) = crate::errors::storage_error(None, &e, ErrorKind::Internal);
            fail(kind, message)
        }
    }
}

/// Runs blocking work (file reads, parsing, lowering, tree walks) on the
/// blocking pool, so a request never stalls the async threads.
pub(super) async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, BuildFailure> {
    tokio::task::spawn_blocking(work).await.map_err(|e| fail(ErrorKind::Internal, e.to_string()))
}

pub(super) fn diag_failure(d: Diagnostic) -> BuildFailure {
    fail(ErrorKind::InvalidArgument, d.to_string()).at_line(d.line)
}
