//! Unpacking the request tar: `com.openfaas.docker.config` (JSON) at the
//! root and the build context under `context/`. Paths are cleaned (`./`
//! prefixes dropped); absolute paths, `..`, device nodes, links that leave
//! the context, and anything over the configured limits are rejected.
//! Nothing is written outside the target directory: no symlink is followed
//! while unpacking.

use kiln_snapshotter::fsx::{self, clean_relative, fd_path, mkdir_all_at};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, Read};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{symlink, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

pub use crate::wire::{CONFIG_ENTRY, SECRETS_ENTRY};
const MAX_CONFIG_BYTES: u64 = 1 << 20;

pub use crate::wire::BuildConfig;

/// Limits for one request tar.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most entries.
    pub max_entries: u64,
    /// Most file bytes unpacked.
    pub max_bytes: u64,
}

/// Default most entries in a request tar (`--max-entries`): a function's
/// context is its handler and a few files, even with vendored modules.
pub const DEFAULT_MAX_ENTRIES: u64 = 20_000;
/// Default most unpacked bytes of a request tar (`--max-unpacked-mb`).
pub const DEFAULT_MAX_UNPACKED_MB: u64 = 1024;

/// Which client family sent the request, from its config entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// pro-builder's `com.openfaas.docker.config`.
    ProBuilder,
    /// of-builder's `config`; holds the ref as the client gave it.
    Legacy {
        /// The `ref` before lower-casing (the reply's `imageName`).
        given_ref: String,
    },
}

/// The unpacked request.
#[derive(Debug)]
pub struct Intake {
    /// Parsed config.
    pub config: BuildConfig,
    /// The request's shape (decides the reply's).
    pub shape: Shape,
    /// The context directory.
    pub context: PathBuf,
    /// Raw sealed secrets, if sent.
    pub secrets: Option<Vec<u8>>,
    /// `context/Dockerfile`, read once (inside the context, capped) for
    /// the audit digest and the build.
    pub dockerfile: Result<Vec<u8>, super::contextfs::ContextFileError>,
}

/// Why a request tar was refused.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// Malformed or hostile content.
    #[error("{0}")]
    Invalid(String),
    /// A malformed of-builder `config` (answered in of-builder's shape).
    #[error(transparent)]
    InvalidLegacy(#[from] super::legacy::LegacyConfigError),
    /// The client left: unpacking stopped.
    #[error("the client went away while the request was unpacked")]
    Cancelled,
    /// Local failure.
    #[error("unpack request: {0}")]
    Io(#[from] io::Error),
}

/// Reads `inner` until `cancel` is set, then fails every read, so that a
/// request whose client has gone stops unpacking at the next read.
pub struct Cancellable<'a, R> {
    inner: R,
    cancel: &'a AtomicBool,
}

impl<'a, R> Cancellable<'a, R> {
    /// Wraps `inner`.
    pub fn new(inner: R, cancel: &'a AtomicBool) -> Self {
        Self { inner, cancel }
    }
}

impl<R: Read> Read for Cancellable<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "cancelled"));
        }
        self.inner.read(buf)
    }
}

fn invalid(msg: impl Into<String>) -> IntakeError {
    IntakeError::Invalid(msg.into())
}

/// Unpacks `body` into `dir` (which must exist and hold no `context`).
pub fn unpack(body: &[u8], dir: &Path, limits: Limits) -> Result<Intake, IntakeError> {
    unpack_from(body, dir, limits, &AtomicBool::new(false))
}

/// Unpacks the tar read from `body` into `dir/context`, stopping with
/// [`IntakeError::Cancelled`] once `cancel` is set. Every symlink is then
/// resolved through its whole chain; one leading out refuses the request.
pub fn unpack_from(body: impl Read, dir: &Path, limits: Limits, cancel: &AtomicBool) -> Result<Intake, IntakeError> {
    let context = dir.join("context");
    fs::create_dir(&context)?;
    let ctx_fd: OwnedFd = File::open(&context)?.into();
    let mut body = io::BufReader::with_capacity(64 << 10, Cancellable::new(body, cancel));
    check_not_compressed(body.fill_buf().map_err(|e| cancelled_or(e, cancel))?)?;
    let mut archive = tar::Archive::new(body);
    let (mut config, mut legacy, mut secrets) = (None, None, None);
    let (mut entries, mut bytes) = (0u64, 0u64);
    let archive_entries = archive.entries().map_err(|e| invalid(format!("request body is not a tar archive: {e}")))?;
    for entry in archive_entries {
        let mut entry = entry.map_err(|e| match entries {
            _ if cancel.load(Ordering::Relaxed) => IntakeError::Cancelled,
            0 => invalid(format!("request body is not a tar archive: {e}")),
            n => invalid(format!("corrupt tar archive after entry {n}: {e}")),
        })?;
        entries += 1;
        if entries > limits.max_entries {
            return Err(invalid(format!("request tar has more than {} entries", limits.max_entries)));
        }
        check_pax_size(&mut entry)?;
        let raw = entry.path().map_err(|e| invalid(format!("bad entry name: {e}")))?.into_owned();
        check_name(&raw)?;
        if raw.is_absolute() {
            return Err(invalid(format!("absolute path {:?} in request tar", raw)));
        }
        let rel = clean_relative(&raw).map_err(|_| invalid(format!("path {:?} leaves the archive", raw)))?;
        match rel.to_str() {
            Some(CONFIG_ENTRY) => config = Some(read_small(&mut entry, CONFIG_ENTRY)?),
            Some(SECRETS_ENTRY) => secrets = Some(read_small(&mut entry, SECRETS_ENTRY)?),
            Some(super::legacy::CONFIG_ENTRY) => legacy = Some(read_small(&mut entry, super::legacy::CONFIG_ENTRY)?),
            _ => {
                let Ok(inner) = rel.strip_prefix("context") else {
                    continue;
                };
                if inner.as_os_str().is_empty() {
                    continue;
                }
                bytes += entry.header().size().unwrap_or(0);
                if bytes > limits.max_bytes {
                    return Err(invalid(format!("request tar unpacks to more than {} bytes", limits.max_bytes)));
                }
                unpack_entry(&ctx_fd, inner, &mut entry).map_err(|e| match e {
                    IntakeError::Io(io) => cancelled_or(io, cancel),
                    other => other,
                })?;
            }
        }
    }
    super::symlinks::check_context(&context).map_err(|e| invalid(e.to_string()))?;
    let (config, shape) = match (config, legacy) {
        (Some(raw), _) => (parse_config(&raw)?, Shape::ProBuilder),
        (None, Some(raw)) => {
            let (config, given_ref) = super::legacy::parse_config(&raw)?;
            (config, Shape::Legacy { given_ref })
        }
        (None, None) => return Err(invalid(format!("missing {CONFIG_ENTRY} in the request tar"))),
    };
    let dockerfile = super::contextfs::read_dockerfile(&context);
    Ok(Intake { config, shape, context, secrets, dockerfile })
}

/// `e`, unless it was caused by the client leaving.
fn cancelled_or(e: io::Error, cancel: &AtomicBool) -> IntakeError {
    if cancel.load(Ordering::Relaxed) {
        IntakeError::Cancelled
    } else {
        IntakeError::Io(e)
    }
}

/// Parses `com.openfaas.docker.config`.
fn parse_config(raw: &[u8]) -> Result<BuildConfig, IntakeError> {
    let config: BuildConfig =
        serde_json::from_slice(raw).map_err(|e| invalid(format!("{CONFIG_ENTRY}: invalid JSON: {e}")))?;
    if config.image.trim().is_empty() {
        return Err(invalid(format!("{CONFIG_ENTRY}: \"image\" is required")));
    }
    Ok(config)
}

/// Longest entry name, as Linux's `PATH_MAX`.
pub const MAX_NAME: usize = 4095;
/// Longest path component (`NAME_MAX`).
pub const MAX_COMPONENT: usize = 255;
/// Deepest directory nesting in a context.
pub const MAX_DEPTH: usize = 256;
/// Most bytes of PAX extended-header records for one entry.
pub const MAX_PAX: usize = 64 << 10;

/// A compressed body gets a precise answer rather than a tar parse error.
fn check_not_compressed(body: &[u8]) -> Result<(), IntakeError> {
    let kind = match body {
        [0x1f, 0x8b, ..] => "gzip",
        [0x28, 0xb5, 0x2f, 0xfd, ..] => "zstd",
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => "xz",
        [b'B', b'Z', b'h', ..] => "bzip2",
        _ => return Ok(()),
    };
    Err(invalid(format!("request body is {kind}-compressed: send an uncompressed tar")))
}

/// Entry names are UTF-8 and within Linux's path limits.
fn check_name(raw: &Path) -> Result<(), IntakeError> {
    let Some(name) = raw.to_str() else {
        return Err(invalid(format!("entry name {:?} is not UTF-8: file names must be UTF-8", raw)));
    };
    let shown = || name.chars().take(120).collect::<String>();
    if name.len() > MAX_NAME {
        return Err(invalid(format!("entry name {}… is too long ({} bytes, at most {MAX_NAME})", shown(), name.len())));
    }
    if name.split('/').any(|c| c.len() > MAX_COMPONENT) {
        return Err(invalid(format!(
            "entry name {}: a component is too long (at most {MAX_COMPONENT} bytes)",
            shown()
        )));
    }
    if name.split('/').filter(|c| !c.is_empty() && *c != ".").count() > MAX_DEPTH + 1 {
        return Err(invalid(format!("entry name {}…: nested deeper than {MAX_DEPTH} directories", shown())));
    }
    Ok(())
}

/// Refuses entries whose PAX records exceed [`MAX_PAX`] bytes.
fn check_pax_size<R: Read>(entry: &mut tar::Entry<R>) -> Result<(), IntakeError> {
    let Ok(Some(records)) = entry.pax_extensions() else { return Ok(()) };
    let size: usize = records.flatten().map(|r| r.key_bytes().len() + r.value_bytes().len()).sum();
    if size > MAX_PAX {
        return Err(invalid(format!("a PAX header of {size} bytes is larger than the {MAX_PAX} allowed")));
    }
    Ok(())
}

fn read_small(entry: &mut impl Read, name: &str) -> Result<Vec<u8>, IntakeError> {
    let mut buf = Vec::new();
    entry.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_CONFIG_BYTES {
        return Err(invalid(format!("{name} is larger than {MAX_CONFIG_BYTES} bytes")));
    }
    Ok(buf)
}

/// True when `target`, seen from the directory holding `rel`, stays in the
/// context.
fn link_stays_inside(rel: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth = rel.components().count() as i64 - 1;
    for c in target.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

fn unpack_entry<R: Read>(ctx: &OwnedFd, rel: &Path, entry: &mut tar::Entry<R>) -> Result<(), IntakeError> {
    let name = rel.file_name().expect("non-empty");
    let parent = mkdir_all_at(ctx, rel.parent().unwrap_or(Path::new("")))
        .map_err(|e| invalid(format!("context/{}: {e}", rel.display())))?;
    let path = fd_path(&parent, name);
    let mode = entry.header().mode().unwrap_or(0o644) & 0o7777;
    let here = || format!("context/{}", rel.display());
    match entry.header().entry_type() {
        tar::EntryType::Directory => {
            // Opened without following a symlink: a directory entry over a
            // link must not change the mode of what the link points at.
            let dir = mkdir_all_at(&parent, Path::new(name)).map_err(|e| invalid(format!("{}: {e}", here())))?;
            fs::set_permissions(fd_path(&dir, "".as_ref()), fs::Permissions::from_mode(mode | 0o700))?;
        }
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            let _ = fs::remove_file(&path);
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)?;
            io::copy(entry, &mut f)?;
            f.set_permissions(fs::Permissions::from_mode(mode))?;
            if let Ok(mtime) = entry.header().mtime() {
                let _ = f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime));
            }
        }
        tar::EntryType::Symlink => {
            let target = entry.link_name()?.ok_or_else(|| invalid(format!("{}: symlink without target", here())))?;
            if !link_stays_inside(rel, &target) {
                return Err(invalid(format!("{}: symlink to {:?} leaves the build context", here(), target)));
            }
            let _ = fs::remove_file(&path);
            symlink(&*target, &path)?;
        }
        tar::EntryType::Link => {
            let target = entry.link_name()?.ok_or_else(|| invalid(format!("{}: hardlink without target", here())))?;
            let target =
                clean_relative(&target).map_err(|_| invalid(format!("{}: hardlink leaves the archive", here())))?;
            let inner = target
                .strip_prefix("context")
                .map_err(|_| invalid(format!("{}: hardlink to {:?} leaves the build context", here(), target)))?;
            let src = fsx::open_in_root(ctx, inner, libc::O_PATH | libc::O_NOFOLLOW)
                .map_err(|_| invalid(format!("{}: hardlink target {:?} not found", here(), target)))?;
            let _ = fs::remove_file(&path);
            // linkat(AT_SYMLINK_FOLLOW) on /proc/self/fd/N links the inode the
            // O_PATH descriptor names (plain link(2) would not follow it).
            let flags = nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW;
            nix::unistd::linkat(None, &fd_path(&src, "".as_ref()), None, &path, flags)
                .map_err(|e| invalid(format!("{}: hardlink to {:?}: {e}", here(), target)))?;
        }
        tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => {}
        other => return Err(invalid(format!("{}: {other:?} entries are not allowed in a build context", here()))),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        b.into_inner().unwrap()
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, data).unwrap();
    }

    fn raw_name(b: &mut tar::Builder<Vec<u8>>, path: &str, kind: tar::EntryType, link: &str) {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(kind);
        h.set_size(0);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, &[][..]).unwrap();
    }

    const LIMITS: Limits = Limits { max_entries: 1000, max_bytes: 1 << 20 };

    #[test]
    fn unpacks_go_sdk_shape() {
        let body = tar_with(|b| {
            file(b, "context/Dockerfile", b"FROM scratch\n");
            file(b, "./context/sub/a.txt", b"a");
            file(b, CONFIG_ENTRY, br#"{"image":"r/x:1","buildArgs":{"A":""},"unknown":1}"#);
        });
        let d = tempfile::tempdir().unwrap();
        let got = unpack(&body, d.path(), LIMITS).unwrap();
        assert_eq!(got.config.image, "r/x:1");
        assert_eq!(got.config.build_args.unwrap()["A"], "");
        assert_eq!(fs::read(d.path().join("context/sub/a.txt")).unwrap(), b"a");
    }

    #[test]
    fn rejects_hostile_entries() {
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("leaves", tar_with(|b| raw_name(b, "context/../../etc/x", tar::EntryType::Regular, ""))),
            ("absolute", tar_with(|b| raw_name(b, "/etc/x", tar::EntryType::Regular, ""))),
            ("leaves the build context", tar_with(|b| raw_name(b, "context/l", tar::EntryType::Symlink, "../../etc"))),
            (
                "leaves the build context",
                tar_with(|b| raw_name(b, "context/l", tar::EntryType::Symlink, "/etc/passwd")),
            ),
            ("not allowed", tar_with(|b| raw_name(b, "context/dev", tar::EntryType::Char, ""))),
            ("missing", tar_with(|b| file(b, "context/Dockerfile", b"x"))),
        ];
        for (want, body) in cases {
            let d = tempfile::tempdir().unwrap();
            let err = unpack(&body, d.path(), LIMITS).unwrap_err().to_string();
            assert!(err.contains(want), "{want}: {err}");
        }
        let d = tempfile::tempdir().unwrap();
        let many = tar_with(|b| (0..5).for_each(|i| file(b, &format!("context/{i}"), b"x")));
        let err = unpack(&many, d.path(), Limits { max_entries: 3, max_bytes: 10 }).unwrap_err();
        assert!(err.to_string().contains("more than 3 entries"));
    }

    /// Sets `flag` once `after` bytes were read.
    struct TripAfter<'a> {
        data: &'a [u8],
        after: usize,
        flag: &'a AtomicBool,
    }

    impl Read for TripAfter<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.data.read(buf)?;
            self.after = self.after.saturating_sub(n);
            if self.after == 0 {
                self.flag.store(true, Ordering::Relaxed);
            }
            Ok(n)
        }
    }

    #[test]
    fn unpacking_stops_once_the_client_has_left() {
        let body = tar_with(|b| {
            file(b, CONFIG_ENTRY, br#"{"image":"a"}"#);
            (0..2000).for_each(|i| file(b, &format!("context/f{i}"), &[b'x'; 600]));
        });
        let d = tempfile::tempdir().unwrap();
        let flag = AtomicBool::new(false);
        let reader = TripAfter { data: &body, after: 200 << 10, flag: &flag };
        let err = unpack_from(reader, d.path(), LIMITS, &flag).unwrap_err();
        assert!(matches!(err, IntakeError::Cancelled), "{err}");
        let written = fs::read_dir(d.path().join("context")).unwrap().count();
        assert!(written > 0 && written < 400, "stopped early: {written} of 2000 files");
    }

    #[test]
    fn a_directory_entry_over_a_symlink_changes_nothing_through_it() {
        let body = tar_with(|b| {
            raw_name(b, "context/l", tar::EntryType::Symlink, "sub");
            raw_name(b, "context/sub", tar::EntryType::Directory, "");
            raw_name(b, "context/l", tar::EntryType::Directory, "");
            file(b, CONFIG_ENTRY, br#"{"image":"a"}"#);
        });
        let d = tempfile::tempdir().unwrap();
        let err = unpack(&body, d.path(), LIMITS).unwrap_err().to_string();
        assert!(err.contains("context/l"), "{err}");
        let mode = fs::metadata(d.path().join("context/sub")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o744 | 0o700, "the link's target keeps the mode of its own entry");
    }

    #[test]
    fn writes_through_no_symlink() {
        let body = tar_with(|b| {
            raw_name(b, "context/link", tar::EntryType::Symlink, "sub");
            file(b, "context/link/escape", b"x");
            file(b, CONFIG_ENTRY, br#"{"image":"a"}"#);
        });
        let d = tempfile::tempdir().unwrap();
        let err = unpack(&body, d.path(), LIMITS).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");
    }
}
