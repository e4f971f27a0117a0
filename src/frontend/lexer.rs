//! Splits a Dockerfile into parser directives and logical lines: comments
//! and blank lines dropped, continuation lines (ending in the escape
//! character) joined, comment lines inside a continuation skipped, CRLF
//! accepted. Each logical line keeps its first line number.

use super::diag::Diagnostic;

/// One instruction's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalLine {
    /// 1-based line where it starts.
    pub line: usize,
    /// The instruction with continuations joined.
    pub text: String,
    /// The first physical line, for diagnostics.
    pub first: String,
}

/// Lexer output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lexed {
    /// The escape character (`\` or `` ` ``).
    pub escape: char,
    /// Parser directives (`syntax`, `escape`, `check`), lower-cased names.
    pub directives: Vec<(String, String)>,
    /// Instructions.
    pub lines: Vec<LogicalLine>,
}

const DIRECTIVES: [&str; 3] = ["syntax", "escape", "check"];

fn directive(line: &str) -> Option<(String, String)> {
    let body = line.trim().strip_prefix('#')?;
    let (name, value) = body.split_once('=')?;
    let name = name.trim().to_ascii_lowercase();
    DIRECTIVES
        .contains(&name.as_str())
        .then(|| (name, value.trim().to_string()))
}

/// Lexes `text`.
pub fn lex(text: &str) -> Result<Lexed, Diagnostic> {
    let physical: Vec<&str> = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
    let mut idx = 0;
    let mut directives = Vec::new();
    let mut escape = '\\';
    while let Some((name, value)) = physical.get(idx).and_then(|l| directive(l)) {
        if directives.iter().any(|(n, _)| *n == name) {
            break;
        }
        if name == "escape" {
            escape = match value.as_str() {
                "\\" => '\\',
                "`" => '`',
                _ => {
                    return Err(Diagnostic::new(
                        idx + 1,
                        1,
                        format!("invalid escape token {value:?}: must be ` or \\"),
                        physical[idx],
                    ))
                }
            };
        }
        directives.push((name, value));
        idx += 1;
    }
    let mut lines = Vec::new();
    while idx < physical.len() {
        let start = idx;
        let raw = physical[idx];
        idx += 1;
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut text = String::new();
        let mut cur = trimmed;
        loop {
            match strip_continuation(cur, escape) {
                Some(body) => {
                    text.push_str(body);
                    let next = next_content_line(&physical, &mut idx);
                    match next {
                        Some(n) => cur = n,
                        None => break,
                    }
                }
                None => {
                    text.push_str(cur);
                    break;
                }
            }
        }
        lines.push(LogicalLine {
            line: start + 1,
            text: text.trim().to_string(),
            first: raw.to_string(),
        });
    }
    Ok(Lexed {
        escape,
        directives,
        lines,
    })
}

/// Skips comment and empty lines inside a continuation.
fn next_content_line<'a>(physical: &[&'a str], idx: &mut usize) -> Option<&'a str> {
    while *idx < physical.len() {
        let l = physical[*idx];
        *idx += 1;
        let t = l.trim_start();
        if t.starts_with('#') || t.trim().is_empty() {
            continue;
        }
        return Some(l);
    }
    None
}

fn strip_continuation(line: &str, escape: char) -> Option<&str> {
    let t = line.trim_end();
    let body = t.strip_suffix(escape)?;
    // An escaped escape (`\\` at the end) is not a continuation.
    let run = body.chars().rev().take_while(|c| *c == escape).count();
    (run % 2 == 0).then_some(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_continuations_and_skips_comments() {
        let src =
            "# syntax=docker/dockerfile:1\n# escape=\\\nFROM a\r\n\n# c\nRUN echo a \\\n  # inner\n\n  b\nENV X=1\n";
        let l = lex(src).unwrap();
        assert_eq!(l.directives.len(), 2);
        let got: Vec<(usize, &str)> = l.lines.iter().map(|l| (l.line, l.text.as_str())).collect();
        assert_eq!(got, vec![(3, "FROM a"), (6, "RUN echo a   b"), (10, "ENV X=1")]);
    }

    #[test]
    fn backtick_escape() {
        let l = lex("# escape=`\nFROM a\nRUN dir `\n c:\\\n").unwrap();
        assert_eq!(l.escape, '`');
        assert_eq!(l.lines[1].text, "RUN dir  c:\\");
    }
}
