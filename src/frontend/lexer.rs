//! Splits a Dockerfile into parser directives and logical lines: comments
//! and blank lines dropped, continuation lines (ending in the escape
//! character) joined, comment lines inside a continuation skipped, CRLF
//! accepted. Each logical line keeps its first line number.

use super::diag::Diagnostic;
use super::heredoc::{markers, Marker};

/// One instruction's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalLine {
    /// 1-based line where it starts.
    pub line: usize,
    /// The instruction with continuations joined.
    pub text: String,
    /// The first physical line, for diagnostics.
    pub first: String,
    /// Here-documents that follow the line (RUN, COPY, ADD, also as ONBUILD
    /// triggers).
    pub heredocs: Vec<Heredoc>,
    /// The value of a `# check=…` comment among the comment lines right
    /// above it (BuildKit applies it to this instruction's warnings).
    pub check: Option<String>,
    /// The instruction's last line, when an empty line sat inside its
    /// continuation (BuildKit's NoEmptyContinuation warning points there).
    pub empty_continuation: Option<usize>,
}

/// One here-document (`<<EOF`, `<<-EOF`, `<<"EOF"`, `<<'EOF'`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word.
    pub name: String,
    /// The body, with a final newline (`<<-`: leading tabs stripped).
    pub body: String,
    /// False when the delimiter was quoted (no expansion).
    pub expand: bool,
    /// The lines as written, terminator included, for passing to a shell.
    pub raw: String,
}

/// RUN, COPY and ADD read here-documents, also as an ONBUILD trigger
/// (BuildKit's compound directive); their JSON forms do not.
fn takes_heredocs(text: &str) -> bool {
    let mut words = text.split_whitespace();
    let mut word = words.next().unwrap_or("");
    let mut rest = text.trim_start()[word.len()..].trim_start();
    if word.eq_ignore_ascii_case("ONBUILD") {
        word = words.next().unwrap_or("");
        rest = rest[word.len()..].trim_start();
    }
    ["RUN", "COPY", "ADD"].iter().any(|k| word.eq_ignore_ascii_case(k)) && !is_json_form(rest)
}

/// Whether an instruction's arguments (flags first) are a JSON array of
/// strings, BuildKit's exec form.
fn is_json_form(args: &str) -> bool {
    let mut rest = args;
    while rest.starts_with("--") {
        rest = rest.split_once(char::is_whitespace).map_or("", |(_, r)| r).trim_start();
    }
    rest.starts_with('[') && serde_json::from_str::<Vec<String>>(rest.trim_end()).is_ok()
}

/// Reads the bodies of `markers` from the lines after `*idx`.
fn read_heredocs(
    physical: &[&str],
    idx: &mut usize,
    markers: Vec<Marker>,
    line: usize,
) -> Result<Vec<Heredoc>, Diagnostic> {
    let mut out = Vec::new();
    for Marker { name, expand, chomp: strip, .. } in markers {
        let (mut body, mut raw) = (String::new(), String::new());
        loop {
            let Some(l) = physical.get(*idx) else {
                return Err(Diagnostic::new(line, 1, format!("unterminated heredoc {name}"), physical[line - 1]));
            };
            *idx += 1;
            raw.push_str(l);
            raw.push('\n');
            let content = if strip { l.trim_start_matches('\t') } else { l };
            if content == name {
                break;
            }
            body.push_str(content);
            body.push('\n');
        }
        out.push(Heredoc { name, body, expand, raw });
    }
    Ok(out)
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

/// A directive line (`# name = value`); for `syntax` and `check` the value
/// is its first word (`# syntax = docker/dockerfile:1 // note`), as BuildKit
/// reads them.
fn directive(line: &str) -> Option<(String, String)> {
    let body = line.trim().strip_prefix('#')?;
    let (name, value) = body.split_once('=')?;
    let name = name.trim().to_ascii_lowercase();
    let value = value.trim();
    let value = match name.as_str() {
        "escape" => value,
        _ => value.split(' ').next().unwrap_or(value),
    };
    DIRECTIVES.contains(&name.as_str()).then(|| (name, value.to_string()))
}

/// `syntax` and `check` below a first-line `#!` shebang: BuildKit finds
/// those there (its `ParseDirective`), though not `escape`.
fn directives_after_shebang(physical: &[&str]) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = Vec::new();
    for (name, value) in physical.iter().skip(1).map_while(|l| directive(l)) {
        if found.iter().any(|(n, _)| *n == name) {
            break;
        }
        if name != "escape" {
            found.push((name, value));
        }
    }
    found
}

/// Longest instruction (after joining continuation lines).
pub const MAX_INSTRUCTION: usize = 1 << 20;

/// Lexes `text`.
pub fn lex(text: &str) -> Result<Lexed, Diagnostic> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
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
    if directives.is_empty() && physical.first().is_some_and(|l| l.starts_with("#!")) {
        directives = directives_after_shebang(&physical);
    }
    let lines = logical_lines(&physical, idx, escape)?;
    Ok(Lexed { escape, directives, lines })
}

/// One ONBUILD trigger's text (its here-documents follow it, as BuildKit
/// stores them) as instructions, read without directives.
pub fn lex_trigger(text: &str, escape: char) -> Result<Vec<LogicalLine>, Diagnostic> {
    let physical: Vec<&str> = text.split('\n').collect();
    logical_lines(&physical, 0, escape)
}

/// The instructions of `physical` from line index `idx` on.
fn logical_lines(physical: &[&str], mut idx: usize, escape: char) -> Result<Vec<LogicalLine>, Diagnostic> {
    let mut lines = Vec::new();
    // Comment lines since the last instruction; an empty `#` clears them.
    let mut comments: Vec<&str> = Vec::new();
    while idx < physical.len() {
        let start = idx;
        let raw = physical[idx];
        idx += 1;
        let trimmed = raw.trim_start();
        if let Some(comment) = trimmed.strip_prefix('#').map(str::trim) {
            match comment.is_empty() {
                true => comments.clear(),
                false => comments.push(comment),
            }
            continue;
        }
        if trimmed.is_empty() {
            continue;
        }
        let check =
            comments.drain(..).find_map(|c| directive(&format!("#{c}")).filter(|(n, _)| n == "check")).map(|(_, v)| v);
        let mut text = String::new();
        let mut cur = trimmed;
        let mut saw_empty = false;
        loop {
            match strip_continuation(cur, escape) {
                Some(body) => {
                    text.push_str(body);
                    let next = next_content_line(physical, &mut idx, &mut saw_empty);
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
        let text = text.trim().to_string();
        if text.len() > MAX_INSTRUCTION {
            let msg = format!("instruction is longer than {MAX_INSTRUCTION} bytes");
            let shown: String = raw.chars().take(80).collect();
            return Err(Diagnostic::new(start + 1, 1, msg, &shown));
        }
        let empty_continuation = saw_empty.then_some(idx);
        let markers = if takes_heredocs(&text) { markers(&text) } else { Vec::new() };
        let heredocs = read_heredocs(physical, &mut idx, markers, start + 1)?;
        lines.push(LogicalLine { line: start + 1, text, first: raw.to_string(), heredocs, check, empty_continuation });
    }
    Ok(lines)
}

/// Skips comment and empty lines inside a continuation (noting an empty one).
fn next_content_line<'a>(physical: &[&'a str], idx: &mut usize, saw_empty: &mut bool) -> Option<&'a str> {
    while *idx < physical.len() {
        let l = physical[*idx];
        *idx += 1;
        let t = l.trim_start();
        if t.trim().is_empty() {
            *saw_empty = true;
            continue;
        }
        if t.starts_with('#') {
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
    fn onbuild_triggers_read_heredocs_and_json_forms_do_not() {
        let src =
            "FROM a\nONBUILD RUN <<EOF\necho hi\nEOF\nRUN [\"cat\", \"<<X\"]\nRUN --network=none [\"a\", \"<<Y\"]\n";
        let l = lex(src).unwrap();
        assert_eq!(l.lines[1].heredocs.len(), 1);
        assert_eq!(l.lines[1].heredocs[0].body, "echo hi\n");
        assert!(l.lines[2].heredocs.is_empty() && l.lines[3].heredocs.is_empty());
        let trigger = lex_trigger("COPY <<-A <<B /d/\n\tx\n\tA\ny\nB", '\\').unwrap();
        assert_eq!(trigger.len(), 1);
        let bodies: Vec<&str> = trigger[0].heredocs.iter().map(|h| h.body.as_str()).collect();
        assert_eq!(bodies, ["x\n", "y\n"]);
    }

    #[test]
    fn backtick_escape() {
        let l = lex("# escape=`\nFROM a\nRUN dir `\n c:\\\n").unwrap();
        assert_eq!(l.escape, '`');
        assert_eq!(l.lines[1].text, "RUN dir  c:\\");
    }

    #[test]
    fn reads_heredoc_bodies() {
        let src =
            "FROM a\nRUN <<EOF\necho $HOME\nEOF\nCOPY <<-'A' <<B /dest/\n\tx\n\tA\ny\nB\nRUN cat <<<notaheredoc\n";
        let l = lex(src).unwrap();
        assert_eq!(l.lines.len(), 4);
        let run = &l.lines[1].heredocs;
        assert_eq!((run[0].name.as_str(), run[0].body.as_str(), run[0].expand), ("EOF", "echo $HOME\n", true));
        let copy = &l.lines[2].heredocs;
        assert_eq!((copy[0].body.as_str(), copy[0].expand), ("x\n", false));
        assert_eq!((copy[1].name.as_str(), copy[1].body.as_str()), ("B", "y\n"));
        assert!(l.lines[3].heredocs.is_empty());
        let err = lex("FROM a\nRUN <<EOF\nnever ends\n").unwrap_err();
        assert!(err.message.contains("unterminated heredoc EOF"), "{err}");
        assert_eq!(err.line, 2);
    }
}
