//! The body of the `kiln __file-op` helper: COPY from the build context and
//! WORKDIR creation, applied to the mounted overlay of the step, so that
//! only real changes reach the upper dir. Destination paths resolve inside
//! the rootfs (`RESOLVE_IN_ROOT`: image symlinks such as `/lib → usr/lib`
//! are honoured but cannot escape); sources resolve inside the context.

#[path = "untar.rs"]
mod untar;

use crate::chmod::ModeChange;
use kiln_runtime::users;
use kiln_snapshotter::fsx::{self, fd_path};
use kiln_snapshotter::overlay::{make_mounts_private, mount_all, Mount};
use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;
use serde::{Deserialize, Serialize};
use std::ffi::OsStr;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{lchown, symlink, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A file action with its sources already expanded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PlannedAction {
    /// COPY.
    Copy {
        /// Context-relative sources.
        sources: Vec<String>,
        /// Absolute destination.
        dest: String,
        /// `--chown`.
        chown: Option<String>,
        /// `--chmod`.
        chmod: Option<crate::chmod::Chmod>,
        /// Copy from this node input (a stage or image) instead of the
        /// context; `sources` are then unexpanded patterns.
        #[serde(default)]
        from_input: Option<usize>,
        /// The source's snapshot chain, topmost first (set by the solver).
        #[serde(default)]
        source_mounts: Vec<Mount>,
        /// Here-document files.
        #[serde(default)]
        inline: Vec<crate::graph::InlineFile>,
        /// ADD: extract tar archives.
        #[serde(default)]
        unpack: bool,
        /// `--exclude` patterns.
        #[serde(default)]
        exclude: Vec<String>,
        /// `--parents`.
        #[serde(default)]
        parents: bool,
    },
    /// WORKDIR.
    Mkdir {
        /// Absolute path.
        path: String,
        /// USER owning created directories.
        owner: String,
    },
}

impl PlannedAction {
    /// A plain COPY of context files to `dest` (no flags).
    pub fn copy(sources: &[&str], dest: &str) -> Self {
        PlannedAction::Copy {
            sources: sources.iter().map(|s| s.to_string()).collect(),
            dest: dest.into(),
            chown: None,
            chmod: None,
            from_input: None,
            source_mounts: Vec::new(),
            inline: Vec::new(),
            unpack: false,
            exclude: Vec::new(),
            parents: false,
        }
    }
}

/// What the server asks the helper to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileOpRequest {
    /// The step's overlay.
    pub rootfs: Vec<Mount>,
    /// Where to mount it.
    pub mountpoint: PathBuf,
    /// The unpacked build context.
    pub context: PathBuf,
    /// Actions in order.
    pub actions: Vec<PlannedAction>,
    /// Most bytes one archive ADD extracts may unpack to.
    pub max_archive_bytes: u64,
}

/// What the helper reports back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileOpResult {
    /// What went wrong (None: success).
    pub error: Option<String>,
}

type Res<T> = Result<T, String>;

fn io_err(what: impl std::fmt::Display) -> impl FnOnce(io::Error) -> String {
    move |e| format!("{what}: {e}")
}

/// Runs the actions; called in the helper process.
pub fn run_file_op(req: &FileOpRequest) -> Res<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare: {e}"))?;
    make_mounts_private().map_err(|e| e.to_string())?;
    fs::create_dir_all(&req.mountpoint).map_err(io_err("create mountpoint"))?;
    mount_all(&req.rootfs, &req.mountpoint).map_err(|e| e.to_string())?;
    let root: OwnedFd = File::open(&req.mountpoint).map_err(io_err("open rootfs"))?.into();
    let context = File::open(&req.context).map_err(io_err("open build context"))?;
    for action in &req.actions {
        match action {
            PlannedAction::Copy {
                sources,
                dest,
                chown,
                chmod,
                from_input,
                source_mounts,
                inline,
                unpack,
                exclude,
                parents,
            } => {
                let chown_ids = chown.as_deref().map(|c| resolve_chown(&req.mountpoint, c));
                let owner = match chown_ids {
                    Some(ids) => Owner::Fixed(ids),
                    None if from_input.is_some() => Owner::Preserve,
                    None => Owner::Fixed((0, 0)),
                };
                let change = chmod.as_ref().map(|c| c.change()).transpose().map_err(|e| e.to_string())?;
                let spec = CopySpec {
                    owner,
                    chmod: change.clone(),
                    exclude: crate::dockerignore::DockerIgnore::parse(&exclude.join("\n")),
                    parents: *parents,
                    links: Default::default(),
                    archive_limit: req.max_archive_bytes,
                    chown: chown_ids,
                };
                let dest_is_dir = dest.ends_with('/') || sources.len() + inline.len() > 1;
                write_inline(&root, inline, dest, dest_is_dir, owner.created(), change.as_ref())?;
                match from_input {
                    None if sources.is_empty() && !inline.is_empty() => {}
                    None if *unpack => add(&root, &context, sources, dest, &spec)?,
                    None => copy(&root, &context, sources, dest, &spec)?,
                    Some(n) => {
                        let dir = req.mountpoint.with_file_name(format!("src-{n}"));
                        fs::create_dir_all(&dir).map_err(io_err("create source mountpoint"))?;
                        mount_all(source_mounts, &dir).map_err(|e| e.to_string())?;
                        let expanded = crate::sources::expand_sources(&dir, sources).map_err(|e| e.to_string())?;
                        let source = File::open(&dir).map_err(io_err("open copy source"))?;
                        if *unpack {
                            add(&root, &source, &expanded, dest, &spec)?;
                        } else {
                            copy(&root, &source, &expanded, dest, &spec)?;
                        }
                    }
                }
            }
            PlannedAction::Mkdir { path, owner } => {
                ensure_dir(&root, path, users::file_owner(&req.mountpoint, owner), 0o755)?;
            }
        }
    }
    Ok(())
}

/// `--chown` value → uid/gid, names looked up in the destination rootfs
/// as BuildKit's file ops look them up ([`users::file_owner`]).
fn resolve_chown(rootfs: &Path, spec: &str) -> (u32, u32) {
    users::file_owner(rootfs, spec)
}

/// Who owns copied entries.
#[derive(Debug, Clone, Copy)]
enum Owner {
    /// `--chown`, or root for context files.
    Fixed((u32, u32)),
    /// `COPY --from` without `--chown`: keep the source's owners.
    Preserve,
}

impl Owner {
    fn of(self, md: &Metadata) -> (u32, u32) {
        match self {
            Owner::Fixed(ids) => ids,
            Owner::Preserve => (md.uid(), md.gid()),
        }
    }

    /// Owner of directories COPY creates for the destination.
    fn created(self) -> (u32, u32) {
        match self {
            Owner::Fixed(ids) => ids,
            Owner::Preserve => (0, 0),
        }
    }
}

/// How one COPY treats what it copies.
struct CopySpec {
    owner: Owner,
    chmod: Option<ModeChange>,
    exclude: crate::dockerignore::DockerIgnore,
    parents: bool,
    /// Most bytes an extracted archive may unpack to.
    archive_limit: u64,
    /// `--chown`'s owner, when given (extracted archives keep their own
    /// owners otherwise).
    chown: Option<(u32, u32)>,
    /// First copy of each multiply-linked source inode, so later names
    /// become hardlinks again.
    links: std::cell::RefCell<std::collections::HashMap<(u64, u64), (OwnedFd, String)>>,
}

impl CopySpec {
    /// The mode a copied entry whose source mode is `mode` gets.
    fn mode(&self, mode: u32, is_dir: bool) -> u32 {
        let mode = mode & 0o7777;
        self.chmod.as_ref().map_or(mode, |c| c.apply(mode, is_dir))
    }

    /// Whether any of the paths naming an entry is excluded.
    fn skips(&self, paths: &[&str]) -> bool {
        paths.iter().any(|p| self.exclude.is_excluded(p))
    }
}

fn copy(root: &OwnedFd, source: &File, sources: &[String], dest: &str, spec: &CopySpec) -> Res<()> {
    let dest_trim = dest.trim_end_matches('/');
    let into_dir = dest.ends_with('/') || sources.len() > 1 || spec.parents || is_dir_in_root(root, dest_trim);
    let ids = spec.owner.created();
    let dir_mode = spec.mode(0o755, true);
    if sources.is_empty() && dest.ends_with('/') {
        // Wildcards that matched nothing still make the destination, as in BuildKit.
        ensure_dir(root, dest_trim, ids, dir_mode)?;
    }
    for src in sources.iter().filter(|s| !spec.skips(&[s])) {
        let fd = fsx::open_in_root(source, Path::new(src), libc::O_PATH)
            .map_err(io_err(format!("\"/{src}\": not found")))?;
        let md = fs::metadata(fd_path(&fd, OsStr::new(""))).map_err(io_err(format!("stat {src}")))?;
        // `--parents` recreates the path after the pivot (`a/./b`), or all of it.
        let kept = src.split_once("/./").map_or(src.as_str(), |(_, after)| after);
        let base = if spec.parents { format!("{dest_trim}/{kept}") } else { dest_trim.to_string() };
        if md.is_dir() {
            let target = ensure_dir(root, if base.is_empty() { "/" } else { &base }, ids, dir_mode)?;
            copy_dir_contents(&fd, &target, spec, "", src)?;
            continue;
        }
        let (parent, name) = if spec.parents {
            split_dest(&base)
        } else if into_dir {
            let base = Path::new(src).file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            (dest_trim.to_string(), base)
        } else {
            let p = Path::new(dest_trim);
            let parent = p.parent().map_or("/".to_string(), |p| p.to_string_lossy().to_string());
            (parent, p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default())
        };
        let parent_fd = ensure_dir(root, &parent, ids, dir_mode)?;
        copy_entry(&fd_path(&fd, OsStr::new("")), &md, &parent_fd, &name, spec)?;
    }
    Ok(())
}

/// ADD: tar archives (plain, gzip, zstd, xz or bzip2, judged by content) are extracted
/// into the destination directory keeping the archive's owners and modes;
/// everything else is copied as COPY would.
fn add(root: &OwnedFd, source: &File, sources: &[String], dest: &str, spec: &CopySpec) -> Res<()> {
    let (archives, plain): (Vec<String>, Vec<String>) =
        sources.iter().cloned().partition(|s| is_tar_archive(source, s));
    if !plain.is_empty() {
        copy(root, source, &plain, dest, spec)?;
    }
    for a in archives {
        let src = fsx::open_in_root(source, Path::new(&a), libc::O_RDONLY).map_err(io_err(format!("open {a}")))?;
        untar::extract(root, dest.trim_end_matches('/'), File::from(src), spec.chown, spec.archive_limit)
            .map_err(|e| format!("extract {a}: {e}"))?;
    }
    Ok(())
}

fn is_tar_archive(context: &File, rel: &str) -> bool {
    let Ok(fd) = fsx::open_in_root(context, Path::new(rel), libc::O_RDONLY) else { return false };
    let file = File::from(fd);
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return false;
    }
    let mut head = Vec::new();
    let Ok(decoded) = kiln_snapshotter::compression::decoder(io::BufReader::new(file)) else { return false };
    let read = io::Read::read_to_end(&mut io::Read::take(decoded, 512), &mut head);
    read.is_ok() && head.len() == 512 && &head[257..262] == b"ustar"
}

/// Writes here-document files (mode 0644 unless `--chmod`).
fn write_inline(
    root: &OwnedFd,
    files: &[crate::graph::InlineFile],
    dest: &str,
    into_dir: bool,
    ids: (u32, u32),
    chmod: Option<&ModeChange>,
) -> Res<()> {
    let dest_trim = dest.trim_end_matches('/');
    let mode = |default, is_dir| chmod.map_or(default, |c| c.apply(default, is_dir));
    let into_dir = into_dir || is_dir_in_root(root, dest_trim);
    for f in files {
        let (parent, name) = if into_dir { (dest_trim.to_string(), f.name.clone()) } else { split_dest(dest_trim) };
        let parent_fd = ensure_dir(root, &parent, ids, mode(0o755, true))?;
        let path = fd_path(&parent_fd, OsStr::new(&name));
        if fs::symlink_metadata(&path).is_ok_and(|m| !m.is_dir()) {
            fs::remove_file(&path).map_err(io_err(format!("replace {name}")))?;
        }
        let mut out = create_new_file(&path, &name)?;
        io::Write::write_all(&mut out, f.content.as_bytes()).map_err(io_err(format!("write {name}")))?;
        drop(out);
        lchown(&path, Some(ids.0), Some(ids.1)).map_err(io_err("chown"))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode(0o644, false))).map_err(io_err("chmod"))?;
    }
    Ok(())
}

fn join_rel(base: &str, name: &std::ffi::OsStr) -> String {
    let name = name.to_string_lossy();
    if base.is_empty() {
        name.to_string()
    } else {
        format!("{base}/{name}")
    }
}

/// `/a/b/c` → (`/a/b`, `c`).
fn split_dest(dest: &str) -> (String, String) {
    let p = Path::new(dest);
    let parent = p.parent().map_or("/".to_string(), |p| p.to_string_lossy().to_string());
    (parent, p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default())
}

fn is_dir_in_root(root: &OwnedFd, path: &str) -> bool {
    fsx::open_in_root(root, Path::new(path), libc::O_PATH | libc::O_DIRECTORY).is_ok()
}

/// Most symlinks [`ensure_dir`] follows for one path (the kernel's limit).
const MAX_DIR_LINKS: usize = 40;

/// Opens `path` in the rootfs, creating missing directories with `mode`
/// and owner `ids`; existing directories keep their metadata. A dangling
/// symlink on the path is followed and the directory it names is created
/// (as BuildKit's `mkdir -p` does), inside the rootfs.
fn ensure_dir(root: &OwnedFd, path: &str, ids: (u32, u32), mode: u32) -> Res<OwnedFd> {
    let mut pending: std::collections::VecDeque<String> = components(path).collect();
    let mut done: Vec<String> = Vec::new();
    let mut links = 0;
    let mut cur = root.try_clone().map_err(io_err("dup"))?;
    while let Some(comp) = pending.pop_front() {
        let so_far = format!("/{}", done.iter().chain([&comp]).map(String::as_str).collect::<Vec<_>>().join("/"));
        match fsx::open_in_root(root, Path::new(&so_far), libc::O_PATH | libc::O_DIRECTORY) {
            Ok(fd) => cur = fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                let p = fd_path(&cur, OsStr::new(&comp));
                if let Ok(target) = fs::read_link(&p) {
                    links += 1;
                    if links > MAX_DIR_LINKS {
                        return Err(format!("{so_far}: too many levels of symbolic links"));
                    }
                    if target.is_absolute() {
                        done.clear();
                        cur = root.try_clone().map_err(io_err("dup"))?;
                    }
                    let target = target.to_string_lossy();
                    components(&target).rev().for_each(|c| pending.push_front(c));
                    continue;
                }
                fs::create_dir(&p).map_err(io_err(format!("mkdir {so_far}")))?;
                lchown(&p, Some(ids.0), Some(ids.1)).map_err(io_err(format!("chown {so_far}")))?;
                fs::set_permissions(&p, fs::Permissions::from_mode(mode)).map_err(io_err(format!("chmod {so_far}")))?;
                cur = fsx::openat_dir(&cur, OsStr::new(&comp)).map_err(io_err(format!("open {so_far}")))?;
            }
            Err(e) => return Err(format!("{so_far}: {e} (cannot create a directory there)")),
        }
        done.push(comp);
    }
    Ok(cur)
}

/// The non-empty, non-`.` components of a slash-separated path.
fn components(path: &str) -> impl DoubleEndedIterator<Item = String> + '_ {
    path.split('/').filter(|c| !c.is_empty() && *c != ".").map(str::to_string)
}

/// Copies a directory's entries; `rel` is the path below the copied
/// source and `ctx_rel` the same entry's path in its context (both are
/// matched against `--exclude`).
fn copy_dir_contents(src: &OwnedFd, dst: &OwnedFd, spec: &CopySpec, rel: &str, ctx_rel: &str) -> Res<()> {
    let owner = spec.owner;
    let mut names: Vec<_> = fs::read_dir(fd_path(src, OsStr::new("")))
        .map_err(io_err("read source directory"))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()
        .map_err(io_err("read source directory"))?;
    names.sort();
    for name in names {
        let (child_rel, child_ctx) = (join_rel(rel, &name), join_rel(ctx_rel, &name));
        if spec.skips(&[&child_rel, &child_ctx]) {
            continue;
        }
        let sp = fd_path(src, &name);
        let md = fs::symlink_metadata(&sp).map_err(io_err(format!("stat {}", name.to_string_lossy())))?;
        if !md.is_dir() {
            copy_entry(&sp, &md, dst, &name.to_string_lossy(), spec)?;
            continue;
        }
        let dp = fd_path(dst, &name);
        match fs::symlink_metadata(&dp) {
            Ok(existing) if existing.is_dir() => {}
            Ok(_) => return Err(format!("cannot copy directory {} over a file", name.to_string_lossy())),
            Err(_) => {
                fs::create_dir(&dp).map_err(io_err("mkdir"))?;
                let (uid, gid) = owner.of(&md);
                lchown(&dp, Some(uid), Some(gid)).map_err(io_err("chown"))?;
                let mode = spec.mode(md.mode(), true);
                fs::set_permissions(&dp, fs::Permissions::from_mode(mode)).map_err(io_err("chmod"))?;
            }
        }
        let s = fsx::openat_dir(src, &name).map_err(io_err("open source directory"))?;
        let d = fsx::openat_dir(dst, &name).map_err(io_err("open destination directory"))?;
        copy_dir_contents(&s, &d, spec, &child_rel, &child_ctx)?;
        set_mtime(&fd_path(&d, OsStr::new(".")), &md, true)?;
    }
    Ok(())
}

fn copy_entry(src: &Path, md: &Metadata, parent: &OwnedFd, name: &str, spec: &CopySpec) -> Res<()> {
    let dst = fd_path(parent, OsStr::new(name));
    let ids = spec.owner.of(md);
    match fs::symlink_metadata(&dst) {
        Ok(existing) if existing.is_dir() => return Err(format!("cannot copy {name} over an existing directory")),
        Ok(_) => fs::remove_file(&dst).map_err(io_err(format!("replace {name}")))?,
        Err(_) => {}
    }
    let ft = md.file_type();
    if ft.is_symlink() {
        symlink(fs::read_link(src).map_err(io_err("readlink"))?, &dst).map_err(io_err(format!("symlink {name}")))?;
        lchown(&dst, Some(ids.0), Some(ids.1)).map_err(io_err("chown"))?;
        return set_mtime(&dst, md, false);
    }
    if !ft.is_file() {
        tracing::debug!(name, "skipping special file in COPY");
        return Ok(());
    }
    let key = (md.dev(), md.ino());
    if md.nlink() > 1 {
        if let Some((first_parent, first_name)) = spec.links.borrow().get(&key) {
            return fs::hard_link(fd_path(first_parent, OsStr::new(first_name)), &dst)
                .map_err(io_err(format!("link {name}")));
        }
    }
    let mut input = File::open(src).map_err(io_err(format!("open {name}")))?;
    let mut out = create_new_file(&dst, name)?;
    io::copy(&mut input, &mut out).map_err(io_err(format!("copy {name}")))?;
    drop(out);
    lchown(&dst, Some(ids.0), Some(ids.1)).map_err(io_err("chown"))?;
    let mode = spec.mode(md.mode(), md.is_dir());
    fs::set_permissions(&dst, fs::Permissions::from_mode(mode)).map_err(io_err("chmod"))?;
    if md.nlink() > 1 {
        let first = parent.try_clone().map_err(io_err("dup"))?;
        spec.links.borrow_mut().insert(key, (first, name.to_string()));
    }
    set_mtime(&dst, md, false)
}

/// Creates a new file (0600 until its real mode is set) without following
/// a symlink at `path`.
fn create_new_file(path: &Path, name: &str) -> Res<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(io_err(format!("create {name}")))
}

fn set_mtime(path: &Path, md: &Metadata, follow: bool) -> Res<()> {
    let t = TimeSpec::new(md.mtime(), md.mtime_nsec());
    let flag = if follow { UtimensatFlags::FollowSymlink } else { UtimensatFlags::NoFollowSymlink };
    utimensat(None, path, &t, &t, flag).map_err(|e| format!("set mtime: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_root(dir: &Path) -> OwnedFd {
        File::open(dir).unwrap().into()
    }

    #[test]
    fn ensure_dir_creates_where_dangling_links_point_and_stays_in_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        fs::create_dir(&root).unwrap();
        symlink("../tmp/target", root.join("rel")).unwrap();
        symlink("/made/by/abs", root.join("abs")).unwrap();
        symlink("../../../outside", root.join("escape")).unwrap();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        let fd = open_root(&root);
        let ids = (nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw());
        for (path, created) in [("/rel/sub", "tmp/target/sub"), ("/abs", "made/by/abs"), ("/escape/x", "outside/x")] {
            ensure_dir(&fd, path, ids, 0o755).unwrap();
            assert!(root.join(created).is_dir(), "{path} → {created}");
        }
        assert!(!tmp.path().join("outside").exists(), "a link cannot lead out of the rootfs");
        let err = ensure_dir(&fd, "/loop1/x", ids, 0o755).unwrap_err();
        assert!(err.to_lowercase().contains("too many levels of symbolic links"), "{err}");
    }
}
