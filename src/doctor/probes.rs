//! The checks themselves. [`outside`] runs as the user who starts kiln;
//! [`inside`] runs as root of kiln's user namespace, in a process of its
//! own (`kiln __doctor-probe`), and tries for real what a build does.

use super::Check;
use kiln_runtime::userns::IdMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Checks outside any namespace: can this user create a user namespace,
/// and map a range of IDs into it?
pub fn outside(root_range: (u32, u32)) -> Vec<Check> {
    let mut checks = vec![user_namespace()];
    match IdMap::detect(root_range) {
        Ok(map) => {
            checks.push(Check::ok("subordinate IDs", describe_map(&map)));
            if matches!(map, IdMap::Subordinate { .. }) {
                checks.extend(["newuidmap", "newgidmap"].map(id_tool));
            }
        }
        Err(e) => checks.push(Check::fail("subordinate IDs", e.to_string(), subid_fix())),
    }
    checks
}

fn user_namespace() -> Check {
    let name = "user namespace";
    match kiln_runtime::userns::probe() {
        Ok(()) => Check::ok(name, "unshare(CLONE_NEWUSER) works"),
        Err(d) => Check::fail(name, format!("{} [cause: {:?}]", d.detail, d.cause), d.fix),
    }
}

fn subid_fix() -> String {
    let user = nix::unistd::User::from_uid(nix::unistd::geteuid()).ok().flatten().map(|u| u.name);
    let user = user.unwrap_or_else(|| "<user>".into());
    format!("usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user} (as root)")
}

fn describe_map(map: &IdMap) -> String {
    match map {
        IdMap::Direct { host_uid, count, .. } => format!("real root maps host IDs {host_uid}+{count} directly"),
        IdMap::Subordinate { uid, subuid, subgid, .. } => {
            format!("uid {uid} plus /etc/subuid {}:{} and /etc/subgid {}:{}", subuid.0, subuid.1, subgid.0, subgid.1)
        }
    }
}

/// The first executable `name` on `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

fn id_tool(name: &'static str) -> Check {
    let fix = "apt-get install uidmap (Fedora/RHEL: shadow-utils; Alpine: shadow-uidmap), on PATH, setuid root";
    let Some(path) = on_path(name) else {
        return Check::fail(name, format!("{name} is not on PATH"), fix);
    };
    let meta = std::fs::metadata(&path).ok();
    let setuid_root = meta.as_ref().is_some_and(|m| m.uid() == 0 && m.permissions().mode() & 0o4000 != 0);
    let file_caps = kiln_snapshotter::fsx::get_xattr(&path, b"security.capability").ok().flatten().is_some();
    match setuid_root || file_caps {
        true => {
            Check::ok(name, format!("{} ({})", path.display(), if setuid_root { "setuid root" } else { "file caps" }))
        }
        false => Check::fail(name, format!("{} is neither setuid root nor has file capabilities", path.display()), fix),
    }
}

/// Checks inside kiln's namespace, in a private mount namespace: overlay
/// with `userxattr` and whiteouts in `data_dir`, `/proc` in a new PID
/// namespace, and `chown` across the mapped range. Must run single-threaded.
pub fn inside(data_dir: &Path) -> Vec<Check> {
    let private = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| e.to_string())
        .and_then(|()| kiln_snapshotter::overlay::make_mounts_private().map_err(|e| e.to_string()));
    if let Err(e) = private {
        return vec![Check::fail("mount namespace", e, "run kiln doctor; the user namespace lacks CAP_SYS_ADMIN")];
    }
    let scratch = data_dir.join(format!("doctor-{}", kiln_snapshotter::SnapshotId::random().as_str()));
    let mut checks = vec![overlay(&scratch), proc_mount(&scratch), id_range(&scratch)];
    if let Err(e) = std::fs::remove_dir_all(&scratch) {
        let fix = "remove it by hand; report this as a bug";
        checks.push(Check::warn("probe clean-up", format!("{} left behind: {e}", scratch.display()), fix));
    }
    checks
}

fn overlay(scratch: &Path) -> Check {
    let name = "overlayfs (userxattr)";
    let fix = "a kernel >= 5.11 with overlayfs, and a data dir on ext4/xfs/btrfs (not overlayfs or NFS)";
    match try_overlay(scratch) {
        Ok(()) => Check::ok(name, "mounted with userxattr; a whiteout was written"),
        Err(e) => Check::fail(name, e, fix),
    }
}

fn try_overlay(scratch: &Path) -> Result<(), String> {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    let dirs = ["lower/gone", "upper", "work", "merged"].map(|d| scratch.join("overlay").join(d));
    for d in &dirs {
        std::fs::create_dir_all(d).map_err(|e| format!("create {}: {e}", d.display()))?;
    }
    let [lower, upper, work, merged] = &dirs;
    let lower = lower.parent().unwrap_or(lower);
    let data =
        format!("lowerdir={},upperdir={},workdir={},userxattr", lower.display(), upper.display(), work.display());
    mount(Some("overlay"), merged, Some("overlay"), MsFlags::empty(), Some(data.as_str()))
        .map_err(|e| format!("mount overlay: {e}"))?;
    let changed = std::fs::remove_dir(merged.join("gone")).map_err(|e| format!("whiteout: {e}"));
    let _ = umount2(merged, MntFlags::MNT_DETACH);
    changed?;
    let whiteout = std::fs::symlink_metadata(upper.join("gone")).map_err(|e| format!("no whiteout: {e}"))?;
    use std::os::unix::fs::FileTypeExt;
    match whiteout.file_type().is_char_device() {
        true => Ok(()),
        false => Err("the whiteout is not a 0/0 character device".into()),
    }
}

fn proc_mount(scratch: &Path) -> Check {
    let name = "/proc in a PID namespace";
    let target = scratch.join("proc");
    if let Err(e) = std::fs::create_dir_all(&target) {
        return Check::fail(name, format!("create {}: {e}", target.display()), "check the data dir");
    }
    let fix = "the container's /proc must not be masked read-only over the whole tree (Kubernetes: procMount Default \
               works with user namespaces; with hostUsers: false use procMount: Unmasked)";
    let mounted = mount_proc_in_child(&target);
    // The child's mount stays in this mount namespace: undo it, or the
    // scratch directory could not be removed.
    let _ = nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH);
    match mounted {
        Ok(()) => Check::ok(name, "mounted a fresh /proc"),
        Err(e) => Check::fail(name, e, fix),
    }
}

fn mount_proc_in_child(target: &Path) -> Result<(), String> {
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWPID).map_err(|e| format!("unshare(CLONE_NEWPID): {e}"))?;
    // SAFETY: single-threaded here (the probe process runs nothing else);
    // the child only mounts and exits.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            let flags = nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV | nix::mount::MsFlags::MS_NOEXEC;
            let code = match nix::mount::mount(Some("proc"), target, Some("proc"), flags, None::<&str>) {
                Ok(()) => 0,
                Err(e) => e as i32,
            };
            // SAFETY: leave the forked child without running destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, 0)) => Ok(()),
            Ok(WaitStatus::Exited(_, errno)) => {
                Err(format!("mount proc: {}", kiln_runtime::diagnose::errno_name(errno)))
            }
            other => Err(format!("the probe child ended with {other:?}")),
        },
    }
}

fn id_range(scratch: &Path) -> Check {
    let name = "mapped ID range";
    let file = scratch.join("owned");
    let result = std::fs::write(&file, b"").map_err(|e| e.to_string()).and_then(|()| {
        std::os::unix::fs::chown(&file, Some(65534), Some(65534)).map_err(|e| format!("chown 65534:65534: {e}"))
    });
    match result {
        Ok(()) => Check::ok(name, "files can belong to users other than root (chown 65534 works)"),
        Err(e) => Check::fail(name, e, "give the user a subordinate range of 65536 IDs (see subordinate IDs)"),
    }
}
