//! docs/configuration.md covers every flag and environment variable that
//! `kiln … --help` prints, so the reference cannot fall behind the code.

use std::collections::BTreeSet;
use std::process::Command;

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln")).args(args).arg("--help").output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// `--long-flag` names and `[env: NAME=]` variables in a help text.
fn options(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for word in text.split(|c: char| c.is_whitespace() || c == ',') {
        let flag = word.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
        if flag.starts_with("--") && flag.len() > 2 && flag != "--help" {
            found.insert(format!("`{flag}`"));
        }
    }
    for part in text.split("[env: ").skip(1) {
        found.insert(format!("`{}`", part.split('=').next().unwrap()));
    }
    found
}

#[test]
fn every_flag_and_variable_is_documented() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md")).unwrap();
    let mut wanted = BTreeSet::new();
    for cmd in [&["serve"][..], &["build"], &["cache"], &["cache", "prune"], &["keygen"], &["doctor"]] {
        wanted.extend(options(&help(cmd)));
    }
    assert!(wanted.contains("`--audit-log`") && wanted.contains("`max_inflight`"), "the scan works: {wanted:?}");
    let missing: Vec<_> = wanted.iter().filter(|w| !doc.contains(w.as_str())).collect();
    assert!(missing.is_empty(), "docs/configuration.md lacks {missing:?}");
}
