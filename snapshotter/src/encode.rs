//! Layer compression on every core. gzip splits the tar stream into fixed
//! 4 MiB chunks, compresses each as its own gzip member on a worker pool and
//! writes the members in order (a multi-member gzip stream, RFC 1952, read
//! by every gzip reader including Go's); zstd uses libzstd's own workers,
//! whose output does not depend on the worker count. Chunking is fixed, so
//! a tree always gives the same blob digest whatever the machine's cores.

use crate::content::Writer;
use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Uncompressed bytes per gzip member.
pub const GZIP_CHUNK: usize = 4 << 20;

/// Layer compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerCompression {
    /// `tar+gzip` at a level 0–9.
    Gzip(u32),
    /// `tar+zstd` at a level 1–19.
    Zstd(i32),
}

impl LayerCompression {
    /// The OCI layer media type.
    pub fn media_type(self) -> &'static str {
        match self {
            LayerCompression::Gzip(_) => "application/vnd.oci.image.layer.v1.tar+gzip",
            LayerCompression::Zstd(_) => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// A compressing writer that hands back the content writer when finished.
pub trait Encoder: Write + Send {
    /// Flushes everything and returns the inner writer.
    fn finish(self: Box<Self>) -> io::Result<Box<dyn Writer>>;
}

/// An encoder for `compression` using up to `threads` cores.
pub fn encoder(out: Box<dyn Writer>, compression: LayerCompression, threads: usize) -> io::Result<Box<dyn Encoder>> {
    let threads = threads.max(1);
    Ok(match compression {
        LayerCompression::Gzip(level) => Box::new(ParallelGzip::new(out, level.min(9), threads)),
        LayerCompression::Zstd(level) => {
            let mut enc = zstd::stream::write::Encoder::new(out, level)?;
            enc.multithread(threads as u32)?;
            Box::new(enc)
        }
    })
}

impl Encoder for zstd::stream::write::Encoder<'static, Box<dyn Writer>> {
    fn finish(self: Box<Self>) -> io::Result<Box<dyn Writer>> {
        zstd::stream::write::Encoder::finish(*self)
    }
}

type Job = (Vec<u8>, mpsc::Sender<io::Result<Vec<u8>>>);

/// Multi-member gzip over a pool of worker threads.
pub struct ParallelGzip {
    out: Option<Box<dyn Writer>>,
    level: u32,
    chunk: Vec<u8>,
    jobs: Option<mpsc::SyncSender<Job>>,
    pending: VecDeque<mpsc::Receiver<io::Result<Vec<u8>>>>,
    workers: Vec<JoinHandle<()>>,
    threads: usize,
    members: usize,
}

impl ParallelGzip {
    /// Compresses at `level` on `threads` workers; with one thread it
    /// compresses inline on the caller's thread (same bytes either way).
    pub fn new(out: Box<dyn Writer>, level: u32, threads: usize) -> Self {
        let (tx, rx) = mpsc::sync_channel::<Job>(threads);
        let rx = Arc::new(Mutex::new(rx));
        let pool = if threads > 1 { threads } else { 0 };
        let workers = (0..pool)
            .map(|_| {
                let rx = rx.clone();
                std::thread::spawn(move || loop {
                    let job = rx.lock().expect("job queue").recv();
                    let Ok((data, reply)) = job else { return };
                    let _ = reply.send(gzip_member(&data, level));
                })
            })
            .collect();
        Self {
            out: Some(out),
            level,
            chunk: Vec::with_capacity(GZIP_CHUNK),
            jobs: Some(tx),
            pending: VecDeque::new(),
            workers,
            threads,
            members: 0,
        }
    }

    fn submit(&mut self) -> io::Result<()> {
        let data = std::mem::replace(&mut self.chunk, Vec::with_capacity(GZIP_CHUNK));
        self.members += 1;
        if self.workers.is_empty() {
            let member = gzip_member(&data, self.level)?;
            return self.out.as_mut().expect("open until finish").write_all(&member);
        }
        let (tx, rx) = mpsc::channel();
        let jobs = self.jobs.as_ref().expect("open until finish");
        jobs.send((data, tx)).map_err(|_| io::Error::other("gzip workers stopped"))?;
        self.pending.push_back(rx);
        while self.pending.len() > self.threads * 2 {
            self.write_oldest()?;
        }
        Ok(())
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        let Some(rx) = self.pending.pop_front() else { return Ok(()) };
        let member = rx.recv().map_err(|_| io::Error::other("gzip worker died"))??;
        self.out.as_mut().expect("open until finish").write_all(&member)
    }
}

fn gzip_member(data: &[u8], level: u32) -> io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 3), flate2::Compression::new(level));
    enc.write_all(data)?;
    enc.finish()
}

impl Write for ParallelGzip {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(GZIP_CHUNK - self.chunk.len());
        self.chunk.extend_from_slice(&buf[..n]);
        if self.chunk.len() == GZIP_CHUNK {
            self.submit()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Encoder for ParallelGzip {
    fn finish(mut self: Box<Self>) -> io::Result<Box<dyn Writer>> {
        if !self.chunk.is_empty() || self.members == 0 {
            self.submit()?;
        }
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        Ok(self.out.take().expect("finished once"))
    }
}

impl Drop for ParallelGzip {
    fn drop(&mut self) {
        self.jobs = None;
        self.pending.clear();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::Store;
    use crate::ContentStore;
    use std::io::Read;

    fn compress(data: &[u8], compression: LayerCompression, threads: usize) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::at(dir.path()).unwrap();
        let mut enc = encoder(store.ingest().unwrap(), compression, threads).unwrap();
        for piece in data.chunks(100_003) {
            enc.write_all(piece).unwrap();
        }
        let (digest, _) = enc.finish().unwrap().commit(None, None).unwrap();
        crate::content::read_blob(&store, &digest, u64::MAX >> 1).unwrap()
    }

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| ((i * 7919) % 251) as u8 ^ (i / 4096) as u8).collect()
    }

    #[test]
    fn gzip_members_decode_and_do_not_depend_on_threads() {
        let data = sample(GZIP_CHUNK * 2 + 12345);
        let one = compress(&data, LayerCompression::Gzip(3), 1);
        let four = compress(&data, LayerCompression::Gzip(3), 4);
        assert_eq!(one, four, "the blob is the same whatever the core count");
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(one.as_slice()).read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
        let empty = compress(b"", LayerCompression::Gzip(3), 2);
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(empty.as_slice()).read_to_end(&mut back).unwrap();
        assert!(back.is_empty() && !empty.is_empty(), "an empty stream is one empty member");
    }

    #[test]
    fn zstd_frames_decode_and_do_not_depend_on_threads() {
        let data = sample(GZIP_CHUNK + 999);
        let one = compress(&data, LayerCompression::Zstd(3), 1);
        let two = compress(&data, LayerCompression::Zstd(3), 2);
        assert_eq!(one, two, "libzstd's worker output does not depend on the worker count");
        assert_eq!(zstd::decode_all(one.as_slice()).unwrap(), data);
    }
}
