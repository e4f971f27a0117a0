//! Files kiln itself reads from a build context: the Dockerfile and the
//! ignore files. Each is opened inside the context root (`openat2` with
//! `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`, so no symlink leads out),
//! must be a regular file (a FIFO or device is refused without blocking),
//! and is read up to a size cap. Call these off the async threads.

use kiln_snapshotter::fsx::read_in_root;
use std::io;
use std::path::Path;

/// Largest `.dockerignore` or `Dockerfile.dockerignore` read.
pub const MAX_IGNORE_FILE_BYTES: u64 = 1 << 20;

/// Why a context file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ContextFileError {
    /// It is not in the context.
    #[error("context/{0} not found in the request tar")]
    Missing(&'static str),
    /// It is not a regular file, or too large.
    #[error("context/{name}: {reason}")]
    Unusable {
        /// The file.
        name: &'static str,
        /// Why.
        reason: String,
    },
}

/// Reads `name` from `context` (`Ok(None)` when there is none).
fn read(context: &Path, name: &'static str, max: u64) -> Result<Option<Vec<u8>>, ContextFileError> {
    match read_in_root(context, Path::new(name), max) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => {
            let reason = match e.kind() {
                io::ErrorKind::InvalidInput => "not a regular file".to_string(),
                io::ErrorKind::FileTooLarge => format!("larger than {max} bytes"),
                _ => e.to_string(),
            };
            Err(ContextFileError::Unusable { name, reason })
        }
    }
}

/// `context/Dockerfile`, or `context/dockerfile` when there is no
/// `Dockerfile` (BuildKit accepts that casing too, moby/moby#10858).
pub fn read_dockerfile(context: &Path) -> Result<Vec<u8>, ContextFileError> {
    for name in ["Dockerfile", "dockerfile"] {
        if let Some(bytes) = read(context, name, crate::frontend::MAX_DOCKERFILE_BYTES)? {
            return Ok(bytes);
        }
    }
    Err(ContextFileError::Missing("Dockerfile"))
}

/// The ignore file that applies: `Dockerfile.dockerignore` (which wins)
/// or `.dockerignore`, as text; `None` when there is neither.
pub fn read_dockerignore(context: &Path) -> Result<Option<String>, ContextFileError> {
    for name in ["Dockerfile.dockerignore", ".dockerignore"] {
        if let Some(bytes) = read(context, name, MAX_IGNORE_FILE_BYTES)? {
            return Ok(Some(String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_regular_files_inside_and_refuses_the_rest() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "canary").unwrap();
        let ctx = tempfile::tempdir().unwrap();
        let c = ctx.path();
        std::fs::write(c.join(".dockerignore"), "*.md\n").unwrap();
        assert_eq!(read_dockerignore(c).unwrap().as_deref(), Some("*.md\n"));
        assert!(matches!(read_dockerfile(c), Err(ContextFileError::Missing(_))));
        // An absolute link is read inside the root: the file is not there.
        std::os::unix::fs::symlink(outside.path().join("secret"), c.join("Dockerfile")).unwrap();
        assert!(matches!(read_dockerfile(c), Err(ContextFileError::Missing(_))));
        std::fs::remove_file(c.join("Dockerfile")).unwrap();
        nix::unistd::mkfifo(&c.join("Dockerfile"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let err = read_dockerfile(c).unwrap_err().to_string();
        assert_eq!(err, "context/Dockerfile: not a regular file", "and it did not block");
        std::fs::remove_file(c.join("Dockerfile")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", c.join("Dockerfile")).unwrap();
        assert!(read_dockerfile(c).is_err());
        std::fs::remove_file(c.join("Dockerfile")).unwrap();
        std::fs::write(c.join("Dockerfile"), vec![b'#'; (crate::frontend::MAX_DOCKERFILE_BYTES + 1) as usize]).unwrap();
        assert!(read_dockerfile(c).unwrap_err().to_string().contains("larger than"));
        std::fs::write(c.join("Dockerfile.dockerignore"), "x\n").unwrap();
        assert_eq!(read_dockerignore(c).unwrap().as_deref(), Some("x\n"), "Dockerfile.dockerignore wins");
    }
}
