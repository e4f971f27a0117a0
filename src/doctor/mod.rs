//! `kiln doctor`: checks, one requirement at a time, that a build can run
//! where kiln runs, and says exactly what is missing and how to fix it.
//! Outside the namespace: user namespace creation (tried), the subordinate
//! ID range and `newuidmap`/`newgidmap`, the data dir's free space and a
//! registry. Inside, through the same start-up path `kiln serve` takes:
//! overlayfs with `userxattr`, whiteouts, `/proc` in a new PID namespace,
//! the mapped ID range and cgroup v2 delegation ([`probes`]).

pub mod probes;

use serde::{Deserialize, Serialize};
use std::path::Path;

/// How a requirement stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Met.
    Ok,
    /// Builds run, with something missing (e.g. step limits).
    Warn,
    /// Builds cannot run.
    Fail,
}

/// One requirement's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// The requirement.
    pub name: String,
    /// Its status.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do, when not met.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    /// A met requirement.
    pub fn ok(name: &str, detail: impl Into<String>) -> Self {
        Check { name: name.into(), status: Status::Ok, detail: detail.into(), fix: None }
    }

    /// A requirement met only in part.
    pub fn warn(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Check { name: name.into(), status: Status::Warn, detail: detail.into(), fix: Some(fix.into()) }
    }

    /// An unmet requirement.
    pub fn fail(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Check { name: name.into(), status: Status::Fail, detail: detail.into(), fix: Some(fix.into()) }
    }
}

/// Whether a build can run: no check failed.
pub fn can_build(checks: &[Check]) -> bool {
    checks.iter().all(|c| c.status != Status::Fail)
}

/// The report as text: one line per check, its fix indented below.
pub fn render(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        let tag = match c.status {
            Status::Ok => "OK  ",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        };
        out.push_str(&format!("{tag}  {:<26} {}\n", c.name, c.detail));
        if let Some(fix) = &c.fix {
            out.push_str(&format!("      {:<26} fix: {fix}\n", ""));
        }
    }
    let verdict = if can_build(checks) { "builds can run here" } else { "builds cannot run here" };
    out.push_str(&format!("{verdict}\n"));
    out
}

/// The checks `kiln __doctor-probe` printed, or a failed check `name`
/// carrying its exit status and stderr.
pub fn probe_output(out: &std::process::Output, name: &str) -> Result<Vec<Check>, Check> {
    serde_json::from_slice(&out.stdout).map_err(|_| {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        Check::fail(name, format!("the probe failed ({}): {stderr}", out.status), "run kiln doctor on the host")
    })
}

/// Bytes below which the data dir fails the check, and below which it warns.
const FAIL_BELOW: u64 = 512 << 20;
const WARN_BELOW: u64 = 2 << 30;

/// Free space where the data dir is (or would be created).
pub fn data_dir_space(data_dir: &Path) -> Check {
    let name = "data dir free space";
    let existing = data_dir.ancestors().find(|p| p.exists()).unwrap_or(Path::new("/"));
    let Some(free) = crate::errors::free_bytes(existing) else {
        return Check::fail(name, format!("cannot stat {}", existing.display()), "create the data dir's parent");
    };
    let detail = format!("{} free at {}", crate::units::human_bytes(free), existing.display());
    match free {
        f if f < FAIL_BELOW => Check::fail(name, detail, "free space or point --data-dir at a larger volume"),
        f if f < WARN_BELOW => Check::warn(name, detail, "base images and layers need a few GiB; grow the volume"),
        _ => Check::ok(name, detail),
    }
}

/// Whether the operator's secret files (payload secret, registry
/// credentials, build-secrets key) are readable by users other than their
/// owner and group: a warning naming each, since any process on the node
/// (or in the pod) could read them. Missing files are skipped.
pub fn secret_files_check(files: &[(&str, &Path)]) -> Check {
    use std::os::unix::fs::MetadataExt;
    let name = "secret file modes";
    let exposed: Vec<String> = files
        .iter()
        .filter_map(|(what, path)| {
            let mode = std::fs::metadata(path).ok()?.mode() & 0o7777;
            (mode & 0o007 != 0).then(|| format!("{what} {} is mode {mode:04o}", path.display()))
        })
        .collect();
    if exposed.is_empty() {
        return Check::ok(name, "not readable by other users");
    }
    let fix = "chmod 0400 (or 0440 with the server's group); in Kubernetes set defaultMode: 0400 on the Secret volume";
    Check::warn(name, format!("readable by every user: {}", exposed.join("; ")), fix)
}

/// Whether steps can have memory and pids limits (a warning when not:
/// builds still run).
pub fn cgroup_check() -> Check {
    match kiln_runtime::cgroups::limits_available() {
        Ok(()) => Check::ok("cgroup v2 delegation", "step memory and pids limits available"),
        Err(why) => Check::warn(
            "cgroup v2 delegation",
            format!("{why}; builds run, without per-step memory/pids limits"),
            "run kiln on a cgroup v2 host with a delegated cgroup (systemd Delegate=yes, or a container with its own cgroup namespace)",
        ),
    }
}

/// Whether `image`'s registry answers and `client`'s credentials may push
/// there (a HEAD of a blob with push scope).
pub async fn registry_check(client: &dyn crate::registry::Registry, image: &str) -> Check {
    let name = "registry";
    let target = match crate::registry::Reference::parse(image) {
        Ok(r) => r,
        Err(e) => return Check::fail(name, format!("{image}: {e}"), "give a reference like registry/repo:tag"),
    };
    let empty = kiln_snapshotter::Digest::of(b"");
    match client.blob_exists(&target, &empty).await {
        Ok(_) => Check::ok(
            name,
            format!("{} answers and accepts the credentials for pushing to {}", target.registry, target.repository),
        ),
        Err(e) => {
            let fix = match &e {
                crate::registry::Error::Unauthorized(_) => "put credentials for this registry in the docker config (--docker-config)",
                _ => "check the address, the network path, and --insecure-registry / --registry-ca for private registries",
            };
            Check::fail(name, e.to_string(), fix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_failure_means_no_build_and_every_fix_is_printed() {
        let checks = vec![
            Check::ok("user namespace", "works"),
            Check::warn("cgroup v2", "not delegated", "delegate it"),
            Check::fail("subordinate IDs", "none for app", "usermod --add-subuids …"),
        ];
        assert!(!can_build(&checks));
        assert!(can_build(&checks[..2]));
        let text = render(&checks);
        assert!(text.contains("FAIL  subordinate IDs"), "{text}");
        assert!(text.contains("fix: usermod --add-subuids …"), "{text}");
        assert!(text.ends_with("builds cannot run here\n"), "{text}");
    }

    #[test]
    fn secret_files_readable_by_others_are_named() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let (open, closed) = (d.path().join("payload-secret"), d.path().join("config.json"));
        for (p, mode) in [(&open, 0o644), (&closed, 0o440)] {
            std::fs::write(p, "x").unwrap();
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let missing = d.path().join("none");
        let c = secret_files_check(&[("payload secret", &open), ("registry config", &closed), ("key", &missing)]);
        assert_eq!(c.status, Status::Warn);
        assert!(c.detail.contains("payload secret") && c.detail.contains("0644") && !c.detail.contains("config"));
        assert_eq!(secret_files_check(&[("registry config", &closed)]).status, Status::Ok);
    }
}
