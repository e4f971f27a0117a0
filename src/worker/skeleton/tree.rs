//! The merged view of a layer chain's header indexes: what a path holds
//! in the stacked filesystem (whiteouts and opaque directories applied),
//! and path resolution inside it as the file-op helper resolves paths
//! (`RESOLVE_IN_ROOT`: symlinks followed, `..` clamped at the root).

use kiln_snapshotter::headers::{EntryKind, HeaderEntry, LayerHeaders, ACCOUNT_FILES};
use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::sync::Arc;

/// Most symlinks one resolution follows (the kernel's limit).
const MAX_LINKS: usize = 40;

/// What a path holds in the merged view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The header of the topmost layer that has it.
    pub header: HeaderEntry,
    /// Content, for the account files whose layer kept it.
    pub content: Option<Arc<str>>,
    /// A directory a layer's tar did not list but needed as a parent: its
    /// metadata there is the unpacker's, not known here.
    pub implicit: bool,
}

/// The merged view: path (relative, no leading slash) → node.
#[derive(Debug, Default)]
pub struct Tree {
    nodes: BTreeMap<String, Node>,
}

impl Tree {
    /// Stacks `layers`, base first, as overlayfs stacks their directories.
    pub fn merge(layers: Vec<LayerHeaders>) -> Tree {
        let mut tree = Tree::default();
        for layer in layers {
            tree.apply_whiteouts(&layer);
            tree.apply_entries(layer);
        }
        tree
    }

    /// A layer's whiteouts hide what the layers below hold.
    fn apply_whiteouts(&mut self, layer: &LayerHeaders) {
        for e in layer.entries.iter().filter(|e| is_clean(&e.path)) {
            let (parent, name) = split(&e.path);
            if name == ".wh..wh..opq" {
                self.remove_below(parent);
            } else if let Some(hidden) = name.strip_prefix(".wh.") {
                let hidden = join(parent, hidden);
                self.remove_below(&hidden);
                self.nodes.remove(&hidden);
            }
        }
    }

    fn apply_entries(&mut self, layer: LayerHeaders) {
        let mut listed_dirs: HashSet<String> = HashSet::new();
        let mut files = layer.files;
        for e in layer.entries.into_iter().filter(|e| is_clean(&e.path) && !split(&e.path).1.starts_with(".wh.")) {
            let replaces_dir = self.nodes.get(&e.path).is_some_and(|n| n.header.kind == EntryKind::Dir);
            if replaces_dir && e.kind != EntryKind::Dir {
                self.remove_below(&e.path);
            }
            self.mark_unlisted_parents(&e.path, &listed_dirs);
            if e.kind == EntryKind::Dir {
                listed_dirs.insert(e.path.clone());
            }
            let content = match e.kind {
                EntryKind::File if ACCOUNT_FILES.contains(&e.path.as_str()) => files.remove(&e.path).map(Arc::from),
                _ => None,
            };
            self.nodes.insert(e.path.clone(), Node { header: e, content, implicit: false });
        }
    }

    /// Parents of `path` the layer did not list were made by the unpacker.
    fn mark_unlisted_parents(&mut self, path: &str, listed: &HashSet<String>) {
        let mut parent = split(path).0;
        while !parent.is_empty() && !listed.contains(parent) {
            let node = self.nodes.entry(parent.to_string()).or_insert_with(|| Node {
                header: HeaderEntry {
                    path: parent.to_string(),
                    kind: EntryKind::Dir,
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                    mtime: 0,
                    link: None,
                    xattrs: false,
                },
                content: None,
                implicit: true,
            });
            node.implicit = true;
            parent = split(parent).0;
        }
    }

    fn remove_below(&mut self, dir: &str) {
        let doomed: Vec<String> = self.below(dir).map(|(p, _)| p.clone()).collect();
        for p in doomed {
            self.nodes.remove(&p);
        }
    }

    /// The node at `path`.
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// Everything below the directory `dir` (`""`: the root).
    pub fn below<'a>(&'a self, dir: &str) -> Box<dyn Iterator<Item = (&'a String, &'a Node)> + 'a> {
        if dir.is_empty() {
            return Box::new(self.nodes.iter());
        }
        // '0' is the byte after '/': the range holds exactly `dir/…`.
        Box::new(self.nodes.range(format!("{dir}/")..format!("{dir}0")))
    }

    /// Resolves `path` as the helper does, recording every existing entry
    /// the resolution reads in `visited`; returns the resolved path (which
    /// may not exist).
    pub fn resolve(&self, path: &str, visited: &mut BTreeSet<String>) -> String {
        let mut pending: VecDeque<String> = components(path).collect();
        let mut done: Vec<String> = Vec::new();
        let mut links = 0;
        while let Some(comp) = pending.pop_front() {
            if comp == ".." {
                done.pop();
                continue;
            }
            let candidate = join(&done.join("/"), &comp);
            let Some(node) = self.nodes.get(&candidate) else {
                done.push(comp);
                continue;
            };
            visited.insert(candidate);
            match (&node.header.kind, &node.header.link) {
                (EntryKind::Symlink, Some(target)) if links < MAX_LINKS => {
                    links += 1;
                    if target.starts_with('/') {
                        done.clear();
                    }
                    components(target).rev().for_each(|c| pending.push_front(c));
                }
                _ => done.push(comp),
            }
        }
        done.join("/")
    }
}

/// The non-empty, non-`.` components of a slash-separated path.
pub fn components(path: &str) -> impl DoubleEndedIterator<Item = String> + '_ {
    path.split('/').filter(|c| !c.is_empty() && *c != ".").map(str::to_string)
}

/// `a/b/c` → (`a/b`, `c`); `c` → (``, `c`).
pub fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

/// `dir` and `name` joined (`dir` may be the root, ``).
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// A relative path of plain components only (an index from elsewhere
/// cannot name `..` or an absolute path).
fn is_clean(path: &str) -> bool {
    !path.is_empty() && path.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn header(path: &str, kind: EntryKind, link: Option<&str>) -> HeaderEntry {
        HeaderEntry {
            path: path.into(),
            kind,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 1,
            link: link.map(str::to_string),
            xattrs: false,
        }
    }

    fn layer(entries: Vec<HeaderEntry>) -> LayerHeaders {
        let mut l = LayerHeaders::new();
        entries.into_iter().for_each(|e| l.push(e));
        l
    }

    use EntryKind::{Dir, File, Symlink};

    #[test]
    fn whiteouts_and_opaque_directories_hide_only_what_is_below_them() {
        let base = layer(vec![
            header("etc", Dir, None),
            header("etc/a", File, None),
            header("etc/b", File, None),
            header("opt", Dir, None),
            header("opt/x", File, None),
            header("opt-y", File, None),
        ]);
        let top = layer(vec![
            header("etc", Dir, None),
            header("etc/.wh.a", File, None),
            header("opt", Dir, None),
            header("opt/.wh..wh..opq", File, None),
            header("opt/new", File, None),
        ]);
        let tree = Tree::merge(vec![base, top]);
        let paths: Vec<&String> = tree.below("").map(|(p, _)| p).collect();
        assert_eq!(paths, ["etc", "etc/b", "opt", "opt-y", "opt/new"]);
    }

    #[test]
    fn a_file_over_a_directory_drops_the_directory_s_children() {
        let base = layer(vec![header("d", Dir, None), header("d/f", File, None)]);
        let top = layer(vec![header("d", Symlink, Some("/elsewhere"))]);
        let tree = Tree::merge(vec![base, top]);
        assert_eq!(tree.below("").count(), 1);
    }

    #[test]
    fn resolution_follows_links_inside_the_root_and_records_what_it_read() {
        let tree = Tree::merge(vec![layer(vec![
            header("usr", Dir, None),
            header("usr/lib", Dir, None),
            header("lib", Symlink, Some("usr/lib")),
            header("up", Symlink, Some("../../../usr")),
            header("loop", Symlink, Some("loop")),
        ])]);
        let mut seen = BTreeSet::new();
        assert_eq!(tree.resolve("/lib/x/y", &mut seen), "usr/lib/x/y");
        assert_eq!(seen.iter().collect::<Vec<_>>(), ["lib", "usr", "usr/lib"]);
        assert_eq!(tree.resolve("/up/lib", &mut BTreeSet::new()), "usr/lib", "`..` stops at the root");
        tree.resolve("/loop/x", &mut BTreeSet::new());
    }

    #[test]
    fn parents_a_layer_does_not_list_are_marked_as_unknown() {
        let tree = Tree::merge(vec![layer(vec![header("a/b/c", File, None)])]);
        assert!(tree.get("a").unwrap().implicit && tree.get("a/b").unwrap().implicit);
        let listed = Tree::merge(vec![layer(vec![header("a", Dir, None), header("a/c", File, None)])]);
        assert!(!listed.get("a").unwrap().implicit);
    }
}
