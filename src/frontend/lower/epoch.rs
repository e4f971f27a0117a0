//! `SOURCE_DATE_EPOCH` for one build, as BuildKit's Dockerfile frontend
//! picks it: the build arg, else the global `ARG SOURCE_DATE_EPOCH=`
//! default. The value is seconds since the Unix epoch, `context` (the
//! build context's own date: none for an uploaded context, as for
//! BuildKit's local contexts), or the name of a source-only stage — `FROM
//! scratch`, ARGs and exactly one remote ADD — whose download dates the
//! build.

use super::meta::global_args;
use super::{Budget, BuildOptions};
use crate::frontend::diag::Diagnostic;
use crate::frontend::instructions::{Instruction, Kind};
use crate::frontend::remote::{classify, RemoteSource};
use crate::frontend::words::process_word;
use crate::frontend::Dockerfile;
use std::collections::BTreeMap;

/// The build arg (and global ARG) that dates a build.
pub const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";

/// Where a build's date comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EpochSource {
    /// Seconds since the Unix epoch.
    Seconds(i64),
    /// No date of its own (empty, or `context` for an uploaded context).
    Unset,
    /// The `Last-Modified` of a download, else the newest regular file in
    /// it when it is a (compressed) tar.
    Http {
        /// The expanded URL.
        url: String,
        /// The expanded `--checksum`, if any.
        checksum: Option<String>,
    },
    /// The committer time of the commit a Git ref names.
    Git {
        /// Clone URL.
        remote: String,
        /// Branch, tag or commit (`None`: the default branch).
        reference: Option<String>,
        /// The commit the ref must resolve to (`--checksum` or the URL's).
        checksum: Option<String>,
    },
}

/// Why a build's `SOURCE_DATE_EPOCH` is unusable.
#[derive(Debug, thiserror::Error)]
pub enum EpochError {
    /// The build arg's value.
    #[error("{0} (the SOURCE_DATE_EPOCH build arg)")]
    BuildArg(String),
    /// A Dockerfile line: the global ARG's default or the source stage.
    #[error(transparent)]
    Dockerfile(#[from] Diagnostic),
}

/// The build's `SOURCE_DATE_EPOCH` source; `None` when neither a build arg
/// nor a global ARG default sets it.
pub fn source_date_epoch(df: &Dockerfile, opts: &BuildOptions) -> Result<Option<EpochSource>, EpochError> {
    let budget = Budget::default();
    let globals = global_args(&df.instructions, opts, df.escape, &budget)?;
    let from_build_arg = opts.build_args.get(SOURCE_DATE_EPOCH);
    let Some(value) = from_build_arg.or_else(|| globals.get(SOURCE_DATE_EPOCH)) else {
        return Ok(None);
    };
    match resolve_value(value, df, opts, &globals) {
        Ok(source) => Ok(Some(source)),
        Err(e) if e.line > 0 => Err(e.into()),
        Err(e) if from_build_arg.is_some() => Err(EpochError::BuildArg(e.message)),
        Err(e) => match global_declaration(&df.instructions) {
            Some(arg) => Err(Diagnostic::new(arg.line, 1, e.message, &arg.first).into()),
            None => Err(e.into()),
        },
    }
}

/// The global `ARG SOURCE_DATE_EPOCH=…` the value comes from.
fn global_declaration(instructions: &[Instruction]) -> Option<&Instruction> {
    let globals = instructions.iter().take_while(|i| !matches!(i.kind, Kind::From { .. }));
    globals.filter(|i| matches!(&i.kind, Kind::Arg(args) if args.iter().any(|(n, _)| n == SOURCE_DATE_EPOCH))).last()
}

fn resolve_value(
    value: &str,
    df: &Dockerfile,
    opts: &BuildOptions,
    globals: &BTreeMap<String, String>,
) -> Result<EpochSource, Diagnostic> {
    if value.is_empty() || value == "context" {
        return Ok(EpochSource::Unset);
    }
    if let Ok(seconds) = value.parse::<i64>() {
        return Ok(EpochSource::Seconds(seconds));
    }
    let Some((from, body)) = find_stage(&df.instructions, value) else {
        return Err(Diagnostic::new(0, 0, format!("invalid SOURCE_DATE_EPOCH: {value}"), ""));
    };
    let mut vars = globals.clone();
    vars.remove(SOURCE_DATE_EPOCH);
    stage_source(from, body, opts, vars, df.escape).map_err(|e| Diagnostic::new(from.line, 1, e, &from.first))
}

/// The stage named `name` (case-insensitively): its FROM and its body.
fn find_stage<'a>(instructions: &'a [Instruction], name: &str) -> Option<(&'a Instruction, &'a [Instruction])> {
    let froms: Vec<usize> =
        instructions.iter().enumerate().filter(|(_, i)| matches!(i.kind, Kind::From { .. })).map(|(n, _)| n).collect();
    froms.iter().enumerate().find_map(|(k, &at)| {
        let Kind::From { alias: Some(alias), .. } = &instructions[at].kind else { return None };
        let end = froms.get(k + 1).copied().unwrap_or(instructions.len());
        alias.eq_ignore_ascii_case(name).then(|| (&instructions[at], &instructions[at + 1..end]))
    })
}

/// The one remote source of a source-only stage, with its ARGs applied.
fn stage_source(
    from: &Instruction,
    body: &[Instruction],
    opts: &BuildOptions,
    mut vars: BTreeMap<String, String>,
    escape: char,
) -> Result<EpochSource, String> {
    let Kind::From { image, .. } = &from.kind else { unreachable!("find_stage returns FROM lines") };
    let expand = |word: &str, vars: &BTreeMap<String, String>| {
        let lookup = |n: &str| vars.get(n).cloned();
        process_word(word, &lookup, escape).map_err(|e| e.to_string())
    };
    let base = expand(image, &vars).map_err(|e| format!("failed to process source stage base name {image:?}: {e}"))?;
    if !base.eq_ignore_ascii_case("scratch") {
        return Err("SOURCE_DATE_EPOCH stage must use FROM scratch".into());
    }
    let mut source = None;
    for instr in body {
        match &instr.kind {
            Kind::Arg(args) => {
                for (name, default) in args {
                    let value = match (opts.build_args.get(name), default) {
                        (Some(v), _) => v.clone(),
                        (None, Some(d)) => expand(d, &vars)?,
                        (None, None) => continue,
                    };
                    vars.insert(name.clone(), value);
                }
            }
            Kind::Copy { add: Some(flags), sources, inline, .. } => {
                if source.is_some() {
                    return Err("SOURCE_DATE_EPOCH stage must contain exactly one remote ADD".into());
                }
                if !inline.is_empty() || sources.len() != 1 {
                    return Err("SOURCE_DATE_EPOCH stage must contain exactly one remote ADD source".into());
                }
                let checksum = flags.checksum.as_deref().map(|c| expand(c, &vars)).transpose()?;
                source = Some(remote_source(&expand(&sources[0], &vars)?, checksum)?);
            }
            _ => {
                let name = instr.text.split_whitespace().next().unwrap_or_default().to_ascii_lowercase();
                return Err(format!(
                    "SOURCE_DATE_EPOCH stage does not meet source-only requirements: unsupported {name} instruction"
                ));
            }
        }
    }
    source.ok_or_else(|| "SOURCE_DATE_EPOCH stage must contain exactly one remote ADD".into())
}

fn remote_source(src: &str, checksum: Option<String>) -> Result<EpochSource, String> {
    match classify(src) {
        Some(RemoteSource::Http { url, .. }) => Ok(EpochSource::Http { url, checksum }),
        Some(RemoteSource::Git(git)) => Ok(EpochSource::Git {
            remote: git.remote,
            reference: git.reference,
            checksum: checksum.or(git.checksum).map(|c| c.to_ascii_lowercase()),
        }),
        None => Err("SOURCE_DATE_EPOCH stage source must be a single HTTP(S) or Git ADD".into()),
    }
}

/// The build args with `SOURCE_DATE_EPOCH` set to the resolved date (empty
/// when unset), so a stage's `ARG SOURCE_DATE_EPOCH` sees the seconds and
/// not `context` or a stage name.
pub fn with_resolved_epoch(build_args: &BTreeMap<String, String>, epoch: Option<i64>) -> BTreeMap<String, String> {
    let mut args = build_args.clone();
    args.insert(SOURCE_DATE_EPOCH.into(), epoch.map(|e| e.to_string()).unwrap_or_default());
    args
}

#[cfg(test)]
mod tests {
    //! Ports of dockerfile2llb's `TestResolveSourceDateEpochValue*` and
    //! `TestSourceDateEpochStage*`, and the precedence the integration
    //! tests check.
    use super::*;
    use crate::frontend::parse;

    fn epoch(text: &str, args: &[(&str, &str)]) -> Result<Option<EpochSource>, EpochError> {
        let opts = BuildOptions {
            build_args: args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            target: None,
            platform: crate::platform::Platform::parse("linux/amd64").unwrap(),
        };
        source_date_epoch(&parse(text).unwrap(), &opts)
    }

    #[test]
    fn seconds_context_and_invalid_values() {
        let df = "FROM scratch\n";
        assert_eq!(epoch(df, &[]).unwrap(), None, "not set");
        assert_eq!(epoch(df, &[("SOURCE_DATE_EPOCH", "1700000501")]).unwrap(), Some(EpochSource::Seconds(1700000501)));
        assert_eq!(epoch(df, &[("SOURCE_DATE_EPOCH", "context")]).unwrap(), Some(EpochSource::Unset));
        assert_eq!(epoch(df, &[("SOURCE_DATE_EPOCH", "")]).unwrap(), Some(EpochSource::Unset));
        let e = epoch(df, &[("SOURCE_DATE_EPOCH", "not-a-timestamp")]).unwrap_err().to_string();
        assert_eq!(e, "invalid SOURCE_DATE_EPOCH: not-a-timestamp (the SOURCE_DATE_EPOCH build arg)");
    }

    #[test]
    fn the_dockerfile_default_applies_unless_a_build_arg_overrides_it() {
        let df = "ARG SOURCE_DATE_EPOCH=1700000001\nFROM scratch\nCOPY Dockerfile .\n";
        assert_eq!(epoch(df, &[]).unwrap(), Some(EpochSource::Seconds(1700000001)));
        assert_eq!(epoch(df, &[("SOURCE_DATE_EPOCH", "1700000002")]).unwrap(), Some(EpochSource::Seconds(1700000002)));
        let e = epoch("ARG SOURCE_DATE_EPOCH=not-a-timestamp\nFROM scratch\n", &[]).unwrap_err().to_string();
        assert!(e.starts_with("Dockerfile:1:1: invalid SOURCE_DATE_EPOCH: not-a-timestamp"), "{e}");
        let stage_arg_only = "FROM scratch\nARG SOURCE_DATE_EPOCH=5\n";
        assert_eq!(epoch(stage_arg_only, &[]).unwrap(), None, "only a global ARG dates the build");
    }

    #[test]
    fn a_source_stage_names_its_one_remote_add() {
        let df = "ARG SOURCE_DATE_EPOCH=mysource\nFROM scratch AS mysource\nARG URL=https://example.com/src.tar\nADD $URL /\nFROM scratch\n";
        let url = "https://example.com/src.tar".to_string();
        assert_eq!(epoch(df, &[]).unwrap(), Some(EpochSource::Http { url, checksum: None }));
        let by_arg = epoch(df, &[("URL", "https://example.com/other.tgz")]).unwrap();
        assert_eq!(by_arg, Some(EpochSource::Http { url: "https://example.com/other.tgz".into(), checksum: None }));
        let upper =
            "ARG SOURCE_DATE_EPOCH=MySource\nFROM scratch AS mysource\nADD --checksum=sha256:ab https://e.x/a /\n";
        let pinned = Some(EpochSource::Http { url: "https://e.x/a".into(), checksum: Some("sha256:ab".into()) });
        assert_eq!(epoch(upper, &[]).unwrap(), pinned, "stage names match case-insensitively");
        let git = "ARG SOURCE_DATE_EPOCH=src\nFROM scratch AS src\nADD --checksum=ABC123 https://e.x/r.git#v1 /\n";
        let want = EpochSource::Git {
            remote: "https://e.x/r.git".into(),
            reference: Some("v1".into()),
            checksum: Some("abc123".into()),
        };
        assert_eq!(epoch(git, &[]).unwrap(), Some(want), "a Git source names its commit");
        assert_eq!(
            epoch(df, &[("SOURCE_DATE_EPOCH", "7")]).unwrap(),
            Some(EpochSource::Seconds(7)),
            "a build arg overrides the stage"
        );
    }

    #[test]
    fn a_source_stage_must_be_scratch_with_exactly_one_remote_add() {
        let cases = [
            (
                "FROM scratch AS s\nCOPY Dockerfile /Dockerfile\n",
                "does not meet source-only requirements: unsupported copy instruction",
            ),
            ("FROM busybox AS s\nADD https://example.com/src.tar /\n", "SOURCE_DATE_EPOCH stage must use FROM scratch"),
            ("FROM scratch AS s\nADD https://e.x/a https://e.x/b /\n", "exactly one remote ADD source"),
            ("FROM scratch AS s\nADD https://e.x/a /\nADD https://e.x/b /\n", "must contain exactly one remote ADD"),
            ("FROM scratch AS s\nARG A=1\n", "must contain exactly one remote ADD"),
            ("FROM scratch AS s\nADD local.tar /\n", "must be a single HTTP(S) or Git ADD"),
        ];
        for (stage, want) in cases {
            let df = format!("ARG SOURCE_DATE_EPOCH=s\n{stage}FROM scratch\n");
            let e = epoch(&df, &[]).unwrap_err().to_string();
            assert!(e.contains(want) && e.starts_with("Dockerfile:2:1: "), "{stage:?}: {e}");
        }
        let e = epoch("FROM scratch\n", &[("SOURCE_DATE_EPOCH", "nostage")]).unwrap_err().to_string();
        assert!(e.contains("invalid SOURCE_DATE_EPOCH: nostage"), "{e}");
    }

    #[test]
    fn the_resolved_seconds_replace_the_build_arg() {
        let args: BTreeMap<String, String> = [("SOURCE_DATE_EPOCH".into(), "mysource".into())].into();
        assert_eq!(with_resolved_epoch(&args, Some(12))["SOURCE_DATE_EPOCH"], "12");
        assert_eq!(with_resolved_epoch(&args, None)["SOURCE_DATE_EPOCH"], "");
    }
}
