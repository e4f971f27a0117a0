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
use std::sync::OnceLock;

/// Where the server mounts its cgroup2 inside the namespace.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

static DELEGATION: OnceLock<Result<(), String>> = OnceLock::new();

/// Sets up delegation once (call while single-threaded, in the server's
/// namespace); later calls return the first outcome.
pub fn delegate(root: &Path) -> &'static Result<(), String> {
    DELEGATION.get_or_init(|| try_delegate(root))
}

/// Whether steps can get memory and pids limits (after [`delegate`]).
pub fn limits_available() -> Result<(), String> {
    DELEGATION.get().cloned().unwrap_or_else(|| Err("cgroup delegation was not attempted".into()))
}

fn try_delegate(root: &Path) -> Result<(), String> {
    let controllers = fs::read_to_string(root.join("cgroup.controllers"))
        .map_err(|e| format!("no cgroup v2 at {} ({e})", root.display()))?;
    missing_controllers(&controllers)?;
    let leaf = root.join("kiln-server");
    fs::create_dir_all(&leaf)
        .map_err(|e| format!("cannot create {} ({e}): the cgroup is not delegated", leaf.display()))?;
    fs::write(leaf.join("cgroup.procs"), "0")
        .map_err(|e| format!("cannot move the server into {} ({e})", leaf.display()))?;
    fs::write(root.join("cgroup.subtree_control"), "+memory +pids")
        .map_err(|e| format!("cannot enable memory and pids for steps ({e})"))
}

/// `Err` naming what `cgroup.controllers` lacks.
fn missing_controllers(list: &str) -> Result<(), String> {
    let have: Vec<&str> = list.split_whitespace().collect();
    let missing: Vec<&str> = ["memory", "pids"].into_iter().filter(|c| !have.contains(c)).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the cgroup v2 given to kiln lacks the {} controller(s) (a cgroup-v1 or hybrid host, or no delegation)",
            missing.join(" and ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::missing_controllers;

    #[test]
    fn controllers_are_checked() {
        assert!(missing_controllers("cpuset cpu io memory hugetlb pids rdma").is_ok());
        assert!(missing_controllers("").unwrap_err().contains("memory and pids"));
        assert!(missing_controllers("cpu pids").unwrap_err().contains("memory controller"));
    }
}
