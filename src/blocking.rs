//! Blocking work that must run where it is called (it borrows the
//! caller's data): on a multi-threaded runtime the worker first hands its
//! other tasks to the rest (`block_in_place`), so `/healthz` and other
//! builds keep being served; elsewhere (tests, helpers) it just runs.

use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `work`, keeping the async threads free while it does.
pub fn in_place<T>(work: impl FnOnce() -> T) -> T {
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(work),
        _ => work(),
    }
}
