//! `kiln cache check`: the store's consistency, checked while no build
//! runs. Every blob hashes to its name; every cache entry's layers have
//! their blob and a committed snapshot; every unpacked base layer has its
//! snapshot; no interrupted step (active snapshot) or partial download
//! (ingest file) is left over.

use super::{Worker, WorkerError};
use kiln_snapshotter::snapshots::Kind;
use kiln_snapshotter::{Digest, SnapshotId};
use std::collections::HashMap;
use std::sync::Arc;

/// What a check found.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct CheckReport {
    /// No problem found.
    pub ok: bool,
    /// Blobs verified.
    pub blobs: usize,
    /// Their bytes.
    pub blob_bytes: u64,
    /// Snapshots seen.
    pub snapshots: usize,
    /// Cache entries checked.
    pub steps: usize,
    /// One line per problem.
    pub problems: Vec<String>,
}

impl Worker {
    /// Checks the store with the garbage-collection lock held exclusively
    /// (so no build runs meanwhile).
    pub async fn check_store(self: &Arc<Self>) -> Result<CheckReport, WorkerError> {
        let _exclusive = self.maintenance_lock().await?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.check_now()).await?
    }

    fn check_now(&self) -> Result<CheckReport, WorkerError> {
        let mut report = CheckReport::default();
        let blobs = self.check_blobs(&mut report)?;
        let snapshots: HashMap<_, _> = self.snapshots.walk()?.into_iter().collect();
        report.snapshots = snapshots.len();
        for (id, kind) in &snapshots {
            if *kind != Kind::Committed {
                report.problems.push(format!("snapshot {} is still active (an interrupted step)", id.as_str()));
            }
        }
        let committed = |id: &SnapshotId| snapshots.get(id) == Some(&Kind::Committed);
        for (key, record, _) in self.cache.steps()? {
            report.steps += 1;
            // A lazy layer is held by its origin repository, not here.
            for l in record.layers.iter().filter(|l| l.snapshot.is_some()) {
                if !blobs.contains_key(&l.digest) {
                    report.problems.push(format!("cache entry {key}: layer blob {} is missing", l.digest));
                }
                if let Some(s) = l.snapshot.as_ref().filter(|s| !committed(s)) {
                    report.problems.push(format!("cache entry {key}: snapshot {} is missing", s.as_str()));
                }
            }
        }
        for (diff_id, snapshot) in self.cache.unpacked()? {
            if !committed(&snapshot) {
                report.problems.push(format!("unpacked layer {diff_id}: snapshot {} is missing", snapshot.as_str()));
            }
        }
        report.ok = report.problems.is_empty();
        Ok(report)
    }

    /// Re-hashes every blob; returns their sizes by digest.
    fn check_blobs(&self, report: &mut CheckReport) -> Result<HashMap<Digest, u64>, WorkerError> {
        let mut sizes = HashMap::new();
        for info in self.store.walk()? {
            let file = self.store.open(&info.digest)?;
            let actual =
                Digest::from_reader(file).map_err(|e| WorkerError::io(format!("read blob {}", info.digest), e))?;
            if actual != info.digest {
                report.problems.push(format!("blob {} hashes to {actual}", info.digest));
            }
            report.blobs += 1;
            report.blob_bytes += info.size;
            sizes.insert(info.digest, info.size);
        }
        let ingest = self.store.ingests()?;
        if ingest > 0 {
            report.problems.push(format!("{ingest} partial blob(s) left in content/ingest"));
        }
        Ok(sizes)
    }
}
