//! Fuzz harnesses: one function per attack surface, each taking raw bytes
//! and panicking when a property fails (a panic inside kiln fails too).
//! `fuzz/` drives them with libFuzzer (`scripts/fuzz.sh`); the seed corpus
//! and every crash found run through them in `tests/fuzz_regressions.rs`.

use super::intake::{self, Limits};
use crate::frontend::{self, BuildOptions, ResolvedImage};
use crate::graph::ImageConfig;
use crate::platform::{self, Platform};
use crate::registry::Reference;
use std::path::Path;

/// A harness: raw bytes in, a panic on a failed property.
pub type Harness = fn(&[u8]);

/// The targets, by name (as in `fuzz/fuzz_targets/`).
pub const TARGETS: &[(&str, Harness)] = &[
    ("request_tar", request_tar),
    ("dockerfile", dockerfile),
    ("word_expansion", word_expansion),
    ("dockerignore", dockerignore),
    ("request_config", request_config),
    ("ndjson", ndjson),
    ("context_links", context_links),
];

/// Tar intake: whatever the bytes, nothing is created outside the
/// workspace and no symlink in the context points out of it.
pub fn request_tar(data: &[u8]) {
    let root = tempfile::tempdir().expect("tempdir");
    let ws = root.path().join("ws");
    std::fs::create_dir(&ws).expect("workspace");
    let limits = Limits { max_entries: 2000, max_bytes: 16 << 20 };
    let accepted = intake::unpack(data, &ws, limits).is_ok();
    let top: Vec<_> = std::fs::read_dir(root.path()).expect("read root").flatten().map(|e| e.file_name()).collect();
    assert_eq!(top, ["ws"], "intake wrote beside its workspace");
    check_links_inside(&ws.join("context"), &ws.join("context"));
    let context = ws.join("context");
    if accepted {
        assert_links_stay_beneath(&context);
    }
    // Whatever the context holds, reading the build's own files ends
    // (intake read the Dockerfile already).
    let _ = super::contextfs::read_dockerignore(&context);
}

/// Symlink chains: a context of directories and links described by the
/// input (`d NAME` or `l NAME TARGET` per line, names made safe) is
/// checked by `api::symlinks`; when it passes, the kernel agrees that no
/// link leads out (`RESOLVE_BENEATH` never answers `EXDEV`).
pub fn context_links(data: &[u8]) {
    let root = tempfile::tempdir().expect("tempdir");
    let context = root.path().join("context");
    std::fs::create_dir(&context).expect("context");
    for line in String::from_utf8_lossy(data).lines().take(64) {
        let mut words = line.split_whitespace();
        let (kind, name) = (words.next(), words.next().map(safe_name));
        match (kind, name) {
            (Some("d"), Some(n)) => drop(std::fs::create_dir_all(context.join(n))),
            (Some("l"), Some(n)) => {
                let target = words.next().unwrap_or(".");
                let path = context.join(n);
                if let Some(parent) = path.parent() {
                    let _ = std::fs::create_dir_all(parent);
                }
                let _ = std::os::unix::fs::symlink(target, path);
            }
            _ => {}
        }
    }
    if super::symlinks::check_context(&context).is_ok() {
        assert_links_stay_beneath(&context);
    }
}

/// A relative name with no `.`, `..` or empty components.
fn safe_name(raw: &str) -> String {
    let parts: Vec<&str> = raw.split('/').filter(|c| !c.is_empty() && *c != "." && *c != "..").take(8).collect();
    if parts.is_empty() {
        "x".into()
    } else {
        parts.join("/")
    }
}

/// Every symlink under `context` resolves beneath it, as the kernel sees it.
fn assert_links_stay_beneath(context: &Path) {
    let root = std::fs::File::open(context).expect("open context");
    let mut todo = vec![std::path::PathBuf::new()];
    while let Some(rel) = todo.pop() {
        for entry in std::fs::read_dir(context.join(&rel)).into_iter().flatten().flatten() {
            let (path, kind) = (rel.join(entry.file_name()), entry.file_type().expect("file type"));
            if kind.is_dir() {
                todo.push(path);
            } else if kind.is_symlink() {
                let opened = kiln_snapshotter::fsx::open_beneath(&root, &path, libc::O_PATH);
                let escaped = opened.is_err_and(|e| e.raw_os_error() == Some(libc::EXDEV));
                assert!(!escaped, "{} leads out of the context, but the check passed it", path.display());
            }
        }
    }
}

fn check_links_inside(dir: &Path, context: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).expect("readlink");
            let resolved = lexical_join(path.parent().expect("parent"), &target);
            assert!(resolved.starts_with(context), "{} -> {} leaves the context", path.display(), target.display());
        } else if meta.is_dir() {
            check_links_inside(&path, context);
        }
    }
}

/// `base/target` with `.` and `..` resolved without touching the disk.
fn lexical_join(base: &Path, target: &Path) -> std::path::PathBuf {
    let mut out = if target.is_absolute() { std::path::PathBuf::from("/") } else { base.to_path_buf() };
    for c in target.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// The Dockerfile frontend: parse, lint and lower for two platforms never
/// panic, and a diagnostic names a line of the file.
pub fn dockerfile(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(d) = frontend_pass(text, frontend::MAX_INSTRUCTIONS, &["linux/amd64", "linux/arm64"]) {
        assert!(d.line >= 1 && d.line <= text.lines().count().max(1) + 1, "diagnostic line {} of {text:?}", d.line);
    }
}

/// Everything the server does with a Dockerfile before solving: parse
/// (with at most `max_instructions`), lint, and for each platform list the
/// base images and lower against stand-ins for them. Returns the number
/// of graph nodes of the last platform.
pub fn frontend_pass(text: &str, max_instructions: usize, platforms: &[&str]) -> Result<usize, frontend::Diagnostic> {
    let df = frontend::parse_limited(text, max_instructions)?;
    if let Ok(cfg) = frontend::lint::check_config(&df, None) {
        let _ = frontend::lint::lint(&df, &cfg, None);
    }
    let mut nodes = 0;
    for target in platforms {
        let opts = BuildOptions {
            build_args: [("A".to_string(), "a".to_string())].into(),
            target: None,
            platform: Platform::parse(target).expect("platform"),
        };
        let (resolved, _) = frontend::resolve_bases(&df, &opts, |b| {
            Ok::<_, frontend::Diagnostic>(ResolvedImage {
                reference: b.image.clone(),
                digest: kiln_snapshotter::Digest::of(b.image.as_bytes()),
                config: ImageConfig::default(),
            })
        })?;
        nodes = frontend::lower(&df, &opts, &resolved)?.definition.nodes.len();
    }
    Ok(nodes)
}

/// Word expansion: `text` NUL `value` (every variable has that value);
/// results stay within the expansion bound and never panic.
pub fn word_expansion(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (text, value) = text.split_once('\0').unwrap_or((&text, "v a l"));
    let vars = |_: &str| Some(value.to_string());
    for escape in ['\\', '`'] {
        if let Ok(w) = frontend::words::process_word(text, &vars, escape) {
            assert!(w.len() <= frontend::words::MAX_EXPANDED + value.len() + text.len());
        }
        let _ = frontend::words::process_words(text, &vars, escape);
        let _ = frontend::words::expand_heredoc(text, &vars);
        let _ = frontend::words::split_raw(text, escape);
    }
}

/// `.dockerignore`: patterns NUL path; matching never panics, and `**`
/// excludes every path that names a file (not the context root itself).
pub fn dockerignore(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (patterns, path) = text.split_once('\0').unwrap_or((&text, "a/b/c"));
    let ignore = crate::dockerignore::DockerIgnore::parse(patterns);
    let _ = ignore.is_excluded(path);
    let _ = ignore.has_exceptions();
    if let Some(first) = patterns.lines().next() {
        let _ = crate::glob::glob_match(first, path);
    }
    let all = crate::dockerignore::DockerIgnore::parse("**");
    let names: Vec<&str> = path.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    if !names.is_empty() && !names.contains(&"..") {
        assert!(all.is_excluded(path), "** must exclude {path:?}");
    }
}

/// The request config: parsing, platforms and the image reference; a
/// parsed reference prints as a string that parses back to itself. The
/// same bytes as of-builder's `config`: a parsed one has a non-empty ref
/// and pushes to its lower-cased form.
pub fn request_config(data: &[u8]) {
    if let Ok((legacy, given)) = super::legacy::parse_config(data) {
        assert!(!given.is_empty(), "an empty ref is refused");
        assert_eq!(legacy.image, given.to_lowercase());
    }
    let Ok(config) = serde_json::from_slice::<intake::BuildConfig>(data) else { return };
    if let Ok(list) = platform::requested(config.platforms.as_deref()) {
        assert!(!list.is_empty() && list.len() <= platform::MAX_PLATFORMS);
        for p in list {
            assert_eq!(Platform::parse(&p.to_string()).as_ref(), Ok(&p), "platform {p} round trip");
        }
    }
    if let Ok(r) = Reference::parse(&config.image) {
        let again = Reference::parse(&r.to_string()).unwrap_or_else(|e| panic!("{r} does not parse back: {e}"));
        assert_eq!(again, r, "reference round trip");
    }
}

/// NDJSON framing: log lines (split on `\n`) become frames that are each
/// one JSON object on one line below faas-cli's 64 KiB scanner limit, and
/// carry the lines in order.
pub fn ndjson(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let lines: Vec<String> = text.split('\n').map(String::from).collect();
    let frames = super::stream::progress_frames(lines.clone(), 1.5);
    let mut carried = Vec::new();
    for f in &frames {
        assert_eq!(f.iter().filter(|b| **b == b'\n').count(), 1, "one newline per frame");
        assert_eq!(f.last(), Some(&b'\n'));
        assert!(f.len() < 64 << 10, "frame of {} bytes", f.len());
        let v: serde_json::Value = serde_json::from_slice(f).expect("frame is JSON");
        assert_eq!(v["status"], "in_progress");
        for l in v["log"].as_array().into_iter().flatten() {
            carried.push(l.as_str().expect("log entries are strings").to_string());
        }
    }
    assert_eq!(carried.len(), lines.len(), "every line is carried once");
    for (got, want) in carried.iter().zip(&lines) {
        assert!(got == want || got.ends_with(" […]"), "line changed: {want:?} -> {got:?}");
    }
}
