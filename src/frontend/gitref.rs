//! Git references in ADD, as BuildKit's `dfgitutil.ParseGitRef` reads
//! them: `http(s)://…/repo.git`, `git://`, `ssh://` or scp-style
//! `user@host:path`, with `#ref[:subdir]` and the query options `ref`,
//! `tag`, `branch`, `subdir`, `checksum`/`commit`, `keep-git-dir`,
//! `submodules`, `mtime` and `fetch-by-commit`.

/// A parsed Git reference.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitRef {
    /// The clone URL (no query or fragment).
    pub remote: String,
    /// The repository's name (last path segment without `.git`).
    pub short_name: String,
    /// Branch, tag, commit or full ref (`tag=`/`branch=` become
    /// `refs/tags/…`/`refs/heads/…`).
    pub reference: Option<String>,
    /// The commit the ref must resolve to (`checksum=` or `commit=`).
    pub checksum: Option<String>,
    /// The subdirectory to use.
    pub subdir: Option<String>,
    /// `github.com/…` without a scheme: a local path to ADD.
    pub indistinguishable_from_local: bool,
    /// `http://` or `git://`.
    pub unencrypted: bool,
    /// `keep-git-dir` (`None`: not given).
    pub keep_git_dir: Option<bool>,
    /// `submodules` (`None`: not given, which fetches them).
    pub submodules: Option<bool>,
    /// `mtime=checkout|commit`.
    pub mtime: Option<String>,
    /// `fetch-by-commit`.
    pub fetch_by_commit: bool,
}

/// A Git reference whose options are wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct GitRefError(String);

/// `Ok(None)` when `src` is not a Git reference; an error when it is one
/// with bad options.
pub fn parse_git_ref(src: &str) -> Result<Option<GitRef>, GitRefError> {
    if src.starts_with("./") || src.starts_with("../") {
        return Ok(None);
    }
    let Some(url) = split_url(src) else { return Ok(None) };
    let mut out = GitRef {
        indistinguishable_from_local: url.scheme.is_none(),
        unencrypted: matches!(url.scheme.as_deref(), Some("http" | "git")),
        ..Default::default()
    };
    out.remote = url.remote.to_string();
    out.short_name = out.remote.rsplit('/').next().unwrap_or_default().trim_end_matches(".git").to_string();
    if let Some(fragment) = url.fragment.filter(|f| !f.is_empty()) {
        let (reference, subdir) = fragment.split_once(':').unwrap_or((fragment, ""));
        out.reference = Some(reference.to_string()).filter(|r| !r.is_empty());
        out.subdir = Some(clean_subdir(subdir)).filter(|s| !s.is_empty());
    }
    out.load_query(url.query.unwrap_or_default()).map_err(GitRefError)?;
    Ok(Some(out))
}

/// The parts of a Git URL.
struct GitUrl<'a> {
    /// `None` for `github.com/…`.
    scheme: Option<String>,
    remote: std::borrow::Cow<'a, str>,
    query: Option<&'a str>,
    fragment: Option<&'a str>,
}

fn split_url(src: &str) -> Option<GitUrl<'_>> {
    let (before_fragment, fragment) = match src.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (src, None),
    };
    let (remote, query) = match before_fragment.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (before_fragment, None),
    };
    if remote.starts_with("github.com/") {
        return Some(GitUrl { scheme: None, remote: remote.into(), query, fragment });
    }
    if let Some((scheme, rest)) = remote.split_once("://").filter(|(s, _)| is_word(s)) {
        let scheme = scheme.to_ascii_lowercase();
        if !matches!(scheme.as_str(), "http" | "https" | "git" | "ssh") {
            return None;
        }
        let path = rest.find('/').map_or("", |i| &rest[i..]);
        if scheme.starts_with("http") && !path.ends_with(".git") {
            return None;
        }
        return Some(GitUrl { scheme: Some(scheme), remote: remote.into(), query, fragment });
    }
    scp_style(remote).then(|| GitUrl { scheme: Some("ssh".into()), remote: remote.into(), query, fragment })
}

fn is_word(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// `user@host:path`: user of `[A-Za-z0-9_-]`, host of `[A-Za-z0-9.-]`.
fn scp_style(remote: &str) -> bool {
    let Some((user, rest)) = remote.split_once('@') else { return false };
    let Some((host, _)) = rest.split_once(':') else { return false };
    let user_ok = !user.is_empty() && user.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let host_ok = !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    user_ok && host_ok
}

/// `path.Join("/", dir)` without the leading slash.
fn clean_subdir(dir: &str) -> String {
    crate::frontend::paths::join_path("/", dir).trim_start_matches('/').to_string()
}

impl GitRef {
    fn load_query(&mut self, query: &str) -> Result<(), String> {
        let pairs = parse_query(query)?;
        let (mut tag, mut branch) = (None, None);
        for (key, value) in &pairs {
            if pairs.iter().filter(|(k, _)| k == key).count() > 1 {
                return Err(format!("query {key:?} has multiple values"));
            }
            let flag = match (key.as_str(), value.as_deref()) {
                ("submodules" | "keep-git-dir" | "fetch-by-commit", None) => None,
                (_, None) => return Err(format!("query {key:?} has no value")),
                (_, Some(v)) => Some(v.to_string()),
            };
            let value = flag.clone().unwrap_or_default();
            match key.as_str() {
                "ref" => self.reference = Some(merge("ref", self.reference.take(), value)?),
                "tag" => tag = Some(value),
                "branch" => branch = Some(value),
                "subdir" => self.subdir = Some(merge("subdir", self.subdir.take(), value)?),
                "checksum" | "commit" => self.checksum = Some(value),
                "keep-git-dir" => self.keep_git_dir = Some(parse_bool(key, flag.as_deref())?),
                "submodules" => self.submodules = Some(parse_bool(key, flag.as_deref())?),
                "fetch-by-commit" => self.fetch_by_commit = parse_bool(key, flag.as_deref())?,
                "mtime" if value == "checkout" || value == "commit" => self.mtime = Some(value),
                "mtime" => return Err(format!("invalid mtime value: {value:?} (must be \"checkout\" or \"commit\")")),
                other => return Err(format!("unexpected query {other:?}")),
            }
        }
        if let Some(tag) = tag {
            let full = prefixed("refs/tags/", &tag);
            self.reference = Some(merge("ref", self.reference.take(), full)?);
            if branch.is_some() {
                return Err("branch conflicts with tag".into());
            }
        }
        if let Some(branch) = branch {
            self.reference = Some(merge("ref", self.reference.take(), prefixed("refs/heads/", &branch))?);
        }
        Ok(())
    }
}

/// The value of an option given twice (fragment and query) when they agree.
fn merge(what: &str, old: Option<String>, new: String) -> Result<String, String> {
    match old {
        Some(old) if old != new => Err(format!("{what} conflicts: {old:?} vs {new:?}")),
        _ => Ok(new),
    }
}

fn prefixed(prefix: &str, name: &str) -> String {
    if name.starts_with(prefix) {
        name.to_string()
    } else {
        format!("{prefix}{name}")
    }
}

/// Go's `strconv.ParseBool`; no value means true.
fn parse_bool(key: &str, value: Option<&str>) -> Result<bool, String> {
    match value {
        None | Some("1" | "t" | "T" | "TRUE" | "true" | "True") => Ok(true),
        Some("0" | "f" | "F" | "FALSE" | "false" | "False") => Ok(false),
        Some(v) => Err(format!("invalid {key} value: {v:?}")),
    }
}

/// `a=1&b&c=` → keys with their values (`None`: no value or empty), as
/// Go's `url.ParseQuery` decodes them.
fn parse_query(query: &str) -> Result<Vec<(String, Option<String>)>, String> {
    let mut out = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        if part.contains(';') {
            return Err(format!("invalid semicolon separator in query {part:?}"));
        }
        let (key, value) = part.split_once('=').unwrap_or((part, ""));
        let value = decode(value)?;
        out.push((decode(key)?, Some(value).filter(|v| !v.is_empty())));
    }
    Ok(out)
}

/// Percent-decoding with `+` as a space.
fn decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                let byte =
                    hex.and_then(|h| u8::from_str_radix(h, 16).ok()).ok_or(format!("invalid escape in {s:?}"))?;
                out.push(byte);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8 once decoded"))
}

/// BuildKit's `FragmentFormat`: the reference as `remote#ref[:subdir]`,
/// and whether it is a Git reference at all.
pub fn fragment_format(src: &str, with_subdir: bool) -> (String, bool) {
    let Ok(Some(git)) = parse_git_ref(src) else { return (src.to_string(), false) };
    let subdir = if with_subdir { clean_subdir(git.subdir.as_deref().unwrap_or_default()) } else { String::new() };
    let mut out = git.remote;
    if git.reference.is_some() || !subdir.is_empty() {
        out.push('#');
        out.push_str(git.reference.as_deref().unwrap_or_default());
        if !subdir.is_empty() {
            out.push(':');
            out.push_str(&subdir);
        }
    }
    (out, true)
}

#[cfg(test)]
#[path = "gitref_tests.rs"]
mod tests;
