//! Applies an OCI layer (tar, optionally compressed) to a snapshot directory.
//!
//! Each layer is unpacked into its own directory, which later serves as an
//! overlay lowerdir. OCI whiteouts become overlay whiteouts: `.wh.<name>` →
//! character device 0/0, `.wh..wh..opq` → `user.overlay.opaque=y` on the
//! directory. Every entry is confined to the directory: `..` is rejected and
//! no symlink inside it is followed while unpacking.

use crate::fsx::{self, clean_relative, fd_path, mkdir_all_at, OPAQUE_XATTR};
use crate::headers::{index_path, EntryKind, HeaderEntry, LayerHeaders};
use crate::{Error, IoContext, Result};
use nix::sys::stat::{mknod, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use sha2::{Digest as _, Sha256};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{lchown, symlink, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// What an apply did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyStats {
    /// SHA-256 of the uncompressed tar stream (the layer's diff id).
    pub diff_id: crate::Digest,
    /// Entries unpacked (whiteouts included).
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Device nodes skipped (cannot be created in a user namespace).
    pub skipped_devices: u64,
    /// The headers of what was unpacked (device nodes left out, as they
    /// are from the directory).
    pub headers: LayerHeaders,
}

/// Unpacks `layer` (plain, gzip, zstd, xz or bzip2 tar, detected by
/// content) into `dest`.
pub fn apply_layer(layer: impl Read + Send, dest: &Path) -> Result<ApplyStats> {
    apply_layer_limited(layer, dest, u64::MAX)
}

/// Like [`apply_layer`], but fails once the uncompressed stream passes
/// `max_bytes` (a decompression bomb stops there). The stream is decoded
/// and hashed on a second thread while this one creates the files.
pub fn apply_layer_limited(layer: impl Read + Send, dest: &Path, max_bytes: u64) -> Result<ApplyStats> {
    let (tx, mut decoded) = crate::readahead::channel();
    std::thread::scope(|s| {
        let decoding = s.spawn(move || {
            let buffered = BufReader::with_capacity(256 * 1024, layer);
            match crate::compression::decoder(buffered) {
                Ok(d) => crate::readahead::decode(crate::compression::Bounded::new(d, max_bytes), tx),
                Err(e) => crate::readahead::decode(FailedStart(Some(e)), tx),
            }
        });
        let unpacked = unpack_to_end(&mut decoded, dest);
        drop(decoded);
        let diff_id = decoding.join().map_err(|_| Error::InvalidLayer("the layer's decoder panicked".into()))?;
        let mut stats = unpacked?;
        stats.diff_id = diff_id.ok_or_else(|| Error::InvalidLayer("the layer stream ended early".into()))?;
        Ok(stats)
    })
}

/// A stream whose decoder could not start: reading it gives the reason.
struct FailedStart(Option<Error>);

impl Read for FailedStart {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        let reason = self.0.take().map_or_else(|| "decoder failed".to_string(), |e| e.to_string());
        Err(io::Error::new(io::ErrorKind::InvalidData, reason))
    }
}

/// Hashes everything read through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Unpacks an uncompressed tar stream into `dest`.
pub fn apply_tar(reader: impl Read, dest: &Path) -> Result<ApplyStats> {
    let mut hashing = HashingReader { inner: reader, hasher: Sha256::new() };
    let mut stats = unpack_to_end(&mut hashing, dest)?;
    stats.diff_id = crate::Digest::from_hasher(hashing.hasher);
    Ok(stats)
}

/// Unpacks the tar stream in `reader` and reads it to its end (the diff
/// id covers the padding after the archive's end too); the stats' diff
/// id is for the caller to fill in.
fn unpack_to_end(reader: &mut impl Read, dest: &Path) -> Result<ApplyStats> {
    fs::create_dir_all(dest).ctx(|| format!("create {}", dest.display()))?;
    let root: OwnedFd = File::open(dest).ctx(|| format!("open {}", dest.display()))?.into();
    let mut archive = tar::Archive::new(reader);
    let mut stats = ApplyStats {
        diff_id: crate::Digest::of(b""),
        entries: 0,
        bytes: 0,
        skipped_devices: 0,
        headers: LayerHeaders::new(),
    };
    let mut dir_times = Vec::new();
    for entry in archive.entries().ctx(|| "read layer tar".into())? {
        let mut entry = entry.ctx(|| "read layer entry".into())?;
        let raw = entry.path().ctx(|| "entry path".into())?.into_owned();
        let rel = clean_relative(&raw).map_err(|e| Error::InvalidLayer(e.to_string()))?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        let meta = EntryMeta::read(&mut entry)?;
        if meta.kind == tar::EntryType::Directory {
            dir_times.push((rel.clone(), meta.mtime));
        }
        apply_entry(&root, &rel, &mut entry, &meta, &mut stats).map_err(|e| annotate(e, &rel))?;
        if let Some(h) = header_entry(&mut entry, &rel, &meta)? {
            stats.headers.push(h);
        }
        stats.entries += 1;
    }
    stats.headers.capture_account_files(dest);
    for (rel, mtime) in dir_times.iter().rev() {
        let dir = mkdir_all_at(&root, rel).ctx(|| format!("reopen {}", rel.display()))?;
        set_mtime(&fd_path(&dir, OsStr::new(".")), *mtime, true)?;
    }
    io::copy(archive.into_inner(), &mut io::sink()).ctx(|| "read layer end".into())?;
    Ok(stats)
}

/// The index record of an applied entry (none for a skipped device node).
fn header_entry<R: Read>(entry: &mut tar::Entry<R>, rel: &Path, meta: &EntryMeta) -> Result<Option<HeaderEntry>> {
    let kind = match meta.kind {
        tar::EntryType::Directory => EntryKind::Dir,
        tar::EntryType::Symlink => EntryKind::Symlink,
        tar::EntryType::Char | tar::EntryType::Block => return Ok(None),
        tar::EntryType::Fifo => EntryKind::Other,
        _ => EntryKind::File,
    };
    let link = match kind {
        EntryKind::Symlink => entry.link_name().ctx(|| "link target".into())?.map(|l| l.to_string_lossy().into_owned()),
        _ => None,
    };
    Ok(Some(HeaderEntry {
        path: index_path(&rel.to_string_lossy()),
        kind,
        mode: meta.mode,
        uid: meta.uid,
        gid: meta.gid,
        mtime: meta.mtime,
        link,
        xattrs: !meta.xattrs.is_empty(),
    }))
}

fn annotate(e: Error, rel: &Path) -> Error {
    match e {
        Error::Io { context, source } => Error::Io { context: format!("{}: {context}", rel.display()), source },
        other => other,
    }
}

/// Header fields of one entry, with PAX overrides applied.
struct EntryMeta {
    kind: tar::EntryType,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl EntryMeta {
    fn read<R: Read>(entry: &mut tar::Entry<R>) -> Result<Self> {
        let h = entry.header();
        let bad = |what: &str| Error::InvalidLayer(format!("bad {what} in tar header"));
        let mut meta = EntryMeta {
            kind: h.entry_type(),
            mode: h.mode().map_err(|_| bad("mode"))? & 0o7777,
            uid: h.uid().map_err(|_| bad("uid"))? as u32,
            gid: h.gid().map_err(|_| bad("gid"))? as u32,
            mtime: h.mtime().map_err(|_| bad("mtime"))? as i64,
            xattrs: Vec::new(),
        };
        if let Ok(Some(exts)) = entry.pax_extensions() {
            for ext in exts.flatten() {
                let key = ext.key_bytes();
                let num = || std::str::from_utf8(ext.value_bytes()).ok().and_then(|v| v.parse::<u32>().ok());
                match key {
                    b"uid" => meta.uid = num().ok_or_else(|| bad("pax uid"))?,
                    b"gid" => meta.gid = num().ok_or_else(|| bad("pax gid"))?,
                    _ => {
                        if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                            if !fsx::is_overlay_xattr(name) {
                                meta.xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
                            }
                        }
                    }
                }
            }
        }
        Ok(meta)
    }
}

fn apply_entry<R: Read>(
    root: &OwnedFd,
    rel: &Path,
    entry: &mut tar::Entry<R>,
    meta: &EntryMeta,
    stats: &mut ApplyStats,
) -> Result<()> {
    let name = rel.file_name().expect("non-empty relative path");
    let parent =
        mkdir_all_at(root, rel.parent().unwrap_or(Path::new(""))).ctx(|| "create parent directories".into())?;
    let bytes = name.as_encoded_bytes();
    if bytes == b".wh..wh..opq" {
        return fsx::set_xattr(&fd_path(&parent, OsStr::new(".")), OPAQUE_XATTR, b"y").ctx(|| "mark opaque".into());
    }
    if let Some(hidden) = bytes.strip_prefix(b".wh.") {
        // SAFETY: a suffix of valid OsStr bytes split at an ASCII boundary.
        let hidden = unsafe { OsStr::from_encoded_bytes_unchecked(hidden) };
        let path = fd_path(&parent, hidden);
        remove_existing(&path, false)?;
        return mknod(&path, SFlag::S_IFCHR, Mode::empty(), 0).ctx(|| "create whiteout".into());
    }
    let path = fd_path(&parent, name);
    match meta.kind {
        tar::EntryType::Directory => make_dir(&path, meta),
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            stats.bytes += write_file(&path, entry, meta)?;
            Ok(())
        }
        tar::EntryType::Symlink => make_symlink(&path, entry, meta),
        tar::EntryType::Link => make_hardlink(root, &path, entry),
        tar::EntryType::Fifo => {
            remove_existing(&path, false)?;
            mknod(&path, SFlag::S_IFIFO, Mode::from_bits_truncate(meta.mode), 0).ctx(|| "mkfifo".into())?;
            finish_metadata(&path, meta, true)
        }
        tar::EntryType::Char | tar::EntryType::Block => {
            stats.skipped_devices += 1;
            tracing::debug!(path = %path.display(), "skipping device node in user namespace");
            Ok(())
        }
        other => Err(Error::InvalidLayer(format!("unsupported tar entry type {other:?}"))),
    }
}

fn remove_existing(path: &Path, keep_dir: bool) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() && keep_dir => Ok(()),
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).ctx(|| "replace directory".into()),
        Ok(_) => fs::remove_file(path).ctx(|| "replace file".into()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).ctx(|| "stat existing".into()),
    }
}

fn make_dir(path: &Path, meta: &EntryMeta) -> Result<()> {
    remove_existing(path, true)?;
    if let Err(e) = fs::create_dir(path) {
        if e.kind() != io::ErrorKind::AlreadyExists {
            return Err(e).ctx(|| "mkdir".into());
        }
    }
    set_xattrs(path, meta)?;
    lchown(path, Some(meta.uid), Some(meta.gid)).ctx(|| owner_msg(meta))?;
    fs::set_permissions(path, fs::Permissions::from_mode(meta.mode)).ctx(|| "chmod".into())
}

/// Creates the file (replacing what is there only when something is),
/// writes it, then sets owner, xattrs, mode and mtime on the open file: no
/// path lookups beyond the create for the common case of a new file.
fn write_file<R: Read>(path: &Path, entry: &mut tar::Entry<R>, meta: &EntryMeta) -> Result<u64> {
    let create =
        || OpenOptions::new().write(true).create_new(true).mode(0o600).custom_flags(libc::O_NOFOLLOW).open(path);
    let mut file = match create() {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            remove_existing(path, false)?;
            create()
        }
        other => other,
    }
    .ctx(|| "create file".into())?;
    let n = io::copy(entry, &mut file).ctx(|| "write file".into())?;
    std::os::unix::fs::fchown(&file, Some(meta.uid), Some(meta.gid)).ctx(|| owner_msg(meta))?;
    set_xattrs(path, meta)?;
    file.set_permissions(fs::Permissions::from_mode(meta.mode)).ctx(|| "chmod".into())?;
    let t = TimeSpec::new(meta.mtime, 0);
    nix::sys::stat::futimens(std::os::fd::AsRawFd::as_raw_fd(&file), &t, &t).ctx(|| "set mtime".into())?;
    Ok(n)
}

fn make_symlink<R: Read>(path: &Path, entry: &mut tar::Entry<R>, meta: &EntryMeta) -> Result<()> {
    let target = entry
        .link_name()
        .ctx(|| "symlink target".into())?
        .ok_or_else(|| Error::InvalidLayer("symlink without target".into()))?;
    remove_existing(path, false)?;
    symlink(&*target, path).ctx(|| "symlink".into())?;
    lchown(path, Some(meta.uid), Some(meta.gid)).ctx(|| owner_msg(meta))?;
    set_mtime(path, meta.mtime, false)
}

fn make_hardlink<R: Read>(root: &OwnedFd, path: &Path, entry: &mut tar::Entry<R>) -> Result<()> {
    let target = entry
        .link_name()
        .ctx(|| "hardlink target".into())?
        .ok_or_else(|| Error::InvalidLayer("hardlink without target".into()))?;
    let target = clean_relative(&target).map_err(|e| Error::InvalidLayer(e.to_string()))?;
    let tname = target.file_name().ok_or_else(|| Error::InvalidLayer("empty hardlink target".into()))?;
    let tparent = open_existing_dir(root, target.parent().unwrap_or(Path::new("")))?;
    remove_existing(path, false)?;
    fs::hard_link(fd_path(&tparent, tname), path).ctx(|| format!("hardlink to {}", target.display()))
}

fn open_existing_dir(root: &OwnedFd, rel: &Path) -> Result<OwnedFd> {
    let mut cur = root.try_clone().ctx(|| "dup".into())?;
    for c in rel.iter() {
        cur = fsx::openat_dir(&cur, c).ctx(|| format!("open {}", rel.display()))?;
    }
    Ok(cur)
}

/// Owner, xattrs, then mode (chown clears setuid/setgid), then mtime.
fn finish_metadata(path: &Path, meta: &EntryMeta, special: bool) -> Result<()> {
    lchown(path, Some(meta.uid), Some(meta.gid)).ctx(|| owner_msg(meta))?;
    if !special {
        set_xattrs(path, meta)?;
    }
    fs::set_permissions(path, fs::Permissions::from_mode(meta.mode)).ctx(|| "chmod".into())?;
    set_mtime(path, meta.mtime, false)
}

fn set_xattrs(path: &Path, meta: &EntryMeta) -> Result<()> {
    for (name, value) in &meta.xattrs {
        fsx::set_xattr(path, name, value).ctx(|| format!("set xattr {}", String::from_utf8_lossy(name)))?;
    }
    Ok(())
}

fn owner_msg(meta: &EntryMeta) -> String {
    format!("chown {}:{} (outside the user namespace's ID range?)", meta.uid, meta.gid)
}

fn set_mtime(path: &Path, mtime: i64, follow: bool) -> Result<()> {
    let t = TimeSpec::new(mtime, 0);
    let flag = if follow { UtimensatFlags::FollowSymlink } else { UtimensatFlags::NoFollowSymlink };
    utimensat(None, path, &t, &t, flag).ctx(|| "set mtime".into())
}
