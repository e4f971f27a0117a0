//! ADD's remote sources: what BuildKit treats as a Git repository and what
//! as a plain HTTP(S) download, and the file name a download gets.

use super::gitref::{parse_git_ref, GitRef, GitRefError};

/// A remote ADD source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteSource {
    /// A file fetched over HTTP(S), saved as `filename`.
    Http {
        /// The URL as written.
        url: String,
        /// The last path segment, percent-decoded (`__unnamed__` if none).
        filename: String,
    },
    /// A Git repository at a ref, with BuildKit's URL options.
    Git(GitRef),
}

/// Classifies an ADD source; `None` means a path in the build context
/// (and so does a Git reference whose options are wrong: see
/// [`classify_checked`]).
pub fn classify(src: &str) -> Option<RemoteSource> {
    classify_checked(src).ok().flatten()
}

/// Classifies an ADD source as BuildKit does: a Git reference (not a
/// scheme-less `github.com/…`, which is a local path), else an HTTP(S)
/// URL, else `None`; a Git reference with bad options is an error.
pub fn classify_checked(src: &str) -> Result<Option<RemoteSource>, GitRefError> {
    if let Some(git) = parse_git_ref(src)?.filter(|g| !g.indistinguishable_from_local) {
        return Ok(Some(RemoteSource::Git(git)));
    }
    if is_http(src) {
        return Ok(Some(RemoteSource::Http { url: src.to_string(), filename: download_name(src) }));
    }
    Ok(None)
}

fn is_http(src: &str) -> bool {
    let lower = src.to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// BuildKit's choice: the base name of the URL's path, or `__unnamed__`.
fn download_name(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = after_scheme.find('/').map_or("", |i| &after_scheme[i..]);
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let decoded = percent_decode(path);
    match decoded.trim_end_matches('/').rsplit('/').next() {
        Some(base) if !base.is_empty() && base != "." && base != ".." => base.to_string(),
        _ => "__unnamed__".to_string(),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http_name(src: &str) -> String {
        match classify(src) {
            Some(RemoteSource::Http { filename, .. }) => filename,
            other => panic!("{src}: {other:?}"),
        }
    }

    #[test]
    fn download_names_follow_buildkit() {
        assert_eq!(http_name("https://example.com/dl/tool.tar.gz"), "tool.tar.gz");
        assert_eq!(http_name("http://example.com/a/b.txt?x=1#frag"), "b.txt");
        assert_eq!(http_name("https://example.com/"), "__unnamed__");
        assert_eq!(http_name("https://example.com"), "__unnamed__");
        assert_eq!(http_name("https://example.com/dir/"), "dir");
        assert_eq!(http_name("https://example.com/my%20file"), "my file");
        assert_eq!(http_name("https://example.com/a%2F.."), "__unnamed__");
    }

    #[test]
    fn git_sources_and_fragments() {
        let Some(RemoteSource::Git(g)) = classify("https://github.com/openfaas/of-watchdog.git#0.10.7:cmd") else {
            panic!("a Git source")
        };
        assert_eq!(
            (g.remote.as_str(), g.reference.as_deref(), g.subdir.as_deref()),
            ("https://github.com/openfaas/of-watchdog.git", Some("0.10.7"), Some("cmd"))
        );
        assert!(matches!(classify("git@github.com:a/b"), Some(RemoteSource::Git(GitRef { reference: None, .. }))));
        assert!(matches!(classify("git://host/repo"), Some(RemoteSource::Git(_))));
        assert!(matches!(classify("https://example.com/repo.git/"), Some(RemoteSource::Http { .. })));
        assert!(classify_checked("https://example.com/repo.git?bogus=1").is_err(), "a Git URL's options are checked");
        assert!(matches!(classify("https://github.com/a/b"), Some(RemoteSource::Http { .. })));
        assert_eq!(classify("src/main.go"), None);
        assert_eq!(classify("github.com/a/b"), None, "scheme-less paths are local, as in BuildKit");
    }
}
