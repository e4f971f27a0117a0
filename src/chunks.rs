//! A file as a stream of byte chunks, for request and response bodies
//! (registry uploads, blobs served at `/v2/`).

/// Streams `file` in reads of up to `chunk` bytes; a read error is the
/// last item.
pub fn file_chunks(
    file: tokio::fs::File,
    chunk: usize,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
    futures_util::stream::unfold(Some(file), move |file| async move {
        use tokio::io::AsyncReadExt;
        let mut file = file?;
        let mut buf = vec![0u8; chunk];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}
