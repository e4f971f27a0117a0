//! A build's own `SOURCE_DATE_EPOCH` (build arg or the Dockerfile's global
//! ARG default), resolved before the build: seconds as given, none for
//! `context` (an uploaded context has no date of its own), or the date of
//! a source stage's download. The image's dates become it and new files'
//! mtimes are clamped to it; without one the server's epoch applies.

use super::failure::{blocking, fail, BuildFailure};
use super::image::SharedBuild;
use crate::errors::ErrorKind;
use crate::frontend::{self, BuildOptions, EpochSource};

impl SharedBuild<'_> {
    /// The build's own epoch, written back into `opts`' build args so a
    /// stage's `ARG SOURCE_DATE_EPOCH` sees the seconds (or nothing).
    pub(super) async fn own_epoch(&self, opts: &mut BuildOptions) -> Result<Option<i64>, BuildFailure> {
        let (df, asked) = (self.df.clone(), opts.clone());
        let source = blocking(move || frontend::source_date_epoch(&df, &asked))
            .await?
            .map_err(|e| fail(ErrorKind::InvalidArgument, e.to_string()))?;
        let Some(source) = source else { return Ok(None) };
        let epoch = match source {
            EpochSource::Seconds(s) => Some(s),
            EpochSource::Unset => None,
            EpochSource::Http { url, checksum } => {
                self.state.solver.http_epoch(&url, checksum.as_deref()).await.map_err(|e| fail(e.kind, e.message))?
            }
            EpochSource::Git { remote, reference, checksum } => self
                .state
                .solver
                .git_epoch(&remote, reference.as_deref(), checksum.as_deref())
                .await
                .map_err(|e| fail(e.kind, e.message))?,
        };
        opts.build_args = frontend::with_resolved_epoch(&opts.build_args, epoch);
        Ok(epoch)
    }
}
