//! Conformance suites every implementation of the storage traits must
//! pass, in the spirit of containerd's `content/testsuite` and
//! `snapshots/testsuite`. They panic with a message naming the broken rule.
//! [`MemoryStore`] is a second content store (a fake for unit tests) that
//! keeps the content suite honest about what is implementation-specific.

use crate::content::{BlobReader, Info, Store, Writer};
use crate::overlay::{mount_all, Mount};
use crate::snapshots::{Kind, SnapshotId, Snapshotter};
use crate::{Digest, Error, Result};
use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Lower layers in the long-chain rule (above overlay's classic 60ish
/// limit with absolute paths).
pub const LONG_CHAIN: usize = 100;

/// Runs the snapshotter rules against an empty snapshotter. It mounts, so
/// the caller must be allowed to (root, or root in a user namespace) and
/// run it on a thread with its own mount namespace and cwd
/// (`unshare(CLONE_NEWNS | CLONE_FS)`), since mounting changes both.
pub fn snapshotter(s: &dyn Snapshotter, scratch: &Path) {
    let mnt = scratch.join("mnt");
    fs::create_dir_all(&mnt).unwrap();
    let a = s.prepare(&[]).expect("prepare with no parents");
    assert_eq!(s.stat(&a).unwrap(), Some(Kind::Active), "a prepared snapshot is active");
    mounted(&s.mounts(&a).unwrap(), &mnt, |m| {
        fs::write(m.join("keep"), "keep").unwrap();
        fs::write(m.join("del"), "del").unwrap();
        fs::create_dir(m.join("dir")).unwrap();
        fs::write(m.join("dir/x"), "x").unwrap();
    });
    s.commit(&a).expect("commit an active snapshot");
    assert_eq!(s.stat(&a).unwrap(), Some(Kind::Committed));
    assert!(s.mounts(&a).is_err(), "a committed snapshot has no read-write mounts");
    assert!(s.commit(&a).is_err(), "a snapshot commits once");

    let b = s.prepare(std::slice::from_ref(&a)).expect("prepare on a committed parent");
    assert!(s.prepare(std::slice::from_ref(&b)).is_err(), "an active snapshot cannot be a parent");
    mounted(&s.mounts(&b).unwrap(), &mnt, |m| {
        assert_eq!(fs::read_to_string(m.join("keep")).unwrap(), "keep", "the parent is visible");
        fs::remove_file(m.join("del")).unwrap();
        fs::remove_dir_all(m.join("dir")).unwrap();
        fs::create_dir(m.join("dir")).unwrap();
        fs::write(m.join("dir/y"), "y").unwrap();
        fs::write(m.join("new"), "new").unwrap();
    });
    s.commit(&b).unwrap();
    mounted(&s.view(&[b.clone(), a.clone()]).unwrap(), &mnt, |m| {
        assert!(m.join("keep").exists() && m.join("new").exists() && m.join("dir/y").exists());
        assert!(!m.join("del").exists(), "deletions hide the parent's file");
        assert!(!m.join("dir/x").exists(), "a recreated directory hides the parent's contents");
        assert!(fs::write(m.join("w"), "w").is_err(), "views are read-only");
    });
    mounted(&s.view(std::slice::from_ref(&a)).unwrap(), &mnt, |m| {
        assert!(m.join("del").exists() && m.join("dir/x").exists(), "committed snapshots are immutable");
        assert!(fs::write(m.join("w"), "w").is_err(), "views are read-only");
    });
    assert!(s.view(&[]).unwrap().is_empty(), "an empty chain needs no mount");
    let usage = s.usage(&a).unwrap();
    assert!(usage.inodes >= 4 && usage.size > 0, "usage counts the snapshot's own content: {usage:?}");
    let ids: Vec<SnapshotId> = s.walk().unwrap().into_iter().map(|(id, _)| id).collect();
    assert!(ids.contains(&a) && ids.contains(&b), "walk lists every snapshot");

    long_chain(s, &mnt);
    s.remove(&b).unwrap();
    assert_eq!(s.stat(&b).unwrap(), None, "removed snapshots are gone");
    s.remove(&b).expect("removing an absent snapshot succeeds");
    assert!(s.prepare(&[b]).is_err(), "a missing parent is refused");
}

fn long_chain(s: &dyn Snapshotter, mnt: &Path) {
    let mut chain: Vec<SnapshotId> = Vec::new();
    for i in 0..LONG_CHAIN {
        let id = s.prepare(&[]).unwrap();
        fs::write(s.dir(&id).join(format!("f{i}")), i.to_string()).unwrap();
        s.commit(&id).unwrap();
        chain.insert(0, id);
    }
    let top = s.prepare(&chain).expect("prepare on a long chain");
    mounted(&s.mounts(&top).unwrap(), mnt, |m| {
        for i in 0..LONG_CHAIN {
            assert_eq!(fs::read_to_string(m.join(format!("f{i}"))).unwrap(), i.to_string(), "layer {i} of the chain");
        }
    });
    s.remove(&top).unwrap();
    for id in chain {
        s.remove(&id).unwrap();
    }
}

fn mounted(mounts: &[Mount], target: &Path, check: impl FnOnce(&Path)) {
    mount_all(mounts, target).expect("mount");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(target)));
    for _ in mounts {
        nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH).expect("unmount");
    }
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

/// Runs the content-store rules against an empty `store`.
pub fn content_store(store: &dyn Store) {
    assert!(store.walk().unwrap().is_empty(), "the suite needs an empty store");
    let hello = Digest::of(b"hello");
    let (d, n) = write(store, b"hello", Some(5), Some(&hello)).expect("commit with the right size and digest");
    assert_eq!((d.clone(), n), (hello.clone(), 5));
    assert_eq!(store.info(&hello).unwrap(), Some(Info { digest: hello.clone(), size: 5 }), "info after commit");
    assert_eq!(read(store, &hello), b"hello", "reader returns the committed bytes");
    assert!(write(store, b"hello", None, None).is_ok(), "already exists is success");

    let other = b"other content";
    assert!(matches!(write(store, other, Some(3), None), Err(Error::Mismatch(_))), "a wrong size is refused");
    assert!(matches!(write(store, other, None, Some(&hello)), Err(Error::Mismatch(_))), "a wrong digest is refused");
    assert_eq!(store.info(&Digest::of(other)).unwrap(), None, "a refused commit publishes nothing");

    let mut abandoned = store.ingest().unwrap();
    abandoned.write_all(b"never committed").unwrap();
    assert_eq!(abandoned.written(), 15, "written() counts bytes");
    assert_eq!(store.ingests().unwrap(), 1, "an open ingest is listed");
    drop(abandoned);
    assert_eq!(store.ingests().unwrap(), 0, "an abandoned ingest leaves nothing");
    assert_eq!(digests(store), vec![hello.clone()], "walk lists exactly the committed blobs");

    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let (big_digest, _) = write(store, &big, Some(big.len() as u64), None).unwrap();
    assert_eq!(big_digest, Digest::of(&big), "streamed content hashes like the whole");
    let mut r = store.open(&big_digest).unwrap();
    r.seek(std::io::SeekFrom::Start(2_999_990)).unwrap();
    let mut tail = Vec::new();
    r.read_to_end(&mut tail).unwrap();
    assert_eq!(tail, &big[2_999_990..], "readers seek");

    concurrent_writers_agree(store);
    store.remove(&big_digest).unwrap();
    store.remove(&big_digest).expect("removing an absent blob succeeds");
    assert_eq!(store.info(&big_digest).unwrap(), None, "removed blobs are gone");
    assert!(store.open(&big_digest).is_err(), "opening an absent blob fails");
}

fn concurrent_writers_agree(store: &dyn Store) {
    let data = b"written by two at once";
    let mut a = store.ingest().unwrap();
    let mut b = store.ingest().unwrap();
    a.write_all(data).unwrap();
    b.write_all(data).unwrap();
    let da = a.commit(None, None).expect("first of two identical ingests");
    let db = b.commit(None, None).expect("second of two identical ingests");
    assert_eq!(da, db, "identical ingests commit to one blob");
    assert_eq!(read(store, &da.0), data);
    store.remove(&da.0).unwrap();
}

fn write(store: &dyn Store, data: &[u8], size: Option<u64>, digest: Option<&Digest>) -> Result<(Digest, u64)> {
    let mut w = store.ingest()?;
    for chunk in data.chunks(65_536) {
        w.write_all(chunk).map_err(|e| Error::Io { context: "write".into(), source: e })?;
    }
    w.commit(size, digest)
}

fn read(store: &dyn Store, digest: &Digest) -> Vec<u8> {
    let mut out = Vec::new();
    store.open(digest).unwrap().read_to_end(&mut out).unwrap();
    out
}

fn digests(store: &dyn Store) -> Vec<Digest> {
    let mut d: Vec<Digest> = store.walk().unwrap().into_iter().map(|i| i.digest).collect();
    d.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    d
}

/// A content store in memory.
#[derive(Default, Clone)]
pub struct MemoryStore {
    blobs: Arc<Mutex<HashMap<Digest, Arc<Vec<u8>>>>>,
    open_ingests: Arc<AtomicUsize>,
}

struct MemoryWriter {
    blobs: Arc<Mutex<HashMap<Digest, Arc<Vec<u8>>>>>,
    data: Vec<u8>,
    open_ingests: Arc<AtomicUsize>,
}

impl Drop for MemoryWriter {
    fn drop(&mut self) {
        self.open_ingests.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Write for MemoryWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.data.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Writer for MemoryWriter {
    fn written(&self) -> u64 {
        self.data.len() as u64
    }
    fn commit(mut self: Box<Self>, size: Option<u64>, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        let digest = Digest::of(&self.data);
        let len = self.data.len() as u64;
        if let Some(want) = size.filter(|s| *s != len) {
            return Err(Error::Mismatch(format!("size {len} but expected {want}")));
        }
        if let Some(want) = expected.filter(|d| **d != digest) {
            return Err(Error::Mismatch(format!("got {digest}, expected {want}")));
        }
        let data = std::mem::take(&mut self.data);
        self.blobs.lock().expect("blobs").entry(digest.clone()).or_insert_with(|| Arc::new(data));
        Ok((digest, len))
    }
}

impl Store for MemoryStore {
    fn info(&self, digest: &Digest) -> Result<Option<Info>> {
        let blobs = self.blobs.lock().expect("blobs");
        Ok(blobs.get(digest).map(|b| Info { digest: digest.clone(), size: b.len() as u64 }))
    }
    fn open(&self, digest: &Digest) -> Result<Box<dyn BlobReader>> {
        let blobs = self.blobs.lock().expect("blobs");
        let blob = blobs.get(digest).ok_or_else(|| Error::Mismatch(format!("{digest} not found")))?;
        Ok(Box::new(std::io::Cursor::new(blob.as_ref().clone())))
    }
    fn ingest(&self) -> Result<Box<dyn Writer>> {
        self.open_ingests.fetch_add(1, Ordering::SeqCst);
        let open_ingests = self.open_ingests.clone();
        Ok(Box::new(MemoryWriter { blobs: self.blobs.clone(), data: Vec::new(), open_ingests }))
    }
    fn remove(&self, digest: &Digest) -> Result<()> {
        self.blobs.lock().expect("blobs").remove(digest);
        Ok(())
    }
    fn walk(&self) -> Result<Vec<Info>> {
        let blobs = self.blobs.lock().expect("blobs");
        Ok(blobs.iter().map(|(d, b)| Info { digest: d.clone(), size: b.len() as u64 }).collect())
    }
    fn ingests(&self) -> Result<usize> {
        Ok(self.open_ingests.load(Ordering::SeqCst))
    }
}
