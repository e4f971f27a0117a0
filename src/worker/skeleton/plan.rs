//! Which entries of the merged chain a file op can read or touch.

use super::tree::{components, join, split, Node, Tree};
use super::{Skeleton, SkeletonEntry, Unsupported, MAX_SKELETON_ENTRIES};
use crate::worker::fileop::PlannedAction;
use kiln_snapshotter::fsx::{self, fd_path};
use kiln_snapshotter::headers::EntryKind;
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::Path;

/// The names an op writes below a directory.
enum Names {
    /// Anything (sources known only to the helper).
    All,
    /// These relative paths (each with its parents).
    Some(BTreeSet<String>),
}

/// The skeleton `actions` need over `tree`; `context` is the unpacked
/// build context COPY reads from.
pub fn plan(tree: &Tree, actions: &[PlannedAction], context: &Path) -> Result<Skeleton, Unsupported> {
    let mut reach = Reach { tree, paths: BTreeSet::new() };
    for action in actions {
        match action {
            PlannedAction::Copy { unpack: true, .. } => return Err(Unsupported::Archive),
            PlannedAction::Copy { sources, dest, chown, from_input, inline, parents, .. } => {
                if chown.as_deref().is_some_and(names_an_account) {
                    reach.accounts()?;
                }
                let dest = dest.trim_end_matches('/');
                let (dest_parent, dest_name) = split(dest.trim_start_matches('/'));
                reach.target(&format!("/{dest_parent}"), Names::Some(BTreeSet::from([dest_name.to_string()])))?;
                let mut names: BTreeSet<String> = inline.iter().map(|f| f.name.clone()).collect();
                match (from_input, parents) {
                    (Some(_), true) => return Err(Unsupported::ParentsFromStage),
                    (Some(_), false) => reach.target(dest, Names::All)?,
                    (None, true) => reach.parents_copy(context, sources, dest)?,
                    (None, false) => {
                        for source in sources {
                            names.extend(source_names(context, source)?);
                        }
                    }
                }
                reach.target(dest, Names::Some(names))?;
            }
            PlannedAction::Mkdir { path, owner } => {
                if names_an_account(owner) {
                    reach.accounts()?;
                }
                reach.target(path, Names::Some(BTreeSet::new()))?;
            }
        }
    }
    reach.skeleton()
}

/// Whether a `--chown` or USER value names a user or group to look up.
fn names_an_account(spec: &str) -> bool {
    spec.split(':').any(|part| !part.is_empty() && part != "root" && part.parse::<u32>().is_err())
}

/// The paths an op reaches so far.
struct Reach<'a> {
    tree: &'a Tree,
    paths: BTreeSet<String>,
}

impl Reach<'_> {
    /// `dir` resolved, and the existing entries at `names` below it.
    fn target(&mut self, dir: &str, names: Names) -> Result<(), Unsupported> {
        let resolved = self.tree.resolve(dir, &mut self.paths);
        match names {
            Names::All => self.paths.extend(self.tree.below(&resolved).map(|(p, _)| p.clone())),
            Names::Some(names) => {
                for name in names {
                    self.name_below(&resolved, &name);
                }
            }
        }
        self.bounded()
    }

    /// The existing entries along `dir/name`, up to the first that is not
    /// a directory (the helper never follows links below a destination).
    fn name_below(&mut self, dir: &str, name: &str) {
        let mut path = dir.to_string();
        for comp in components(name) {
            path = join(&path, &comp);
            let Some(node) = self.tree.get(&path) else { return };
            self.paths.insert(path.clone());
            if node.header.kind != EntryKind::Dir {
                return;
            }
        }
    }

    /// `COPY --parents`: each source's path is recreated below `dest`.
    fn parents_copy(&mut self, context: &Path, sources: &[String], dest: &str) -> Result<(), Unsupported> {
        for source in sources {
            let kept = source.split_once("/./").map_or(source.as_str(), |(_, after)| after);
            let base = format!("{dest}/{kept}");
            match source_walk(context, source)? {
                Some(names) => self.target(&base, Names::Some(names))?,
                None => {
                    let (parent, name) = split(base.trim_start_matches('/'));
                    self.target(&format!("/{parent}"), Names::Some(BTreeSet::from([name.to_string()])))?;
                }
            }
        }
        Ok(())
    }

    /// What resolving owner names reads: `/etc/passwd` and `/etc/group`.
    fn accounts(&mut self) -> Result<(), Unsupported> {
        for file in ["/etc/passwd", "/etc/group"] {
            let resolved = self.tree.resolve(file, &mut self.paths);
            match self.tree.get(&resolved) {
                Some(n) if n.header.kind == EntryKind::File && n.content.is_none() => {
                    return Err(Unsupported::AccountFile(file.into()))
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn bounded(&self) -> Result<(), Unsupported> {
        match self.paths.len() > MAX_SKELETON_ENTRIES {
            true => Err(Unsupported::TooLarge),
            false => Ok(()),
        }
    }

    /// The reached entries with their parents, checked.
    fn skeleton(mut self) -> Result<Skeleton, Unsupported> {
        let reached: Vec<String> = self.paths.iter().cloned().collect();
        for path in reached {
            let mut parent = split(&path).0;
            while !parent.is_empty() && self.paths.insert(parent.to_string()) {
                parent = split(parent).0;
            }
        }
        self.bounded()?;
        let mut entries = Vec::with_capacity(self.paths.len());
        for path in &self.paths {
            let node = self.tree.get(path).ok_or_else(|| Unsupported::UnlistedParent(path.clone()))?;
            check(self.tree, path, node)?;
            entries.push(entry(path, node));
        }
        Ok(Skeleton { entries })
    }
}

/// An entry the skeleton can stand for: listed by its layer, without
/// extended attributes, below directories only.
fn check(tree: &Tree, path: &str, node: &Node) -> Result<(), Unsupported> {
    if node.implicit {
        return Err(Unsupported::UnlistedParent(path.into()));
    }
    if node.header.xattrs {
        return Err(Unsupported::Xattrs(path.into()));
    }
    let parent = split(path).0;
    let parent_is_dir = parent.is_empty() || tree.get(parent).is_some_and(|p| p.header.kind == EntryKind::Dir);
    match parent_is_dir {
        true => Ok(()),
        false => Err(Unsupported::BelowNonDirectory(path.into())),
    }
}

fn entry(path: &str, node: &Node) -> SkeletonEntry {
    let h = &node.header;
    SkeletonEntry {
        path: path.to_string(),
        kind: h.kind,
        mode: h.mode & 0o7777,
        uid: h.uid,
        gid: h.gid,
        mtime: h.mtime,
        link: h.link.clone(),
        content: node.content.as_deref().map(str::to_string),
    }
}

/// The names a context source writes below the destination directory:
/// its base name and, for a directory, every path inside it.
fn source_names(context: &Path, source: &str) -> Result<BTreeSet<String>, Unsupported> {
    let mut names = source_walk(context, source)?.unwrap_or_default();
    if let Some(base) = Path::new(source).file_name() {
        names.insert(base.to_string_lossy().into_owned());
    }
    Ok(names)
}

/// Every path inside the context directory `source` (resolved in the
/// context, as the helper resolves it); `None` when it is not a directory.
fn source_walk(context: &Path, source: &str) -> Result<Option<BTreeSet<String>>, Unsupported> {
    let failed = |e: std::io::Error| Unsupported::Context(format!("{source}: {e}"));
    let root = File::open(context).map_err(failed)?;
    let fd = match fsx::open_in_root(&root, Path::new(source), libc::O_PATH) {
        Ok(fd) => fd,
        // The helper reports the missing source; the skeleton does not matter.
        Err(_) => return Ok(None),
    };
    if !std::fs::metadata(fd_path(&fd, OsStr::new(""))).map_err(failed)?.is_dir() {
        return Ok(None);
    }
    let mut names = BTreeSet::new();
    walk(&fd, "", &mut names).map_err(failed)?;
    Ok(Some(names))
}

fn walk(dir: &OwnedFd, rel: &str, names: &mut BTreeSet<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(fd_path(dir, OsStr::new("")))? {
        let entry = entry?;
        let name = entry.file_name();
        let child = join(rel, &name.to_string_lossy());
        if names.len() >= MAX_SKELETON_ENTRIES {
            return Err(std::io::Error::other("too many entries"));
        }
        names.insert(child.clone());
        if entry.file_type()?.is_dir() {
            walk(&fsx::openat_dir(dir, &name)?, &child, names)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_snapshotter::headers::{HeaderEntry, LayerHeaders};

    fn tree(entries: &[(&str, EntryKind, Option<&str>)], files: &[(&str, &str)]) -> Tree {
        let mut layer = LayerHeaders::new();
        for (path, kind, link) in entries {
            let link = link.map(str::to_string);
            let h = HeaderEntry {
                path: path.to_string(),
                kind: *kind,
                mode: 0o755,
                uid: 0,
                gid: 0,
                mtime: 9,
                link,
                xattrs: false,
            };
            layer.push(h);
        }
        layer.files = files.iter().map(|(p, c)| (p.to_string(), c.to_string())).collect();
        Tree::merge(vec![layer])
    }

    fn copy(sources: &[&str], dest: &str, chown: Option<&str>) -> PlannedAction {
        let mut action = PlannedAction::copy(sources, dest);
        if let PlannedAction::Copy { chown: owner, .. } = &mut action {
            *owner = chown.map(str::to_string);
        }
        action
    }

    fn context(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for f in files {
            let path = dir.path().join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "x").unwrap();
        }
        dir
    }

    fn paths(s: &Skeleton) -> Vec<&str> {
        s.entries.iter().map(|e| e.path.as_str()).collect()
    }

    use EntryKind::{Dir, File, Symlink};

    #[test]
    fn a_copy_reaches_its_destination_and_the_names_it_writes_only() {
        let mut entries = vec![("home", Dir, None), ("home/app", Dir, None), ("home/app/deps", Dir, None)];
        let deps: Vec<String> = (0..2000).map(|i| format!("home/app/deps/m{i}.py")).collect();
        entries.extend(deps.iter().map(|p| (p.as_str(), File, None)));
        entries.extend([
            ("home/app/index.py", File, None),
            ("home/app/lib", Dir, None),
            ("home/app/lib/a", File, None),
        ]);
        let tree = tree(&entries, &[]);
        let ctx = context(&["index.py", "lib/b"]);
        let s = plan(&tree, &[copy(&["index.py", "lib"], "/home/app/", None)], ctx.path()).unwrap();
        assert_eq!(paths(&s), ["home", "home/app", "home/app/index.py", "home/app/lib"]);
    }

    #[test]
    fn links_on_the_way_are_followed_and_kept() {
        let tree = tree(
            &[
                ("opt", Dir, None),
                ("opt/real", Dir, None),
                ("srv", Dir, None),
                ("srv/link", Symlink, Some("/opt/real")),
            ],
            &[],
        );
        let ctx = context(&["h.sh"]);
        let s = plan(&tree, &[copy(&["h.sh"], "/srv/link/h.sh", None)], ctx.path()).unwrap();
        assert_eq!(paths(&s), ["opt", "opt/real", "srv", "srv/link"]);
    }

    #[test]
    fn owner_names_need_the_account_files_content() {
        let entries = [("etc", Dir, None), ("etc/passwd", File, None), ("etc/group", File, None)];
        let ctx = context(&["h.sh"]);
        let known = tree(&entries, &[("etc/passwd", "app:x:1:1::/:/bin/sh\n"), ("etc/group", "app:x:1:\n")]);
        let s = plan(&known, &[copy(&["h.sh"], "/app/", Some("app:app"))], ctx.path()).unwrap();
        assert_eq!(
            s.entries.iter().find(|e| e.path == "etc/passwd").unwrap().content.as_deref(),
            Some("app:x:1:1::/:/bin/sh\n")
        );
        let unknown = tree(&entries, &[]);
        let err = plan(&unknown, &[copy(&["h.sh"], "/app/", Some("app"))], ctx.path()).unwrap_err();
        assert_eq!(err, Unsupported::AccountFile("/etc/passwd".into()));
        assert!(
            plan(&unknown, &[copy(&["h.sh"], "/app/", Some("1000:root"))], ctx.path()).is_ok(),
            "ids need no lookup"
        );
    }

    #[test]
    fn what_a_skeleton_cannot_stand_for_is_refused() {
        let ctx = context(&["a.tar"]);
        let mut add = copy(&["a.tar"], "/", None);
        if let PlannedAction::Copy { unpack, .. } = &mut add {
            *unpack = true;
        }
        assert_eq!(plan(&Tree::default(), &[add], ctx.path()).unwrap_err(), Unsupported::Archive);
        let mut layer = LayerHeaders::new();
        let attr = HeaderEntry {
            path: "app".into(),
            kind: Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 0,
            link: None,
            xattrs: true,
        };
        layer.push(attr);
        let err = plan(&Tree::merge(vec![layer]), &[copy(&["a.tar"], "/app/", None)], ctx.path()).unwrap_err();
        assert_eq!(err, Unsupported::Xattrs("app".into()));
        let unlisted = tree(&[("a/b/c", File, None)], &[]);
        let err = plan(&unlisted, &[copy(&["a.tar"], "/a/b/", None)], ctx.path()).unwrap_err();
        assert_eq!(err, Unsupported::UnlistedParent("a".into()));
    }
}
