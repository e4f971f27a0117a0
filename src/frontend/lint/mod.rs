//! BuildKit's Dockerfile checks (the rules `docker build --check` runs),
//! configured like BuildKit by the `# check=skip=<rules|all>;error=<bool>`
//! directive or the `BUILDKIT_DOCKERFILE_CHECK` build arg (which wins).
//! Findings are warnings in the build log; with `error=true` they fail
//! the build.

mod from_args;
mod ignored;
mod reach;
#[cfg(test)]
mod tests_buildkit;
mod values;

use super::instructions::{CommandForm, Instruction, Kind};
use super::Dockerfile;
use crate::platform::Platform;

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// BuildKit's rule name.
    pub rule: &'static str,
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} (line {})", self.rule, self.message, self.line)
    }
}

/// The failure of a build whose checks fired under `error=true`:
/// BuildKit's words with the rules (sorted, once each), then the findings.
pub fn violation(found: &[Warning]) -> String {
    let rules: std::collections::BTreeSet<&str> = found.iter().map(|w| w.rule).collect();
    let details: Vec<String> = found.iter().map(ToString::to_string).collect();
    format!(
        "lint violation found for rules: {} (check=error=true): {}",
        rules.into_iter().collect::<Vec<_>>().join(", "),
        details.join("; ")
    )
}

/// How checks are configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckConfig {
    /// Rules to skip (`all` skips every rule).
    pub skip: Vec<String>,
    /// Fail the build when a rule fires.
    pub error: bool,
}

/// A `# check=` option kiln does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid check option {0:?}: expected skip=<rules> or error=<bool>")]
pub struct BadCheckOption(String);

impl CheckConfig {
    /// Parses `skip=A,B;error=true`; unknown keys are reported.
    pub fn parse(value: &str) -> Result<Self, BadCheckOption> {
        let mut out = CheckConfig::default();
        for part in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('=').map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim())) {
                Some((k, v)) if k == "skip" => out.skip = v.split(',').map(|r| r.trim().to_string()).collect(),
                Some((k, v)) if k == "error" => out.error = v.eq_ignore_ascii_case("true"),
                _ => return Err(BadCheckOption(part.to_string())),
            }
        }
        Ok(out)
    }

    /// Whether `rule` is skipped.
    pub fn skips(&self, rule: &str) -> bool {
        self.skip.iter().any(|s| s.eq_ignore_ascii_case("all") || s.eq_ignore_ascii_case(rule))
    }
}

/// The configuration from the `# check=` directive, overridden by the
/// `BUILDKIT_DOCKERFILE_CHECK` build arg.
pub fn check_config(df: &Dockerfile, build_arg: Option<&str>) -> Result<CheckConfig, BadCheckOption> {
    let directive = df.directives.iter().find(|(k, _)| k == "check").map(|(_, v)| v.as_str());
    match build_arg.or(directive) {
        Some(v) => CheckConfig::parse(v),
        None => Ok(CheckConfig::default()),
    }
}

/// BuildKit's InvalidBaseImagePlatform: a base image whose config names
/// another OS or architecture than the build's platform (a single-platform
/// image pulled for another platform); `None` when they match.
pub fn base_image_platform(image: &str, line: usize, expected: &Platform, actual: &Platform) -> Option<Warning> {
    if expected.os == actual.os && expected.architecture == actual.architecture {
        return None;
    }
    let message =
        format!("Base image {image} was pulled with platform \"{actual}\", expected \"{expected}\" for current build");
    Some(Warning { rule: "InvalidBaseImagePlatform", line, message })
}

/// Runs every rule not skipped, in line order.
///
/// As in BuildKit, the rules it checks while building a stage (JSON
/// arguments, relative WORKDIR, repeated CMD/ENTRYPOINT/HEALTHCHECK, legacy
/// ENV/LABEL, secret-like names) apply only to the stages a build of
/// `target` (default: the last stage) runs; the rest look at every line.
pub fn lint(df: &Dockerfile, cfg: &CheckConfig, target: Option<&str>) -> Vec<Warning> {
    let mut out = Vec::new();
    casing(&df.instructions, &mut out);
    let all = stages(&df.instructions);
    let reached = reach::reachable(&all, target);
    let version = crate::frontend::version::FrontendVersion::of(df);
    // What each stage ends with, by alias: a stage built `FROM` another
    // inherits its SHELL and absolute WORKDIR, as BuildKit's state does.
    let mut ends: Vec<(Option<String>, Inherited)> = Vec::new();
    for (stage, reached) in all.iter().zip(&reached) {
        let (parent, alias) = match &stage[0].kind {
            Kind::From { image, alias, .. } => (image.to_ascii_lowercase(), alias.clone()),
            _ => (String::new(), None),
        };
        let start = ends.iter().rev().find(|(a, _)| a.as_deref() == Some(parent.as_str())).map(|(_, s)| *s);
        let mut found = Vec::new();
        let end = stage_rules(stage, start.unwrap_or_default(), &mut found);
        ends.push((alias, end));
        for i in stage.iter() {
            instruction_rules(i, &mut found);
            values::expose(i, version, &mut found);
            values::const_platform(i, &mut found);
        }
        out.extend(found.into_iter().filter(|w| *reached || PARSE_TIME_RULES.contains(&w.rule)));
    }
    let first_from = df.instructions.iter().position(|i| matches!(i.kind, Kind::From { .. }));
    for i in &df.instructions[..first_from.unwrap_or(df.instructions.len())] {
        instruction_rules(i, &mut out);
    }
    stage_names(&df.instructions, &mut out);
    for line in df.instructions.iter().filter_map(|i| i.empty_continuation) {
        warn(&mut out, "NoEmptyContinuation", line, "Empty continuation line".into());
    }
    from_args::undefined_args(&df.instructions, df.escape, &mut out);
    from_args::invalid_defaults(&df.instructions, df.escape, &mut out);
    let mut out = retained(df, cfg, out);
    out.sort_by_key(|w| w.line);
    out
}

/// CopyIgnoredFile for the stages a build of `target` runs, given the
/// text of the `.dockerignore` that applies.
pub fn copy_ignored(df: &Dockerfile, ignore_text: &str, target: Option<&str>) -> Vec<Warning> {
    let all = stages(&df.instructions);
    ignored::copy_ignored(&all, &reach::reachable(&all, target), ignore_text)
}

/// The warnings `cfg` does not skip, nor a `# check=skip=…` comment right
/// above the instruction they are about (BuildKit merges it for that
/// instruction).
pub fn retained(df: &Dockerfile, cfg: &CheckConfig, mut warnings: Vec<Warning>) -> Vec<Warning> {
    let local = |line: usize| {
        let check = df.instructions.iter().find(|i| i.line == line)?.check.as_deref()?;
        CheckConfig::parse(check).ok()
    };
    warnings.retain(|w| !cfg.skips(w.rule) && !local(w.line).is_some_and(|c| c.skips(w.rule)));
    warnings
}

/// Rules BuildKit checks while parsing, on every stage.
const PARSE_TIME_RULES: [&str; 5] = [
    "MaintainerDeprecated",
    "StageNameCasing",
    "FromAsCasing",
    "RedundantTargetPlatform",
    "FromPlatformFlagConstDisallowed",
];

fn warn(out: &mut Vec<Warning>, rule: &'static str, line: usize, message: String) {
    out.push(Warning { rule, line, message });
}

/// Instructions split at each FROM (the FROM first).
fn stages(instrs: &[Instruction]) -> Vec<&[Instruction]> {
    let starts: Vec<usize> =
        instrs.iter().enumerate().filter(|(_, i)| matches!(i.kind, Kind::From { .. })).map(|(n, _)| n).collect();
    starts.iter().enumerate().map(|(k, s)| &instrs[*s..starts.get(k + 1).copied().unwrap_or(instrs.len())]).collect()
}

fn keyword(i: &Instruction) -> &str {
    i.text.split_whitespace().next().unwrap_or("")
}

/// ConsistentInstructionCasing: keywords follow the file's majority case.
fn casing(instrs: &[Instruction], out: &mut Vec<Warning>) {
    let upper = instrs.iter().filter(|i| keyword(i) == keyword(i).to_ascii_uppercase()).count();
    let majority_upper = upper * 2 >= instrs.len();
    for i in instrs {
        let word = keyword(i);
        let (expected, case) = if majority_upper {
            (word.to_ascii_uppercase(), "uppercase")
        } else {
            (word.to_ascii_lowercase(), "lowercase")
        };
        if word != expected {
            let msg = format!("Command '{word}' should match the case of the command majority ({case})");
            warn(out, "ConsistentInstructionCasing", i.line, msg);
        }
    }
}

/// What a stage passes on to stages built on it.
#[derive(Debug, Clone, Copy, Default)]
struct Inherited {
    shell: bool,
    absolute_workdir: bool,
}

/// Rules that look at a whole stage, starting from what its parent stage
/// left; returns what it leaves.
fn stage_rules(stage: &[Instruction], from: Inherited, out: &mut Vec<Warning>) -> Inherited {
    let (mut seen_shell, mut absolute_workdir) = (from.shell, from.absolute_workdir);
    let mut counts: [(&str, Vec<usize>); 3] = [("CMD", vec![]), ("ENTRYPOINT", vec![]), ("HEALTHCHECK", vec![])];
    for i in stage {
        match &i.kind {
            Kind::Shell(_) => seen_shell = true,
            Kind::Cmd(CommandForm::Shell(_)) | Kind::Entrypoint(CommandForm::Shell(_)) if !seen_shell => {
                let word = keyword(i).to_ascii_uppercase();
                let msg = format!(
                    "JSON arguments recommended for {word} to prevent unintended behavior related to OS signals"
                );
                warn(out, "JSONArgsRecommended", i.line, msg);
            }
            Kind::Workdir(path) if path.starts_with('/') || path.starts_with('$') => absolute_workdir = true,
            Kind::Workdir(path) if !absolute_workdir => {
                let msg = format!("Relative workdir {path:?} can have unexpected results if the base image changes");
                warn(out, "WorkdirRelativePath", i.line, msg);
            }
            _ => {}
        }
        if let Some((_, lines)) = counts.iter_mut().find(|(k, _)| keyword(i).eq_ignore_ascii_case(k)) {
            lines.push(i.line);
        }
    }
    for (name, lines) in counts {
        for line in lines.iter().take(lines.len().saturating_sub(1)) {
            let msg = format!(
                "Multiple {name} instructions should not be used in the same stage because only the last one will be used"
            );
            warn(out, "MultipleInstructionsDisallowed", *line, msg);
        }
    }
    Inherited { shell: seen_shell, absolute_workdir }
}

/// Rules that look at one instruction.
fn instruction_rules(i: &Instruction, out: &mut Vec<Warning>) {
    match &i.kind {
        Kind::From { alias, platform, .. } => from_rules(i, alias.as_deref(), platform.as_deref(), out),
        Kind::Maintainer(_) => warn(
            out,
            "MaintainerDeprecated",
            i.line,
            "Maintainer instruction is deprecated in favor of using label".into(),
        ),
        Kind::Env(pairs) | Kind::Label(pairs) => {
            let word = keyword(i).to_ascii_uppercase();
            let first_arg = i.text.split_whitespace().nth(1).unwrap_or("");
            if !first_arg.contains('=') {
                let msg = format!("\"{word} key=value\" should be used instead of legacy \"{word} key value\" format");
                warn(out, "LegacyKeyValueFormat", i.line, msg);
            }
            if matches!(i.kind, Kind::Env(_)) {
                secret_names(i, pairs.iter().map(|(k, _)| k.as_str()), "ENV", out);
            }
        }
        Kind::Arg(args) => secret_names(i, args.iter().map(|(k, _)| k.as_str()), "ARG", out),
        _ => {}
    }
}

/// ReservedStageName and DuplicateStageName: `scratch` and `context` are
/// not stage names, and a name is given once.
fn stage_names(instrs: &[Instruction], out: &mut Vec<Warning>) {
    let mut seen: Vec<&str> = Vec::new();
    for i in instrs {
        let Kind::From { alias: Some(name), .. } = &i.kind else { continue };
        if name == "scratch" || name == "context" {
            let msg = format!("Stage name should not use the same name as reserved stage {name:?}");
            warn(out, "ReservedStageName", i.line, msg);
        }
        if seen.contains(&name.as_str()) {
            warn(
                out,
                "DuplicateStageName",
                i.line,
                format!("Duplicate stage name {name:?}, stage names should be unique"),
            );
        }
        seen.push(name);
    }
}

fn from_rules(i: &Instruction, alias: Option<&str>, platform: Option<&str>, out: &mut Vec<Warning>) {
    let words: Vec<&str> = i.text.split_whitespace().collect();
    if let Some(as_word) = words.iter().find(|w| w.eq_ignore_ascii_case("as")) {
        let from_upper = keyword(i) == keyword(i).to_ascii_uppercase();
        let as_upper = *as_word == as_word.to_ascii_uppercase();
        if from_upper != as_upper {
            let msg = format!("'{as_word}' and '{}' keywords' casing do not match", keyword(i));
            warn(out, "FromAsCasing", i.line, msg);
        }
    }
    let written_alias = words.iter().skip_while(|w| !w.eq_ignore_ascii_case("as")).nth(1);
    if let (Some(_), Some(name)) = (alias, written_alias) {
        if name.chars().any(|c| c.is_ascii_uppercase()) {
            warn(out, "StageNameCasing", i.line, format!("Stage name '{name}' should be lowercase"));
        }
    }
    if matches!(platform, Some("$TARGETPLATFORM") | Some("${TARGETPLATFORM}")) {
        let msg = "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior";
        warn(out, "RedundantTargetPlatform", i.line, msg.into());
    }
}

/// Whether a name looks like a credential, by BuildKit's rule: a
/// `_`-separated word of it is a credential word and none is an allowed
/// one (`PUBLIC_KEY`, `TOKEN_FILE`).
pub fn credential_like(name: &str) -> bool {
    const DENY: [&str; 10] =
        ["apikey", "auth", "credential", "credentials", "key", "password", "pword", "passwd", "secret", "token"];
    const ALLOW: [&str; 3] = ["public", "file", "version"];
    let lower = name.to_ascii_lowercase();
    let has = |list: &[&str]| lower.split('_').any(|p| list.contains(&p));
    has(&DENY) && !has(&ALLOW)
}

/// SecretsUsedInArgOrEnv: names that look like credentials (their values
/// end up in the image config or history).
fn secret_names<'a>(i: &Instruction, names: impl Iterator<Item = &'a str>, what: &str, out: &mut Vec<Warning>) {
    for name in names.filter(|n| credential_like(n)) {
        let msg = format!("Do not use ARG or ENV instructions for sensitive data ({what} {name:?})");
        warn(out, "SecretsUsedInArgOrEnv", i.line, msg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str, cfg: &CheckConfig) -> Vec<(&'static str, usize)> {
        let df = crate::frontend::parse(text).unwrap();
        lint(&df, cfg, None).into_iter().map(|w| (w.rule, w.line)).collect()
    }

    #[test]
    fn each_rule_fires_where_buildkit_does() {
        let text = "FROM busybox as Build\nMAINTAINER me\nENV A 1\nARG API_TOKEN\nWORKDIR app\nCMD echo a\n\
                    CMD [\"b\"]\nrun true\nFROM --platform=$TARGETPLATFORM build\nLABEL a=b\n";
        assert_eq!(
            rules(text, &CheckConfig::default()),
            vec![
                ("FromAsCasing", 1),
                ("StageNameCasing", 1),
                ("MaintainerDeprecated", 2),
                ("LegacyKeyValueFormat", 3),
                ("SecretsUsedInArgOrEnv", 4),
                ("WorkdirRelativePath", 5),
                ("JSONArgsRecommended", 6),
                ("MultipleInstructionsDisallowed", 6),
                ("ConsistentInstructionCasing", 8),
                ("RedundantTargetPlatform", 9),
            ]
        );
    }

    #[test]
    fn clean_files_and_skips() {
        let clean = "FROM busybox AS build\nENV A=1\nWORKDIR /app\nCMD [\"run\"]\n";
        assert!(rules(clean, &CheckConfig::default()).is_empty());
        let text = "FROM busybox as build\nMAINTAINER me\n";
        let cfg = CheckConfig::parse("skip=FromAsCasing; error=true").unwrap();
        assert_eq!(rules(text, &cfg), vec![("MaintainerDeprecated", 2)]);
        assert!(cfg.error);
        assert!(rules(text, &CheckConfig::parse("skip=all").unwrap()).is_empty());
        assert_eq!(CheckConfig::parse("bogus"), Err(BadCheckOption("bogus".into())));
    }

    /// BuildKit's testJSONArgsRecommended and testWorkdirRelativePath: a
    /// SHELL or an absolute WORKDIR set in a parent stage counts for the
    /// stages built on it.
    #[test]
    fn shell_and_workdir_carry_into_child_stages() {
        let cases = [
            ("FROM scratch\nCMD mycommand\n", vec![("JSONArgsRecommended", 2)]),
            ("FROM scratch\nENTRYPOINT mycommand\n", vec![("JSONArgsRecommended", 2)]),
            ("FROM scratch\nSHELL [\"/usr/bin/customshell\"]\nCMD mycommand\n", vec![]),
            ("FROM scratch AS base\nSHELL [\"/usr/bin/customshell\"]\nFROM base\nCMD mycommand\n", vec![]),
            ("FROM scratch AS base\nSHELL [\"/usr/bin/customshell\"]\nFROM base\nENTRYPOINT mycommand\n", vec![]),
            ("FROM scratch\nWORKDIR app/\n", vec![("WorkdirRelativePath", 2)]),
            ("FROM scratch AS a\nWORKDIR /app\nFROM a AS b\nWORKDIR subdir/\n", vec![]),
        ];
        for (text, want) in cases {
            assert_eq!(rules(text, &CheckConfig::default()), want, "{text}");
        }
    }

    #[test]
    fn build_arg_overrides_directive() {
        let df = crate::frontend::parse("# check=error=true\nFROM busybox\n").unwrap();
        assert!(check_config(&df, None).unwrap().error);
        assert!(!check_config(&df, Some("skip=all")).unwrap().error);
    }
}
