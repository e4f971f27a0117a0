//! `ADD <local archive>` extraction as BuildKit does it (moby's
//! `chrootarchive.Untar` into the destination): every path of the archive
//! — its entries, the parents they pass through, hardlink targets — is
//! resolved as if the destination were `/` (symlinks the image already has,
//! `/var/run -> /run` say, are followed inside it, never out of it);
//! missing parents are created `0755` and root's; entries keep the
//! archive's owners unless `--chown` names one, which then owns every
//! entry and the destination. Device nodes are skipped (they cannot be
//! made in a user namespace).

use super::{ensure_dir, fd_path, io_err, Res};
use kiln_snapshotter::fsx;
use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{lchown, symlink, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Extracts `archive` (plain or compressed tar) into `dest` of `root`.
pub(super) fn extract(root: &OwnedFd, dest: &str, archive: File, chown: Option<(u32, u32)>, limit: u64) -> Res<()> {
    let dest_fd = ensure_dir(root, dest, chown.unwrap_or((0, 0)), 0o755)?;
    if let Some((uid, gid)) = chown {
        lchown(fd_path(&dest_fd, OsStr::new("")), Some(uid), Some(gid)).map_err(io_err("chown the destination"))?;
    }
    let decoded = kiln_snapshotter::compression::decoder(io::BufReader::new(archive)).map_err(|e| e.to_string())?;
    let mut tar = tar::Archive::new(kiln_snapshotter::compression::Bounded::new(decoded, limit));
    for entry in tar.entries().map_err(io_err("read archive"))? {
        let mut entry = entry.map_err(io_err("read archive"))?;
        let Some(rel) = clean(&entry.path().map_err(io_err("read archive"))?) else { continue };
        extract_entry(&dest_fd, &rel, &mut entry, chown)?;
    }
    Ok(())
}

/// A path inside the destination with `.`, `..` and leading `/` resolved
/// lexically; `None` for the destination itself.
fn clean(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

fn extract_entry<R: Read>(dest: &OwnedFd, rel: &Path, entry: &mut tar::Entry<R>, chown: Option<(u32, u32)>) -> Res<()> {
    let shown = rel.display().to_string();
    let parent_rel = rel.parent().map(|p| p.to_string_lossy().to_string()).unwrap_or_default();
    let name = rel.file_name().expect("a cleaned path has a last component");
    let parent = ensure_dir(dest, &parent_rel, (0, 0), 0o755)?;
    let path = fd_path(&parent, name);
    let header = entry.header().clone();
    let kind = header.entry_type();
    if kind.is_dir() {
        if !fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            replace(&path, &shown)?;
            fs::create_dir(&path).map_err(io_err(format!("mkdir {shown}")))?;
        }
    } else {
        replace(&path, &shown)?;
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let mut out = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                    .map_err(io_err(format!("create {shown}")))?;
                io::copy(entry, &mut out).map_err(io_err(format!("write {shown}")))?;
            }
            tar::EntryType::Symlink => {
                let target = header.link_name().map_err(io_err("read archive"))?.unwrap_or_default();
                symlink(&target, &path).map_err(io_err(format!("symlink {shown}")))?;
            }
            tar::EntryType::Link => return hardlink(dest, &header, &parent, name, &shown),
            _ => return Ok(()),
        }
    }
    let ids = chown.unwrap_or((header.uid().unwrap_or(0) as u32, header.gid().unwrap_or(0) as u32));
    lchown(&path, Some(ids.0), Some(ids.1)).map_err(io_err(format!("chown {shown}")))?;
    if !kind.is_symlink() {
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(io_err(format!("chmod {shown}")))?;
    }
    let mtime = TimeSpec::new(header.mtime().unwrap_or(0) as i64, 0);
    utimensat(None, &path, &mtime, &mtime, UtimensatFlags::NoFollowSymlink)
        .map_err(|e| format!("set mtime of {shown}: {e}"))
}

/// Removes what is at `path`: an entry replaces whatever has its name
/// (only a directory entry keeps an existing directory), as moby's untar.
fn replace(path: &Path, shown: &str) -> Res<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).map_err(io_err(format!("replace {shown}"))),
        Ok(_) => fs::remove_file(path).map_err(io_err(format!("replace {shown}"))),
        Err(_) => Ok(()),
    }
}

/// A hardlink to another path of the archive, resolved in the destination.
fn hardlink(dest: &OwnedFd, header: &tar::Header, parent: &OwnedFd, name: &OsStr, shown: &str) -> Res<()> {
    let target = header.link_name().map_err(io_err("read archive"))?.unwrap_or_default();
    let target = clean(&target).ok_or_else(|| format!("hardlink {shown} names the destination itself"))?;
    let source = fsx::open_in_root(dest, &target, libc::O_PATH | libc::O_NOFOLLOW)
        .map_err(io_err(format!("hardlink {shown} to {}", target.display())))?;
    let from = std::ffi::CString::new(format!("/proc/self/fd/{}", source.as_raw_fd())).expect("no NUL");
    let to = std::ffi::CString::new(name.as_encoded_bytes()).map_err(|_| format!("{shown}: NUL in name"))?;
    // SAFETY: valid NUL-terminated paths and open descriptors; linkat only
    // reads them.
    let linked = unsafe {
        libc::linkat(libc::AT_FDCWD, from.as_ptr(), parent.as_raw_fd(), to.as_ptr(), libc::AT_SYMLINK_FOLLOW)
    };
    if linked != 0 {
        return Err(format!("hardlink {shown}: {}", io::Error::last_os_error()));
    }
    Ok(())
}
