//! Blobs a registry is known to hold, per repository: seen by a HEAD, an
//! upload, a mount, a download, or listed in a manifest kiln read or
//! wrote there. A push of a known blob asks nothing. Entries expire, and a
//! manifest the registry refuses forgets its repository, so a blob removed
//! behind kiln's back is asked about again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a blob counts as present without asking again.
pub const PRESENT_FOR: Duration = Duration::from_secs(300);

/// Most blobs remembered; past it the expired ones are dropped, and if
/// none are, everything (the memo only saves requests).
const MAX_KNOWN: usize = 100_000;

/// `registry/repository@digest` → when it was last seen.
#[derive(Debug, Default)]
pub struct KnownBlobs {
    seen: Mutex<HashMap<String, Instant>>,
}

fn key(registry: &str, repository: &str, digest: &str) -> String {
    format!("{registry}/{repository}@{digest}")
}

impl KnownBlobs {
    /// Whether `digest` was seen in the repository lately.
    pub fn contains(&self, registry: &str, repository: &str, digest: &str) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(&key(registry, repository, digest)).is_some_and(|at| at.elapsed() < PRESENT_FOR)
    }

    /// Records that the repository holds `digests`.
    pub fn insert<'a>(&self, registry: &str, repository: &str, digests: impl IntoIterator<Item = &'a str>) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        for digest in digests {
            seen.insert(key(registry, repository, digest), now);
        }
        if seen.len() > MAX_KNOWN {
            seen.retain(|_, at| at.elapsed() < PRESENT_FOR);
            if seen.len() > MAX_KNOWN {
                seen.clear();
            }
        }
    }

    /// Forgets everything known about one repository.
    pub fn forget_repository(&self, registry: &str, repository: &str) {
        let prefix = format!("{registry}/{repository}@");
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).retain(|k, _| !k.starts_with(&prefix));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_is_known_per_repository_until_its_repository_is_forgotten() {
        let known = KnownBlobs::default();
        known.insert("reg", "a", ["sha256:1"]);
        assert!(known.contains("reg", "a", "sha256:1"));
        assert!(!known.contains("reg", "b", "sha256:1"), "another repository must be asked");
        assert!(!known.contains("reg", "a", "sha256:2"));
        known.insert("reg", "ab", ["sha256:1"]);
        known.forget_repository("reg", "a");
        assert!(!known.contains("reg", "a", "sha256:1"));
        assert!(known.contains("reg", "ab", "sha256:1"), "only that repository is forgotten");
    }
}
