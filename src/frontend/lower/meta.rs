//! Global scope: the automatic platform ARGs and the ARGs declared before
//! the first FROM, which are visible to FROM lines (and to stages that
//! redeclare them).

use super::{BuildOptions, Platform};
use crate::frontend::diag::Diagnostic;
use crate::frontend::instructions::{Instruction, Kind};
use crate::frontend::words::process_word;
use std::collections::BTreeMap;

/// The automatic platform ARGs for a target platform (builds run on the
/// host platform).
pub fn platform_args(target: &Platform) -> BTreeMap<String, String> {
    let host = Platform::host();
    let mut m = BTreeMap::new();
    for (prefix, p) in [("TARGET", target), ("BUILD", &host)] {
        m.insert(format!("{prefix}PLATFORM"), p.to_string());
        m.insert(format!("{prefix}OS"), p.os.clone());
        m.insert(format!("{prefix}ARCH"), p.architecture.clone());
        m.insert(format!("{prefix}VARIANT"), p.variant.clone().unwrap_or_default());
    }
    m
}

/// Values of the global ARGs (build args override defaults).
pub fn global_args(
    before_from: &[Instruction],
    opts: &BuildOptions,
    escape: char,
    budget: &super::Budget,
) -> Result<BTreeMap<String, String>, Diagnostic> {
    let mut vars = platform_args(&opts.platform);
    for instr in before_from {
        let Kind::Arg(args) = &instr.kind else { continue };
        for (name, default) in args {
            let value = match (opts.build_args.get(name), default) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(d)) => {
                    let lookup = |n: &str| vars.get(n).cloned();
                    let at = |e: String| Diagnostic::new(instr.line, 1, e, &instr.first);
                    let value = process_word(d, &lookup, escape).map_err(|e| at(e.to_string()))?;
                    budget.charge_str(&value).map_err(|e| at(e.to_string()))?;
                    Some(value)
                }
                (None, None) => None,
            };
            if let Some(v) = value {
                vars.insert(name.clone(), v);
            }
        }
    }
    Ok(vars)
}
