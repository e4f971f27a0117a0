//! Symlink chains in an unpacked build context. Each link is checked on
//! its own as it is unpacked, but a chain of links that each look harmless
//! can still lead out (`a/u0 -> ..`, `a/u1 -> u0/..`, `Dockerfile ->
//! a/u1/etc/passwd`). After unpacking, this resolves every link the way
//! the kernel would — each target from the link's own directory, `..` to
//! the physical parent, links inside targets followed — and reports the
//! first one whose resolution leaves the context.
//!
//! The context is read once into a tree (no link is followed while
//! reading), and each link is resolved once and remembered, so the work
//! is linear in the number of entries plus the length of link targets.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// Deepest nesting of links inside links (the kernel follows 40).
pub const MAX_LINK_NESTING: usize = 40;

/// Why the context's links were refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LinkError {
    /// A link resolves outside the context.
    #[error("context/{link}: symlink to {target:?} leads outside the build context")]
    Escapes {
        /// The link, relative to the context.
        link: String,
        /// Its target as written.
        target: String,
    },
    /// Links nest deeper than [`MAX_LINK_NESTING`].
    #[error("context/{link}: symlinks nest more than {MAX_LINK_NESTING} deep")]
    TooDeep {
        /// The link, relative to the context.
        link: String,
    },
    /// The context could not be read.
    #[error("read the build context: {0}")]
    Io(String),
}

enum Kind {
    Dir(HashMap<OsString, usize>),
    Other,
    Link(PathBuf),
}

struct Node {
    parent: usize,
    kind: Kind,
}

/// Where a walk stands: a real directory, plus components below it that
/// do not exist as directories (walked by name only, as `..` can undo them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Place {
    dir: usize,
    phantom: usize,
}

#[derive(Clone, Copy)]
enum Memo {
    Unseen,
    Resolving,
    Done(Option<Place>),
}

/// The context's tree and what each link resolved to.
struct Resolver {
    nodes: Vec<Node>,
    memo: Vec<Memo>,
}

/// Checks every symlink under `context`.
pub fn check_context(context: &Path) -> Result<(), LinkError> {
    let mut r = Resolver { nodes: vec![Node { parent: 0, kind: Kind::Dir(HashMap::new()) }], memo: Vec::new() };
    let mut links = Vec::new();
    r.read_dir(context, 0, &mut PathBuf::new(), &mut links)?;
    r.memo = vec![Memo::Unseen; r.nodes.len()];
    links.sort();
    for (rel, node) in &links {
        if r.resolve(*node, 0).map_err(|()| LinkError::TooDeep { link: rel.display().to_string() })?.is_none() {
            let Kind::Link(target) = &r.nodes[*node].kind else { unreachable!("links are links") };
            return Err(LinkError::Escapes { link: rel.display().to_string(), target: target.display().to_string() });
        }
    }
    Ok(())
}

impl Resolver {
    /// Adds `dir`'s entries under node `at`, recursing into directories.
    fn read_dir(
        &mut self,
        dir: &Path,
        at: usize,
        rel: &mut PathBuf,
        links: &mut Vec<(PathBuf, usize)>,
    ) -> Result<(), LinkError> {
        let io = |e: std::io::Error| LinkError::Io(format!("{}: {e}", dir.display()));
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let file_type = entry.file_type().map_err(io)?;
            let kind = if file_type.is_dir() {
                Kind::Dir(HashMap::new())
            } else if file_type.is_symlink() {
                Kind::Link(std::fs::read_link(entry.path()).map_err(io)?)
            } else {
                Kind::Other
            };
            let id = self.nodes.len();
            let is_dir = matches!(kind, Kind::Dir(_));
            let is_link = matches!(kind, Kind::Link(_));
            self.nodes.push(Node { parent: at, kind });
            if let Kind::Dir(children) = &mut self.nodes[at].kind {
                children.insert(entry.file_name(), id);
            }
            rel.push(entry.file_name());
            if is_link {
                links.push((rel.clone(), id));
            } else if is_dir {
                self.read_dir(&entry.path(), id, rel, links)?;
            }
            rel.pop();
        }
        Ok(())
    }

    /// Where link `node` leads (`None`: outside the context); `Err` when
    /// links nest too deep.
    fn resolve(&mut self, node: usize, depth: usize) -> Result<Option<Place>, ()> {
        match self.memo[node] {
            Memo::Done(place) => return Ok(place),
            // A cycle: the kernel gives ELOOP; nothing is reached through it.
            Memo::Resolving => return Ok(Some(Place { dir: 0, phantom: 1 })),
            Memo::Unseen => {}
        }
        if depth > MAX_LINK_NESTING {
            return Err(());
        }
        self.memo[node] = Memo::Resolving;
        let Kind::Link(target) = &self.nodes[node].kind else { unreachable!("only links are resolved") };
        let target = target.clone();
        let start = Place { dir: self.nodes[node].parent, phantom: 0 };
        let place = self.walk(start, &target, depth)?;
        self.memo[node] = Memo::Done(place);
        Ok(place)
    }

    /// Walks `path` from `place`, following links; `None` once it leaves.
    fn walk(&mut self, mut place: Place, path: &Path, depth: usize) -> Result<Option<Place>, ()> {
        for comp in path.components() {
            match comp {
                Component::RootDir | Component::Prefix(_) => return Ok(None),
                Component::CurDir => {}
                Component::ParentDir if place.phantom > 0 => place.phantom -= 1,
                Component::ParentDir if place.dir == 0 => return Ok(None),
                Component::ParentDir => place.dir = self.nodes[place.dir].parent,
                Component::Normal(_) if place.phantom > 0 => place.phantom += 1,
                Component::Normal(name) => {
                    let child = match &self.nodes[place.dir].kind {
                        Kind::Dir(children) => children.get(name).copied(),
                        _ => None,
                    };
                    place = match child.map(|c| (c, &self.nodes[c].kind)) {
                        Some((c, Kind::Dir(_))) => Place { dir: c, phantom: 0 },
                        Some((c, Kind::Link(_))) => match self.resolve(c, depth + 1)? {
                            Some(p) => p,
                            None => return Ok(None),
                        },
                        Some((_, Kind::Other)) | None => Place { phantom: 1, ..place },
                    };
                }
            }
        }
        Ok(Some(place))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn context(links: &[(&str, &str)], dirs: &[&str]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for dir in dirs {
            std::fs::create_dir_all(d.path().join(dir)).unwrap();
        }
        for (link, target) in links {
            symlink(target, d.path().join(link)).unwrap();
        }
        d
    }

    fn check(links: &[(&str, &str)], dirs: &[&str]) -> Result<(), LinkError> {
        check_context(context(links, dirs).path())
    }

    #[test]
    fn a_chain_of_harmless_looking_links_is_caught() {
        let mut links: Vec<(String, String)> = vec![("a/u0".into(), "..".into())];
        links.extend((1..12).map(|n| (format!("a/u{n}"), format!("u{}/..", n - 1))));
        links.push(("Dockerfile".into(), "a/u11/etc/passwd".into()));
        let refs: Vec<(&str, &str)> = links.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let err = check(&refs, &["a"]).unwrap_err();
        assert_eq!(err, LinkError::Escapes { link: "Dockerfile".into(), target: "a/u11/etc/passwd".into() });
        let err = check(&refs[..2], &["a"]).unwrap_err();
        assert_eq!(err, LinkError::Escapes { link: "a/u1".into(), target: "u0/..".into() });
        assert_eq!(check(&refs[..1], &["a"]), Ok(()), "a/u0 -> .. is the context itself");
    }

    #[test]
    fn links_that_stay_inside_pass() {
        let ok = [
            ("Dockerfile", "src/Dockerfile.prod"),
            ("src/up", "../lib/x"),
            ("lib/self", "."),
            ("lib/loop1", "loop2"),
            ("lib/loop2", "loop1"),
            ("dangling", "nowhere/../x"),
            ("up-from-nowhere", "lib/self/../src/up/../nowhere/.."),
            ("file-as-dir", "Dockerfile/../lib"),
            ("via", "lib/self/self/self/../x"),
        ];
        assert_eq!(check(&ok, &["src", "lib"]), Ok(()));
    }

    #[test]
    fn escapes_through_files_links_and_missing_names_are_caught() {
        let cases: [&[(&str, &str)]; 6] = [
            &[("f", "/etc/passwd")],
            &[("d/l", "../..")],
            &[("d/x", "missing/../../..")],
            &[("d/up", ".."), ("d/l", "up/d/up/..")],
            &[("dangling", "nowhere/../../x")],
            &[("d/s", "."), ("d/l", "s/s/s/../../..")],
        ];
        for links in cases {
            let err = check(links, &["d"]).unwrap_err();
            assert!(matches!(err, LinkError::Escapes { .. }), "{links:?}: {err}");
        }
    }

    #[test]
    fn deep_nesting_is_refused() {
        // Resolved in name order, so c00 is the first and nests 60 deep.
        let mut links: Vec<(String, String)> =
            (0..60).map(|n| (format!("c{n:02}"), format!("c{:02}", n + 1))).collect();
        links.push(("c60".into(), "x".into()));
        let refs: Vec<(&str, &str)> = links.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        assert!(matches!(check(&refs, &[]), Err(LinkError::TooDeep { .. })));
    }
}
