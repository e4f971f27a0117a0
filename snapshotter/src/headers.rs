//! A layer's tar headers without its bytes: for every entry its path,
//! type, mode, owner, mtime and link target, as the layer's tar states
//! them (whiteouts included, by their `.wh.` names), plus the content of
//! the small account files (`etc/passwd`, `etc/group`) that owner names
//! resolve against. Recorded while a layer is applied or diffed, so a
//! builder can know what a chain of layers holds where without unpacking
//! it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Format version of [`LayerHeaders`]; another version is not used.
pub const HEADERS_VERSION: u32 = 1;

/// Most entries recorded for one layer; a larger layer has no index.
pub const MAX_ENTRIES: usize = 200_000;

/// Largest account file whose content is kept.
pub const MAX_ACCOUNT_FILE: u64 = 64 << 10;

/// The files whose content is kept (paths relative to the layer root).
pub const ACCOUNT_FILES: [&str; 2] = ["etc/passwd", "etc/group"];

/// What kind of entry a header describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    /// A directory.
    #[serde(rename = "d")]
    Dir,
    /// A regular file (or a hard link to one).
    #[serde(rename = "f")]
    File,
    /// A symbolic link.
    #[serde(rename = "l")]
    Symlink,
    /// A FIFO or device node.
    #[serde(rename = "o")]
    Other,
}

/// One tar header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderEntry {
    /// Path relative to the layer root, without a trailing slash.
    #[serde(rename = "p")]
    pub path: String,
    /// Entry type.
    #[serde(rename = "k")]
    pub kind: EntryKind,
    /// Permission bits (`0o7777`).
    #[serde(rename = "m")]
    pub mode: u32,
    /// Owner.
    #[serde(rename = "u")]
    pub uid: u32,
    /// Group.
    #[serde(rename = "g")]
    pub gid: u32,
    /// Modification time, whole seconds.
    #[serde(rename = "t")]
    pub mtime: i64,
    /// Symlink target.
    #[serde(rename = "l", default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// Whether the entry carries extended attributes.
    #[serde(rename = "x", default, skip_serializing_if = "std::ops::Not::not")]
    pub xattrs: bool,
}

/// The headers of one layer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerHeaders {
    /// [`HEADERS_VERSION`].
    pub version: u32,
    /// Entries in tar order.
    pub entries: Vec<HeaderEntry>,
    /// Content of the layer's account files ([`ACCOUNT_FILES`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, String>,
    /// Set when the layer had more than [`MAX_ENTRIES`] entries: then
    /// `entries` is empty and the index must not be used.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub overflow: bool,
}

impl LayerHeaders {
    /// An empty index of the current version.
    pub fn new() -> Self {
        LayerHeaders { version: HEADERS_VERSION, ..Default::default() }
    }

    /// Whether the index can stand for its layer.
    pub fn usable(&self) -> bool {
        self.version == HEADERS_VERSION && !self.overflow
    }

    /// Records one entry (past [`MAX_ENTRIES`] the index overflows).
    pub fn push(&mut self, entry: HeaderEntry) {
        if self.overflow {
            return;
        }
        if self.entries.len() == MAX_ENTRIES {
            self.overflow = true;
            self.entries = Vec::new();
            return;
        }
        self.entries.push(entry);
    }

    /// Reads the account files this layer holds as regular files from its
    /// directory `root` (a file too large or not text is left out, which
    /// marks its content unknown).
    pub fn capture_account_files(&mut self, root: &Path) {
        for name in ACCOUNT_FILES {
            let is_file = self.entries.iter().rev().find(|e| e.path == name).is_some_and(|e| e.kind == EntryKind::File);
            if !is_file {
                continue;
            }
            let path = root.join(name);
            let small = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file() && m.len() <= MAX_ACCOUNT_FILE);
            if let Some(text) = small.then(|| std::fs::read_to_string(&path).ok()).flatten() {
                self.files.insert(name.to_string(), text);
            }
        }
    }
}

/// A tar path as an index path: no leading `./` or `/`, no trailing `/`.
pub fn index_path(tar_path: &str) -> String {
    let p = tar_path.trim_start_matches("./").trim_start_matches('/');
    p.trim_end_matches('/').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str) -> HeaderEntry {
        HeaderEntry {
            path: path.into(),
            kind: EntryKind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            link: None,
            xattrs: false,
        }
    }

    #[test]
    fn an_index_past_its_bound_overflows_and_is_not_usable() {
        let mut h = LayerHeaders::new();
        for i in 0..=MAX_ENTRIES {
            h.push(entry(&format!("f{i}")));
        }
        assert!(h.overflow && h.entries.is_empty() && !h.usable());
    }

    #[test]
    fn account_files_are_kept_only_when_the_layer_has_them_as_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/passwd"), "app:x:1000:1000::/home/app:/bin/sh\n").unwrap();
        std::fs::write(dir.path().join("etc/group"), "app:x:1000:\n").unwrap();
        let mut h = LayerHeaders::new();
        h.push(entry("etc/passwd"));
        h.capture_account_files(dir.path());
        assert_eq!(h.files.len(), 1, "etc/group is not in this layer's headers");
        assert!(h.files["etc/passwd"].starts_with("app:"));
        assert_eq!(index_path("./usr/bin/"), "usr/bin");
    }
}
