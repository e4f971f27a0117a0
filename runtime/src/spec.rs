//! The OCI runtime spec for one RUN step, written as JSON (libcontainer
//! reads `<bundle>/config.json`). Choices follow `runtime.md`: pid, ipc,
//! uts and mount namespaces (the network and user namespaces are the
//! helper's), Docker's default capabilities, no resources
//! (cgroup v1 device rules need real root), `noNewPrivileges` left unset
//! (libcontainer 0.7 mishandles `false`), and explicit supplementary groups.

use crate::users::Identity;
use serde_json::{json, Value};
use std::path::Path;

/// Docker's default capability set.
pub const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Inputs of [`build`].
pub struct SpecInput<'a> {
    /// Absolute path of the mounted rootfs.
    pub rootfs: &'a Path,
    /// argv.
    pub args: &'a [String],
    /// `KEY=value` environment.
    pub env: &'a [String],
    /// Working directory inside the rootfs.
    pub cwd: &'a str,
    /// Resolved identity.
    pub identity: &'a Identity,
    /// Hostname inside the step.
    pub hostname: &'a str,
    /// Absolute unique cgroup path for this step.
    pub cgroups_path: &'a str,
    /// `(host file, container path)` read-only binds (resolv.conf, hosts).
    pub binds: &'a [(String, String)],
    /// Further mounts (`RUN --mount`), already in spec form.
    pub extra_mounts: &'a [Value],
    /// Process limits.
    pub limits: &'a StepLimits,
    /// A sysfs of the step's own network namespace to bind at `/sys`
    /// instead of the host's.
    pub sysfs: Option<&'a Path>,
}

/// Limits every step runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StepLimits {
    /// `RLIMIT_NPROC`: processes a user of the step may own (a fork bomb
    /// stops here). Each step has a user namespace of its own, so the count
    /// is per step: one step at its limit does not stop another's forks.
    pub max_processes: u64,
    /// Set `no_new_privs` (setuid binaries such as `sudo` stop working).
    pub no_new_privileges: bool,
    /// cgroup v2 `memory.max` in bytes (only where delegated).
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    /// cgroup v2 `pids.max` (only where delegated).
    #[serde(default)]
    pub pids: Option<u64>,
}

impl Default for StepLimits {
    fn default() -> Self {
        StepLimits { max_processes: 4096, no_new_privileges: false, memory_bytes: None, pids: None }
    }
}

/// The configured process limit, never above the helper's own hard limit
/// (raising it needs a capability the namespace does not have).
fn max_processes(limits: &StepLimits) -> u64 {
    let mut cur = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit fills the struct we pass.
    let hard = if unsafe { libc::getrlimit(libc::RLIMIT_NPROC, &mut cur) } == 0 { cur.rlim_max } else { u64::MAX };
    limits.max_processes.min(hard)
}

/// cgroup resources for the step, when limits are set (the server only
/// sets them where the host delegates cgroup v2).
fn resources(limits: &StepLimits) -> Option<Value> {
    if limits.memory_bytes.is_none() && limits.pids.is_none() {
        return None;
    }
    let mut r = json!({});
    if let Some(m) = limits.memory_bytes {
        r["memory"] = json!({ "limit": m, "swap": m });
    }
    if let Some(p) = limits.pids {
        r["pids"] = json!({ "limit": p });
    }
    Some(r)
}

/// Builds the spec JSON.
pub fn build(input: &SpecInput<'_>) -> Value {
    let caps: Vec<&str> = DEFAULT_CAPS.to_vec();
    let id = input.identity;
    let mut spec = json!({
        "ociVersion": "1.0.2",
        "root": { "path": input.rootfs, "readonly": false },
        "hostname": input.hostname,
        "process": {
            "terminal": false,
            "user": { "uid": id.uid, "gid": id.gid, "additionalGids": id.additional_gids },
            "args": input.args,
            "env": input.env,
            "cwd": input.cwd,
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps
            },
            "rlimits": [
                { "type": "RLIMIT_NPROC", "hard": max_processes(input.limits), "soft": max_processes(input.limits) }
            ]
        },
        "mounts": mounts(input.binds, input.extra_mounts, input.sysfs),
        "linux": {
            "namespaces": [
                { "type": "pid" }, { "type": "ipc" }, { "type": "uts" }, { "type": "mount" }
            ],
            "cgroupsPath": input.cgroups_path,
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    });
    if input.limits.no_new_privileges {
        spec["process"]["noNewPrivileges"] = Value::Bool(true);
    }
    if let Some(resources) = resources(input.limits) {
        spec["linux"]["resources"] = resources;
    }
    spec
}

fn mounts(binds: &[(String, String)], extra: &[Value], sysfs: Option<&Path>) -> Value {
    let source = sysfs.unwrap_or(Path::new("/sys"));
    let sys = json!({"destination": "/sys", "type": "none", "source": source,
                     "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]});
    let mut m = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        sys,
    ];
    for (src, dst) in binds {
        m.push(json!({"destination": dst, "type": "none", "source": src,
                      "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]}));
    }
    m.extend(extra.iter().cloned());
    Value::Array(m)
}
