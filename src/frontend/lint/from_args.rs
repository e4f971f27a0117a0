//! The rules on FROM's variables: UndefinedArgInFrom (a variable that is
//! neither an ARG declared before the first FROM nor one of BuildKit's
//! automatic ARGs) and InvalidDefaultArgInFrom (with every global ARG at
//! its default, the base image name is empty or not a reference).

use super::{warn, Warning};
use crate::frontend::instructions::{Instruction, Kind};
use crate::frontend::words::process_word;
use std::cell::RefCell;
use std::collections::BTreeMap;

/// BuildKit's automatic ARGs, usable in FROM without a declaration.
const AUTOMATIC: [&str; 11] = [
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDOSVERSION",
    "BUILDARCH",
    "BUILDVARIANT",
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETOSVERSION",
    "TARGETARCH",
    "TARGETVARIANT",
    "TARGETSTAGE",
];

/// The global ARGs (before the first FROM) with their default values.
fn global_defaults(instrs: &[Instruction]) -> Vec<(&str, Option<&str>)> {
    let globals = instrs.iter().take_while(|i| !matches!(i.kind, Kind::From { .. }));
    globals
        .filter_map(|i| match &i.kind {
            Kind::Arg(args) => Some(args.iter().map(|(k, v)| (k.as_str(), v.as_deref()))),
            _ => None,
        })
        .flatten()
        .collect()
}

/// The variables `word` reads that `known` does not hold.
fn unknown_vars(word: &str, escape: char, known: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    let missing = RefCell::new(Vec::new());
    let lookup = |name: &str| {
        let value = known(name);
        if value.is_none() && !missing.borrow().iter().any(|m: &String| m == name) {
            missing.borrow_mut().push(name.to_string());
        }
        value
    };
    let _ = process_word(word, &lookup, escape);
    missing.into_inner()
}

/// UndefinedArgInFrom, for the image and `--platform` of every FROM.
pub fn undefined_args(instrs: &[Instruction], escape: char, out: &mut Vec<Warning>) {
    let globals = global_defaults(instrs);
    let names: Vec<&str> = AUTOMATIC.iter().copied().chain(globals.iter().map(|(k, _)| *k)).collect();
    let known = |name: &str| names.contains(&name).then(String::new);
    for i in instrs {
        let Kind::From { image, platform, .. } = &i.kind else { continue };
        for word in [Some(image.as_str()), platform.as_deref()].into_iter().flatten() {
            for name in unknown_vars(word, escape, &known) {
                let hint = crate::frontend::diag::closest(&name, names.iter().copied())
                    .map(|s| format!(" (did you mean {s}?)"))
                    .unwrap_or_default();
                warn(out, "UndefinedArgInFrom", i.line, format!("FROM argument '{name}' is not declared{hint}"));
            }
        }
    }
}

/// InvalidDefaultArgInFrom: a FROM whose name, with the global ARGs at
/// their defaults (no build args), is empty or not an image reference.
pub fn invalid_defaults(instrs: &[Instruction], escape: char, out: &mut Vec<Warning>) {
    // Each default expanded with what is declared before it, as BuildKit's
    // meta ARGs are; the automatic ARGs stand in with a plausible value.
    let mut defaults: BTreeMap<&str, String> = BTreeMap::new();
    for (name, default) in global_defaults(instrs) {
        let Some(default) = default else { continue };
        let known = |n: &str| defaults.get(n).cloned().or_else(|| AUTOMATIC.contains(&n).then(|| "linux".into()));
        if let Ok(value) = process_word(default, &known, escape) {
            defaults.insert(name, value);
        }
    }
    let lookup = |name: &str| defaults.get(name).cloned().or_else(|| AUTOMATIC.contains(&name).then(|| "linux".into()));
    for i in instrs {
        let Kind::From { image, .. } = &i.kind else { continue };
        if !image.contains('$') {
            continue;
        }
        let Ok(name) = process_word(image, &lookup, escape) else { continue };
        if name.is_empty() || crate::registry::Reference::parse(&name).is_err() {
            let msg = format!("Default value for ARG {image} results in empty or invalid base image name");
            warn(out, "InvalidDefaultArgInFrom", i.line, msg);
        }
    }
}
