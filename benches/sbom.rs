//! The SBOM's costs (issue 23): scanning a layer's files for package
//! records, and merging inventories into the SPDX document.
//!
//! - `scan/usr`: the host's `/usr` as one layer (tens of thousands of files:
//!   ELF executables, Python `dist-info`s, text), reported in files/s — the
//!   rate the SBOM of a fresh layer costs. Cached layers are never scanned
//!   again (their inventory is kept by diff id).
//! - `document/dpkg+usr`: merging the inventories of `/var/lib/dpkg` and
//!   `/usr` and writing the SPDX document with its purls (the part of every
//!   build's SBOM that is not cached).

// criterion_group! and criterion_main! generate undocumented public items.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kiln::attest::sbom::{merge, scan_layer, spdx, LayerInventory};
use std::path::Path;

fn scan(c: &mut Criterion) {
    let usr = Path::new("/usr");
    let files = scan_layer(usr).expect("scan /usr").files;
    let mut group = c.benchmark_group("scan");
    group.sample_size(10);
    group.throughput(Throughput::Elements(files));
    group.bench_function("usr", |b| b.iter(|| scan_layer(usr).expect("scan /usr")));
    group.finish();
}

/// The host's dpkg database as a layer rooted at `/` (only that file).
fn dpkg_layer() -> LayerInventory {
    let dir = tempfile::tempdir().expect("tempdir");
    let status = dir.path().join("var/lib/dpkg");
    std::fs::create_dir_all(&status).expect("mkdir");
    std::fs::copy("/var/lib/dpkg/status", status.join("status")).expect("copy the dpkg status");
    std::fs::create_dir_all(dir.path().join("etc")).expect("mkdir");
    let _ = std::fs::copy("/etc/os-release", dir.path().join("etc/os-release"));
    scan_layer(dir.path()).expect("scan")
}

fn document(c: &mut Criterion) {
    let layers = [dpkg_layer(), scan_layer(Path::new("/usr")).expect("scan /usr")];
    let subject = spdx::Subject {
        name: "registry.example/fn:1",
        digest: "sha256:0000000000000000000000000000000000000000000000000000000000000000",
        platform: "linux/amd64",
        created: "1970-01-01T00:00:00Z",
    };
    let mut group = c.benchmark_group("document");
    group.sample_size(20);
    group.bench_function("dpkg+usr", |b| {
        b.iter(|| {
            let inventory = merge(&layers);
            serde_json::to_vec(&spdx::document(&subject, &inventory, &[])).expect("serializes")
        })
    });
    group.finish();
}

criterion_group!(benches, scan, document);
criterion_main!(benches);
