//! Making a skeleton on disk (in the server's user namespace, which maps
//! every owner an image uses).

use super::{Skeleton, SkeletonEntry};
use kiln_snapshotter::headers::EntryKind;
use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{lchown, symlink, OpenOptionsExt, PermissionsExt};
use std::path::Path;

impl Skeleton {
    /// Creates the entries below `root` (a new directory), each with its
    /// owner, mode and mtime; directories' mtimes are set last, after
    /// their children are made.
    pub fn create(&self, root: &Path) -> io::Result<()> {
        fs::create_dir_all(root)?;
        for e in &self.entries {
            create_entry(root, e).map_err(|err| io::Error::new(err.kind(), format!("skeleton {}: {err}", e.path)))?;
        }
        for e in self.entries.iter().rev().filter(|e| e.kind == EntryKind::Dir) {
            set_mtime(&root.join(&e.path), e.mtime)?;
        }
        Ok(())
    }
}

fn create_entry(root: &Path, e: &SkeletonEntry) -> io::Result<()> {
    if e.path.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a plain relative path"));
    }
    let path = root.join(&e.path);
    // Parents come first and are directories (checked when planned):
    // make sure no link is followed on the way even so.
    let parent = path.parent().expect("below the root");
    if !fs::symlink_metadata(parent)?.is_dir() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "parent is not a directory"));
    }
    match e.kind {
        EntryKind::Dir => fs::create_dir(&path)?,
        EntryKind::Symlink => symlink(e.link.as_deref().unwrap_or_default(), &path)?,
        EntryKind::File | EntryKind::Other => {
            let mut file =
                fs::OpenOptions::new().write(true).create_new(true).custom_flags(libc::O_NOFOLLOW).open(&path)?;
            file.write_all(e.content.as_deref().unwrap_or_default().as_bytes())?;
        }
    }
    lchown(&path, Some(e.uid), Some(e.gid))?;
    if e.kind != EntryKind::Symlink {
        fs::set_permissions(&path, fs::Permissions::from_mode(e.mode))?;
    }
    if e.kind != EntryKind::Dir {
        set_mtime(&path, e.mtime)?;
    }
    Ok(())
}

fn set_mtime(path: &Path, mtime: i64) -> io::Result<()> {
    let t = TimeSpec::new(mtime, 0);
    utimensat(None, path, &t, &t, UtimensatFlags::NoFollowSymlink).map_err(io::Error::from)
}
