//! Shell-word processing as BuildKit's Dockerfile frontend does it:
//! quotes, escapes and `$V`, `${V}`, `${V:-w}`, `${V-w}`, `${V:+w}`,
//! `${V+w}`, `${V:?msg}`, `${V?msg}`, `${V#pat}`, `${V##pat}`,
//! `${V%pat}`, `${V%%pat}`, `${V/pat/rep}`, `${V//pat/rep}` (patterns:
//! [`super::pattern`]), with BuildKit's error texts. Only the builder's
//! own variables (ENV and ARG) are expanded; RUN/CMD/ENTRYPOINT text is
//! left to the shell.

/// Variable lookup used during expansion.
pub trait Vars {
    /// The value of `name`, or `None` when unset.
    fn get(&self, name: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> Vars for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// Longest text one expansion may produce (values of earlier ENV/ARG lines
/// are capped too, so repeated doubling cannot exhaust memory).
pub const MAX_EXPANDED: usize = 1 << 20;
/// Deepest nesting of `${V:-${W:-…}}` substitutions.
pub const MAX_NESTING: usize = 32;

use super::pattern::Pattern;

/// Expands one word, removing quotes.
pub fn process_word(text: &str, vars: &dyn Vars, escape: char) -> Result<String, WordError> {
    let mut s = Scanner::new(text, escape, vars);
    let words = s.process(false, None)?;
    Ok(words.into_iter().next().unwrap_or_default())
}

/// Expands text into words split on unquoted whitespace (also inside
/// unquoted expansion results).
pub fn process_words(text: &str, vars: &dyn Vars, escape: char) -> Result<Vec<String>, WordError> {
    let mut s = Scanner::new(text, escape, vars);
    s.process(true, None)
}

/// Splits text on unquoted whitespace without expanding or removing quotes
/// (used for `KEY=VALUE` lists, which are expanded pair by pair).
pub fn split_raw(text: &str, escape: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                continue;
            }
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (q, c) if c == escape && q != Some('\'') => {
                cur.push(c);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

struct Scanner<'a> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    vars: &'a dyn Vars,
    /// Substitutions currently open.
    depth: usize,
    /// Keep escapes as written (a pattern's `\*` stays an escape).
    raw_escapes: bool,
}

/// Why a word does not expand (BuildKit's messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WordError {
    /// The expansion grew past [`MAX_EXPANDED`].
    #[error("expanded text is longer than {MAX_EXPANDED} bytes")]
    TooLong,
    /// Substitutions nested past [`MAX_NESTING`].
    #[error("variable substitutions nested deeper than {MAX_NESTING} levels")]
    TooDeep,
    /// A quote that is never closed (`single-quote`, `double-quote`).
    #[error("unexpected end of statement while looking for matching {0}")]
    Unterminated(&'static str),
    /// `${}`, `${:x}`, `${{x}`.
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    /// A modifier BuildKit does not have (`:#`, `:%`, `*`, …).
    #[error("unsupported modifier ({0}) in substitution")]
    UnsupportedModifier(String),
    /// `${name` without its brace.
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    /// `${name/pattern` without the second `/`.
    #[error("syntax error: missing '/' in ${{}}")]
    MissingSlash,
    /// A pattern with an escape other than `\*`, `\?`, `\\`.
    #[error("invalid pattern ({pattern}) in substitution: {reason}")]
    BadPattern {
        /// The pattern.
        pattern: String,
        /// Why.
        reason: String,
    },
    /// `${name?message}` with `name` unset (or `:?` and empty); the
    /// message defaults to BuildKit's.
    #[error("{name}: {message}")]
    Required {
        /// The variable.
        name: String,
        /// The Dockerfile's message.
        message: String,
    },
}

/// Refuses text grown past [`MAX_EXPANDED`].
fn check_size(len: usize) -> Result<(), WordError> {
    if len > MAX_EXPANDED {
        return Err(WordError::TooLong);
    }
    Ok(())
}

/// Accumulates words, tracking whether a word has started (so `""` yields
/// an empty word).
#[derive(Default)]
struct Words {
    done: Vec<String>,
    /// Bytes in `done`.
    done_len: usize,
    cur: String,
    in_word: bool,
}

impl Words {
    fn len(&self) -> usize {
        self.done_len + self.cur.len()
    }
    fn raw(&mut self, s: &str) {
        self.cur.push_str(s);
        self.in_word = true;
    }
    fn split_push(&mut self, s: &str, split: bool) {
        if !split {
            return self.raw(s);
        }
        for c in s.chars() {
            if c.is_whitespace() {
                self.end();
            } else {
                self.cur.push(c);
                self.in_word = true;
            }
        }
    }
    fn end(&mut self) {
        if self.in_word {
            self.done_len += self.cur.len();
            self.done.push(std::mem::take(&mut self.cur));
            self.in_word = false;
        }
    }
}

impl<'a> Scanner<'a> {
    fn new(text: &str, escape: char, vars: &'a dyn Vars) -> Self {
        Scanner { chars: text.chars().collect(), pos: 0, escape, vars, depth: 0, raw_escapes: false }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    /// Processes until `stop` (unquoted, unescaped) or the end.
    fn process(&mut self, split: bool, stop: Option<char>) -> Result<Vec<String>, WordError> {
        if self.depth > MAX_NESTING {
            return Err(WordError::TooDeep);
        }
        self.depth += 1;
        let words = self.process_level(split, stop);
        self.depth -= 1;
        words
    }

    fn process_level(&mut self, split: bool, stop: Option<char>) -> Result<Vec<String>, WordError> {
        let mut w = Words::default();
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                break;
            }
            self.pos += 1;
            match c {
                c if split && c.is_whitespace() => w.end(),
                '\'' => w.raw(&self.single_quoted()?),
                '"' => w.raw(&self.double_quoted()?),
                '$' => {
                    let v = self.dollar()?;
                    w.split_push(&v, split);
                    w.in_word |= !split;
                }
                // A final lone escape is dropped, as BuildKit's lexer does
                // (kept when escapes stay raw, for patterns).
                c if c == self.escape => match self.next() {
                    Some(n) if self.raw_escapes => w.raw(&format!("{c}{n}")),
                    Some(n) => w.raw(&n.to_string()),
                    None if self.raw_escapes => w.raw(&c.to_string()),
                    None => {}
                },
                c => w.raw(&c.to_string()),
            }
            if c == '$' || c == '"' {
                check_size(w.len())?;
            }
        }
        w.end();
        if !split && w.done.is_empty() {
            w.done.push(String::new());
        }
        Ok(w.done)
    }

    fn single_quoted(&mut self) -> Result<String, WordError> {
        let mut s = String::new();
        loop {
            match self.next() {
                Some('\'') => return Ok(s),
                Some(c) => s.push(c),
                None => return Err(WordError::Unterminated("single-quote")),
            }
        }
    }

    fn double_quoted(&mut self) -> Result<String, WordError> {
        let mut s = String::new();
        loop {
            match self.next() {
                Some('"') => return Ok(s),
                Some('$') => {
                    s.push_str(&self.dollar()?);
                    check_size(s.len())?;
                }
                Some(c) if c == self.escape => match self.next() {
                    Some(n) if n == '"' || n == '$' || n == self.escape => s.push(n),
                    Some(n) => {
                        s.push(c);
                        s.push(n);
                    }
                    None => s.push(c),
                },
                Some(c) => s.push(c),
                None => return Err(WordError::Unterminated("double-quote")),
            }
        }
    }

    /// A variable name as BuildKit's lexer reads one: letters, digits and
    /// `_` (not starting with a digit); a run of digits (a positional
    /// parameter) or one of the special parameters `@*#?-$!` stands alone.
    /// Those are never set, so they expand to nothing.
    fn name(&mut self) -> String {
        let mut n = String::new();
        match self.peek() {
            Some(c) if c.is_numeric() => {
                while let Some(d) = self.peek().filter(|c| c.is_numeric()) {
                    n.push(d);
                    self.pos += 1;
                }
                return n;
            }
            Some(c @ ('@' | '*' | '#' | '?' | '-' | '$' | '!')) => {
                self.pos += 1;
                return c.to_string();
            }
            _ => {}
        }
        while let Some(c) = self.peek().filter(|c| c.is_alphanumeric() || *c == '_') {
            n.push(c);
            self.pos += 1;
        }
        n
    }

    /// After a `$`.
    fn dollar(&mut self) -> Result<String, WordError> {
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(self.vars.get(&name).unwrap_or_default());
        }
        self.pos += 1;
        match self.peek() {
            None => return Err(WordError::MissingBrace),
            Some('{' | '}' | ':') => return Err(WordError::BadSubstitution),
            Some(_) => {}
        }
        let name = self.name();
        let value = self.vars.get(&name);
        match self.next() {
            Some('}') => Ok(value.unwrap_or_default()),
            Some(':') => match self.next() {
                Some(op @ ('-' | '+' | '?')) => {
                    let word = self.modifier_word(false)?;
                    apply_modifier(&name, value, op, word, true)
                }
                Some(op) if op == '#' || op == '%' => Err(WordError::UnsupportedModifier(format!(":{op}"))),
                Some(op) => {
                    self.modifier_word(false)?;
                    Err(WordError::UnsupportedModifier(format!(":{op}")))
                }
                None => Err(WordError::MissingBrace),
            },
            Some(op @ ('-' | '+' | '?')) => {
                let word = self.modifier_word(false)?;
                apply_modifier(&name, value, op, word, false)
            }
            Some(op @ ('#' | '%')) => {
                let word = self.modifier_word(true)?;
                let (longest, pattern) = match word.strip_prefix(op) {
                    Some(rest) => (true, rest),
                    None => (false, word.as_str()),
                };
                let pattern = Pattern::parse(pattern, self.escape).map_err(|e| bad_pattern(pattern, e))?;
                let value = value.unwrap_or_default();
                Ok(if op == '#' { pattern.trim_prefix(&value, longest) } else { pattern.trim_suffix(&value, longest) })
            }
            Some('/') => {
                let all = self.peek() == Some('/');
                if all {
                    self.pos += 1;
                }
                let pattern = self.raw_until('/', true).ok_or(WordError::MissingSlash)??;
                let replacement = self.raw_until('}', true).ok_or(WordError::MissingBrace)??;
                let parsed = Pattern::parse(&pattern, self.escape).map_err(|e| bad_pattern(&pattern, e))?;
                Ok(parsed.replace(&value.unwrap_or_default(), &replacement, all))
            }
            Some(c) => Err(WordError::UnsupportedModifier(c.to_string())),
            None => Err(WordError::MissingBrace),
        }
    }

    /// The word of a `${V<op>word}` up to its `}` (consumed); `raw` keeps
    /// escapes as written (for patterns).
    fn modifier_word(&mut self, raw: bool) -> Result<String, WordError> {
        self.raw_until('}', raw).ok_or(WordError::MissingBrace)?
    }

    /// The text up to `stop` (consumed), escapes kept as written when
    /// inside a pattern; `None` when the text ends first.
    fn raw_until(&mut self, stop: char, raw: bool) -> Option<Result<String, WordError>> {
        let outer = self.raw_escapes;
        self.raw_escapes = raw || outer;
        let words = self.process(false, Some(stop));
        self.raw_escapes = outer;
        let words = match words {
            Ok(w) => w,
            Err(e) => return Some(Err(e)),
        };
        if self.next() != Some(stop) {
            return None;
        }
        Some(Ok(words.into_iter().next().unwrap_or_default()))
    }
}

fn bad_pattern(pattern: &str, e: super::pattern::BadEscape) -> WordError {
    WordError::BadPattern { pattern: pattern.to_string(), reason: e.to_string() }
}

/// `-`, `+`, `?` on a variable; `null_is_unset` for the `:` forms.
fn apply_modifier(
    name: &str,
    value: Option<String>,
    op: char,
    word: String,
    null_is_unset: bool,
) -> Result<String, WordError> {
    let empty = null_is_unset && value.as_deref() == Some("");
    let unset = value.is_none();
    match op {
        '-' if unset || empty => Ok(word),
        '-' => Ok(value.unwrap_or_default()),
        '+' if unset || empty => Ok(String::new()),
        '+' => Ok(word),
        _ if unset || empty => {
            let default = if unset { "is not allowed to be unset" } else { "is not allowed to be empty" };
            let message = if word.is_empty() { default.to_string() } else { word };
            Err(WordError::Required { name: name.to_string(), message })
        }
        _ => Ok(value.unwrap_or_default()),
    }
}

#[cfg(test)]
#[path = "words_matches.rs"]
mod matches;

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "A" => Some("a".into()),
            "B" => Some("b c".into()),
            "EMPTY" => Some(String::new()),
            "PATH" => Some("/bin".into()),
            _ => None,
        }
    }

    /// input | expected single word (`!` prefix: an error containing the rest).
    const WORD_CASES: &[(&str, &str)] = &[
        ("plain", "plain"),
        ("$A", "a"),
        ("${A}", "a"),
        ("${A}x", "ax"),
        ("$Ax", ""),
        ("x$A", "xa"),
        ("$UNSET", ""),
        ("${UNSET}", ""),
        ("'$A'", "$A"),
        ("\"$A\"", "a"),
        ("\"'$A'\"", "'a'"),
        ("'\"$A\"'", "\"$A\""),
        ("\\$A", "$A"),
        ("\"\\$A\"", "$A"),
        ("\"a\\\"b\"", "a\"b"),
        ("\"a\\nb\"", "a\\nb"),
        ("a\\ b", "a b"),
        ("${UNSET:-def}", "def"),
        ("${EMPTY:-def}", "def"),
        ("${A:-def}", "a"),
        ("${UNSET-def}", "def"),
        ("${EMPTY-def}", ""),
        ("${A:+alt}", "alt"),
        ("${EMPTY:+alt}", ""),
        ("${EMPTY+alt}", "alt"),
        ("${UNSET+alt}", ""),
        ("${UNSET:-$A}", "a"),
        ("${UNSET:-${A}-x}", "a-x"),
        ("${UNSET:-'q $A'}", "q $A"),
        ("${A:?msg}", "a"),
        ("${UNSET:?is required}", "!UNSET: is required"),
        ("${EMPTY:?}", "!EMPTY: is not allowed to be empty"),
        ("${EMPTY?x}", ""),
        ("${UNSET?x}", "!UNSET: x"),
        ("$PATH:/usr/bin", "/bin:/usr/bin"),
        ("${TARGETPLATFORM:-linux/amd64}", "linux/amd64"),
        ("$", "$"),
        ("a$", "a$"),
        ("$1", ""),
        ("${", "!syntax error: missing '}'"),
        ("${A", "!syntax error: missing '}'"),
        ("${A%x}", "a"),
        ("${A*x}", "!unsupported modifier (*) in substitution"),
        ("${A:#x}", "!unsupported modifier (:#) in substitution"),
        ("${B#b }", "c"),
        ("${B% *}", "b"),
        ("${PATH##*/}", "bin"),
        ("${PATH%%/*}", ""),
        ("${B/ /_}", "b_c"),
        ("${B//[bc]/x}", "b c"),
        ("${B//?/x}", "xxx"),
        ("${UNSET#x}", ""),
        ("${A/x", "!syntax error: missing '/' in ${}"),
        ("${A#\\q}", "!invalid pattern (\\q) in substitution: invalid escape '\\q'"),
        ("'open", "!single-quote"),
        ("\"open", "!double-quote"),
        ("", ""),
        ("he'll'o", "hello"),
        ("he\\'llo", "he'llo"),
        ("\"hel'lo\"", "hel'lo"),
        ("'hel\"lo'", "hel\"lo"),
        ("\"he\\\"llo\"", "he\"llo"),
        ("'\\$A'", "\\$A"),
        ("'${A}'", "${A}"),
        ("\"${A}\"", "a"),
        ("a\\tb", "atb"),
        ("\"a\\tb\"", "a\\tb"),
        ("\\\\", "\\"),
        ("\"\\\\\"", "\\"),
        ("'\\\\'", "\\\\"),
        ("$A$A", "aa"),
        ("${A}${A}", "aa"),
        ("$A-$A", "a-a"),
        ("$A_x", ""),
        ("${A}_x", "a_x"),
        ("x${A}y", "xay"),
        ("$$", ""),
        ("$1x", "x"),
        ("${@:-d}", "d"),
        ("$ A", "$ A"),
        ("${A:-x}${UNSET:-y}", "ay"),
        ("${UNSET:-}", ""),
        ("${EMPTY:-}", ""),
        ("${EMPTY-}", ""),
        ("${A+}", ""),
        ("${UNSET:+x}", ""),
        ("${A:+}", ""),
        ("${A:?}", "a"),
        ("${UNSET:-$UNSET}", ""),
        ("${UNSET:-$A$A}", "aa"),
        ("${A:+$A-$A}", "a-a"),
        ("${A:+${UNSET:-z}}", "z"),
        ("\"${UNSET:-\"nested\"}\"", "nested"),
        ("${UNSET:-a b}", "a b"),
        ("${B}", "b c"),
        ("\"$B\"", "b c"),
        ("${UNSET-${EMPTY:-e}}", "e"),
        ("${EMPTY:-${A}}", "a"),
        ("${A-unused}", "a"),
        ("${EMPTY+set}", "set"),
        ("${PATH}:/x", "/bin:/x"),
        ("$PATH/$A", "/bin/a"),
        ("'$PATH'/$A", "$PATH/a"),
        ("\"'\"'\"'", "'\""),
        ("a'b'\"c\"d", "abcd"),
        ("\\ ", " "),
        ("x\\", "x"),
        ("${A}}", "a}"),
        ("{$A}", "{a}"),
        ("${UNSET:?}", "!UNSET: is not allowed to be unset"),
        ("${UNSET?}", "!UNSET: is not allowed to be unset"),
        ("${A:=x}", "!unsupported modifier (:=) in substitution"),
        ("${A:", "!syntax error: missing '}'"),
        ("${UNSET:-x", "!syntax error: missing '}'"),
        ("${}", "!syntax error: bad substitution"),
        ("${:x}", "!syntax error: bad substitution"),
    ];

    #[test]
    fn word_table() {
        for (input, want) in WORD_CASES {
            let got = process_word(input, &vars, '\\');
            match want.strip_prefix('!') {
                Some(err) => {
                    let e = got.expect_err(input);
                    assert!(e.to_string().contains(err), "{input:?}: error {e:?} lacks {err:?}");
                }
                None => assert_eq!(got.as_deref(), Ok(*want), "{input:?}"),
            }
        }
    }

    /// BuildKit's shell TestShellParser4EnvVars (its envVarTest table, Unix
    /// rows), by kind: quotes and escapes, positional and special
    /// parameters (never set), modifiers on unset and empty values, and
    /// non-ASCII names. (The whole upstream table, 228 rows, matched when
    /// this port was written.)
    #[test]
    fn buildkit_env_var_table() {
        let env = |n: &str| match n {
            "PWD" => Some("/home".to_string()),
            "SHELL" => Some("bash".into()),
            "KOREAN" => Some("한국어".into()),
            "NULL" => Some(String::new()),
            _ => None,
        };
        let cases = [
            (r#"he'll'o"#, Some("hello")),
            (r#"he'llo"#, None),
            (r#"he\\'llo"#, None),
            (r#"abc\tdef"#, Some("abctdef")),
            (r#""abc\tdef""#, Some(r#"abc\tdef"#)),
            (r#"hello\"#, Some("hello")),
            (r#"hello\\"#, Some(r#"hello\"#)),
            (r#"'hello\'"#, Some(r#"hello\"#)),
            (r#""hello\""#, None),
            ("$.", Some("$.")),
            ("he$1x", Some("hex")),
            ("$999aaa", Some("aaa")),
            ("he$PWD", Some("he/home")),
            (r#"he\$PWD"#, Some("he$PWD")),
            (r#""he\\$PWD""#, Some(r#"he\/home"#)),
            ("he${PWD", None),
            ("he${PWD:=000}xx", None),
            ("he${PWD:+${PWD}:}xx", Some("he/home:xx")),
            (r#"he${XXX:-\$PWD:}xx"#, Some("he$PWD:xx")),
            ("he${XXX:-${YYY:-yyy}}xx", Some("heyyyxx")),
            ("he${NULL:-000}xx", Some("he000xx")),
            ("he${NULL-000}xx", Some("hexx")),
            ("he${XXX:?msg}", None),
            ("$@@@", Some("@@")),
            ("${@:-bbb}aaa", Some("bbbaaa")),
            ("$*", Some("")),
            ("${#:-bbb}", Some("bbb")),
            ("${?:+bbb}", Some("")),
            ("${-:-bbb}", Some("bbb")),
            ("$$", Some("")),
            ("${!:-bbb}", Some("bbb")),
            ("${KOREAN}", Some("한국어")),
            ("안녕$1x", Some("안녕x")),
            (r#"안녕\"#, Some("안녕")),
        ];
        for (input, want) in cases {
            let got = process_word(input, &env, '\\');
            match want {
                Some(w) => assert_eq!(got.as_deref(), Ok(w), "{input:?}"),
                None => assert!(got.is_err(), "{input:?} gave {got:?}"),
            }
        }
    }

    /// BuildKit's shell TestShellParser4Words (its wordsTest table): an
    /// unquoted expansion splits on its blanks, a quoted one does not.
    /// (All 24 upstream rows matched when this port was written.)
    #[test]
    fn buildkit_words_table() {
        let env = |n: &str| match n {
            "hi" => Some("hi".to_string()),
            "space" => Some("abc  def".into()),
            "leading" => Some("  ab c".into()),
            "trailing" => Some("ab c   ".into()),
            _ => None,
        };
        let cases: [(&str, &[&str]); 12] = [
            ("hello${hi}bye", &["hellohibye"]),
            ("hello${space}bye", &["helloabc", "defbye"]),
            (r#"hello "${space}"bye"#, &["hello", "abc  defbye"]),
            ("hello${leading}def", &["hello", "ab", "cdef"]),
            (r#"hello"${leading}" def"#, &["hello  ab c", "def"]),
            ("hello${trailing}d", &["helloab", "c", "d"]),
            (r#"hel"lo${trailing}""#, &["helloab c   "]),
            (r#"hello" there  ""#, &["hello there  "]),
            (r#"hello\ there"#, &["hello there"]),
            (r#"hello\" there"#, &["hello\"", "there"]),
            (r#"hello'\\there'"#, &[r#"hello\\there"#]),
            ("hello'$there'", &["hello$there"]),
        ];
        for (input, want) in cases {
            assert_eq!(process_words(input, &env, '\\').unwrap(), want, "{input:?}");
        }
        assert!(process_words(r#"hello" there"#, &env, '\\').is_err());
    }

    #[test]
    fn words_split_on_unquoted_whitespace_and_expansions() {
        let w = |s: &str| process_words(s, &vars, '\\').unwrap();
        assert_eq!(w("a  b\tc"), ["a", "b", "c"]);
        assert_eq!(w("$B d"), ["b", "c", "d"]);
        assert_eq!(w("\"$B\" d"), ["b c", "d"]);
        assert_eq!(w("'x y' \"\""), ["x y", ""]);
        assert_eq!(w("8080 ${UNSET:-9090}/udp"), ["8080", "9090/udp"]);
        assert_eq!(process_word("`$A", &vars, '`').unwrap(), "$A");
    }

    #[test]
    fn expansion_is_bounded_in_size_and_nesting() {
        let big = "x".repeat(MAX_EXPANDED / 2 + 1);
        let vars = |n: &str| (n == "BIG").then(|| big.clone());
        assert!(process_word("$BIG", &vars, '\\').is_ok());
        for text in ["$BIG$BIG", "\"$BIG$BIG\"", "a${BIG}b${BIG}"] {
            assert_eq!(process_word(text, &vars, '\\'), Err(WordError::TooLong), "{text}");
        }
        assert_eq!(expand_heredoc("$BIG $BIG", &vars), Err(WordError::TooLong));
        let nested = |n: usize| format!("{}x{}", "${U:-".repeat(n), "}".repeat(n));
        assert_eq!(process_word(&nested(MAX_NESTING), &vars, '\\').unwrap(), "x");
        assert_eq!(process_word(&nested(100_000), &vars, '\\'), Err(WordError::TooDeep));
    }

    #[test]
    fn errors_carry_buildkit_s_messages() {
        let vars = |n: &str| (n == "SET").then(|| "v".to_string());
        let cases = [
            ("'open", "unexpected end of statement while looking for matching single-quote"),
            ("\"open", "unexpected end of statement while looking for matching double-quote"),
            ("${}", "syntax error: bad substitution"),
            ("${SET", "syntax error: missing '}'"),
            ("${SET*x}", "unsupported modifier (*) in substitution"),
            ("${UNSET?}", "UNSET: is not allowed to be unset"),
            ("${UNSET?needs a value}", "UNSET: needs a value"),
        ];
        for (text, message) in cases {
            assert_eq!(process_word(text, &vars, '\\').unwrap_err().to_string(), message, "{text}");
        }
    }

    /// BuildKit's TestShellParserMandatoryEnvVars: `:?` refuses unset and
    /// empty, `?` only unset; the message is expanded.
    #[test]
    fn mandatory_variables() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |n: &str| pairs.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string())
        };
        let (set, empty, unset) =
            (env(&[("VAR", "plain"), ("ARG", "x")]), env(&[("VAR", ""), ("ARG", "x")]), env(&[("ARG", "x")]));
        let (no_empty, no_unset) = ("${VAR:?message here$ARG}", "${VAR?message here$ARG}");
        let required = WordError::Required { name: "VAR".into(), message: "message herex".into() };
        assert_eq!(process_word(no_empty, &set, '\\').unwrap(), "plain");
        assert_eq!(process_word(no_empty, &empty, '\\'), Err(required.clone()));
        assert_eq!(process_word(no_empty, &unset, '\\'), Err(required.clone()));
        assert_eq!(process_word(no_unset, &set, '\\').unwrap(), "plain");
        assert_eq!(process_word(no_unset, &empty, '\\').unwrap(), "");
        assert_eq!(process_word(no_unset, &unset, '\\'), Err(required));
    }

    /// BuildKit's parser TestParseWords: words split on whitespace, quotes
    /// and escapes kept as written, any Unicode.
    #[test]
    fn raw_words_like_buildkit_s_parser() {
        let cases: [(&str, &[&str]); 8] = [
            ("foo", &["foo"]),
            ("foo bar", &["foo", "bar"]),
            ("foo\\ bar", &["foo\\ bar"]),
            ("foo=bar", &["foo=bar"]),
            ("foo bar 'abc xyz'", &["foo", "bar", "'abc xyz'"]),
            ("foo bar \"abc xyz\"", &["foo", "bar", "\"abc xyz\""]),
            ("àöû", &["àöû"]),
            ("föo bàr \"âbc xÿz\"", &["föo", "bàr", "\"âbc xÿz\""]),
        ];
        for (input, want) in cases {
            assert_eq!(split_raw(input, '\\'), want, "{input:?}");
        }
    }

    #[test]
    fn raw_split_keeps_quotes() {
        assert_eq!(split_raw(r#"a="b c" d=e\ f g='h i'"#, '\\'), [r#"a="b c""#, r"d=e\ f", "g='h i'"]);
    }
}

/// Expands a here-document body the way BuildKit does for `COPY <<EOF`
/// (its lexer with quote processing off and `\` as the escape whatever the
/// `escape` directive says): `$V`/`${…}` are expanded, quotes stay as
/// written, and a backslash keeps the character after it literally and is
/// itself dropped (`\\` gives `\`, `\$` gives `$`, `\n` gives `n`,
/// backslash-newline gives the newline; a final lone backslash vanishes).
pub fn expand_heredoc(text: &str, vars: &dyn Vars) -> Result<String, WordError> {
    let mut s = Scanner::new(text, '\\', vars);
    let mut out = String::new();
    while let Some(c) = s.next() {
        match c {
            '\\' => out.extend(s.next()),
            '$' => {
                out.push_str(&s.dollar()?);
                check_size(out.len())?;
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod heredoc_tests {
    use super::*;

    #[test]
    fn heredoc_bodies_keep_quotes() {
        let vars = |n: &str| (n == "A").then(|| "a".to_string());
        assert_eq!(expand_heredoc("x='$A' \"${A}\" \\$A\n", &vars).unwrap(), "x='a' \"a\" $A\n");
    }

    #[test]
    fn heredoc_backslash_keeps_the_next_character() {
        let vars = |_: &str| None;
        let cases = [("\\\n", "\n"), ("\\\\\n", "\\\n"), ("\\n", "n"), ("a\\", "a"), ("`$", "`$")];
        for (text, want) in cases {
            assert_eq!(expand_heredoc(text, &vars).unwrap(), want, "{text:?}");
        }
    }
}
