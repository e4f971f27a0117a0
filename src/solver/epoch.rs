//! A build's `SOURCE_DATE_EPOCH` from a source stage's download, as
//! BuildKit resolves it: the server's `Last-Modified`, else the newest
//! regular file when the body is a (compressed) tar, else none.

use super::http::{last_modified, Answer, Download};
use super::{SolveError, Solver};
use crate::errors::ErrorKind;
use crate::graph::GitOp;
use std::io::BufReader;

impl Solver {
    /// The committer time of the commit `reference` names on `remote`
    /// (fetched shallowly in a step network, like an ADD of it).
    pub async fn git_epoch(
        &self,
        remote: &str,
        reference: Option<&str>,
        checksum: Option<&str>,
    ) -> Result<Option<i64>, SolveError> {
        let op = GitOp {
            remote: remote.to_string(),
            reference: reference.map(str::to_string),
            subdir: None,
            keep_git_dir: true,
            checksum: checksum.map(str::to_string),
            submodules: false,
            commit_mtime: false,
        };
        // The fetch's egress is not a step's: its events go nowhere.
        let (progress, _) = tokio::sync::mpsc::unbounded_channel();
        let fail = |e: String| {
            SolveError::new(None, ErrorKind::InvalidArgument, format!("SOURCE_DATE_EPOCH source {remote}: {e}"))
        };
        let reporter = super::network::reporter(0, &progress);
        let net = self.cfg.networks.take(reporter).await.map_err(|e| fail(e.to_string()))?;
        let time = super::git::commit_time(&op, &self.worker.data_dir().join("run"), &net).await;
        net.close().await;
        time.map(Some).map_err(fail)
    }

    /// The date of what `url` serves now: its `Last-Modified` (without
    /// reading the body, unless `checksum`, a digest, must be checked
    /// against it), else the newest file in it when it is a tar.
    pub async fn http_epoch(&self, url: &str, checksum: Option<&str>) -> Result<Option<i64>, SolveError> {
        let resp = match self.request(0, url, None).await? {
            Answer::Body(resp) => resp,
            Answer::NotModified(_) => return Err(SolveError::new(None, ErrorKind::Internal, "unconditional 304")),
        };
        let dated = last_modified(&resp).as_deref().and_then(crate::timefmt::parse_http_date);
        if let (Some(time), None) = (dated, checksum) {
            return Ok(Some(time));
        }
        let download = self.save(0, url, resp).await?;
        if let Some(want) = checksum {
            let got = super::http::checksum_of(&download, want)
                .await
                .map_err(|e| SolveError::new(None, ErrorKind::InvalidArgument, format!("--checksum {want}: {e}")))?;
            if got != want {
                let msg = format!(
                    "SOURCE_DATE_EPOCH source {url}: checksum mismatch: expected {want}, the download is {got}"
                );
                return Err(SolveError::new(None, ErrorKind::InvalidArgument, msg));
            }
        }
        if download.dated {
            return Ok(Some(download.mtime));
        }
        let max = self.cfg.max_archive_bytes;
        let newest = tokio::task::spawn_blocking(move || newest_file_in_archive(&download, max))
            .await
            .map_err(|e| SolveError::new(None, ErrorKind::Internal, e.to_string()))?;
        Ok(newest)
    }
}

/// The newest regular file's mtime when `download` is a tar (compressed or
/// not, read up to `max` unpacked bytes, as ADD unpacks); `None` when it is
/// not one, as BuildKit allows any file.
fn newest_file_in_archive(download: &Download, max: u64) -> Option<i64> {
    let file = std::fs::File::open(&download.path).ok()?;
    let reader = kiln_snapshotter::compression::decoder(BufReader::new(file)).ok()?;
    let mut archive = tar::Archive::new(kiln_snapshotter::compression::Bounded::new(reader, max));
    let mut newest: Option<i64> = None;
    for entry in archive.entries().ok()? {
        let entry = entry.ok()?;
        let header = entry.header();
        if header.entry_type().is_file() {
            let mtime = header.mtime().ok()? as i64;
            newest = Some(newest.map_or(mtime, |n| n.max(mtime)));
        }
    }
    newest
}
