//! Files of the build context: COPY pattern expansion (Go
//! `filepath.Match` style per path component; a wildcard may match
//! nothing, a missing literal path fails) and content hashing for cache
//! keys (paths, types, modes, link targets and file contents; never
//! mtimes), and `.dockerignore` pruning. Everything is resolved inside
//! the context root.

use crate::glob::glob_match;
use kiln_snapshotter::fsx;
use sha2::{Digest as _, Sha256};
use std::fs::{self, File};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A COPY source that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The context directory itself cannot be opened.
    #[error("open build context: {0}")]
    Context(#[source] io::Error),
    /// A path with `..` past the root.
    #[error("{0}: source path leaves the build context")]
    Escapes(String),
    /// A literal path that does not exist.
    #[error("\"/{0}\": not found")]
    NotFound(String),
    /// The files could not be read for hashing.
    #[error("read build context: {0}")]
    Read(#[source] io::Error),
}

/// Expands COPY source patterns to existing context paths (relative,
/// without leading `/`), in pattern order, then sorted per pattern.
pub fn expand_sources(context: &Path, patterns: &[String]) -> Result<Vec<String>, SourceError> {
    let root = File::open(context).map_err(SourceError::Context)?;
    let mut out = Vec::new();
    for pattern in patterns {
        let clean = fsx::clean_relative(Path::new(pattern)).map_err(|_| SourceError::Escapes(pattern.to_string()))?;
        let clean = clean.to_string_lossy().to_string();
        if !has_glob(&clean) {
            fsx::open_in_root(&root, Path::new(&clean), libc::O_PATH)
                .map_err(|_| SourceError::NotFound(clean.clone()))?;
            out.push(clean);
            continue;
        }
        let mut matches = Vec::new();
        glob_walk(&root, "", &clean.split('/').collect::<Vec<_>>(), &mut matches);
        matches.sort();
        out.extend(matches);
    }
    Ok(out)
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn glob_walk(root: &File, prefix: &str, parts: &[&str], out: &mut Vec<String>) {
    let Some((first, rest)) = parts.split_first() else {
        out.push(prefix.trim_end_matches('/').to_string());
        return;
    };
    let join = |name: &str| {
        if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}{name}")
        }
    };
    if !has_glob(first) {
        let p = join(first);
        if fsx::open_in_root(root, Path::new(&p), libc::O_PATH).is_ok() {
            glob_walk(root, &format!("{p}/"), rest, out);
        }
        return;
    }
    let dir = if prefix.is_empty() { ".".to_string() } else { prefix.to_string() };
    let Ok(fd) = fsx::open_in_root(root, Path::new(&dir), libc::O_RDONLY | libc::O_DIRECTORY) else {
        return;
    };
    let Ok(entries) = fs::read_dir(fsx::fd_path(&fd, "".as_ref())) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if glob_match(first, &name) {
            glob_walk(root, &format!("{}/", join(&name)), rest, out);
        }
    }
}

/// Removes what `.dockerignore` excludes from an unpacked context, as if
/// the client had never sent it (so COPY of an excluded path fails with
/// "not found", as with BuildKit). A directory that is excluded but holds
/// a re-included (`!`) path keeps that path. Symlinks are never followed.
/// Returns how many entries were removed.
pub fn apply_dockerignore(context: &Path, ignore: &crate::dockerignore::DockerIgnore) -> io::Result<usize> {
    prune(context, "", ignore)
}

fn prune(root: &Path, rel: &str, ignore: &crate::dockerignore::DockerIgnore) -> io::Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(root.join(rel))? {
        let name = entry?.file_name().to_string_lossy().to_string();
        let child = if rel.is_empty() { name } else { format!("{rel}/{name}") };
        let path = root.join(&child);
        let excluded = ignore.is_excluded(&child);
        if fs::symlink_metadata(&path)?.is_dir() {
            removed += prune(root, &child, ignore)?;
            if excluded && fs::read_dir(&path)?.next().is_none() {
                fs::remove_dir(&path)?;
                removed += 1;
            }
        } else if excluded {
            fs::remove_file(&path)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// A content hash of the selected sources (the cache-key input of COPY).
pub fn hash_sources(context: &Path, sources: &[String]) -> io::Result<String> {
    let root = File::open(context)?;
    let mut h = Sha256::new();
    for src in sources {
        let fd = fsx::open_in_root(&root, Path::new(src), libc::O_PATH)?;
        h.update(format!("source {src}\0").as_bytes());
        hash_entry(&mut h, &fd, "", "")?;
    }
    Ok(hex::encode(h.finalize()))
}

fn hash_entry(h: &mut Sha256, dir: &OwnedFd, name: &str, rel: &str) -> io::Result<()> {
    let path = fsx::fd_path(dir, name.as_ref());
    let md = if name.is_empty() { fs::metadata(&path)? } else { fs::symlink_metadata(&path)? };
    let ft = md.file_type();
    h.update(format!("{rel}\0{:o}\0", md.mode()).as_bytes());
    if ft.is_symlink() {
        h.update(fs::read_link(&path)?.as_os_str().as_encoded_bytes());
    } else if ft.is_file() {
        let mut file = File::open(&path)?;
        let mut fh = Sha256::new();
        io::copy(&mut file, &mut fh)?;
        h.update(fh.finalize());
    } else if ft.is_dir() {
        let sub = if name.is_empty() { dir.try_clone()? } else { fsx::openat_dir(dir, name.as_ref())? };
        let mut names: Vec<String> = fs::read_dir(fsx::fd_path(&sub, "".as_ref()))?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().to_string()))
            .collect::<io::Result<_>>()?;
        names.sort();
        for n in names {
            hash_entry(h, &sub, &n, &format!("{rel}/{n}"))?;
        }
    }
    h.update(b"\n");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_and_hashes_by_content_not_mtime() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("dir/sub")).unwrap();
        fs::write(d.path().join("dir/sub/a.txt"), "a").unwrap();
        fs::write(d.path().join("b.json"), "b").unwrap();
        fs::write(d.path().join("c.json"), "c").unwrap();
        let got = expand_sources(d.path(), &["dir".into(), "*.json".into(), "*.none".into()]).unwrap();
        assert_eq!(got, vec!["dir", "b.json", "c.json"]);
        let err = expand_sources(d.path(), &["missing".into()]).unwrap_err();
        assert!(matches!(&err, SourceError::NotFound(p) if p == "missing"), "{err}");
        assert_eq!(err.to_string(), "\"/missing\": not found");
        assert!(matches!(expand_sources(d.path(), &["../etc".into()]), Err(SourceError::Escapes(_))));
        let before = hash_sources(d.path(), &got).unwrap();
        let f = File::options().write(true).open(d.path().join("b.json")).unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(hash_sources(d.path(), &got).unwrap(), before, "mtime must not matter");
        fs::write(d.path().join("dir/sub/a.txt"), "changed").unwrap();
        assert_ne!(hash_sources(d.path(), &got).unwrap(), before);
    }
}
