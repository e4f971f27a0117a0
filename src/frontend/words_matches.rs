//! Port of BuildKit's `TestProcessWithMatches` and
//! `TestProcessWithMatchesPlatform` (shell/lex_test.go): results, errors,
//! and which variables a word used (set) or asked for (unset), as the
//! UndefinedVar check sees them through the lookups.

use super::*;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

/// Expands `input` with `envs`; the result and the names looked up and
/// found, and looked up and missing.
fn expand(input: &str, envs: &[(&str, &str)]) -> Result<(String, BTreeSet<String>, BTreeSet<String>), WordError> {
    let envs: BTreeMap<&str, &str> = envs.iter().copied().collect();
    let (matched, unmatched) = (RefCell::new(BTreeSet::new()), RefCell::new(BTreeSet::new()));
    let lookup = |name: &str| {
        let value = envs.get(name).map(|v| v.to_string());
        let seen = if value.is_some() { &matched } else { &unmatched };
        seen.borrow_mut().insert(name.to_string());
        value
    };
    let result = process_word(input, &lookup, '\\')?;
    Ok((result, matched.into_inner(), unmatched.into_inner()))
}

/// Input, variables, result, names used (set), names asked for (unset).
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, &'a [&'a str], &'a [&'a str]);

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

#[test]
fn results_and_matches_like_buildkit() {
    let fb = [("FOO", "xxx"), ("BAR", "")];
    #[rustfmt::skip]
    let cases: &[Case] = &[
        ("x", &[("DUMMY", "dummy")], "x", &[], &[]),
        ("x ${UNUSED}", &[("DUMMY", "dummy")], "x ", &[], &["UNUSED"]),
        ("x ${FOO}", &[("FOO", "y")], "x y", &["FOO"], &[]),
        ("${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}", &fb, "xxx  ccc", &["FOO", "BAR"], &["BAZ"]),
        ("${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}", &fb, "xxx bbb ccc", &["FOO", "BAR"], &["BAZ"]),
        ("${FOO:-}", &fb, "xxx", &["FOO"], &[]),
        ("${FOO:-}", &[], "", &[], &["FOO"]),
        ("${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}", &fb, "aaa bbb ", &["FOO", "BAR"], &["BAZ"]),
        ("${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}", &fb, "aaa  ", &["FOO", "BAR"], &["BAZ"]),
        ("${FOO?aaa}", &fb, "xxx", &["FOO"], &[]),
        ("${BAR?bbb}", &fb, "", &["BAR"], &[]),
        ("${FOO:?aaa}", &fb, "xxx", &["FOO"], &[]),
        ("${FOO#()[]{\\}^$.\\*\\?|\\\\}", &[("FOO", "()[]{}^$.*?|\\x")], "x", &["FOO"], &[]),
        ("${FOO%%\\**}", &[("FOO", "xx**")], "xx", &["FOO"], &[]),
        ("${FOO#*x*y}", &[("FOO", "xxyy")], "y", &["FOO"], &[]),
        ("${FOO#*}", &[("FOO", "xxyy")], "xxyy", &["FOO"], &[]),
        ("${FOO#$BAR}", &[("FOO", "xxyy"), ("BAR", "x")], "xyy", &["FOO", "BAR"], &[]),
        ("${FOO#$BAR}", &[("FOO", "xxyy"), ("BAR", "")], "xxyy", &["FOO", "BAR"], &[]),
        ("${FOO#}", &[("FOO", "xxyy")], "xxyy", &["FOO"], &[]),
        ("${FOO##*x}", &[("FOO", "xxyy")], "yy", &["FOO"], &[]),
        ("${FOO##}", &[("FOO", "xxyy")], "xxyy", &["FOO"], &[]),
        ("${FOO#?\\?}", &[("FOO", "???y")], "?y", &["FOO"], &[]),
        ("${ABC:-.}${FOO%x}${ABC:-.}", &[("FOO", "xxyy")], ".xxyy.", &["FOO"], &["ABC"]),
        ("${FOO%%\\**\\*}", &[("FOO", "a***yy*")], "a", &["FOO"], &[]),
        ("${FOO%}", &[("FOO", "xxyy")], "xxyy", &["FOO"], &[]),
        ("${FOO%%$BAR}", &[("FOO", "xxyy"), ("BAR", "")], "xxyy", &["FOO", "BAR"], &[]),
        ("${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}", &[("FOO", "/foo*/*/*.txt"), ("NEEDLE", "\\*/")],
            "/foo.*/*.txt - /foo..*.txt", &["FOO", "NEEDLE"], &[]),
        ("${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}", &[("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")],
            "/tmp/bar.txt - /bar.txt", &["FOO", "NEEDLE"], &[]),
        ("${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
            &[("FOO", "/a/foo/b/c.txt"), ("NEEDLE", "/?/"), ("REPLACEMENT", "/")],
            "/foo/b/c.txt - /foo/c.txt", &["FOO", "NEEDLE", "REPLACEMENT"], &[]),
        ("${FOO/$NEEDLE/$REPLACEMENT}", &[("FOO", "http://google.de"), ("NEEDLE", "http://"), ("REPLACEMENT", "https://")],
            "https://google.de", &["FOO", "NEEDLE", "REPLACEMENT"], &[]),
        ("${FOO//\\//\\/}", &[("FOO", "/tmp/foo.txt")], "\\/tmp\\/foo.txt", &["FOO"], &[]),
        ("${FOO/$BAR/ww}", &[("FOO", "xxyy"), ("BAR", "")], "wwxxyy", &["FOO", "BAR"], &[]),
        ("${FOO///}", &[("FOO", "xxyy")], "xxyy", &["FOO"], &[]),
        ("${FOO///}", &[], "", &[], &["FOO"]),
    ];
    for (input, envs, want, matched, unmatched) in cases {
        let (got, m, u) = expand(input, envs).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(got, *want, "{input}");
        assert_eq!((m, u), (set(matched), set(unmatched)), "{input}: matched, unmatched");
    }
}

#[test]
fn errors_like_buildkit() {
    let fb = [("FOO", "xxx"), ("BAR", "")];
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("${BAZ?ccc}", &fb),
        ("${BAR:?bbb}", &fb),
        ("${BAZ:?ccc}", &fb),
        ("${BAZ:?}", &fb),
        ("${FOO=aaa}", &fb),
        ("${FOO=:aaa}", &fb),
        ("${FOO=}", &[]),
        ("${FOO:#}", &[]),
        ("${FOO:##}", &[]),
        ("${FOO:%}", &[]),
        ("${FOO:%%}", &[]),
        ("${FOO//ww}", &[("FOO", "xxyy")]),
        ("${FOO//}", &[("FOO", "xxyy")]),
    ];
    for (input, envs) in cases {
        assert!(expand(input, envs).is_err(), "{input} should fail: {:?}", expand(input, envs));
    }
}

#[test]
fn platform_file_names_like_buildkit_releases() {
    let release = "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz";
    let base = [("VERSION", "v1.2.3"), ("TARGETOS", "linux")];
    let with = |extra: &[(&'static str, &'static str)]| {
        let envs: Vec<(&str, &str)> = base.iter().chain(extra).copied().collect();
        expand(release, &envs).unwrap().0
    };
    assert_eq!(with(&[("TARGETARCH", "arm"), ("TARGETVARIANT", "v7")]), "something-v1.2.3.linux-arm-v7.tar.gz");
    assert_eq!(with(&[("TARGETARCH", "arm64"), ("TARGETVARIANT", "")]), "something-v1.2.3.linux-arm64.tar.gz");
    assert_eq!(with(&[("TARGETARCH", "arm64")]), "something-v1.2.3.linux-arm64.tar.gz");
}
