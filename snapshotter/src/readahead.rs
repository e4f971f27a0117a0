//! Decoding a layer on a thread of its own. Unpacking is two kinds of
//! work: inflating and hashing the stream, and creating the files. Done
//! by one thread they take turns; with the decoding on a second thread
//! (a bounded channel of chunks between them) they overlap, and a large
//! base layer unpacks in the time of the slower one.

use sha2::{Digest as _, Sha256};
use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// Bytes per chunk sent to the unpacking thread.
const CHUNK: usize = 256 * 1024;
/// Chunks in flight: the memory a read-ahead holds is at most
/// `CHUNK * (DEPTH + 2)`.
const DEPTH: usize = 8;

type Chunk = io::Result<Vec<u8>>;

/// The decoding end: what [`decode`] needs to send.
pub struct Sender(SyncSender<Chunk>);

/// A channel whose sender decodes and whose reader unpacks.
pub fn channel() -> (Sender, ChunkReader) {
    let (tx, rx) = sync_channel(DEPTH);
    (Sender(tx), ChunkReader { rx, chunk: Vec::new(), pos: 0, ended: false })
}

/// Reads `input` to its end, sending it on in chunks and hashing all of
/// it. Returns the hash, or `None` when the stream failed (the error went
/// to the reader) or the reader stopped listening.
pub fn decode(mut input: impl Read, tx: Sender) -> Option<crate::Digest> {
    let mut hasher = Sha256::new();
    loop {
        let mut chunk = vec![0; CHUNK];
        let filled = match fill(&mut input, &mut chunk) {
            Ok(n) => n,
            Err(e) => {
                let _ = tx.0.send(Err(e));
                return None;
            }
        };
        if filled == 0 {
            return Some(crate::Digest::from_hasher(hasher));
        }
        chunk.truncate(filled);
        hasher.update(&chunk);
        tx.0.send(Ok(chunk)).ok()?;
    }
}

/// Reads into `buf` until it is full or the stream ends.
fn fill(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The decoded stream, chunk by chunk. It ends when the decoding thread
/// is done (whether that was the stream's end is for [`decode`]'s result
/// to say) and fails with the error the decoding met.
pub struct ChunkReader {
    rx: Receiver<Chunk>,
    chunk: Vec<u8>,
    pos: usize,
    ended: bool,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(chunk)) => (self.chunk, self.pos) = (chunk, 0),
                Ok(Err(e)) => {
                    self.ended = true;
                    return Err(e);
                }
                Err(_) => self.ended = true,
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that yields `good` bytes, then fails.
    struct FailsAfter(usize);

    impl Read for FailsAfter {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "corrupt deflate stream"));
            }
            let n = buf.len().min(self.0).min(1000);
            buf[..n].fill(7);
            self.0 -= n;
            Ok(n)
        }
    }

    #[test]
    fn the_reader_gets_every_byte_and_the_decoder_their_hash() {
        let data: Vec<u8> = (0..CHUNK * 3 + 17).map(|i| (i % 251) as u8).collect();
        let (tx, mut rx) = channel();
        std::thread::scope(|s| {
            let decoding = s.spawn(|| decode(&data[..], tx));
            let mut out = Vec::new();
            rx.read_to_end(&mut out).unwrap();
            assert_eq!(out, data);
            assert_eq!(decoding.join().unwrap(), Some(crate::Digest::of(&data)));
        });
    }

    #[test]
    fn a_decoding_error_reaches_the_reader_and_no_hash_is_given() {
        let (tx, mut rx) = channel();
        std::thread::scope(|s| {
            let decoding = s.spawn(|| decode(FailsAfter(CHUNK + 5), tx));
            let err = rx.read_to_end(&mut Vec::new()).unwrap_err();
            assert_eq!(err.to_string(), "corrupt deflate stream");
            assert_eq!(decoding.join().unwrap(), None);
        });
    }

    #[test]
    fn a_reader_that_stops_early_stops_the_decoder() {
        let (tx, rx) = channel();
        std::thread::scope(|s| {
            let decoding = s.spawn(|| decode(io::repeat(1).take(1 << 40), tx));
            drop(rx);
            assert_eq!(decoding.join().unwrap(), None, "a terabyte was not read to its end");
        });
    }
}
