//! Mounts as data (containerd's `mount.Mount`) and performing them. Overlay
//! lowerdirs are given relative to the snapshots root (the mount `chdir`s
//! there first), which keeps the option string short: with 12-character
//! snapshot ids a page of option data fits about 250 lower layers.

use crate::{IoContext, Result};
use nix::mount::{mount, MsFlags};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One mount to perform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// `overlay` or `bind`.
    pub fstype: String,
    /// The source (a directory for `bind`, the name `overlay` otherwise).
    pub source: PathBuf,
    /// `ro` plus filesystem options (`lowerdir=…`, `userxattr`).
    pub options: Vec<String>,
    /// Directory that relative paths in `options` resolve against.
    pub cwd: Option<PathBuf>,
}

impl Mount {
    /// Whether the mount is read-only.
    pub fn read_only(&self) -> bool {
        self.options.iter().any(|o| o == "ro")
    }

    /// Mounts at `target`. Must run in a private mount namespace of a
    /// single-threaded helper process: it may change the cwd.
    pub fn mount_at(&self, target: &Path) -> Result<()> {
        if let Some(cwd) = &self.cwd {
            std::env::set_current_dir(cwd).ctx(|| format!("chdir {}", cwd.display()))?;
        }
        let data: Vec<&str> = self.options.iter().map(String::as_str).filter(|o| *o != "ro" && *o != "rw").collect();
        let data = data.join(",");
        let what = || format!("mount {} ({data}) at {}", self.fstype, target.display());
        if self.fstype == "bind" {
            mount(Some(&self.source), target, None::<&str>, MsFlags::MS_BIND, None::<&str>).ctx(what)?;
            if self.read_only() {
                let ro = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
                mount(None::<&str>, target, None::<&str>, ro, None::<&str>).ctx(what)?;
            }
            return Ok(());
        }
        let flags = if self.read_only() { MsFlags::MS_RDONLY } else { MsFlags::empty() };
        mount(Some(&self.source), target, Some(self.fstype.as_str()), flags, Some(data.as_str())).ctx(what)
    }
}

/// Performs `mounts` in order at `target` (none leaves `target` as is).
pub fn mount_all(mounts: &[Mount], target: &Path) -> Result<()> {
    mounts.iter().try_for_each(|m| m.mount_at(target))
}

/// Makes every mount in this namespace private, so nothing we mount leaks
/// to the parent namespace.
pub fn make_mounts_private() -> Result<()> {
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .ctx(|| "make / rprivate".into())
}
