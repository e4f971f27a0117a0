//! Go `filepath.Match`-style matching of one path segment, shared by COPY
//! source expansion and `.dockerignore`.

/// One pattern element.
enum Token {
    /// `*`: any run of characters.
    Star,
    /// `?`: any one character.
    Any,
    /// `[…]` / `[^…]`: ranges and characters.
    Class { negate: bool, items: Vec<(char, char)> },
    /// A literal (escaped or plain) character.
    Char(char),
}

impl Token {
    fn matches(&self, c: char) -> bool {
        match self {
            Token::Star | Token::Any => true,
            Token::Class { negate, items } => items.iter().any(|(lo, hi)| *lo <= c && c <= *hi) != *negate,
            Token::Char(l) => *l == c,
        }
    }
}

/// The pattern's tokens; `None` for a class without its `]` (which
/// matches nothing, as in Go).
fn tokenize(pattern: &str) -> Option<Vec<Token>> {
    let p: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '*' => out.push(Token::Star),
            '?' => out.push(Token::Any),
            '[' => {
                let end = i + p[i..].iter().position(|c| *c == ']')?;
                let (negate, class) = match p.get(i + 1) {
                    Some('^') | Some('!') => (true, &p[i + 2..end]),
                    _ => (false, &p[i + 1..end]),
                };
                out.push(Token::Class { negate, items: class_items(class) });
                i = end;
            }
            '\\' if i + 1 < p.len() => {
                i += 1;
                out.push(Token::Char(p[i]));
            }
            c => out.push(Token::Char(c)),
        }
        i += 1;
    }
    Some(out)
}

fn class_items(class: &[char]) -> Vec<(char, char)> {
    let mut items = Vec::new();
    let mut i = 0;
    while i < class.len() {
        if i + 2 < class.len() && class[i + 1] == '-' {
            items.push((class[i], class[i + 2]));
            i += 3;
        } else {
            items.push((class[i], class[i]));
            i += 1;
        }
    }
    items
}

/// Matches one path component against a pattern with `*`, `?`, `[…]`
/// and `\` escapes, in O(pattern × name) time whatever the pattern (a
/// table instead of backtracking, so `*a*a*a…b` cannot stall a build).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let Some(tokens) = tokenize(pattern) else { return false };
    let n: Vec<char> = name.chars().collect();
    match_table(tokens.len(), n.len(), |i| matches!(tokens[i], Token::Star), |i, j| tokens[i].matches(n[j]))
}

/// Whether pattern elements `0..pn` match subject elements `0..sn`, where
/// `is_star(i)` elements match any run (including none) and the others one
/// element for which `one(i, j)` holds. Bottom-up over a (pn+1)×(sn+1) table.
pub fn match_table(pn: usize, sn: usize, is_star: impl Fn(usize) -> bool, one: impl Fn(usize, usize) -> bool) -> bool {
    let mut next = vec![false; sn + 1];
    next[sn] = true;
    for i in (0..pn).rev() {
        let mut cur = vec![false; sn + 1];
        for j in (0..=sn).rev() {
            cur[j] = if is_star(i) { next[j] || (j < sn && cur[j + 1]) } else { j < sn && one(i, j) && next[j + 1] };
        }
        next = cur;
    }
    next[0]
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn pathological_patterns_match_in_polynomial_time() {
        let name = "a".repeat(200);
        let pattern = format!("{}b", "*a".repeat(100));
        assert!(!glob_match(&pattern, &name));
        assert!(glob_match(&"*a".repeat(100), &name));
    }

    #[test]
    fn globbing_follows_filepath_match() {
        assert!(glob_match("*.txt", "a.txt"));
        assert!(!glob_match("*.txt", "a.txt.bak"));
        assert!(glob_match("f?le[0-9]", "file7"));
        assert!(!glob_match("f?le[!0-9]", "file7"));
        assert!(glob_match("\\*", "*"));
    }
}
