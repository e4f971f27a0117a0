//! Compression formats recognised by content, as containerd's archive
//! package does: gzip (also multi-member), zstd, xz and bzip2 decode;
//! gzip and zstd encode (the two OCI layer media types).

use crate::{IoContext, Result};
use std::io::{self, BufRead, Read, Seek};

/// A compression format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Not compressed.
    None,
    /// gzip.
    Gzip,
    /// Zstandard.
    Zstd,
    /// xz.
    Xz,
    /// bzip2.
    Bzip2,
}

impl Compression {
    /// Recognises the format from the first bytes of a stream.
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Compression::Xz
        } else if head.starts_with(b"BZh") {
            Compression::Bzip2
        } else {
            Compression::None
        }
    }
}

/// A reader of the decompressed content of `input`, whatever its format.
/// xz has no streaming decoder here, so it is decoded into an anonymous
/// temporary file first.
pub fn decoder<'a, R: BufRead + 'a>(mut input: R) -> Result<Box<dyn Read + 'a>> {
    let head = input.fill_buf().ctx(|| "read compressed stream".into())?;
    Ok(match Compression::detect(head) {
        Compression::None => Box::new(input),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(input).ctx(|| "start zstd".into())?),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(input)),
        Compression::Xz => {
            let mut spool = tempfile::tempfile().ctx(|| "create xz spool file".into())?;
            lzma_rs::xz_decompress(&mut input, &mut io::BufWriter::new(&mut spool))
                .map_err(|e| crate::Error::InvalidLayer(format!("xz: {e}")))?;
            spool.rewind().ctx(|| "rewind xz spool file".into())?;
            Box::new(spool)
        }
    })
}

/// A reader that fails (`FileTooLarge`) once more than `max` bytes have
/// come out: a decompression bomb stops there.
pub struct Bounded<R> {
    inner: R,
    left: u64,
    max: u64,
}

impl<R> Bounded<R> {
    /// Bounds `inner` to `max` bytes.
    pub fn new(inner: R, max: u64) -> Self {
        Bounded { inner, left: max, max }
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left = self.left.checked_sub(n as u64).ok_or_else(|| {
            io::Error::new(io::ErrorKind::FileTooLarge, format!("the archive unpacks to more than {} bytes", self.max))
        })?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn roundtrip(compressed: Vec<u8>, want: Compression) {
        assert_eq!(Compression::detect(&compressed), want);
        let mut out = String::new();
        decoder(io::BufReader::new(compressed.as_slice())).unwrap().read_to_string(&mut out).unwrap();
        assert_eq!(out, "payload");
    }

    #[test]
    fn every_format_decodes() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"pay").unwrap();
        let mut two_members = gz.finish().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"load").unwrap();
        two_members.extend(gz.finish().unwrap());
        roundtrip(two_members, Compression::Gzip);
        roundtrip(zstd::encode_all(&b"payload"[..], 3).unwrap(), Compression::Zstd);
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        bz.write_all(b"payload").unwrap();
        roundtrip(bz.finish().unwrap(), Compression::Bzip2);
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut &b"payload"[..], &mut xz).unwrap();
        roundtrip(xz, Compression::Xz);
        roundtrip(b"payload".to_vec(), Compression::None);
    }
}
