//! `RUN --mount=type=cache` directories: `cache-mounts/<sha256(tenant,
//! id)>/data` under the data dir (so a tenant's builds share a cache and
//! another tenant's with the same id never see it), created once with the mount's uid, gid and mode
//! (atomically, so concurrent first users agree), kept across builds and
//! never part of a layer. `sharing=locked` steps take an exclusive `flock`
//! and wait for each other; a `sharing=private` step that finds the cache
//! in use gets a fresh directory in its bundle that dies with the step;
//! `shared` steps use it at the same time.

use crate::graph::CacheSharing;
use sha2::{Digest as _, Sha256};
use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A cache directory held for one step (the lock is released on drop).
pub struct CacheLease {
    /// The directory to mount.
    pub dir: PathBuf,
    _lock: Option<File>,
}

/// What a cache mount asks for.
pub struct CacheSpec<'a> {
    /// Whose cache (see [`crate::tenant`]).
    pub tenant: &'a str,
    /// Cache id.
    pub id: &'a str,
    /// Concurrent use.
    pub sharing: CacheSharing,
    /// Owner of a new directory.
    pub uid: u32,
    /// Group of a new directory.
    pub gid: u32,
    /// Mode of a new directory.
    pub mode: u32,
}

/// Leases the cache for `spec`; `private_dir` is where a private step
/// whose cache is busy gets its own directory.
pub async fn lease(root: &Path, spec: &CacheSpec<'_>, private_dir: &Path) -> Result<CacheLease, CacheMountError> {
    let base = root.join(dir_name(spec.tenant, spec.id));
    let dir = base.join("data");
    ensure_dir(&base, &dir, spec)?;
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(base.join("lock"))
        .map_err(|e| failed(spec, "open the lock", e))?;
    match spec.sharing {
        CacheSharing::Shared => Ok(CacheLease { dir, _lock: None }),
        CacheSharing::Locked => {
            let lock = tokio::task::spawn_blocking(move || flock(&lock, libc::LOCK_EX).map(|()| lock))
                .await
                .map_err(|e| failed(spec, "lock", std::io::Error::other(e)))?
                .map_err(|e| failed(spec, "lock", e))?;
            Ok(CacheLease { dir, _lock: Some(lock) })
        }
        CacheSharing::Private => match flock(&lock, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => Ok(CacheLease { dir, _lock: Some(lock) }),
            Err(_) => {
                fs::create_dir_all(private_dir.parent().unwrap_or(private_dir))
                    .map_err(|e| failed(spec, "create a private copy", e))?;
                create_owned(private_dir, spec).map_err(|e| failed(spec, "create a private copy", e))?;
                Ok(CacheLease { dir: private_dir.to_path_buf(), _lock: None })
            }
        },
    }
}

/// The directory of `tenant`'s cache `id` under the cache root.
pub fn dir_name(tenant: &str, id: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(tenant.as_bytes());
    hash.update([0]);
    hash.update(id.as_bytes());
    hex::encode(&hash.finalize()[..16])
}

/// Takes the cache's exclusive lock (blocking): `sharing=locked` steps
/// wait for its holder, `private` ones get their own directory.
pub fn lock_exclusive(base: &Path) -> std::io::Result<File> {
    let lock = File::options().create(true).truncate(false).write(true).open(base.join("lock"))?;
    flock(&lock, libc::LOCK_EX)?;
    Ok(lock)
}

/// A cache mount that could not be leased.
#[derive(Debug, thiserror::Error)]
#[error("cache {id:?}: {action}: {source}")]
pub struct CacheMountError {
    /// The cache id.
    id: String,
    /// What failed.
    action: &'static str,
    /// Why.
    #[source]
    source: std::io::Error,
}

fn failed(spec: &CacheSpec<'_>, action: &'static str, source: std::io::Error) -> CacheMountError {
    CacheMountError { id: spec.id.to_string(), action, source }
}

fn flock(f: &File, op: i32) -> std::io::Result<()> {
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Creates `dir` once, owned and moded as asked, via a rename so that
/// concurrent first users see a complete directory.
fn ensure_dir(base: &Path, dir: &Path, spec: &CacheSpec<'_>) -> Result<(), CacheMountError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(base).map_err(|e| failed(spec, "create", e))?;
    let tmp = base.join(format!("new-{}", kiln_snapshotter::SnapshotId::random().as_str()));
    create_owned(&tmp, spec).map_err(|e| failed(spec, "create", e))?;
    if fs::rename(&tmp, dir).is_err() {
        let _ = fs::remove_dir(&tmp);
    }
    if dir.is_dir() {
        Ok(())
    } else {
        let gone = std::io::Error::new(std::io::ErrorKind::NotFound, format!("{} vanished", dir.display()));
        Err(failed(spec, "create", gone))
    }
}

fn create_owned(dir: &Path, spec: &CacheSpec<'_>) -> std::io::Result<()> {
    fs::create_dir(dir)?;
    std::os::unix::fs::chown(dir, Some(spec.uid), Some(spec.gid))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(spec.mode))
}
