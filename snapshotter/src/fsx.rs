//! Low-level filesystem helpers that never follow a path out of a root:
//! `openat2(RESOLVE_IN_ROOT)`, component-wise directory creation without
//! following symlinks, and xattr access on paths that may be symlinks.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

fn cstr(p: &OsStr) -> io::Result<CString> {
    CString::new(p.as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

/// Opens `path` relative to `root` with every symlink and `..` resolved as
/// if `root` were `/` (kernel `RESOLVE_IN_ROOT`), so nothing escapes it.
pub fn open_in_root(root: &impl AsRawFd, path: &Path, flags: i32) -> io::Result<OwnedFd> {
    openat2(root, path, flags, libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS)
}

/// Opens `path` relative to `root`, failing with `EXDEV` if resolving it
/// (every symlink followed) would leave `root` (kernel `RESOLVE_BENEATH`).
pub fn open_beneath(root: &impl AsRawFd, path: &Path, flags: i32) -> io::Result<OwnedFd> {
    openat2(root, path, flags, libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS)
}

fn openat2(root: &impl AsRawFd, path: &Path, flags: i32, resolve: u64) -> io::Result<OwnedFd> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let rel = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
    let c = cstr(rel.as_os_str())?;
    // SAFETY: open_how is plain old data; all zeroes is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = resolve;
    // SAFETY: valid pointers and size for the openat2 syscall.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a fresh descriptor we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Reads the regular file at `path` inside `root` (symlinks resolved in
/// root), at most `max` bytes. Anything else — a FIFO, a device, a
/// directory, a socket — is refused without blocking (`InvalidInput`), as
/// is a larger file (`FileTooLarge`); a missing one is `NotFound`.
pub fn read_in_root(root: &Path, path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let dir = File::open(root)?;
    read_regular_at(&dir, path, max)
}

/// [`read_in_root`] with the root already open.
pub fn read_regular_at(root: &impl AsRawFd, path: &Path, max: u64) -> io::Result<Vec<u8>> {
    // O_NONBLOCK: opening a FIFO for reading must not wait for a writer.
    let fd = open_in_root(root, path, libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY)?;
    let file = File::from(fd);
    let meta = file.metadata()?;
    if !meta.is_file() {
        let msg = format!("{} is not a regular file", path.display());
        return Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
    }
    if meta.len() > max {
        let msg = format!("{} is larger than {max} bytes", path.display());
        return Err(io::Error::new(io::ErrorKind::FileTooLarge, msg));
    }
    let mut out = Vec::with_capacity(meta.len() as usize);
    io::Read::read_to_end(&mut io::Read::take(file, max + 1), &mut out)?;
    if out.len() as u64 > max {
        let msg = format!("{} is larger than {max} bytes", path.display());
        return Err(io::Error::new(io::ErrorKind::FileTooLarge, msg));
    }
    Ok(out)
}

/// Normalises an archive or context path to safe relative components:
/// strips `/` and `./` prefixes, rejects `..` anywhere.
pub fn clean_relative(path: &Path) -> io::Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("path {:?} leaves its root", path)))
            }
        }
    }
    Ok(out)
}

/// Opens directory `rel` under `root`, creating missing directories with
/// mode 0755. No component may be a symlink.
pub fn mkdir_all_at(root: &OwnedFd, rel: &Path) -> io::Result<OwnedFd> {
    let mut cur = root.try_clone()?;
    for comp in rel.components() {
        let Component::Normal(name) = comp else { continue };
        let c = cstr(name)?;
        // SAFETY: valid dirfd and C string.
        let rc = unsafe { libc::mkdirat(cur.as_raw_fd(), c.as_ptr(), 0o755) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(e);
            }
        }
        cur = openat_dir(&cur, name)?;
    }
    Ok(cur)
}

/// Opens the directory `name` in `dir` without following a symlink.
pub fn openat_dir(dir: &impl AsRawFd, name: &OsStr) -> io::Result<OwnedFd> {
    let c = cstr(name)?;
    let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: valid dirfd and C string.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOTDIR) || e.raw_os_error() == Some(libc::ELOOP) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{:?} is not a directory (symlinks are not followed)", name),
            ));
        }
        return Err(e);
    }
    // SAFETY: fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A `/proc/self/fd/N/name` path, to use path-based syscalls relative to a
/// directory descriptor (the final component is still not followed by the
/// `l*` calls).
pub fn fd_path(dir: &impl AsRawFd, name: &OsStr) -> PathBuf {
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    if !name.is_empty() {
        p.push(name);
    }
    p
}

/// Lists the xattr names of `path` without following a final symlink.
pub fn list_xattrs(path: &Path) -> io::Result<Vec<Vec<u8>>> {
    let c = cstr(path.as_os_str())?;
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: buffer pointer and length are valid.
        let n = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            buf.truncate(n as usize);
            break;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ERANGE) => buf.resize(buf.len() * 4, 0),
            Some(libc::ENOTSUP) => return Ok(Vec::new()),
            _ => return Err(e),
        }
    }
    Ok(buf.split(|b| *b == 0).filter(|n| !n.is_empty()).map(<[u8]>::to_vec).collect())
}

/// Reads one xattr value without following a final symlink.
pub fn get_xattr(path: &Path, name: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let c = cstr(path.as_os_str())?;
    let n = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: buffer pointer and length are valid.
        let r = unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if r >= 0 {
            buf.truncate(r as usize);
            return Ok(Some(buf));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ERANGE) => buf.resize(buf.len() * 4, 0),
            Some(libc::ENODATA) | Some(libc::ENOTSUP) => return Ok(None),
            _ => return Err(e),
        }
    }
}

/// Sets one xattr without following a final symlink.
pub fn set_xattr(path: &Path, name: &[u8], value: &[u8]) -> io::Result<()> {
    let c = cstr(path.as_os_str())?;
    let n = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: valid C strings and value buffer.
    let r = unsafe { libc::lsetxattr(c.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// True for the overlay bookkeeping xattrs that never belong in a layer.
pub fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(b"user.overlay.") || name.starts_with(b"trusted.overlay.")
}

/// The xattr that marks an opaque directory under `userxattr` mounts.
pub const OPAQUE_XATTR: &[u8] = b"user.overlay.opaque";

/// ext4's "top of a directory hierarchy" inode flag (`chattr +T`).
const FS_TOPDIR_FL: libc::c_int = 0x0002_0000;

/// Marks `dir` as the top of directory hierarchies (`chattr +T`): ext4 then
/// places each new subdirectory in a roomy block group of its own (the
/// Orlov allocator) instead of next to its siblings. Snapshots and their
/// garbage collection create and delete thousands of files at a time; on an
/// ext4 without a journal, every inode allocation skips inodes freed in the
/// last minutes, so a snapshot created in the group of a just-deleted one
/// paid seconds for it (see `docs/performance.md`). Filesystems without the
/// flag answer with an error, which the caller may ignore.
pub fn mark_top_directory(dir: &Path) -> io::Result<()> {
    let file = File::open(dir)?;
    let mut flags: libc::c_int = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one int through the valid pointer.
    if unsafe { libc::ioctl(file.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & FS_TOPDIR_FL != 0 {
        return Ok(());
    }
    flags |= FS_TOPDIR_FL;
    // SAFETY: FS_IOC_SETFLAGS reads one int through the valid pointer.
    if unsafe { libc::ioctl(file.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXT4_SUPER_MAGIC: i64 = 0xEF53;

    fn is_ext4(path: &Path) -> bool {
        nix::sys::statfs::statfs(path).map(|s| s.filesystem_type().0 == EXT4_SUPER_MAGIC).unwrap_or(false)
    }

    #[test]
    fn a_snapshot_root_on_ext4_carries_the_top_directory_flag() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("snapshots");
        crate::Snapshots::open(&root).unwrap();
        if !is_ext4(&root) {
            eprintln!("{} is not ext4: the flag does not exist there", root.display());
            return;
        }
        let out = std::process::Command::new("lsattr").arg("-d").arg(&root).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let attrs = text.split_whitespace().next().unwrap_or("");
        assert!(attrs.contains('T'), "lsattr -d {}: {text}", root.display());
        mark_top_directory(&root).expect("setting the flag again is a no-op");
    }
}
