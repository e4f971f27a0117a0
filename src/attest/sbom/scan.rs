//! Reads one layer's directory (a snapshot's own content, overlay form:
//! whiteouts are 0/0 character devices, opaque directories carry
//! `user.overlay.opaque=y`) into a [`LayerInventory`]. Only the files that
//! record packages are opened; symbolic links are never followed.

use super::{apk, dpkg, gobuild, node, python, Distro, LayerInventory, INVENTORY_VERSION};
use kiln_snapshotter::fsx::{get_xattr, OPAQUE_XATTR};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// The largest package database or metadata file read.
const MAX_TEXT: u64 = 64 << 20;
/// Executables smaller than this cannot be Go programs.
const MIN_GO_BINARY: u64 = 64 << 10;

/// What a regular file at `rel` is to the scan.
enum Kind {
    Dpkg,
    Apk,
    OsRelease,
    Python,
    NodeManifest,
    NodeLock,
    Executable,
    Other,
}

fn kind_of(rel: &str, meta: &fs::Metadata) -> Kind {
    match rel {
        "var/lib/dpkg/status" => return Kind::Dpkg,
        "lib/apk/db/installed" => return Kind::Apk,
        "etc/os-release" | "usr/lib/os-release" => return Kind::OsRelease,
        _ => {}
    }
    if rel.strip_prefix("var/lib/dpkg/status.d/").is_some_and(|n| !n.contains('/') && !n.ends_with(".md5sums")) {
        Kind::Dpkg
    } else if python::is_metadata(rel) {
        Kind::Python
    } else if node::is_installed_manifest(rel) {
        Kind::NodeManifest
    } else if node::is_lockfile(rel) {
        Kind::NodeLock
    } else if meta.mode() & 0o111 != 0 && meta.len() >= MIN_GO_BINARY {
        Kind::Executable
    } else {
        Kind::Other
    }
}

fn open(path: &Path) -> io::Result<File> {
    fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path)
}

fn read_text(path: &Path, size: u64) -> io::Result<Option<String>> {
    if size > MAX_TEXT {
        return Ok(None);
    }
    let mut text = String::new();
    match open(path)?.take(MAX_TEXT).read_to_string(&mut text) {
        Ok(_) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => Ok(None),
        Err(e) => Err(e),
    }
}

/// Records what the regular file `rel` says.
fn scan_file(inv: &mut LayerInventory, path: &Path, rel: &str, meta: &fs::Metadata) -> io::Result<()> {
    let kind = kind_of(rel, meta);
    let found = match kind {
        Kind::Other => return Ok(()),
        Kind::Executable => gobuild::scan(open(path)?),
        _ => {
            let Some(text) = read_text(path, meta.len())? else { return Ok(()) };
            match kind {
                Kind::Dpkg => dpkg::parse(&text),
                Kind::Apk => apk::parse(&text),
                Kind::Python => python::parse(&text).into_iter().collect(),
                Kind::NodeManifest => node::parse_manifest(&text).into_iter().collect(),
                Kind::NodeLock => node::parse_lockfile(&text),
                _ => {
                    inv.distros.insert(rel.to_string(), Distro::parse(&text));
                    return Ok(());
                }
            }
        }
    };
    if !found.is_empty() {
        inv.found.insert(rel.to_string(), found);
    }
    Ok(())
}

/// Walks `dir` (the layer's root) depth first.
fn walk(inv: &mut LayerInventory, dir: &Path, rel: &str) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let child_rel = if rel.is_empty() { name.to_string() } else { format!("{rel}/{name}") };
        let path = entry.path();
        let meta = fs::symlink_metadata(&path)?;
        inv.files += 1;
        let ft = meta.file_type();
        if ft.is_char_device() && meta.rdev() == 0 {
            inv.whiteouts.push(child_rel);
        } else if ft.is_dir() {
            if get_xattr(&path, OPAQUE_XATTR)?.as_deref() == Some(b"y") {
                inv.opaque.push(child_rel.clone());
            }
            walk(inv, &path, &child_rel)?;
        } else if ft.is_file() {
            scan_file(inv, &path, &child_rel, &meta)?;
        }
    }
    Ok(())
}

/// The inventory of the layer whose content is `dir` (blocking).
pub fn scan_layer(dir: &Path) -> io::Result<LayerInventory> {
    let mut inv = LayerInventory { version: INVENTORY_VERSION, ..Default::default() };
    walk(&mut inv, dir, "")?;
    Ok(inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, data: &[u8]) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, data).unwrap();
    }

    #[test]
    fn finds_every_kind_of_package_record() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "var/lib/dpkg/status", b"Package: bash\nStatus: install ok installed\nVersion: 5.2\n");
        write(root, "var/lib/dpkg/status.d/tzdata", b"Package: tzdata\nVersion: 2024a\n");
        write(root, "lib/apk/db/installed", b"P:musl\nV:1.2.4\n");
        write(root, "etc/os-release", b"ID=debian\nVERSION_ID=\"12\"\n");
        write(root, "usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA", b"Name: six\nVersion: 1.16.0\n");
        write(root, "app/node_modules/left-pad/package.json", br#"{"name":"left-pad","version":"1.3.0"}"#);
        write(root, "app/package.json", br#"{"name":"app","version":"0.0.1"}"#);
        let go = gobuild::tests::go_binary("go1.22.1", "path\tx\nmod\tx\t(devel)\t\n");
        let mut padded = go.clone();
        padded.resize(MIN_GO_BINARY as usize, 0);
        write(root, "usr/local/bin/fn", &padded);
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(root.join("usr/local/bin/fn"), fs::Permissions::from_mode(0o755)).unwrap();
        let inv = scan_layer(root).unwrap();
        let paths: Vec<&str> = inv.found.keys().map(String::as_str).collect();
        assert_eq!(
            paths,
            [
                "app/node_modules/left-pad/package.json",
                "lib/apk/db/installed",
                "usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA",
                "usr/local/bin/fn",
                "var/lib/dpkg/status",
                "var/lib/dpkg/status.d/tzdata",
            ]
        );
        assert_eq!(inv.distros["etc/os-release"].id, "debian");
        assert!(inv.files >= 15);
    }

    #[test]
    fn a_linked_database_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        fs::write(&secret, "Package: host-secret\nVersion: 1\n").unwrap();
        let root = dir.path().join("layer");
        fs::create_dir_all(root.join("var/lib/dpkg")).unwrap();
        std::os::unix::fs::symlink(&secret, root.join("var/lib/dpkg/status")).unwrap();
        assert!(scan_layer(&root).unwrap().found.is_empty());
    }
}
