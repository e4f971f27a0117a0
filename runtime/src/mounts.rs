//! `RUN --mount` inside the helper. Bind sources are
//! resolved inside their root with `openat2(RESOLVE_IN_ROOT)` and bound by
//! their canonical path, so a symlink in the context or a stage cannot
//! point a mount at the host. Writable binds get a throwaway copy-on-write
//! layer (an overlay for directories, a copy for files) in the bundle.

use crate::{Error, Result};
use kiln_snapshotter::fsx;
use kiln_snapshotter::overlay::{mount_all, Mount};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Where a bind mount's files come from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum BindRoot {
    /// A directory the helper can see (the build context, a cache dir).
    Dir(PathBuf),
    /// A committed chain, mounted read-only in the helper first.
    Chain(Vec<Mount>),
}

/// One extra mount of a step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum StepMount {
    /// `source` (resolved inside `root`) bound at `target`.
    Bind {
        /// The root `source` is resolved in.
        root: BindRoot,
        /// Path inside the root.
        source: String,
        /// Absolute path inside the step.
        target: String,
        /// Writable (a cache dir), or copy-on-write (`copy_on_write`).
        readonly: bool,
        /// Writes go to a throwaway layer, not to the source.
        copy_on_write: bool,
    },
    /// An empty tmpfs.
    Tmpfs {
        /// Absolute path inside the step.
        target: String,
        /// Size limit in bytes.
        size: Option<u64>,
    },
}

impl StepMount {
    /// Absolute path inside the step.
    pub fn target(&self) -> &str {
        match self {
            StepMount::Bind { target, .. } | StepMount::Tmpfs { target, .. } => target,
        }
    }
}

/// A mount ready for the OCI spec, and whether its target is a directory.
pub struct Prepared {
    /// The spec's mount entry.
    pub spec: Value,
    /// The target must be a directory (else a file).
    pub dir: bool,
}

/// Prepares mount `n` of a step in the helper's mount namespace.
pub fn prepare(n: usize, m: &StepMount, bundle: &Path) -> Result<Prepared> {
    match m {
        StepMount::Tmpfs { target, size } => {
            let mut options = vec!["nosuid".to_string(), "nodev".to_string(), "mode=1777".to_string()];
            options.extend(size.map(|s| format!("size={s}")));
            Ok(Prepared {
                spec: json!({"destination": target, "type": "tmpfs", "source": "tmpfs", "options": options}),
                dir: true,
            })
        }
        StepMount::Bind { root, source, target, readonly, copy_on_write } => {
            let root_dir = match root {
                BindRoot::Dir(d) => d.clone(),
                BindRoot::Chain(chain) => {
                    let dir = bundle.join(format!("src-{n}"));
                    fs::create_dir_all(&dir).map_err(|e| Error::Io(format!("create {}", dir.display()), e))?;
                    mount_all(chain, &dir)?;
                    dir
                }
            };
            let (mut path, dir) = resolve(&root_dir, source)?;
            if *copy_on_write {
                path = writable_copy(&path, dir, &bundle.join(format!("cow-{n}")))?;
            }
            let mode = if *readonly && !*copy_on_write { "ro" } else { "rw" };
            let spec = json!({"destination": target, "type": "none", "source": path,
                              "options": ["rbind", mode, "nosuid", "nodev"]});
            Ok(Prepared { spec, dir })
        }
    }
}

/// The canonical host path of `source` resolved inside `root`, and
/// whether it is a directory.
fn resolve(root: &Path, source: &str) -> Result<(PathBuf, bool)> {
    let dir = File::open(root).map_err(|e| Error::Io(format!("open {}", root.display()), e))?;
    let fd = fsx::open_in_root(&dir, Path::new(source), libc::O_PATH)
        .map_err(|e| Error::Io(format!("--mount source {source:?}"), e))?;
    let real = fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|e| Error::Io(format!("resolve --mount source {source:?}"), e))?;
    let is_dir = File::from(fd).metadata().map(|m| m.is_dir()).unwrap_or(false);
    Ok((real, is_dir))
}

/// A throwaway writable view of `path`: an overlay for a directory (writes
/// land in `work`), a copy for a file.
fn writable_copy(path: &Path, dir: bool, work: &Path) -> Result<PathBuf> {
    let io = |what: &str| {
        let what = what.to_string();
        move |e| Error::Io(what, e)
    };
    fs::create_dir_all(work).map_err(io("create copy-on-write dir"))?;
    if !dir {
        let copy = work.join("file");
        fs::copy(path, &copy).map_err(io("copy --mount source"))?;
        return Ok(copy);
    }
    let lower = path.to_string_lossy();
    if lower.contains([',', ':']) {
        return Err(Error::Container(format!(
            "--mount source path {lower:?} contains ',' or ':', which overlay cannot take"
        )));
    }
    for sub in ["upper", "work", "merged"] {
        fs::create_dir_all(work.join(sub)).map_err(io("create copy-on-write dir"))?;
    }
    let opts = format!(
        "lowerdir={lower},upperdir={},workdir={},userxattr",
        work.join("upper").display(),
        work.join("work").display()
    );
    let merged = work.join("merged");
    nix::mount::mount(Some("overlay"), &merged, Some("overlay"), nix::mount::MsFlags::empty(), Some(opts.as_str()))
        .map_err(|e| Error::Container(format!("copy-on-write mount of {lower}: {e}")))?;
    Ok(merged)
}
