//! Why a user namespace cannot be created here, and the exact fix: the
//! kernel answers `unshare(CLONE_NEWUSER)` with a bare errno, so the cause
//! is read from what this process can see of its confinement (its seccomp
//! mode, its AppArmor label) and the sysctls that gate user namespaces.

use std::fmt;
use std::path::Path;

/// What stops user namespace creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// `user.max_user_namespaces` is 0 (or its limit is used up).
    MaxUserNamespaces,
    /// `kernel.unprivileged_userns_clone` is 0 (Debian/Ubuntu kernels).
    UnprivilegedUsernsClone,
    /// A seccomp filter refuses `unshare`/`clone` with `CLONE_NEWUSER`.
    Seccomp,
    /// AppArmor refuses (Ubuntu 23.10+ restriction, or a confining profile).
    AppArmor,
    /// The kernel has no user namespaces.
    NoKernelSupport,
    /// Something else; the errno is all there is.
    Unknown,
}

/// A diagnosis: the cause, what was seen, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    /// The cause.
    pub cause: Cause,
    /// What was observed.
    pub detail: String,
    /// The fix, as commands or settings.
    pub fix: String,
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; fix: {}", self.detail, self.fix)
    }
}

/// The facts a diagnosis reads (from `/proc` by default; tests supply
/// their own).
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// `Seccomp:` of `/proc/self/status` (0 none, 1 strict, 2 filter).
    pub seccomp_mode: Option<u32>,
    /// `/proc/sys/user/max_user_namespaces`.
    pub max_user_namespaces: Option<u64>,
    /// `/proc/sys/kernel/unprivileged_userns_clone`, where it exists.
    pub unprivileged_userns_clone: Option<u64>,
    /// `/proc/sys/kernel/apparmor_restrict_unprivileged_userns`, where it exists.
    pub apparmor_restrict: Option<u64>,
    /// This process's AppArmor label, when AppArmor is active.
    pub apparmor_label: Option<String>,
    /// Whether the caller is real root.
    pub root: bool,
}

fn read_number(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

impl Facts {
    /// The facts of the calling process.
    pub fn of_this_process() -> Self {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let seccomp_mode = status.lines().find_map(|l| l.strip_prefix("Seccomp:")).and_then(|v| v.trim().parse().ok());
        let label = ["/proc/self/attr/apparmor/current", "/proc/self/attr/current"]
            .iter()
            .filter(|_| Path::new("/sys/kernel/security/apparmor").exists())
            .find_map(|p| std::fs::read_to_string(p).ok())
            .map(|l| l.trim_end_matches(['\0', '\n']).to_string());
        Facts {
            seccomp_mode,
            max_user_namespaces: read_number("/proc/sys/user/max_user_namespaces"),
            unprivileged_userns_clone: read_number("/proc/sys/kernel/unprivileged_userns_clone"),
            apparmor_restrict: read_number("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"),
            apparmor_label: label,
            root: nix::unistd::geteuid().is_root(),
        }
    }

    fn confined_by_apparmor(&self) -> bool {
        self.apparmor_label.as_deref().is_some_and(|l| !l.is_empty() && !l.starts_with("unconfined"))
    }
}

const SECCOMP_FIX: &str = "run kiln with its seccomp profile (Kubernetes: seccompProfile {type: Localhost, \
    localhostProfile: profiles/kiln.json} from deploy/seccomp/kiln.json; Docker/Podman: --security-opt \
    seccomp=deploy/seccomp/kiln.json), or as a last resort seccompProfile {type: Unconfined}";
const APPARMOR_FIX: &str = "load deploy/apparmor/kiln (apparmor_parser -r deploy/apparmor/kiln) and run kiln under it \
    (Kubernetes: appArmorProfile {type: Localhost, localhostProfile: kiln}), or as a last resort appArmorProfile \
    {type: Unconfined}";

/// Why `unshare(CLONE_NEWUSER)` failed with `errno`, given `facts`.
pub fn userns_failure(errno: i32, facts: &Facts) -> Diagnosis {
    let seen = |what: String| format!("unshare(CLONE_NEWUSER) failed with {}: {what}", errno_name(errno));
    let diagnosis = |cause, detail: String, fix: &str| Diagnosis { cause, detail: seen(detail), fix: fix.to_string() };
    if errno == libc::ENOSPC || facts.max_user_namespaces == Some(0) {
        let limit = facts.max_user_namespaces.map_or("unknown".into(), |n| n.to_string());
        return diagnosis(
            Cause::MaxUserNamespaces,
            format!("the sysctl user.max_user_namespaces is {limit}"),
            "sysctl -w user.max_user_namespaces=15000 (and persist it in /etc/sysctl.d/; on Kubernetes set it on the node)",
        );
    }
    if errno == libc::EINVAL || errno == libc::ENOSYS {
        let detail = "this kernel has no user namespaces (CONFIG_USER_NS)".to_string();
        return diagnosis(Cause::NoKernelSupport, detail, "use a kernel built with CONFIG_USER_NS=y");
    }
    if facts.unprivileged_userns_clone == Some(0) && !facts.root {
        return diagnosis(
            Cause::UnprivilegedUsernsClone,
            "the sysctl kernel.unprivileged_userns_clone is 0".into(),
            "sysctl -w kernel.unprivileged_userns_clone=1 (persist it in /etc/sysctl.d/)",
        );
    }
    if facts.seccomp_mode == Some(2) {
        let detail = "a seccomp filter confines this process (Seccomp: 2 in /proc/self/status); container runtimes' \
                      default profiles refuse CLONE_NEWUSER without CAP_SYS_ADMIN";
        return diagnosis(Cause::Seccomp, detail.into(), SECCOMP_FIX);
    }
    if facts.apparmor_restrict == Some(1) || facts.confined_by_apparmor() {
        let label = facts.apparmor_label.clone().unwrap_or_else(|| "none".into());
        let detail = format!(
            "AppArmor restricts it (kernel.apparmor_restrict_unprivileged_userns={}, profile {label})",
            facts.apparmor_restrict.map_or("unset".into(), |v| v.to_string())
        );
        return diagnosis(Cause::AppArmor, detail, APPARMOR_FIX);
    }
    diagnosis(Cause::Unknown, "no seccomp filter, AppArmor profile or sysctl explains it".into(), "run `kiln doctor`")
}

/// `EPERM (Operation not permitted)` for an errno.
pub fn errno_name(errno: i32) -> String {
    let e = nix::errno::Errno::from_raw(errno);
    format!("{e:?} ({})", e.desc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_is_told_apart() {
        let clean = Facts { seccomp_mode: Some(0), max_user_namespaces: Some(1000), ..Default::default() };
        let seccomp = Facts { seccomp_mode: Some(2), ..clean.clone() };
        let sysctl = Facts { max_user_namespaces: Some(0), ..seccomp.clone() };
        let clone_off = Facts { unprivileged_userns_clone: Some(0), ..seccomp.clone() };
        let apparmor = Facts { apparmor_restrict: Some(1), ..clean.clone() };
        assert_eq!(userns_failure(libc::EPERM, &seccomp).cause, Cause::Seccomp);
        assert_eq!(userns_failure(libc::ENOSPC, &sysctl).cause, Cause::MaxUserNamespaces);
        assert_eq!(userns_failure(libc::EPERM, &clone_off).cause, Cause::UnprivilegedUsernsClone);
        assert_eq!(userns_failure(libc::EPERM, &apparmor).cause, Cause::AppArmor);
        assert_eq!(userns_failure(libc::EINVAL, &clean).cause, Cause::NoKernelSupport);
        assert_eq!(userns_failure(libc::EPERM, &clean).cause, Cause::Unknown);
        let root_clone_off = Facts { root: true, ..clone_off };
        assert_eq!(userns_failure(libc::EPERM, &root_clone_off).cause, Cause::Seccomp, "the sysctl spares root");
        assert!(userns_failure(libc::EPERM, &seccomp).to_string().contains("deploy/seccomp/kiln.json"));
    }
}
