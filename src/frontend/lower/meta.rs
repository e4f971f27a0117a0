//! Global scope: the automatic platform ARGs and the ARGs declared before
//! the first FROM, which are visible to FROM lines (and to stages that
//! redeclare them).

use super::{BuildOptions, Platform};
use crate::frontend::diag::Diagnostic;
use crate::frontend::instructions::{Instruction, Kind};
use crate::frontend::words::process_word;
use std::collections::BTreeMap;

/// BuildKit's automatic ARGs: the target and build platforms (builds run
/// on the host platform) and `TARGETSTAGE`, the stage built (`default` when
/// it has no name). A build arg of the same name overrides a value.
pub fn default_args(opts: &BuildOptions, last_stage: Option<&str>) -> BTreeMap<String, String> {
    let host = Platform::host();
    let mut m = BTreeMap::new();
    for (prefix, p) in [("TARGET", &opts.platform), ("BUILD", &host)] {
        m.insert(format!("{prefix}PLATFORM"), p.to_string());
        m.insert(format!("{prefix}OS"), p.os.clone());
        m.insert(format!("{prefix}OSVERSION"), String::new());
        m.insert(format!("{prefix}ARCH"), p.architecture.clone());
        m.insert(format!("{prefix}VARIANT"), p.variant.clone().unwrap_or_default());
    }
    let stage = opts.target.as_deref().or(last_stage).filter(|s| !s.is_empty()).unwrap_or("default");
    m.insert("TARGETSTAGE".into(), stage.into());
    for (name, value) in m.iter_mut() {
        if let Some(v) = opts.build_args.get(name) {
            value.clone_from(v);
        }
    }
    m
}

/// Values of the global ARGs: the automatic ones and those declared before
/// the first FROM (build args override defaults).
pub fn global_args(
    instructions: &[Instruction],
    opts: &BuildOptions,
    escape: char,
    budget: &super::Budget,
) -> Result<BTreeMap<String, String>, Diagnostic> {
    let first_from = instructions.iter().position(|i| matches!(i.kind, Kind::From { .. }));
    let before_from = &instructions[..first_from.unwrap_or(instructions.len())];
    let last_stage = instructions.iter().rev().find_map(|i| match &i.kind {
        Kind::From { alias, .. } => Some(alias.as_deref().unwrap_or("")),
        _ => None,
    });
    let mut vars = default_args(opts, last_stage);
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
