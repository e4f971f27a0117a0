//! Runs RUN steps for kiln in rootless containers through youki's
//! `libcontainer`.
//!
//! Process model (see `runtime.md` in the design notes): the server enters a
//! user namespace with a full subordinate ID range plus mount and cgroup
//! namespaces at start-up ([`userns`]); each step then runs in a
//! single-threaded helper process ([`step::run_step`]) that mounts the
//! step's overlay in a private mount namespace, moves into a user namespace
//! of the step's own mapped one to one onto kiln's ([`step_userns`]), and
//! calls libcontainer with a spec that creates no further user namespace.

pub mod cgroups;
pub mod diagnose;
pub mod mounts;
pub mod netns;
pub mod nflog;
pub mod reaper;
pub mod seccomp;
pub mod spec;
pub mod step;
pub mod step_userns;
pub mod userns;
pub mod users;

/// Errors raised while preparing or running a step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Setting up namespaces or ID maps failed.
    #[error("user namespace: {0}")]
    Namespace(String),
    /// The step's user could not be resolved.
    #[error("{0}")]
    User(String),
    /// Storage (overlay, files) failed.
    #[error(transparent)]
    Storage(#[from] kiln_snapshotter::Error),
    /// libcontainer failed.
    #[error("container: {0}")]
    Container(String),
    /// Plain I/O failure with context.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;
