//! Step memory and pids limits through cgroup v2, where the host delegates
//! a cgroup v2 subtree to kiln (its cgroup lists the `memory` and `pids`
//! controllers and is writable by the namespace's root). At start-up the
//! server moves itself into a leaf, `kiln-server`, and enables both
//! controllers for its children (cgroup v2 allows controllers only in
//! cgroups without processes of their own); each step's cgroup,
//! `/kiln-<id>`, then gets `memory.max` and `pids.max` from libcontainer.
//! On cgroup-v1 and hybrid hosts nothing is delegated: steps run without
//! these limits and the server says so once at start-up.

use std::fs;
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// Where the server mounts its cgroup2 inside the namespace.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Why steps get no memory and pids limits.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NoDelegation {
    /// No cgroup v2 mounted where kiln looks.
    #[error("no cgroup v2 at {path} ({source})")]
    NoCgroup2 {
        /// Where kiln looked.
        path: String,
        /// Why it could not be read.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The delegated cgroup lacks controllers.
    #[error(
        "the cgroup v2 given to kiln lacks the {} controller(s) (a cgroup-v1 or hybrid host, or no delegation)",
        .0.join(" and ")
    )]
    MissingControllers(Vec<&'static str>),
    /// A write the delegation needs was refused.
    #[error("cannot {action} ({source}){hint}")]
    Refused {
        /// What kiln tried.
        action: String,
        /// Why it failed.
        #[source]
        source: Arc<std::io::Error>,
        /// What it means, when known.
        hint: &'static str,
    },
    /// [`delegate`] was never called.
    #[error("cgroup delegation was not attempted")]
    NotAttempted,
}

static DELEGATION: OnceLock<Result<(), NoDelegation>> = OnceLock::new();

/// Sets up delegation once (call while single-threaded, in the server's
/// namespace); later calls return the first outcome.
pub fn delegate(root: &Path) -> &'static Result<(), NoDelegation> {
    DELEGATION.get_or_init(|| try_delegate(root))
}

/// Whether steps can get memory and pids limits (after [`delegate`]).
pub fn limits_available() -> Result<(), NoDelegation> {
    DELEGATION.get().cloned().unwrap_or(Err(NoDelegation::NotAttempted))
}

fn refused(action: String, hint: &'static str) -> impl FnOnce(std::io::Error) -> NoDelegation {
    move |e| NoDelegation::Refused { action, source: Arc::new(e), hint }
}

fn try_delegate(root: &Path) -> Result<(), NoDelegation> {
    let controllers = fs::read_to_string(root.join("cgroup.controllers"))
        .map_err(|e| NoDelegation::NoCgroup2 { path: root.display().to_string(), source: Arc::new(e) })?;
    missing_controllers(&controllers)?;
    let leaf = root.join("kiln-server");
    fs::create_dir_all(&leaf)
        .map_err(refused(format!("create {}", leaf.display()), ": the cgroup is not delegated"))?;
    fs::write(leaf.join("cgroup.procs"), "0")
        .map_err(refused(format!("move the server into {}", leaf.display()), ""))?;
    fs::write(root.join("cgroup.subtree_control"), "+memory +pids")
        .map_err(refused("enable memory and pids for steps".into(), ""))
}

/// `Err` naming what `cgroup.controllers` lacks.
fn missing_controllers(list: &str) -> Result<(), NoDelegation> {
    let have: Vec<&str> = list.split_whitespace().collect();
    let missing: Vec<&'static str> = ["memory", "pids"].into_iter().filter(|c| !have.contains(c)).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(NoDelegation::MissingControllers(missing))
    }
}

#[cfg(test)]
mod tests {
    use super::{missing_controllers, NoDelegation};

    #[test]
    fn controllers_are_checked() {
        assert!(missing_controllers("cpuset cpu io memory hugetlb pids rdma").is_ok());
        assert!(missing_controllers("").unwrap_err().to_string().contains("memory and pids"));
        assert!(matches!(missing_controllers("cpu pids"), Err(NoDelegation::MissingControllers(m)) if m == ["memory"]));
    }
}
