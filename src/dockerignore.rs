//! `.dockerignore` matching with Docker's semantics (moby/patternmatcher):
//! patterns are cleaned and root-relative, `*` and `?` stay within one path
//! segment, `**` spans any number of segments (including none), a pattern
//! that matches a parent directory matches everything below it, `!`
//! re-includes, and the last matching line decides. Pure: no I/O.

use crate::glob::glob_match;

/// One parsed line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    segments: Vec<String>,
    negated: bool,
}

/// A parsed `.dockerignore`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
}

fn clean(p: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s.to_string()),
        }
    }
    out
}

/// A pattern Docker's matcher refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IgnoreError {
    /// A line that is only `!` (nothing to re-include).
    #[error("illegal exclusion pattern: \"!\"")]
    BareExclusion,
}

impl DockerIgnore {
    /// Parses the text of a `.dockerignore`, refusing what Docker's pattern
    /// matcher refuses (a line that is only `!`, also as `!/`).
    pub fn parse_file(text: &str) -> Result<Self, IgnoreError> {
        let bare =
            |l: &str| l.strip_prefix('!').is_some_and(|rest| clean(rest.trim()).is_empty() && !rest.contains('.'));
        match text.lines().map(str::trim).find(|l| !l.starts_with('#') && bare(l)) {
            Some(_) => Err(IgnoreError::BareExclusion),
            None => Ok(Self::parse(text)),
        }
    }

    /// Parses patterns, skipping any that match nothing.
    pub fn parse(text: &str) -> Self {
        let patterns = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| {
                let (negated, body) = match l.strip_prefix('!') {
                    Some(rest) => (true, rest.trim()),
                    None => (false, l),
                };
                let segments = clean(body);
                (!segments.is_empty()).then_some(Pattern { segments, negated })
            })
            .collect();
        Self { patterns }
    }

    /// Whether the context-relative `path` is excluded.
    pub fn is_excluded(&self, path: &str) -> bool {
        let parts = clean(path);
        let mut excluded = false;
        for p in &self.patterns {
            let hit = (1..=parts.len()).any(|n| match_segments(&p.segments, &parts[..n]));
            if hit {
                excluded = !p.negated;
            }
        }
        excluded
    }

    /// Whether any `!` pattern exists (then an excluded directory must still
    /// be walked, because something inside may be re-included).
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.negated)
    }
}

fn match_segments(pattern: &[String], path: &[String]) -> bool {
    crate::glob::match_table(
        pattern.len(),
        path.len(),
        |i| pattern[i] == "**",
        |i, j| glob_match(&pattern[i], &path[j]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_exclusion_is_refused_as_docker_refuses_it() {
        for text in ["!\n", "a\n ! \n", "!/\n"] {
            assert_eq!(DockerIgnore::parse_file(text), Err(IgnoreError::BareExclusion), "{text:?}");
        }
        for text in ["!a\n", "# !\n", "!.\n", "a\n"] {
            assert!(DockerIgnore::parse_file(text).is_ok(), "{text:?}");
        }
    }

    #[test]
    fn follows_docker_semantics() {
        let di = DockerIgnore::parse("# comment\n*.log\n/build\n**/node_modules\n  temp?  \nsubdir\n!subdir/keep*\n");
        let cases = [
            ("a.log", true),
            ("dir/a.log", false),
            ("build", true),
            ("build/x/y", true),
            ("src/build", false),
            ("node_modules", true),
            ("a/b/node_modules/x.js", true),
            ("temp1", true),
            ("temp12", false),
            ("subdir/file", true),
            ("subdir/keep.txt", false),
            ("Dockerfile", false),
        ];
        for (path, want) in cases {
            assert_eq!(di.is_excluded(path), want, "{path}");
        }
        assert!(di.has_exceptions());
        let last_wins = DockerIgnore::parse("!a\na\n");
        assert!(last_wins.is_excluded("a"));
        assert!(DockerIgnore::parse("./x/../y\n").is_excluded("y"));
        assert!(DockerIgnore::parse("**\n!Dockerfile\n").is_excluded("any/file"));
        let deep = vec!["a"; 60].join("/");
        assert!(
            !DockerIgnore::parse(&format!("{}b", "**/a/".repeat(30))).is_excluded(&deep),
            "no backtracking blow-up"
        );
        assert!(!DockerIgnore::parse("**\n!Dockerfile\n").is_excluded("Dockerfile"));
    }
}
