//! The overlay snapshotter against the shared conformance suite. Mounts, so
//! it needs root (the suite runs as root); it takes its own mount
//! namespace and cwd first.

use kiln_snapshotter::Snapshots;

#[test]
fn overlay_snapshotter_passes_the_conformance_suite() {
    assert!(nix::unistd::geteuid().is_root(), "this test mounts overlays: run the suite as root (scripts/test.sh)");
    let flags = nix::sched::CloneFlags::CLONE_NEWNS | nix::sched::CloneFlags::CLONE_FS;
    std::thread::spawn(move || {
        nix::sched::unshare(flags).unwrap();
        kiln_snapshotter::overlay::make_mounts_private().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let snaps = Snapshots::open(tmp.path().join("snapshots")).unwrap();
        kiln_snapshotter::conformance::snapshotter(&snaps, tmp.path());
        assert_eq!(snaps.clean_active().unwrap(), 0, "the suite leaves no active snapshot behind");
    })
    .join()
    .unwrap();
}
