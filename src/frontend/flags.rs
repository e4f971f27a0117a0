//! Instruction flags (`--name[=value]`) as BuildKit reads them: the
//! leading words that start with `--` (quotes and the escape character
//! work inside them; a bare `--` ends them), each checked against its
//! instruction's flags and their kinds, with BuildKit's messages.

/// A `--name[=value]` flag with its column (0-based, in the arguments).
#[derive(Debug, Clone)]
pub(super) struct Flag {
    /// The name, without the dashes.
    pub name: String,
    /// The value after `=` (`None`: no `=`).
    pub value: Option<String>,
    /// Where the word starts.
    pub column: usize,
}

/// What a flag takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlagKind {
    /// `--f`, `--f=true` or `--f=false`.
    Bool,
    /// `--f=value`, once.
    Text,
    /// `--f=value`, any number of times.
    Repeated,
}

/// The flags of `keyword` (upper case) and their kinds.
fn flags_of(keyword: &str) -> &'static [(&'static str, FlagKind)] {
    use FlagKind::*;
    match keyword {
        "FROM" => &[("platform", Text)],
        "RUN" => &[("mount", Repeated), ("network", Text), ("security", Text)],
        "COPY" => &[
            ("from", Text),
            ("chown", Text),
            ("chmod", Text),
            ("link", Bool),
            ("exclude", Repeated),
            ("parents", Bool),
        ],
        "ADD" => &[
            ("chown", Text),
            ("chmod", Text),
            ("link", Bool),
            ("checksum", Text),
            ("unpack", Bool),
            ("keep-git-dir", Bool),
            ("exclude", Repeated),
        ],
        "HEALTHCHECK" => &[
            ("interval", Text),
            ("timeout", Text),
            ("start-period", Text),
            ("start-interval", Text),
            ("retries", Text),
        ],
        _ => &[],
    }
}

/// The names of `keyword`'s flags.
pub(super) fn names_of(keyword: &str) -> impl Iterator<Item = &'static str> {
    flags_of(keyword).iter().map(|(n, _)| *n)
}

/// Splits the leading flags off `args`: BuildKit's word rules (quotes and
/// `escape` inside a word; a bare `--` ends the flags and is dropped).
pub(super) fn split_flags(args: &str, escape: char) -> (Vec<Flag>, &str) {
    let mut flags = Vec::new();
    let mut rest = args.trim_start();
    while rest.starts_with("--") {
        let column = args.len() - rest.len();
        let (word, after) = flag_word(rest, escape);
        rest = after.trim_start();
        let Some(body) = word.strip_prefix("--").filter(|b| !b.is_empty()) else { break };
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (body.to_string(), None),
        };
        flags.push(Flag { name, value, column });
    }
    (flags, rest)
}

/// One word up to unquoted whitespace, quotes removed and escapes
/// applied; and what follows it.
fn flag_word(text: &str, escape: char) -> (String, &str) {
    let (mut word, mut quote) = (String::new(), None::<char>);
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => return (word, &text[at..]),
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (_, c) if c == escape => {
                if let Some((_, next)) = chars.next() {
                    word.push(next);
                }
            }
            (_, c) => word.push(c),
        }
    }
    (word, "")
}

/// A flag error: the flag's column and BuildKit's message.
pub(super) type FlagError = (usize, String);

/// Checks `flags` against `keyword`'s: unknown names are left to the
/// caller (it suggests a name); a bool takes no empty value and only
/// true or false, a text flag needs `=value` and comes once.
pub(super) fn check_values(keyword: &str, flags: &[Flag]) -> Result<(), FlagError> {
    let mut seen: Vec<&str> = Vec::new();
    for f in flags {
        let Some((_, kind)) = flags_of(keyword).iter().find(|(n, _)| *n == f.name) else { continue };
        let at = |msg: String| (f.column, msg);
        if *kind != FlagKind::Repeated && seen.contains(&f.name.as_str()) {
            return Err(at(format!("duplicate flag specified: --{}", f.name)));
        }
        seen.push(&f.name);
        match (kind, f.value.as_deref()) {
            (FlagKind::Bool, Some("")) | (FlagKind::Text | FlagKind::Repeated, None) => {
                return Err(at(format!("missing a value on flag: --{}", f.name)));
            }
            (FlagKind::Bool, Some(v)) if !v.eq_ignore_ascii_case("true") && !v.eq_ignore_ascii_case("false") => {
                return Err(at(format!("expecting boolean value for flag --{}, not: {v}", f.name)));
            }
            _ => {}
        }
    }
    Ok(())
}

/// A bool flag's value (checked by [`check_values`]).
pub(super) fn is_true(f: &Flag) -> bool {
    !f.value.as_deref().is_some_and(|v| v.eq_ignore_ascii_case("false"))
}

#[cfg(test)]
mod tests {
    //! Port of BuildKit's `TestBuilderFlags` (instructions/bflag_test.go),
    //! through the flags of real instructions.
    use super::*;

    fn check(keyword: &str, args: &str) -> Result<Vec<(String, Option<String>)>, String> {
        let (flags, _) = split_flags(args, '\\');
        check_values(keyword, &flags).map_err(|(_, m)| m)?;
        Ok(flags.into_iter().map(|f| (f.name, f.value)).collect())
    }

    #[test]
    fn flags_parse_like_buildkits_bflags() {
        assert_eq!(check("COPY", "a b"), Ok(vec![]), "no flags");
        assert_eq!(check("COPY", "-- --a b"), Ok(vec![]), "a bare -- ends the flags");
        assert_eq!(split_flags("-- --a b", '\\').1, "--a b");
        assert_eq!(check("COPY", "--chown a b").unwrap_err(), "missing a value on flag: --chown");
        assert_eq!(check("COPY", "--chown= a b"), Ok(vec![("chown".into(), Some(String::new()))]));
        assert_eq!(check("COPY", "--chown=BYE a b"), Ok(vec![("chown".into(), Some("BYE".into()))]));
        for ok in ["--link", "--link=true", "--link=false", "--link=TRUE"] {
            assert!(check("COPY", &format!("{ok} a b")).is_ok(), "{ok}");
        }
        assert_eq!(
            check("COPY", "--link=false1 a b").unwrap_err(),
            "expecting boolean value for flag --link, not: false1"
        );
        assert_eq!(check("COPY", "--link= a b").unwrap_err(), "missing a value on flag: --link");
        assert_eq!(check("COPY", "--link --link a b").unwrap_err(), "duplicate flag specified: --link");
        assert_eq!(check("COPY", "--from=a --from=b a b").unwrap_err(), "duplicate flag specified: --from");
        assert!(check("COPY", "--exclude=a --exclude=b a b").is_ok(), "--exclude repeats");
        assert!(check("RUN", "--mount=type=tmpfs,target=/a --mount=type=tmpfs,target=/b true").is_ok());
        let all = check("COPY", "--link --chown=1:1 --chmod=0644 --parents=false a b").unwrap();
        let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["link", "chown", "chmod", "parents"]);
    }

    #[test]
    fn quotes_and_escapes_work_inside_a_flag() {
        let (flags, rest) = split_flags(r#"--chown="1000:1000" --chmod='0644' --from=a\ b src dst"#, '\\');
        let values: Vec<_> = flags.iter().map(|f| f.value.clone().unwrap()).collect();
        assert_eq!(values, ["1000:1000", "0644", "a b"]);
        assert_eq!(rest, "src dst");
        let (flags, _) = split_flags("--mount=type=bind,target=/a`,b x", '`');
        assert_eq!(flags[0].value.as_deref(), Some("type=bind,target=/a,b"));
        assert_eq!(flags[0].column, 0);
    }
}
