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
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
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
/// without leading `/`), in pattern order, then sorted per pattern. A
/// pattern with a pivot (`a/b/./c`, BuildKit's `--parents` marker) keeps it
/// in its matches (`a/b/./c/d`): the part after it is what `--parents`
/// recreates under the destination.
pub fn expand_sources(context: &Path, patterns: &[String]) -> Result<Vec<String>, SourceError> {
    let root = File::open(context).map_err(SourceError::Context)?;
    let mut out = Vec::new();
    for pattern in patterns {
        match pivot_split(pattern) {
            None => out.extend(expand_under(&root, "", pattern)?),
            Some((head, tail)) => {
                for base in expand_under(&root, "", head)? {
                    let found = expand_under(&root, &base, tail)?;
                    out.extend(found.into_iter().map(|m| format!("{base}/./{m}")));
                }
            }
        }
    }
    Ok(out)
}

/// `a/b/./c/./d` → (`a/b`, `c/d`): split at the first `/./` (a leading
/// `./` is not a pivot).
fn pivot_split(pattern: &str) -> Option<(&str, &str)> {
    let trimmed = pattern.trim_start_matches('/');
    let at = trimmed.find("/./")?;
    Some((&trimmed[..at], &trimmed[at + 3..]))
}

/// The paths below `base` (context-relative; `""` is the root) that
/// `pattern` matches, relative to `base`.
fn expand_under(root: &File, base: &str, pattern: &str) -> Result<Vec<String>, SourceError> {
    let clean = fsx::clean_relative(Path::new(pattern)).map_err(|_| SourceError::Escapes(pattern.to_string()))?;
    let clean = clean.to_string_lossy().to_string();
    let full = |rel: &str| match (base.is_empty(), rel.is_empty()) {
        (true, _) => rel.to_string(),
        (false, true) => base.to_string(),
        (false, false) => format!("{base}/{rel}"),
    };
    if !has_glob(&clean) {
        fsx::open_in_root(root, Path::new(&full(&clean)), libc::O_PATH)
            .map_err(|_| SourceError::NotFound(full(&clean)))?;
        return Ok(vec![clean]);
    }
    let prefix = if base.is_empty() { String::new() } else { format!("{base}/") };
    let mut matches = Vec::new();
    // Consecutive `**` mean what one does; collapsed, the walk stays linear.
    let mut parts: Vec<&str> = clean.split('/').collect();
    parts.dedup_by(|a, b| *a == "**" && *b == "**");
    glob_walk(root, &prefix, &parts, &mut matches);
    matches.sort();
    matches.dedup();
    Ok(matches.into_iter().map(|m| m.strip_prefix(&prefix).unwrap_or(&m).to_string()).collect())
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
    if *first == "**" {
        // Any number of directories, none included.
        glob_walk(root, prefix, rest, out);
        for name in dir_entries(root, prefix) {
            let p = join(&name);
            if fsx::open_in_root(root, Path::new(&p), libc::O_PATH | libc::O_DIRECTORY).is_ok() {
                glob_walk(root, &format!("{p}/"), parts, out);
            }
        }
        return;
    }
    if !has_glob(first) {
        let p = join(first);
        if fsx::open_in_root(root, Path::new(&p), libc::O_PATH).is_ok() {
            glob_walk(root, &format!("{p}/"), rest, out);
        }
        return;
    }
    for name in dir_entries(root, prefix) {
        if glob_match(first, &name) {
            glob_walk(root, &format!("{}/", join(&name)), rest, out);
        }
    }
}

/// The names in the context directory `prefix` (`""` is the root; none if
/// it is not a directory), without following a final symlink out.
fn dir_entries(root: &File, prefix: &str) -> Vec<String> {
    let dir = if prefix.is_empty() { ".".to_string() } else { prefix.to_string() };
    let Ok(fd) = fsx::open_in_root(root, Path::new(&dir), libc::O_RDONLY | libc::O_DIRECTORY) else {
        return Vec::new();
    };
    let Ok(entries) = fs::read_dir(fsx::fd_path(&fd, "".as_ref())) else {
        return Vec::new();
    };
    entries.flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect()
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

/// The context's digest as provenance records it: SHA-256 over the
/// `sha256sum` listing of its regular files, sorted by path, so anyone can
/// recompute it with coreutils:
/// `find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum`.
/// Symbolic links are not followed (nor listed).
pub fn context_digest(context: &Path) -> io::Result<String> {
    let mut files = Vec::new();
    list_files(context, "", &mut files)?;
    files.sort();
    let mut listing = Sha256::new();
    for rel in files {
        let mut file = fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(context.join(&rel))?;
        let mut h = Sha256::new();
        io::copy(&mut file, &mut h)?;
        listing.update(format!("{}  ./{rel}\n", hex::encode(h.finalize())).as_bytes());
    }
    Ok(hex::encode(listing.finalize()))
}

fn list_files(dir: &Path, rel: &str, out: &mut Vec<String>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        let child = if rel.is_empty() { name } else { format!("{rel}/{name}") };
        let ft = entry.file_type()?;
        if ft.is_dir() {
            list_files(&entry.path(), &child, out)?;
        } else if ft.is_file() {
            out.push(child);
        }
    }
    Ok(())
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
    fn pivots_and_double_stars_expand_like_buildkit() {
        let d = tempfile::tempdir().unwrap();
        for dir in ["a/b/c/d/e", "a/b2/c/d/e", "a/b/c2/d/e2"] {
            fs::create_dir_all(d.path().join(dir)).unwrap();
        }
        for file in ["a/b/c/d/e/bay", "a/b2/c/d/e/bar", "a/b/c2/d/e2/baz"] {
            fs::write(d.path().join(file), "x").unwrap();
        }
        let expand = |p: &str| expand_sources(d.path(), &[p.to_string()]).unwrap();
        assert_eq!(expand("/a/b/./c/d"), ["a/b/./c/d"]);
        assert_eq!(expand("a/./b/./c"), ["a/./b/c"]);
        assert_eq!(expand("./a/b/c"), ["a/b/c"], "a leading ./ is no pivot");
        assert_eq!(expand("a/b*/./c/**/e"), ["a/b/./c/d/e", "a/b2/./c/d/e"]);
        assert_eq!(expand("a/**/baz"), ["a/b/c2/d/e2/baz"]);
        assert_eq!(expand("a/**/**/**/bar"), ["a/b2/c/d/e/bar"]);
        assert!(expand("a/nothing*/./c").is_empty());
        assert!(
            matches!(expand_sources(d.path(), &["a/./missing".into()]), Err(SourceError::NotFound(p)) if p == "a/missing")
        );
    }

    #[test]
    fn the_context_digest_is_what_coreutils_computes() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("b/c")).unwrap();
        fs::write(d.path().join("b/c/x"), "x").unwrap();
        fs::write(d.path().join("a b"), "y").unwrap();
        fs::write(d.path().join("B"), "z").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("link")).unwrap();
        let script = "find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum";
        let out = std::process::Command::new("sh").args(["-c", script]).current_dir(d.path()).output().unwrap();
        let expected = String::from_utf8(out.stdout).unwrap();
        assert_eq!(context_digest(d.path()).unwrap(), expected.split_whitespace().next().unwrap());
    }

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
