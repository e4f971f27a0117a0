//! Scratch space under the data directory: build workspaces, cache mounts,
//! helper bundles and probes' leftovers.

use std::path::Path;

/// Removes what an earlier run left: steps still running (a killed server
/// leaves its helpers' containers), helper bundles, build workspaces and a
/// killed probe's `doctor-*` scratch. Nothing runs yet, so all of it is
/// garbage.
pub(super) fn clean(data_dir: &Path) {
    let orphans = kiln_runtime::step::kill_orphans(&data_dir.join("run"));
    if orphans > 0 {
        tracing::warn!(orphans, "killed steps left running by a previous server");
    }
    let _ = std::fs::remove_dir_all(data_dir.join("run"));
    let builds = std::fs::read_dir(data_dir.join("builds")).into_iter().flatten().flatten();
    let doctor = std::fs::read_dir(data_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("doctor-"));
    for entry in builds.chain(doctor) {
        if let Err(e) = std::fs::remove_dir_all(entry.path()) {
            tracing::warn!(path = %entry.path().display(), error = %e, "stale scratch left in place");
        }
    }
}

/// Build workspaces and cache mounts are created and deleted by the
/// thousand files: like the snapshot root, their parents get ext4's
/// top-directory flag so that each lands in a block group of its own.
pub(super) fn spread(data_dir: &Path) {
    for name in ["builds", "cache-mounts"] {
        let dir = data_dir.join(name);
        let marked = std::fs::create_dir_all(&dir).and_then(|()| kiln_snapshotter::fsx::mark_top_directory(&dir));
        if let Err(e) = marked {
            tracing::debug!(dir = %dir.display(), error = %e, "left without the top-directory flag");
        }
    }
}
