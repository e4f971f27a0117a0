//! Cache performance: what a warm rebuild costs per step.
//!
//! - `cache_key/copy_10k_files`: key of a COPY over a 10,000-file context
//!   (content hashing; the dominant cost of a no-change rebuild).
//! - `cache_index/hit`: one cache lookup in the redb index.
//! - `definition/digests_100_nodes`: canonical op digests of a graph.
//! - `layer_export/diff_gzip_8mb`: upper dir (2,000 files) → gzip layer.

// criterion_group! and criterion_main! generate undocumented public items.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kiln::graph::{CopyAction, Definition, ExecOp, FileAction, FileOp, Op};
use kiln::solver::cache_key;
use kiln::worker::{CacheIndex, LayerRecord, StepRecord};
use kiln_snapshotter::diff::{diff_upper, DiffOptions};
use kiln_snapshotter::{ContentStore, Digest, SnapshotId};
use std::fs;
use std::path::Path;

fn make_tree(root: &Path, files: usize, size: usize) {
    for i in 0..files {
        let dir = root.join(format!("d{}", i % 100));
        fs::create_dir_all(&dir).unwrap();
        let data: Vec<u8> = (0..size).map(|j| ((i * 31 + j * 7) % 251) as u8).collect();
        fs::write(dir.join(format!("f{i}.txt")), data).unwrap();
    }
}

fn bench_cache_key(c: &mut Criterion) {
    let ctx = tempfile::tempdir().unwrap();
    make_tree(&ctx.path().join("app"), 10_000, 256);
    let op = Op::File(FileOp {
        actions: vec![FileAction::Copy(CopyAction {
            sources: vec!["app".into()],
            dest: "/app/".into(),
            chown: None,
            chmod: None,
            from_input: None,
            inline: vec![],
            unpack: false,
            exclude: vec![],
            parents: false,
        })],
        link: false,
    });
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    c.bench_function("cache_key/copy_10k_files", |b| {
        b.iter(|| rt.block_on(cache_key(&op, "parent", &[], ctx.path())).unwrap())
    });
}

fn bench_cache_hit(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let index = CacheIndex::open(&dir.path().join("cache.redb")).unwrap();
    let layer = LayerRecord {
        snapshot: Some(SnapshotId::random()),
        digest: Digest::of(b"blob"),
        diff_id: Digest::of(b"tar"),
        size: 4,
        media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        created: 0,
        origin: None,
    };
    index.put_step("key", &StepRecord { layers: vec![layer; 8], description: String::new() }).unwrap();
    c.bench_function("cache_index/hit", |b| b.iter(|| index.get_step("key").unwrap().unwrap()));
}

fn bench_digests(c: &mut Criterion) {
    let mut def = Definition::default();
    let mut prev = None;
    for i in 0..100 {
        let op = Op::Exec(ExecOp {
            args: vec!["sh".into(), "-c".into(), format!("step {i}")],
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            user: String::new(),
            secrets: vec![],
            proxy_env: vec![],
            mounts: vec![],
            network: Default::default(),
            hostname: None,
            platform: kiln::platform::Platform::host(),
        });
        prev = Some(def.push(op, prev.into_iter().collect(), None));
    }
    c.bench_function("definition/digests_100_nodes", |b| b.iter(|| def.digests()));
}

fn bench_layer_export(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let upper = dir.path().join("upper");
    make_tree(&upper, 2_000, 4096);
    let store = ContentStore::at(dir.path().join("content")).unwrap();
    let opts = DiffOptions { mtime_clamp: Some(0), ..DiffOptions::default() };
    let mut group = c.benchmark_group("layer_export");
    group.throughput(Throughput::Bytes(2_000 * 4096));
    group.sample_size(10);
    group.bench_function("diff_gzip_8mb", |b| b.iter(|| diff_upper(&upper, &store, &opts).unwrap()));
    group.finish();
}

criterion_group!(benches, bench_cache_key, bench_cache_hit, bench_digests, bench_layer_export);
criterion_main!(benches);
