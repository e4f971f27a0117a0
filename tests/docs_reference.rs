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
    for cmd in [
        &["serve"][..],
        &["build"],
        &["cache"],
        &["cache", "prune"],
        &["keygen"],
        &["doctor"],
        &["verify"],
        &["history"],
        &["ui"],
    ] {
        wanted.extend(options(&help(cmd)));
    }
    assert!(wanted.contains("`--audit-log`") && wanted.contains("`max_inflight`"), "the scan works: {wanted:?}");
    let missing: Vec<_> = wanted.iter().filter(|w| !doc.contains(w.as_str())).collect();
    assert!(missing.is_empty(), "docs/configuration.md lacks {missing:?}");
}

/// docs/conformance.md: every `pass` row names kiln tests that exist (a
/// golden case directory, or a test function in the file it names), every
/// other row has a reason, and the counts line agrees with the rows.
#[test]
fn the_conformance_table_points_at_real_tests() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/conformance.md")).unwrap();
    let rows: Vec<Vec<&str>> = doc
        .lines()
        .filter(|l| l.starts_with("| ") && l.matches(" | ").count() == 3 && !l.starts_with("| upstream"))
        .map(|l| l.trim_matches('|').split(" | ").map(str::trim).collect())
        .collect();
    assert!(rows.len() >= 150, "at least 150 upstream tests are classified");
    let mut counts = std::collections::BTreeMap::new();
    for row in &rows {
        let (name, refs, status) = (row[1], row[2], row[3]);
        let kind = status.split([':', ' ']).next().unwrap();
        *counts.entry(kind.to_string()).or_insert(0) += 1;
        match kind {
            "pass" => assert!(!refs.is_empty(), "{name}: a passing row names its kiln test"),
            "n/a" | "later" | "differs" => assert!(status.len() > kind.len() + 5, "{name}: a reason"),
            "to" => assert_eq!(status, "to port", "{name}"),
            other => panic!("{name}: unknown status {other:?}"),
        }
        for reference in refs.split(", ").filter(|r| !r.is_empty()).map(|r| r.trim_matches('`')) {
            match reference.split_once("::") {
                Some((file, test)) => {
                    let text = std::fs::read_to_string(root.join(file)).unwrap_or_default();
                    assert!(text.contains(&format!("fn {test}(")), "{name}: {file} has no test {test}");
                }
                None => {
                    let case = reference.strip_prefix("golden:").expect("golden:NAME or path::name");
                    assert!(root.join("fixtures/dockerfiles").join(case).is_dir(), "{name}: no golden case {case}");
                }
            }
        }
    }
    let line = format!(
        "Counts: {} pass, {} differ, {} to port, {} n/a, {} later — {} upstream tests.",
        counts.get("pass").unwrap_or(&0),
        counts.get("differs").unwrap_or(&0),
        counts.get("to").unwrap_or(&0),
        counts.get("n/a").unwrap_or(&0),
        counts.get("later").unwrap_or(&0),
        rows.len()
    );
    assert!(doc.contains(&line), "the counts line says: {line}");
}
