//! The shell patterns of `${var#pat}`, `${var%pat}` and `${var/pat/rep}`
//! as BuildKit's lexer reads them: `*` any string, `?` any character,
//! `\*`, `\?` and `\\` literal (`\}` and `\/` are the plain characters; any
//! other escape is an error), everything else literal — no bracket
//! expressions. Matching simulates the pattern as an automaton, so each
//! search is linear in the value times the pattern.

/// One pattern element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    /// `*`.
    Star,
    /// `?`.
    Any,
    /// A literal character.
    Char(char),
}

/// A parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(Vec<Token>);

/// Why a pattern does not parse (BuildKit's text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid escape '\\{0}'")]
pub struct BadEscape(pub char);

impl Pattern {
    /// Parses `text` (escapes as written, the Dockerfile's escape char).
    pub fn parse(text: &str, escape: char) -> Result<Self, BadEscape> {
        let mut tokens = Vec::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            tokens.push(match c {
                '*' => Token::Star,
                '?' => Token::Any,
                c if c == escape => match chars.next() {
                    Some(n @ ('}' | '/')) => Token::Char(n),
                    Some(n @ ('*' | '?')) => Token::Char(n),
                    Some(n) if n == escape || n == '\\' => Token::Char(n),
                    Some(n) => return Err(BadEscape(n)),
                    None => Token::Char(c),
                },
                c => Token::Char(c),
            });
        }
        Ok(Pattern(tokens))
    }

    fn reversed(&self) -> Pattern {
        Pattern(self.0.iter().rev().copied().collect())
    }

    /// The states reachable from `states` without reading a character
    /// (a `*` may match nothing).
    fn close(&self, states: &mut [bool]) {
        for i in 0..self.0.len() {
            if states[i] && self.0[i] == Token::Star {
                states[i + 1] = true;
            }
        }
    }

    fn step(&self, states: &[bool], c: char) -> Vec<bool> {
        let mut next = vec![false; states.len()];
        for (i, token) in self.0.iter().enumerate().filter(|(i, _)| states[*i]) {
            match token {
                Token::Star => next[i] = true,
                Token::Any => next[i + 1] = true,
                Token::Char(t) if *t == c => next[i + 1] = true,
                Token::Char(_) => {}
            }
        }
        self.close(&mut next);
        next
    }

    /// Lengths (in characters) of the prefixes of `value` the pattern
    /// matches, shortest first.
    fn prefix_lengths(&self, value: &[char]) -> Vec<usize> {
        let accept = self.0.len();
        let mut states = vec![false; accept + 1];
        states[0] = true;
        self.close(&mut states);
        let mut out = Vec::new();
        if states[accept] {
            out.push(0);
        }
        for (i, c) in value.iter().enumerate() {
            states = self.step(&states, *c);
            if !states.iter().any(|s| *s) {
                break;
            }
            if states[accept] {
                out.push(i + 1);
            }
        }
        out
    }

    /// `${var#pat}` (shortest) or `${var##pat}` (longest).
    pub fn trim_prefix(&self, value: &str, longest: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        let lengths = self.prefix_lengths(&chars);
        let cut = if longest { lengths.last() } else { lengths.first() };
        chars[cut.copied().unwrap_or(0)..].iter().collect()
    }

    /// `${var%pat}` (shortest) or `${var%%pat}` (longest).
    pub fn trim_suffix(&self, value: &str, longest: bool) -> String {
        let reversed: String = value.chars().rev().collect();
        self.reversed().trim_prefix(&reversed, longest).chars().rev().collect()
    }

    /// `${var/pat/rep}` (the first match) or `${var//pat/rep}` (every
    /// match): leftmost, then longest.
    pub fn replace(&self, value: &str, replacement: &str, all: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        let (mut out, mut pos, mut last_end) = (String::new(), 0, None);
        while let Some((start, end)) = self.leftmost_longest(&chars, pos) {
            // As Go's ReplaceAll: an empty match right after a match is not one.
            let abutting = start == end && last_end == Some(start);
            out.extend(&chars[pos..start]);
            if !abutting {
                out.push_str(replacement);
            }
            last_end = Some(end);
            pos = end;
            if !all {
                break;
            }
            if start == end {
                match chars.get(pos) {
                    Some(c) => out.push(*c),
                    None => return out,
                }
                pos += 1;
            }
        }
        out.extend(chars.get(pos..).unwrap_or_default());
        out
    }

    /// The leftmost match at or after `from`, the longest of those, as
    /// character offsets: one pass, each state keeping the earliest start
    /// that reaches it.
    fn leftmost_longest(&self, chars: &[char], from: usize) -> Option<(usize, usize)> {
        let accept = self.0.len();
        let mut states: Vec<Option<usize>> = vec![None; accept + 1];
        let mut best: Option<(usize, usize)> = None;
        for i in from..=chars.len() {
            if best.is_none() && states[0].is_none() {
                states[0] = Some(i);
            }
            self.close_starts(&mut states);
            if let Some(s) = states[accept] {
                best = match best {
                    Some((b, _)) if b < s => best,
                    _ => Some((s, i)),
                };
            }
            if let Some((b, _)) = best {
                states.iter_mut().filter(|st| st.is_some_and(|s| s > b)).for_each(|st| *st = None);
            }
            let Some(c) = chars.get(i) else { break };
            states = self.step_starts(&states, *c);
            if best.is_some() && states.iter().all(Option::is_none) {
                break;
            }
        }
        best
    }

    fn close_starts(&self, states: &mut [Option<usize>]) {
        for i in 0..self.0.len() {
            if let (Some(s), Token::Star) = (states[i], self.0[i]) {
                states[i + 1] = Some(states[i + 1].map_or(s, |t| t.min(s)));
            }
        }
    }

    fn step_starts(&self, states: &[Option<usize>], c: char) -> Vec<Option<usize>> {
        let mut next: Vec<Option<usize>> = vec![None; states.len()];
        let mut reach = |to: usize, s: usize| next[to] = Some(next[to].map_or(s, |t: usize| t.min(s)));
        for (i, token) in self.0.iter().enumerate() {
            let Some(s) = states[i] else { continue };
            match token {
                Token::Star => reach(i, s),
                Token::Any => reach(i + 1, s),
                Token::Char(t) if *t == c => reach(i + 1, s),
                Token::Char(_) => {}
            }
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Pattern {
        Pattern::parse(text, '\\').unwrap()
    }

    #[test]
    fn prefixes_and_suffixes_shortest_and_longest() {
        assert_eq!(p("idle").trim_prefix("idlebox", false), "box");
        assert_eq!(p("e*").trim_suffix("my_arg=def_val", true), "my_arg=d", "testDefaultEnvWithArgs' value");
        assert_eq!(p("e*").trim_suffix("my_arg=override", true), "my_arg=ov");
        assert_eq!(p("e*").trim_suffix("my_arg=override", false), "my_arg=overrid");
        assert_eq!(p("*/").trim_prefix("a/b/c", false), "b/c");
        assert_eq!(p("*/").trim_prefix("a/b/c", true), "c");
        assert_eq!(p("/*").trim_suffix("a/b/c", false), "a/b");
        assert_eq!(p("/*").trim_suffix("a/b/c", true), "a");
        assert_eq!(p("?").trim_prefix("xyz", false), "yz");
        assert_eq!(p("x").trim_prefix("abc", false), "abc", "no match: unchanged");
        assert_eq!(p("\\*").trim_prefix("*a", false), "a", "an escaped star is literal");
    }

    #[test]
    fn replacement_is_leftmost_longest() {
        assert_eq!(p("o").replace("foo boo", "0", false), "f0o boo");
        assert_eq!(p("o").replace("foo boo", "0", true), "f00 b00");
        assert_eq!(p("o*").replace("foo boo", "X", false), "fX");
        assert_eq!(p("b?").replace("abcabc", "-", true), "a-a-");
        assert_eq!(p("zz").replace("abc", "-", true), "abc");
        assert_eq!(p("a*b").replace("xaaab-ab", "_", true), "x_", "the longest of the leftmost");
        assert_eq!(p("*").replace("abc", "-", true), "-", "an all-matching pattern replaces once");
        let long = "a".repeat(200_000);
        assert_eq!(p("a*b").replace(&long, "_", true), long, "no match, in one pass");
    }

    #[test]
    fn bad_escapes_are_refused() {
        assert_eq!(Pattern::parse("a\\b", '\\'), Err(BadEscape('b')));
        assert!(Pattern::parse("a\\}", '\\').is_ok());
    }
}
