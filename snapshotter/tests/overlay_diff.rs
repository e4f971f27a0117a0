//! Real overlayfs (`userxattr`) changes → layer → re-applied, both by kiln
//! and by an independent tool (umoci, on top of the parent layer): the tree
//! seen afterwards equals the tree the step saw. The change matrix covers
//! create, modify, chmod, chown, delete file, delete directory, delete and
//! recreate a directory, rename, hardlink, symlink, long names and link
//! targets, xattrs, setuid and empty directories. Needs root (to mount);
//! the suite runs as root.

use kiln_snapshotter::apply::apply_layer;
use kiln_snapshotter::diff::{diff_upper, diff_upper_indexed, DiffOptions};
use kiln_snapshotter::overlay::mount_all;
use kiln_snapshotter::snapshots::Snapshotter;
use kiln_snapshotter::{fsx, ContentStore, SnapshotId, Snapshots, Store};
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
    add("edit", tar::EntryType::Regular, b"old content", 0o644);
    add("perm", tar::EntryType::Regular, b"perm", 0o644);
    add("from", tar::EntryType::Regular, b"renamed", 0o640);
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
    let dirs: Vec<String> = lowers.iter().map(|l| snaps.dir(l).display().to_string()).collect();
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
    fs::write(m.join("edit"), "new content").unwrap();
    fs::set_permissions(m.join("perm"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::rename(m.join("from"), m.join("to")).unwrap();
    symlink(format!("deep/{long}/{long}"), m.join("long-link")).unwrap();
}

#[test]
fn overlay_changes_round_trip_through_a_layer() {
    assert!(nix::unistd::geteuid().is_root(), "this test mounts overlays: run the suite as root (scripts/test.sh)");
    let tmp = tempfile::tempdir().unwrap();
    let snaps = Snapshots::open(tmp.path().join("snapshots")).unwrap();
    let store = ContentStore::at(tmp.path().join("content")).unwrap();
    let lower = snaps.prepare(&[]).unwrap();
    apply_layer(base_layer().as_slice(), &snaps.dir(&lower)).unwrap();
    snaps.commit(&lower).unwrap();

    let upper = Snapshotter::prepare(&snaps, std::slice::from_ref(&lower)).unwrap();
    let mnt = tmp.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let cwd = std::env::current_dir().unwrap();
    mount_all(&snaps.mounts(&upper).unwrap(), &mnt).unwrap();
    std::env::set_current_dir(cwd).unwrap();
    let expected = {
        let _m = Mounted(&mnt);
        mutate(&mnt);
        walk(&mnt)
    };

    let opts = DiffOptions { mtime_clamp: Some(0), ..DiffOptions::default() };
    let (layer, headers) = diff_upper_indexed(&snaps.dir(&upper), &store, &opts).unwrap();
    let again = diff_upper(&snaps.dir(&upper), &store, &opts).unwrap();
    assert_eq!(layer, again, "the same tree gives the same layer digest");

    let names = list_layer(&store, &layer.digest);
    for want in ["etc/.wh.del", "dir/.wh..wh..opq", "dir/c", ".wh.gone", "new", "usr/bin/tool"] {
        assert!(names.iter().any(|n| n == want), "layer lacks {want}: {names:?}");
    }
    assert!(!names.iter().any(|n| n.contains("dir/a") || n.starts_with("gone/")), "{names:?}");
    let dir_pos = names.iter().position(|n| n == "dir/").unwrap();
    assert_eq!(names[dir_pos + 1], "dir/.wh..wh..opq", "opaque marker right after its directory");

    let reapplied = snaps.prepare(&[]).unwrap();
    let applied = apply_layer(store.open(&layer.digest).unwrap(), &snaps.dir(&reapplied)).unwrap();
    assert_eq!(applied.headers, headers, "applying a layer records the headers its diff recorded");
    let indexed: Vec<&str> = headers.entries.iter().map(|e| e.path.as_str()).collect();
    let listed: Vec<&str> = names.iter().map(|n| n.trim_end_matches('/')).collect();
    assert_eq!(indexed, listed, "one header per tar entry, in tar order");
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

    let rootfs = umoci_unpack(tmp.path(), &store, &layer);
    let by_umoci = walk(&rootfs);
    assert_eq!(by_umoci.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>(), "umoci's view");
    for (path, want) in &expected {
        assert_eq!(&by_umoci[path], want, "{path} differs when umoci applies the layer");
    }
    assert_eq!(fs::metadata(rootfs.join("usr/bin/tool")).unwrap().nlink(), 2, "umoci sees the hardlink");
}

/// An OCI layout holding the base layer and `layer`, unpacked by umoci;
/// returns the rootfs.
fn umoci_unpack(tmp: &Path, store: &ContentStore, layer: &kiln_snapshotter::diff::Layer) -> std::path::PathBuf {
    use kiln_snapshotter::Digest;
    let layout = tmp.join("layout");
    fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    fs::write(layout.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let put = |data: &[u8]| {
        let d = Digest::of(data);
        fs::write(layout.join("blobs/sha256").join(d.hex()), data).unwrap();
        serde_json::json!({"digest": d.to_string(), "size": data.len()})
    };
    let base_tar = base_layer();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &base_tar).unwrap();
    let gz_type = "application/vnd.oci.image.layer.v1.tar+gzip";
    let mut base = put(&gz.finish().unwrap());
    base["mediaType"] = gz_type.into();
    let mut top = put(&fs::read(store.blob_path(&layer.digest)).unwrap());
    top["mediaType"] = gz_type.into();
    let diff_ids = [Digest::of(&base_tar).to_string(), layer.diff_id.to_string()];
    let config = serde_json::json!({"architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}});
    let mut config_desc = put(&serde_json::to_vec(&config).unwrap());
    config_desc["mediaType"] = "application/vnd.oci.image.config.v1+json".into();
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc, "layers": [base, top]});
    let mut manifest_desc = put(&serde_json::to_vec(&manifest).unwrap());
    manifest_desc["mediaType"] = "application/vnd.oci.image.manifest.v1+json".into();
    manifest_desc["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": "test"});
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [manifest_desc]});
    fs::write(layout.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    let bundle = tmp.join("bundle");
    let out = std::process::Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:test", layout.display()))
        .arg(&bundle)
        .output()
        .expect("umoci");
    assert!(out.status.success(), "umoci unpack: {}", String::from_utf8_lossy(&out.stderr));
    bundle.join("rootfs")
}

fn list_layer(store: &ContentStore, digest: &kiln_snapshotter::Digest) -> Vec<String> {
    let out = std::process::Command::new("tar").arg("-tzf").arg(store.blob_path(digest)).output().expect("GNU tar");
    assert!(out.status.success(), "GNU tar rejects the layer: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect()
}

fn gzipped(tar: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, tar).unwrap();
    gz.finish().unwrap()
}

#[test]
fn apply_reports_the_uncompressed_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let tar = base_layer();
    let stats = apply_layer(gzipped(&tar).as_slice(), &tmp.path().join("a")).unwrap();
    assert_eq!(
        stats.diff_id,
        kiln_snapshotter::Digest::of(&tar),
        "diff id covers the whole stream, end blocks included"
    );
    assert_eq!(stats.entries, 14);
}

#[test]
fn apply_keeps_file_capabilities_and_user_xattrs() {
    let tmp = tempfile::tempdir().unwrap();
    let cap: [u8; 20] = [1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let mut b = tar::Builder::new(Vec::new());
    let records: [(&str, &[u8]); 2] =
        [("SCHILY.xattr.security.capability", &cap), ("SCHILY.xattr.user.origin", b"layer")];
    b.append_pax_extensions(records).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o755);
    h.set_size(2);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    b.append_data(&mut h, "bin/ping", &b"#!"[..]).unwrap();
    let layer = b.into_inner().unwrap();
    let dest = tmp.path().join("fs");
    apply_layer(layer.as_slice(), &dest).unwrap();
    let file = dest.join("bin/ping");
    assert_eq!(fsx::get_xattr(&file, b"security.capability").unwrap().as_deref(), Some(&cap[..]), "file caps kept");
    assert_eq!(fsx::get_xattr(&file, b"user.origin").unwrap().as_deref(), Some(&b"layer"[..]));
}

#[test]
fn a_corrupt_or_oversized_layer_fails_with_the_decoders_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let tar = base_layer();
    let mut corrupt = gzipped(&tar);
    let middle = corrupt.len() / 2;
    corrupt[middle..].iter_mut().for_each(|b| *b = !*b);
    let err = apply_layer(corrupt.as_slice(), &tmp.path().join("a")).unwrap_err().to_string();
    assert!(err.contains("read layer") && err.contains("deflate"), "{err}");
    let limit = tar.len() as u64 / 2;
    let err = kiln_snapshotter::apply::apply_layer_limited(tar.as_slice(), &tmp.path().join("b"), limit)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("unpacks to more than {limit} bytes")), "{err}");
}
