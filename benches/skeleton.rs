//! What a COPY on a chain this replica never fetched costs before its
//! helper runs (issue 24, item 2): decoding the layers' header indexes,
//! stacking them into the merged view, and planning the skeleton. The
//! chain is shaped like the bench's node function: a Debian-sized base
//! (6,000 entries) and a dependency layer of 5,500 under the workdir.

// criterion_group! and criterion_main! generate undocumented public items.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kiln::worker::fileop::PlannedAction;
use kiln::worker::headers::{decode_headers, encode_headers};
use kiln::worker::skeleton::{plan, tree::Tree};
use kiln_snapshotter::headers::{EntryKind, HeaderEntry, LayerHeaders};

fn entry(path: String, kind: EntryKind) -> HeaderEntry {
    let link = (kind == EntryKind::Symlink).then(|| "../lib/target".to_string());
    HeaderEntry { path, kind, mode: 0o755, uid: 0, gid: 0, mtime: 1_700_000_000, link, xattrs: false }
}

fn layer(entries: impl IntoIterator<Item = HeaderEntry>) -> LayerHeaders {
    let mut l = LayerHeaders::new();
    entries.into_iter().for_each(|e| l.push(e));
    l
}

/// A Debian-sized base: 60 directories of 99 files and links each.
fn base() -> LayerHeaders {
    let mut out = vec![entry("usr".into(), EntryKind::Dir), entry("usr/share".into(), EntryKind::Dir)];
    for d in 0..60 {
        out.push(entry(format!("usr/share/pkg{d}"), EntryKind::Dir));
        for f in 0..99 {
            let kind = if f % 10 == 0 { EntryKind::Symlink } else { EntryKind::File };
            out.push(entry(format!("usr/share/pkg{d}/file-{f}.txt"), kind));
        }
    }
    out.extend(["home", "home/app"].map(|p| entry(p.into(), EntryKind::Dir)));
    layer(out)
}

/// `npm install`: 500 packages of 10 files under the workdir.
fn dependencies() -> LayerHeaders {
    let mut out = ["home", "home/app", "home/app/node_modules"].map(|p| entry(p.into(), EntryKind::Dir)).to_vec();
    for p in 0..500 {
        out.push(entry(format!("home/app/node_modules/pkg{p}"), EntryKind::Dir));
        out.extend((0..10).map(|f| entry(format!("home/app/node_modules/pkg{p}/f{f}.js"), EntryKind::File)));
    }
    layer(out)
}

fn copy_handler() -> Vec<PlannedAction> {
    vec![PlannedAction::copy(&["index.js", "handler.js"], "/home/app/")]
}

fn skeleton(c: &mut Criterion) {
    let chain = [base(), dependencies()];
    let encoded: Vec<Vec<u8>> = chain.iter().map(encode_headers).collect();
    let entries: usize = chain.iter().map(|l| l.entries.len()).sum();
    let context = tempfile::tempdir().expect("tempdir");
    for f in ["index.js", "handler.js"] {
        std::fs::write(context.path().join(f), "x").expect("write");
    }
    let mut group = c.benchmark_group("skeleton");
    group.throughput(Throughput::Elements(entries as u64));
    let decode = || encoded.iter().map(|e| decode_headers(e).expect("decodes")).collect::<Vec<_>>();
    group.bench_function("decode", |b| b.iter(decode));
    group.bench_function("merge", |b| b.iter_batched(|| chain.to_vec(), Tree::merge, criterion::BatchSize::SmallInput));
    let tree = Tree::merge(chain.to_vec());
    let actions = copy_handler();
    group.bench_function("plan", |b| b.iter(|| plan(&tree, &actions, context.path()).expect("plans")));
    group.finish();
}

criterion_group!(benches, skeleton);
criterion_main!(benches);
