//! The worker over an in-memory content store, on-disk snapshots and the
//! scripted runner: layers committed and fetched from the store, garbage
//! collection down to a budget, the store check, push bookkeeping and the
//! cache listing. No root, no registry.

use super::fake_runner::ScriptRunner;
use super::*;
use crate::registry::{Registry, RegistryClient, RegistryOptions};
use kiln_snapshotter::conformance::MemoryStore;
use kiln_snapshotter::content::write_blob;

struct Fixture {
    _dir: tempfile::TempDir,
    worker: Arc<Worker>,
    store: MemoryStore,
}

fn fixture(cache_budget: Option<u64>) -> Fixture {
    fixture_with(cache_budget, Arc::new(RegistryClient::new(RegistryOptions::default()).unwrap()))
}

fn fixture_with(cache_budget: Option<u64>, registry: Arc<dyn Registry>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let store = MemoryStore::default();
    let backends = Backends {
        store: Arc::new(store.clone()),
        snapshots: Arc::new(Snapshots::open(data_dir.join("snapshots")).unwrap()),
        runner: Arc::new(ScriptRunner::default()),
        registry,
    };
    let cfg = WorkerConfig { data_dir, diff: Default::default(), cache_budget };
    Fixture { _dir: dir, worker: Arc::new(Worker::with(cfg, backends).unwrap()), store }
}

/// Commits a layer holding one file of `size` incompressible bytes and
/// records it as the cache entry `key`.
async fn cached_layer(worker: &Worker, key: &str, size: usize) -> LayerRecord {
    let upper = worker.prepare_empty().unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ key.len() as u64 ^ (size as u64) << 20;
    let bytes: Vec<u8> = (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(upper.dir().join("data.bin"), bytes).unwrap();
    let layers = worker.commit_layer(upper, Vec::new(), None).await.unwrap();
    let record = StepRecord { layers: layers.clone(), description: format!("RUN make {key}") };
    worker.cache().put_step(key, &record).unwrap();
    layers.into_iter().next().unwrap()
}

#[tokio::test]
async fn a_committed_layer_lands_in_the_store_and_stays_usable() {
    let f = fixture(None);
    let layer = cached_layer(&f.worker, "k1", 10_000).await;
    let info = f.store.info(&layer.digest).unwrap().expect("the layer blob is in the worker's store");
    assert_eq!(info.size, layer.size);
    let snapshot = layer.snapshot.as_ref().unwrap();
    assert_eq!(f.worker.snapshots().stat(snapshot).unwrap(), Some(kiln_snapshotter::snapshots::Kind::Committed));
    let record = f.worker.cache().get_step("k1").unwrap().unwrap();
    assert!(f.worker.usable(&record));
    f.store.remove(&layer.digest).unwrap();
    assert!(!f.worker.usable(&record), "a record whose blob is gone is not usable");
}

#[tokio::test]
async fn a_dropped_uncommitted_snapshot_is_removed() {
    let f = fixture(None);
    let upper = f.worker.prepare_empty().unwrap();
    let id = upper.id().clone();
    drop(upper);
    assert_eq!(f.worker.snapshots().stat(&id).unwrap(), None);
}

#[tokio::test]
async fn collection_evicts_least_recently_used_entries_down_to_the_budget() {
    let f = fixture(None);
    let old = cached_layer(&f.worker, "old", 200_000).await;
    let new = cached_layer(&f.worker, "new!", 200_000).await;
    f.worker.cache().touch(&["old".into()], 100).unwrap();
    f.worker.cache().touch(&["new!".into()], 200).unwrap();
    let unreferenced = write_blob(&f.store, &vec![7u8; 100_000]).unwrap();
    let report = f.worker.collect_garbage(None).unwrap();
    assert_eq!(report.blobs_removed, 1, "{report:?}");
    assert_eq!(f.store.info(&unreferenced).unwrap(), None, "a blob no entry references goes first");
    let budget = report.bytes_after - 1;
    let report = f.worker.collect_garbage(Some(budget)).unwrap();
    assert_eq!(report.steps_evicted, 1, "{report:?}");
    assert!(report.bytes_after <= budget);
    assert!(f.worker.cache().get_step("old").unwrap().is_none(), "the least recently used entry is evicted");
    assert!(f.worker.cache().get_step("new!").unwrap().is_some());
    assert_eq!(f.store.info(&old.digest).unwrap(), None);
    assert!(f.store.info(&new.digest).unwrap().is_some());
}

#[tokio::test]
async fn a_layer_is_scanned_once_and_its_inventory_goes_with_it() {
    let f = fixture(None);
    let old = cached_layer(&f.worker, "old", 1_000).await;
    let kept = cached_layer(&f.worker, "kept", 2_000).await;
    f.worker.cache().touch(&["old".into()], 100).unwrap();
    f.worker.cache().touch(&["kept".into()], 200).unwrap();
    let (_, scanned) = f.worker.layer_inventories(std::slice::from_ref(&old), None).await.unwrap();
    assert_eq!(scanned, 1, "a new layer is scanned");
    let (inv, scanned) = f.worker.layer_inventories(std::slice::from_ref(&old), None).await.unwrap();
    assert_eq!(scanned, 0, "a layer seen before is not scanned again");
    assert!(inv[0].files >= 1);
    f.worker.layer_inventories(std::slice::from_ref(&kept), None).await.unwrap();
    let sbom = f.worker.data_dir().join("sbom");
    std::fs::write(sbom.join(".tmpleftover"), b"{").unwrap();
    let report = f.worker.collect_garbage(None).unwrap();
    let budget = report.bytes_after - 1;
    f.worker.collect_garbage(Some(budget)).unwrap();
    let mut left: Vec<String> =
        std::fs::read_dir(&sbom).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    left.sort();
    assert_eq!(left, [format!("{}.json", kept.diff_id.hex())], "the evicted layer's inventory and leftovers go");
}

#[tokio::test]
async fn prune_and_check_wait_for_builds_and_report() {
    let f = fixture(None);
    let layer = cached_layer(&f.worker, "k", 50_000).await;
    let report = f.worker.check_store().await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
    assert_eq!((report.blobs, report.steps), (1, 1));
    f.store.remove(&layer.digest).unwrap();
    let report = f.worker.check_store().await.unwrap();
    assert!(!report.ok);
    assert!(report.problems[0].contains("layer blob"), "{:?}", report.problems);
    let guard = f.worker.build_guard().await;
    let worker = f.worker.clone();
    let prune = tokio::spawn(async move { worker.prune(0).await });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!prune.is_finished(), "a prune waits while a build holds the store");
    drop(guard);
    let report = prune.await.unwrap().unwrap();
    assert_eq!(report.steps_evicted, 1);
    assert!(f.worker.cache_entries().unwrap().is_empty());
}

#[tokio::test]
async fn pushed_layers_remember_their_repository() {
    let f = fixture(None);
    let mut layers = vec![cached_layer(&f.worker, "k", 1_000).await];
    f.worker.add_push_origins(&mut layers);
    assert_eq!(layers[0].origin, None, "never pushed");
    f.worker.record_pushed(&layers, "reg.example/team/fn");
    f.worker.add_push_origins(&mut layers);
    assert_eq!(layers[0].origin.as_deref(), Some("reg.example/team/fn"));
    let mut pulled = layers.clone();
    pulled[0].origin = Some("reg.example/library/base".into());
    f.worker.add_push_origins(&mut pulled);
    assert_eq!(pulled[0].origin.as_deref(), Some("reg.example/library/base"), "a known origin is kept");
}

#[tokio::test]
async fn cache_entries_list_the_most_recent_first() {
    let f = fixture(None);
    cached_layer(&f.worker, "a", 1_000).await;
    cached_layer(&f.worker, "b", 3_000).await;
    f.worker.cache().touch(&["a".into()], 10).unwrap();
    f.worker.cache().touch(&["b".into()], 20).unwrap();
    let entries = f.worker.cache_entries().unwrap();
    let keys: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["b", "a"]);
    assert_eq!(entries[0].description, "RUN make b");
    assert_eq!((entries[0].layers, entries[0].last_used), (1, 20));
    assert!(entries[0].top_layer_bytes > 0);
}

#[tokio::test]
async fn a_worker_reopened_on_its_data_dir_sees_its_cache() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let open = || {
        let cfg = WorkerConfig { data_dir: data_dir.clone(), diff: Default::default(), cache_budget: None };
        let runner = Arc::new(ScriptRunner::default());
        Worker::open(cfg, runner, Arc::new(RegistryClient::new(RegistryOptions::default()).unwrap())).unwrap()
    };
    let worker = open();
    cached_layer(&worker, "k", 1_000).await;
    let half_done = worker.prepare_empty().unwrap();
    let active = half_done.id().clone();
    std::mem::forget(half_done);
    drop(worker);
    let worker = open();
    let record = worker.cache().get_step("k").unwrap().unwrap();
    assert!(worker.usable(&record), "the filesystem store and snapshots survive a restart");
    assert_eq!(worker.snapshots().stat(&active).unwrap(), None, "a step interrupted by the restart is removed");
}

#[tokio::test]
async fn a_lazy_layer_is_fetched_once_when_read_and_its_snapshot_kept() {
    let registry = Arc::new(crate::registry::memory::MemoryRegistry::default());
    let builder = fixture_with(None, registry.clone());
    let built = cached_layer(&builder.worker, "k", 20_000).await;
    let base = crate::registry::Reference::parse("reg.example/library/base:1").unwrap();
    registry.push_blob(&base, &built.digest, &builder.store, None).await.unwrap();

    let fresh = fixture_with(None, registry.clone());
    let lazy = LayerRecord { snapshot: None, origin: Some("reg.example/library/base".into()), ..built.clone() };
    let record = StepRecord { layers: vec![lazy.clone()], description: "FROM base".into() };
    fresh.worker.cache().put_step("from", &record).unwrap();
    assert!(fresh.worker.usable(&record), "a lazy layer with an origin is usable without its bytes");
    assert_eq!(registry.traffic().downloads, 0);

    let once = fresh.worker.materialize(std::slice::from_ref(&lazy)).await.unwrap();
    assert_eq!(once.pulled, built.size, "read, it is downloaded");
    let again = fresh.worker.materialize(std::slice::from_ref(&lazy)).await.unwrap();
    assert_eq!((again.pulled, registry.traffic().downloads), (0, 1), "and only once");
    assert_eq!(once.layers[0].snapshot, again.layers[0].snapshot);

    fresh.worker.collect_garbage(None).unwrap();
    let kept = fresh.worker.local_snapshot(&lazy).unwrap();
    assert_eq!(kept, once.layers[0].snapshot, "collection keeps what a lazy cache entry unpacked");
    let report = fresh.worker.check_store().await.unwrap();
    assert!(report.ok, "{:?}", report.problems);

    let orphan = LayerRecord { origin: None, ..lazy };
    let no_origin = StepRecord { layers: vec![orphan], description: String::new() };
    assert!(!fresh.worker.usable(&no_origin), "a lazy layer with nowhere to fetch it from is not usable");
}
