//! Here-document markers, found the way BuildKit's parser finds them: the
//! instruction line is split into shell words (quotes and escapes kept,
//! `<<` joined to the word after it), and a word is a marker only if all of
//! it reads `[fd]<<[-]WORD`, WORD being one shell word without `<`. So
//! `cat <<EOF` opens a here-document and `cat<<EOF` does not; `<<'EOF'`,
//! `<<"EOF"` and `<<E'O'F` name `EOF` without expansion.

use super::words::split_raw;

/// One `<<` marker of an instruction line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// The delimiter, quotes and escapes removed.
    pub name: String,
    /// False when any part of the delimiter was quoted (no expansion).
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from the body and the delimiter line.
    pub chomp: bool,
    /// The file descriptor written before `<<` (`3<<EOF`), 0 when none.
    pub fd: u32,
}

/// The markers of an instruction line, in order.
pub fn markers(line: &str) -> Vec<Marker> {
    words(line).iter().filter_map(|w| marker(w)).collect()
}

/// `word` read as a marker, if all of it is one.
pub fn marker(word: &str) -> Option<Marker> {
    let digits = word.len() - word.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let rest = word[digits..].strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let rest = rest.trim_start_matches([' ', '\t', '\n', '\r', '\x0c']);
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let (name, quoted) = unquote(rest)?;
    let fd = word[..digits].parse().unwrap_or(0);
    Some(Marker { name, expand: !quoted, chomp, fd })
}

/// The line's shell words with quotes and escapes as written; a word
/// ending in an unquoted `<<` takes the next word (BuildKit's lexer keeps
/// the blanks after `<<` in the word: `<<  EOF` is one marker).
fn words(line: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut join_next = false;
    for w in split_raw(line, '\\') {
        let ends_open = w.ends_with("<<");
        match out.last_mut() {
            Some(last) if join_next => {
                last.push(' ');
                last.push_str(&w);
            }
            _ => out.push(w),
        }
        join_next = ends_open;
    }
    out
}

/// One shell word with its quotes and escapes removed, and whether any
/// part of it was quoted; `None` when it is not exactly one word.
fn unquote(word: &str) -> Option<(String, bool)> {
    let mut out = String::new();
    let mut quoted = false;
    let mut chars = word.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            '\'' => {
                quoted = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => out.push(c),
                    }
                }
            }
            '"' => {
                quoted = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            c @ ('"' | '$' | '\\') => out.push(c),
                            c => out.extend(['\\', c]),
                        },
                        c => out.push(c),
                    }
                }
            }
            c if c.is_whitespace() => return None,
            c => out.push(c),
        }
    }
    Some((out, quoted))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, expand: bool, chomp: bool, fd: u32) -> Marker {
        Marker { name: name.into(), expand, chomp, fd }
    }

    /// BuildKit's TestParseExtractsHeredoc, the marker half: which words
    /// open a here-document and what they name.
    #[test]
    fn markers_read_like_buildkit_s_parser() {
        let cases: Vec<(&str, Vec<Marker>)> = vec![
            ("RUN ls", vec![]),
            ("RUN <<EMPTY", vec![m("EMPTY", true, false, 0)]),
            ("RUN 3<<EMPTY2", vec![m("EMPTY2", true, false, 3)]),
            ("RUN \"<<NOHEREDOC\"", vec![]),
            ("RUN <<-UNINDENT", vec![m("UNINDENT", true, true, 0)]),
            ("RUN <<-'NOEXPAND'", vec![m("NOEXPAND", false, true, 0)]),
            ("RUN --mount=type=cache,target=/foo <<MOUNT", vec![m("MOUNT", true, false, 0)]),
            ("COPY <<FILE1 <<FILE2 /dest", vec![m("FILE1", true, false, 0), m("FILE2", true, false, 0)]),
            ("RUN <<COMPLEX python3", vec![m("COMPLEX", true, false, 0)]),
            ("COPY <<file.txt /dest", vec![m("file.txt", true, false, 0)]),
            ("RUN <<eo'f'", vec![m("eof", false, false, 0)]),
            ("RUN <<eo\\'f", vec![m("eo'f", true, false, 0)]),
            ("RUN <<'e'o\\'f", vec![m("eo'f", false, false, 0)]),
            ("RUN <<'one two'", vec![m("one two", false, false, 0)]),
            ("RUN <<$EOF", vec![m("$EOF", true, false, 0)]),
            ("RUN <<  EOF", vec![m("EOF", true, false, 0)]),
            ("RUN <<  EOF  > foo", vec![m("EOF", true, false, 0)]),
            ("RUN cat<<EOF", vec![]),
            ("RUN cat <<<EOF", vec![]),
            ("RUN <<- EOF", vec![]),
        ];
        for (line, want) in cases {
            assert_eq!(markers(line), want, "{line}");
        }
    }

    /// BuildKit's TestParseHeredocHelpers: a whole word read as a marker.
    /// (Upstream errors on an unterminated quote; here the word is simply
    /// not a marker, which is what its parser makes of such a line.)
    #[test]
    fn whole_words_as_markers() {
        for word in
            ["<<EOF", "<<'EOF'", "<<\"EOF\"", "<<-EOF", "<<-'EOF'", "<<-\"EOF\"", "<<EO\"F\"", "<< EOF", "<<- EOF"]
        {
            assert_eq!(marker(word).map(|m| m.name), Some("EOF".to_string()), "{word}");
        }
        for word in ["", "EOF", "<<", "<<-", "<EOF", "<<<EOF", "<<EOF sh", "<<'EOF", "<<\"EOF", "<<EOF'", "<<EOF\""] {
            assert_eq!(marker(word), None, "{word}");
        }
    }

    /// BuildKit's TestHeredocsFromLine.
    #[test]
    fn markers_from_lines() {
        let cases: [(&str, &[&str]); 10] = [
            ("RUN <<EOF", &["EOF"]),
            ("RUN <<-EOF", &["EOF"]),
            ("RUN <<- EOF", &[]),
            ("RUN << -EOF", &["-EOF"]),
            ("RUN <<'EOF'", &["EOF"]),
            ("RUN 4<<EOF", &["EOF"]),
            ("RUN <<EOF <<EOF2", &["EOF", "EOF2"]),
            ("RUN '<<EOF'", &[]),
            ("RUN \"<<EOF\"", &[]),
            ("RUN echo <<EOF'", &[]),
        ];
        for (line, names) in cases {
            let got: Vec<String> = markers(line).into_iter().map(|m| m.name).collect();
            assert_eq!(got, names, "{line}");
        }
    }
}
