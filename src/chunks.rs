//! A blob as a stream of byte chunks, for request and response bodies
//! (registry uploads, blobs served at `/v2/`). The reader is synchronous
//! (any content store's); each read runs on the blocking pool, as
//! `tokio::fs::File` does its reads.

use std::io::Read;

/// Streams `reader` in reads of up to `chunk` bytes; a read error is the
/// last item.
pub fn blob_chunks(
    reader: Box<dyn Read + Send>,
    chunk: usize,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
    futures_util::stream::unfold(Some(reader), move |reader| async move {
        let mut reader = reader?;
        let read = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; chunk];
            let n = reader.read(&mut buf);
            (n.map(|n| buf.truncate(n)).map(|()| buf), reader)
        })
        .await;
        match read {
            Ok((Ok(buf), _)) if buf.is_empty() => None,
            Ok((Ok(buf), reader)) => Some((Ok(bytes::Bytes::from(buf)), Some(reader))),
            Ok((Err(e), _)) => Some((Err(e), None)),
            Err(e) => Some((Err(std::io::Error::other(e)), None)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[tokio::test]
    async fn chunks_concatenate_to_the_blob() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        let chunks: Vec<_> = blob_chunks(Box::new(std::io::Cursor::new(data.clone())), 4096).collect().await;
        assert_eq!(chunks.len(), 100_000usize.div_ceil(4096));
        let joined: Vec<u8> = chunks.into_iter().flat_map(|c| c.unwrap().to_vec()).collect();
        assert_eq!(joined, data);
    }

    #[tokio::test]
    async fn a_read_error_ends_the_stream() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk went away"))
            }
        }
        let chunks: Vec<_> = blob_chunks(Box::new(Failing), 16).collect().await;
        assert_eq!(chunks.len(), 1);
        assert!(chunks[0].is_err());
    }
}
