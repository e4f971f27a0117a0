//! Mounting an overlay for a step. Lowerdirs are given relative to the
//! snapshots root (the caller `chdir`s there first), which keeps the mount
//! option string short: page-size option data fits hundreds of layers.

use crate::snapshots::{SnapshotId, Snapshots};
use crate::{IoContext, Result};
use nix::mount::{mount, MsFlags};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Everything needed to mount one overlay: read-only lowers (top first) and
/// a writable upper snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OverlaySpec {
    /// The snapshots root directory.
    pub root: PathBuf,
    /// Lower snapshots, topmost first. Empty means an empty base.
    pub lowers: Vec<SnapshotId>,
    /// The active snapshot whose `fs` is the upperdir.
    pub upper: SnapshotId,
}

impl OverlaySpec {
    /// The mount option string (paths relative to [`OverlaySpec::root`]).
    pub fn options(&self) -> String {
        let lowers: Vec<String> = if self.lowers.is_empty() {
            vec![Snapshots::EMPTY.to_string()]
        } else {
            self.lowers.iter().map(|id| format!("{}/fs", id.as_str())).collect()
        };
        format!(
            "lowerdir={},upperdir={}/fs,workdir={}/work,userxattr",
            lowers.join(":"),
            self.upper.as_str(),
            self.upper.as_str()
        )
    }

    /// Mounts the overlay at `target`. Must run in a private mount namespace
    /// of the calling (single-threaded) helper process; it changes the cwd.
    pub fn mount_at(&self, target: &Path) -> Result<()> {
        std::env::set_current_dir(&self.root).ctx(|| format!("chdir {}", self.root.display()))?;
        let opts = self.options();
        mount(Some("overlay"), target, Some("overlay"), MsFlags::empty(), Some(opts.as_str()))
            .ctx(|| format!("mount overlay ({opts}) at {}", target.display()))
    }
}

/// Makes every mount in this namespace private, so nothing we mount leaks
/// to the parent namespace.
pub fn make_mounts_private() -> Result<()> {
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .ctx(|| "make / rprivate".into())
}

/// Mounts a committed chain (`lowers`, topmost first) read-only at
/// `target`: nothing for an empty chain, a read-only bind mount for one
/// layer, an overlay for more. Like [`OverlaySpec::mount_at`] it must run
/// in a private mount namespace and changes the cwd.
pub fn mount_readonly(root: &Path, lowers: &[SnapshotId], target: &Path) -> Result<()> {
    match lowers {
        [] => Ok(()),
        [only] => {
            let src = root.join(only.as_str()).join("fs");
            mount(Some(&src), target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
                .ctx(|| format!("bind {} at {}", src.display(), target.display()))?;
            let ro = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
            mount(None::<&str>, target, None::<&str>, ro, None::<&str>)
                .ctx(|| format!("remount {} read-only", target.display()))
        }
        many => {
            std::env::set_current_dir(root).ctx(|| format!("chdir {}", root.display()))?;
            let dirs: Vec<String> = many.iter().map(|id| format!("{}/fs", id.as_str())).collect();
            let opts = format!("lowerdir={},userxattr", dirs.join(":"));
            mount(Some("overlay"), target, Some("overlay"), MsFlags::MS_RDONLY, Some(opts.as_str()))
                .ctx(|| format!("mount overlay ({opts}) at {}", target.display()))
        }
    }
}
