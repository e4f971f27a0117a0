//! Real overlayfs (`userxattr`) changes → layer → re-applied: the tree seen
//! through the re-applied layer equals the tree the step saw. Needs root
//! (to mount); the suite runs as root.

use kiln_snapshotter::apply::apply_layer;
use kiln_snapshotter::diff::{diff_upper, DiffOptions};
use kiln_snapshotter::overlay::OverlaySpec;
use kiln_snapshotter::{fsx, ContentStore, SnapshotId, Snapshots};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;

struct Mounted<'a>(&'a Path);

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let _ = nix::mount::umount(self.0);
    }
}

fn base_layer() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, kind: tar::EntryType, data: &[u8], mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_000_000);
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, path, data).unwrap();
    };
    add("etc/", tar::EntryType::Directory, b"", 0o755);
    add("etc/keep", tar::EntryType::Regular, b"keep", 0o644);
    add("etc/del", tar::EntryType::Regular, b"del", 0o644);
    add("dir/", tar::EntryType::Directory, b"", 0o755);
    add("dir/a", tar::EntryType::Regular, b"a", 0o644);
    add("dir/sub/", tar::EntryType::Directory, b"", 0o700);
    add("dir/sub/b", tar::EntryType::Regular, b"b", 0o600);
    add("data/", tar::EntryType::Directory, b"", 0o755);
    add("data/file", tar::EntryType::Regular, b"data", 0o644);
    add("gone/", tar::EntryType::Directory, b"", 0o755);
    add("gone/x", tar::EntryType::Regular, b"x", 0o644);
    b.into_inner().unwrap()
}

/// path → (kind, mode, uid, gid, content or link target, xattrs)
type Tree = BTreeMap<String, (char, u32, u32, u32, Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>)>;

fn walk(root: &Path) -> Tree {
    let mut out = Tree::new();
    fn rec(root: &Path, dir: &Path, out: &mut Tree) {
        let mut names: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        names.sort();
        for p in names {
            let md = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().to_string();
            let (kind, data) = if md.is_dir() {
                ('d', vec![])
            } else if md.file_type().is_symlink() {
                ('l', fs::read_link(&p).unwrap().as_os_str().as_encoded_bytes().to_vec())
            } else {
                ('f', fs::read(&p).unwrap())
            };
            let mut xattrs: Vec<_> = fsx::list_xattrs(&p)
                .unwrap()
                .into_iter()
                .filter(|n| !fsx::is_overlay_xattr(n))
                .map(|n| {
                    let v = fsx::get_xattr(&p, &n).unwrap().unwrap();
                    (n, v)
                })
                .collect();
            xattrs.sort();
            out.insert(rel, (kind, md.mode() & 0o7777, md.uid(), md.gid(), data, xattrs));
            if md.is_dir() {
                rec(root, &p, out);
            }
        }
    }
    rec(root, root, &mut out);
    out
}

fn mount_ro(snaps: &Snapshots, lowers: &[&SnapshotId], target: &Path) {
    let dirs: Vec<String> = lowers.iter().map(|l| snaps.fs_path(l).display().to_string()).collect();
    let opts = format!("lowerdir={},userxattr", dirs.join(":"));
    nix::mount::mount(Some("overlay"), target, Some("overlay"), nix::mount::MsFlags::MS_RDONLY, Some(opts.as_str()))
        .unwrap();
}

fn mutate(m: &Path) {
    fs::remove_file(m.join("etc/del")).unwrap();
    fs::remove_dir_all(m.join("dir")).unwrap();
    fs::create_dir(m.join("dir")).unwrap();
    fs::write(m.join("dir/c"), "c").unwrap();
    fs::remove_dir_all(m.join("gone")).unwrap();
    fs::write(m.join("new"), "new").unwrap();
    std::os::unix::fs::chown(m.join("data/file"), Some(1000), Some(1000)).unwrap();
    fs::create_dir_all(m.join("usr/bin")).unwrap();
    fs::write(m.join("usr/bin/tool"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(m.join("usr/bin/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::hard_link(m.join("usr/bin/tool"), m.join("usr/bin/tool-alias")).unwrap();
    symlink("../usr/bin/tool", m.join("etc/tool-link")).unwrap();
    fsx::set_xattr(&m.join("new"), b"user.kiln-test", b"value").unwrap();
    let long = "l".repeat(120);
    fs::create_dir_all(m.join(format!("deep/{long}"))).unwrap();
    fs::write(m.join(format!("deep/{long}/{long}")), "long names").unwrap();
    fs::create_dir(m.join("empty")).unwrap();
}

#[test]
fn overlay_changes_round_trip_through_a_layer() {
    assert!(nix::unistd::geteuid().is_root(), "this test mounts overlays: run the suite as root (scripts/test.sh)");
    let tmp = tempfile::tempdir().unwrap();
    let snaps = Snapshots::open(tmp.path().join("snapshots")).unwrap();
    let store = ContentStore::open(tmp.path().join("content")).unwrap();
    let lower = snaps.prepare().unwrap();
    apply_layer(base_layer().as_slice(), &snaps.fs_path(&lower)).unwrap();
    snaps.commit(&lower).unwrap();

    let upper = snaps.prepare().unwrap();
    let mnt = tmp.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let spec = OverlaySpec { root: snaps.root().to_path_buf(), lowers: vec![lower.clone()], upper: upper.clone() };
    let cwd = std::env::current_dir().unwrap();
    spec.mount_at(&mnt).unwrap();
    std::env::set_current_dir(cwd).unwrap();
    let expected = {
        let _m = Mounted(&mnt);
        mutate(&mnt);
        walk(&mnt)
    };

    let opts = DiffOptions { gzip_level: 3, mtime_clamp: Some(0) };
    let layer = diff_upper(&snaps.fs_path(&upper), &store, &opts).unwrap();
    let again = diff_upper(&snaps.fs_path(&upper), &store, &opts).unwrap();
    assert_eq!(layer, again, "the same tree gives the same layer digest");

    let names = list_layer(&store, &layer.digest);
    for want in ["etc/.wh.del", "dir/.wh..wh..opq", "dir/c", ".wh.gone", "new", "usr/bin/tool"] {
        assert!(names.iter().any(|n| n == want), "layer lacks {want}: {names:?}");
    }
    assert!(!names.iter().any(|n| n.contains("dir/a") || n.starts_with("gone/")), "{names:?}");
    let dir_pos = names.iter().position(|n| n == "dir/").unwrap();
    assert_eq!(names[dir_pos + 1], "dir/.wh..wh..opq", "opaque marker right after its directory");

    let reapplied = snaps.prepare().unwrap();
    apply_layer(store.reader(&layer.digest).unwrap(), &snaps.fs_path(&reapplied)).unwrap();
    let view = tmp.path().join("view");
    fs::create_dir(&view).unwrap();
    mount_ro(&snaps, &[&reapplied, &lower], &view);
    let _m = Mounted(&view);
    let got = walk(&view);
    assert_eq!(got.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>());
    for (path, want) in &expected {
        assert_eq!(&got[path], want, "{path} differs after the round trip");
    }
    let tool = fs::metadata(view.join("usr/bin/tool")).unwrap();
    assert_eq!(tool.nlink(), 2, "hardlinks survive");
    assert_eq!(tool.mode() & 0o7777, 0o4755, "setuid survives chown");
}

fn list_layer(store: &ContentStore, digest: &kiln_snapshotter::Digest) -> Vec<String> {
    let out = std::process::Command::new("tar").arg("-tzf").arg(store.blob_path(digest)).output().expect("GNU tar");
    assert!(out.status.success(), "GNU tar rejects the layer: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect()
}

#[test]
fn apply_reports_the_uncompressed_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let tar = base_layer();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    let stats = apply_layer(gz.finish().unwrap().as_slice(), &tmp.path().join("a")).unwrap();
    assert_eq!(
        stats.diff_id,
        kiln_snapshotter::Digest::of(&tar),
        "diff id covers the whole stream, end blocks included"
    );
    assert_eq!(stats.entries, 11);
}
