//! Dockerfile diagnostics: every error names the line and column, quotes
//! the line, and suggests the nearest valid word where there is one.

use std::fmt;

/// A Dockerfile error with its location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// The offending line as written.
    pub source_line: String,
    /// "did you mean …" candidate.
    pub suggestion: Option<String>,
}

impl Diagnostic {
    /// A diagnostic at `line`/`column`.
    pub fn new(line: usize, column: usize, message: impl Into<String>, source_line: &str) -> Self {
        Self { line, column, message: message.into(), source_line: source_line.to_string(), suggestion: None }
    }

    /// Adds the closest of `candidates` to `word` as a suggestion.
    pub fn suggest<'a>(mut self, word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Self {
        self.suggestion = closest(word, candidates).map(str::to_string);
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dockerfile:{}:{}: {}", self.line, self.column, self.message)?;
        if let Some(s) = &self.suggestion {
            write!(f, " (did you mean {s}?)")?;
        }
        if !self.source_line.is_empty() {
            write!(f, "\n  {:>4} | {}", self.line, self.source_line)?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostic {}

/// Longest word (and candidate) a suggestion is looked for, and most
/// candidates compared: suggestions are for typos of short names, and the
/// comparison must stay cheap whatever a Dockerfile holds.
const MAX_SUGGESTED: usize = 64;
const MAX_CANDIDATES: usize = 256;

/// The candidate within edit distance 2 (or a third of the word) of `word`,
/// compared case-insensitively.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    if word.len() > MAX_SUGGESTED {
        return None;
    }
    let w = word.to_ascii_lowercase();
    let limit = (w.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .take(MAX_CANDIDATES)
        .filter(|c| c.len() <= MAX_SUGGESTED && c.len().abs_diff(w.len()) <= limit)
        .map(|c| (edit_distance(&w, &c.to_ascii_lowercase()), c))
        .filter(|(d, _)| *d > 0 && *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_location_quote_and_suggestion() {
        let d = Diagnostic::new(3, 1, "unknown instruction: FORM", "FORM busybox").suggest("FORM", ["FROM", "RUN"]);
        assert_eq!(
            d.to_string(),
            "Dockerfile:3:1: unknown instruction: FORM (did you mean FROM?)\n     3 | FORM busybox"
        );
        assert_eq!(closest("xyzzy", ["FROM", "RUN"]), None);
    }
}
