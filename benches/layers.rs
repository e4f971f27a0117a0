//! Layer export and snapshot costs (issue: exact diffs at the hardware
//! limit). Throughput is MB/s of *uncompressed tar*, comparable with the
//! single-core limits measured on these machines (tools.md §6: gzip-1
//! about 110 MB/s, zstd-3 about 125 MB/s).
//!
//! - `export/<codec>/<threads>t`: a ~100 MB tree copied from the host's
//!   `/usr` (real binaries and text, like a rootfs) → compressed layer.
//!   gzip with 1 thread runs entirely on the calling thread; zstd always
//!   uses libzstd's worker mode (its output differs from single-thread
//!   mode, and a digest must not depend on the machine), so `zstd3/1t` is
//!   one compression worker beside the tar writer.
//! - `raw/<codec>`: the bare compressor over the same tree's tar bytes in
//!   memory on one thread: the hardware limit for this data, measured in
//!   the same run, that `export/*/1t` is compared with.
//! - `snapshot/prepare_commit`: one empty snapshot prepared and committed.
//! - `apply/5000_files`: unpacking a gzip layer of 5,000 small files in
//!   500 directories (a dependency install) into a fresh directory, as a
//!   base-image pull or an `ADD` of an archive does.
//! - `export/one_file_change`: the upper dir of a step that changed one
//!   file on top of any tree. kiln walks only the overlay upper, so this
//!   cost does not grow with the lower layers' size (a two-tree differ
//!   would walk the whole 100 MB).

// criterion_group! and criterion_main! generate undocumented public items.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kiln_snapshotter::diff::{diff_upper, DiffOptions};
use kiln_snapshotter::encode::LayerCompression;
use kiln_snapshotter::snapshots::Snapshotter;
use kiln_snapshotter::{ContentStore, Snapshots};
use std::fs;
use std::io::Write;
use std::path::Path;

const TREE_BYTES: u64 = 100 << 20;

/// Copies regular files from `/usr` into `dest` until `TREE_BYTES`;
/// returns the bytes copied.
fn copy_usr(dest: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![std::path::PathBuf::from("/usr")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let Ok(md) = e.path().symlink_metadata() else { continue };
            if md.is_dir() {
                stack.push(e.path());
            } else if md.is_file() && total < TREE_BYTES {
                let rel = e.path().strip_prefix("/").unwrap().to_path_buf();
                fs::create_dir_all(dest.join(rel.parent().unwrap())).unwrap();
                if fs::copy(e.path(), dest.join(&rel)).is_ok() {
                    total += md.len();
                }
            }
        }
    }
    total
}

fn bench_export(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let bytes = copy_usr(&tree);
    let store = ContentStore::at(dir.path().join("content")).unwrap();
    let mut group = c.benchmark_group("export");
    group.throughput(Throughput::Bytes(bytes));
    group.sample_size(10);
    let codecs = [
        ("gzip1", LayerCompression::Gzip(1)),
        ("gzip3", LayerCompression::Gzip(3)),
        ("zstd3", LayerCompression::Zstd(3)),
    ];
    for (name, compression) in codecs {
        for threads in [1, 2] {
            let opts = DiffOptions { compression, threads, mtime_clamp: Some(0) };
            group
                .bench_function(format!("{name}/{threads}t"), |b| b.iter(|| diff_upper(&tree, &store, &opts).unwrap()));
        }
    }
    group.finish();
}

/// The tree as one in-memory tar (what the export compresses).
fn tar_bytes(tree: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all(".", tree).unwrap();
    b.into_inner().unwrap()
}

fn bench_raw(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    copy_usr(&dir.path().join("tree"));
    let data = tar_bytes(&dir.path().join("tree"));
    let mut group = c.benchmark_group("raw");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.sample_size(10);
    for level in [1, 3] {
        group.bench_function(format!("gzip{level}"), |b| {
            b.iter(|| {
                let mut enc = flate2::write::GzEncoder::new(std::io::sink(), flate2::Compression::new(level));
                enc.write_all(&data).unwrap();
                enc.finish().unwrap()
            })
        });
    }
    group.bench_function("zstd3", |b| {
        b.iter(|| zstd::stream::copy_encode(data.as_slice(), std::io::sink(), 3).unwrap())
    });
    group.finish();
}

fn bench_snapshots(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let snaps = Snapshots::open(dir.path().join("snapshots")).unwrap();
    c.bench_function("snapshot/prepare_commit", |b| {
        b.iter(|| {
            let id = snaps.prepare(&[]).unwrap();
            snaps.commit(&id).unwrap();
            id
        })
    });
    let store = ContentStore::at(dir.path().join("content")).unwrap();
    let upper = dir.path().join("upper");
    fs::create_dir_all(upper.join("app")).unwrap();
    fs::write(upper.join("app/handler.py"), "def handle(req):\n    return req\n").unwrap();
    let opts = DiffOptions { mtime_clamp: Some(0), ..DiffOptions::default() };
    c.bench_function("export/one_file_change", |b| b.iter(|| diff_upper(&upper, &store, &opts).unwrap()));
}

/// A gzip layer of 5,000 small files in 500 directories.
fn many_files_layer() -> Vec<u8> {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    for i in 0..5000 {
        let data = format!("module.exports = {i}\n");
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, format!("node_modules/pkg{}/f{i}.js", i % 500), data.as_bytes()).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

fn bench_apply(c: &mut Criterion) {
    let layer = many_files_layer();
    // Every unpacked tree is kept until the end: deleting thousands of files
    // between iterations makes ext4 slow to allocate the next inodes
    // ("recently deleted" scans), which would be measured instead.
    let kept = std::cell::RefCell::new(Vec::new());
    let mut group = c.benchmark_group("apply");
    group.sample_size(10);
    group.bench_function("5000_files", |b| {
        b.iter_batched(
            || tempfile::tempdir().unwrap(),
            |dir| {
                kiln_snapshotter::apply::apply_layer(&layer[..], &dir.path().join("root")).unwrap();
                kept.borrow_mut().push(dir);
            },
            criterion::BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_raw, bench_export, bench_snapshots, bench_apply);
criterion_main!(benches);
