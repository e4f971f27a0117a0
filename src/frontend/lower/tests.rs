//! Lowering semantics (BuildKit's behaviour is the reference).

use super::*;
use crate::frontend::{parse, CommandForm};
use crate::graph::{ExecOp, FileAction, Op};

fn base() -> ResolvedImage {
    let mut config = ImageConfig { os: "linux".into(), architecture: "amd64".into(), ..Default::default() };
    config.config.env = Some(vec!["PATH=/base/bin".into()]);
    config.config.cmd = Some(vec!["sh".into()]);
    config.history = vec![History { created_by: Some("base".into()), ..Default::default() }];
    config.rootfs.diff_ids = vec!["sha256:x".into()];
    ResolvedImage {
        reference: "r.io/base:1".into(),
        digest: Digest::parse("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855").unwrap(),
        config,
    }
}

fn lower_with(text: &str, args: &[(&str, &str)]) -> Result<Lowered, Diagnostic> {
    lower_for(text, args, "linux/amd64").map(|(l, _)| l)
}

/// Lowers for `platform`; also returns the base images it asked for.
fn lower_for(text: &str, args: &[(&str, &str)], platform: &str) -> Result<(Lowered, Vec<BaseImageRef>), Diagnostic> {
    let df = parse(text)?;
    let opts = BuildOptions {
        build_args: args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        target: None,
        platform: Platform::parse(platform).unwrap(),
    };
    let (resolver, wanted) = resolve_bases(&df, &opts, |b| {
        let mut img = base();
        img.config.architecture = b.platform.architecture.clone();
        Ok::<_, Diagnostic>(img)
    })?;
    lower(&df, &opts, &resolver).map(|l| (l, wanted))
}

fn execs(l: &Lowered) -> Vec<&ExecOp> {
    l.definition.nodes.iter().filter_map(|n| if let Op::Exec(e) = &n.op { Some(e) } else { None }).collect()
}

#[test]
fn env_on_one_line_sees_old_values_and_legacy_form_takes_the_rest() {
    let l = lower_with("FROM b\nENV abc=hello\nENV abc=bye def=$abc\nENV LEGACY a b=c  d\n", &[]).unwrap();
    let c = &l.config.config;
    assert_eq!(c.env_get("abc"), Some("bye"));
    assert_eq!(c.env_get("def"), Some("hello"));
    assert_eq!(c.env_get("LEGACY"), Some("a b=c  d"));
    assert_eq!(c.env_get("PATH"), Some("/base/bin"), "base env is inherited");
}

#[test]
fn arg_scoping_follows_buildkit() {
    let text = "ARG V=global\nARG BASE=b\nFROM $BASE\nRUN echo $V\nARG V\nARG EMPTY\nARG UNSET\nARG D=dflt\nENV D=from-env\nRUN echo\n";
    let l = lower_with(text, &[("EMPTY", ""), ("UNUSED", "x")]).unwrap();
    let runs = execs(&l);
    assert!(!runs[0].env.iter().any(|e| e.starts_with("V=")), "a global ARG is invisible until redeclared");
    let env = &runs[1].env;
    assert!(env.contains(&"V=global".to_string()), "{env:?}");
    assert!(env.contains(&"EMPTY=".to_string()), "an empty build arg is set: {env:?}");
    assert!(!env.iter().any(|e| e.starts_with("UNSET=")), "an ARG without value is absent: {env:?}");
    assert_eq!(env.iter().filter(|e| e.starts_with("D=")).collect::<Vec<_>>(), ["D=from-env"], "ENV wins over ARG");
    assert!(!l.config.config.env.as_ref().unwrap().iter().any(|e| e.starts_with("V=")), "ARGs never reach the config");
}

#[test]
fn platform_args_work_in_from_and_only_after_redeclaration_in_run() {
    let text = "FROM --platform=${TARGETPLATFORM:-linux/amd64} b AS build\nRUN echo\nARG TARGETARCH\nRUN echo\n";
    let l = lower_with(text, &[]).unwrap();
    let runs = execs(&l);
    assert!(!runs[0].env.iter().any(|e| e.starts_with("TARGETARCH=")));
    assert!(runs[1].env.contains(&"TARGETARCH=amd64".to_string()));
}

#[test]
fn shell_and_exec_forms_cmd_and_entrypoint() {
    let l = lower_with("FROM b\nRUN echo $HOME\nRUN [\"echo\", \"$HOME\"]\nENTRYPOINT [\"/bin/app\"]\n", &[]).unwrap();
    let runs = execs(&l);
    assert_eq!(runs[0].args, ["/bin/sh", "-c", "echo $HOME"]);
    assert_eq!(runs[1].args, ["echo", "$HOME"], "exec form is never expanded");
    assert_eq!(l.config.config.cmd, None, "ENTRYPOINT clears the inherited CMD");
    let l = lower_with("FROM b\nCMD run\nENTRYPOINT [\"/bin/app\"]\n", &[]).unwrap();
    assert_eq!(l.config.config.cmd, Some(vec!["/bin/sh".into(), "-c".into(), "run".into()]), "same-stage CMD stays");
}

#[test]
fn workdir_copy_destinations_and_history() {
    let l = lower_with("FROM b\nWORKDIR /app\nWORKDIR sub/\nCOPY a.txt .\nCOPY b.txt rel\nUSER 1000\nRUN true\n", &[])
        .unwrap();
    assert_eq!(l.config.config.working_dir.as_deref(), Some("/app/sub"));
    let copies: Vec<_> = l
        .definition
        .nodes
        .iter()
        .filter_map(|n| match &n.op {
            Op::File(f) => match &f.actions[0] {
                FileAction::Copy(c) => Some(c.dest.clone()),
                FileAction::Mkdir { .. } => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(copies, ["/app/sub/", "/app/sub/rel"]);
    assert_eq!(execs(&l)[0].user, "1000");
    assert_eq!(execs(&l)[0].cwd, "/app/sub");
    let layers = l.history.iter().filter(|h| !h.entry.empty_layer).count();
    assert_eq!(layers, 1 + 5, "base + 2 WORKDIR + 2 COPY + RUN");
    assert!(l.history.iter().any(|h| h.entry.created_by.as_deref() == Some("USER 1000") && h.entry.empty_layer));
}

#[test]
fn unreachable_stages_are_not_resolved_or_built() {
    let text = "FROM b AS build\nRUN make\nFROM missing-image AS test\nRUN exit 1\nFROM build AS ship\nRUN ship\n";
    let df = parse(text).unwrap();
    let opts = BuildOptions { build_args: Default::default(), target: None, platform: Platform::host() };
    let known = ResolvedImages::new();
    let images: Vec<String> = base_images(&df, &opts, &known).unwrap().into_iter().map(|b| b.image).collect();
    assert_eq!(images, ["b"]);
    let l = lower_with(text, &[]).unwrap();
    let cmds: Vec<String> = execs(&l).iter().map(|e| e.args.join(" ")).collect();
    assert_eq!(cmds, ["/bin/sh -c make", "/bin/sh -c ship"]);
}

#[test]
fn secret_mounts_keep_ids_not_values() {
    let text = "FROM b\nARG T=/tok\nRUN --mount=type=secret,id=pip --mount=type=secret,target=$T,required --mount=type=secret,id=e,env=E x\n";
    let l = lower_with(text, &[]).unwrap();
    let s = &execs(&l)[0].secrets;
    assert_eq!(
        (s[0].id.as_str(), s[0].target.as_deref(), s[0].required, s[0].mode),
        ("pip", Some("/run/secrets/pip"), false, 0o400)
    );
    assert_eq!((s[1].id.as_str(), s[1].target.as_deref(), s[1].required), ("tok", Some("/tok"), true));
    assert_eq!((s[2].target.as_deref(), s[2].env.as_deref()), (None, Some("E")));
}

#[test]
fn healthcheck_expose_and_metadata() {
    let text = "FROM b\nHEALTHCHECK --interval=3s --retries=2 CMD [ -e /tmp/.lock ] || exit 1\nEXPOSE 8080 53/UDP\nSTOPSIGNAL SIGTERM\nLABEL a=b \"c d\"=e\n";
    let l = lower_with(text, &[]).unwrap();
    let c = &l.config.config;
    let hc = c.healthcheck.as_ref().unwrap();
    assert_eq!(hc.test.as_ref().unwrap(), &["CMD-SHELL", "[ -e /tmp/.lock ] || exit 1"]);
    assert_eq!((hc.interval, hc.retries), (Some(3_000_000_000), Some(2)));
    let ports: Vec<&String> = c.exposed_ports.as_ref().unwrap().keys().collect();
    assert_eq!(ports, ["53/udp", "8080/tcp"]);
    assert_eq!(c.labels.as_ref().unwrap()["c d"], "e");
    assert!(lower_with("FROM b\nSTOPSIGNAL SIGNOPE\n", &[]).unwrap_err().message.contains("invalid signal"));
}

#[test]
fn diagnostics_name_line_and_suggest() {
    let cases = [
        ("FROM b\nCOPY --chwon=app a b\n", 2, "unknown flag: --chwon", Some("chown")),
        ("FROM b\nCOPY onlyone\n", 2, "COPY requires at least two arguments", None),
        ("RUN x\n", 1, "no build stage in current context", None),
        ("FROM a b\n", 1, "FROM requires either one or three arguments", None),
        ("FROM b AS 1st\n", 1, "invalid name for build stage", None),
        ("FROM b\nONBUILD ONBUILD RUN x\n", 2, "Chaining ONBUILD", None),
        ("\n\n", 1, "the Dockerfile cannot be empty", None),
        ("FROM b\nRUN --mount=type=cache true\n", 2, "RUN --mount=type=cache needs a target", None),
        ("FROM b\nRUN --network=bridge true\n", 2, "invalid RUN --network=bridge", None),
        ("FROM b\nRUN --mount=type=ssh true\n", 2, "type=ssh is not supported", None),
        ("FROM b\nRUN --mount=type=secret true\n", 2, "invalid secret mount. one of source, target required", None),
        ("FROM b\nRUN --mount=type=secret,id=a,bogus=1 true\n", 2, "unexpected key 'bogus' in 'bogus=1'", None),
    ];
    for (text, line, msg, suggestion) in cases {
        let d = lower_with(text, &[]).unwrap_err();
        assert_eq!(d.line, line, "{text:?}: {d}");
        assert!(d.message.contains(msg), "{text:?}: {d}");
        assert_eq!(d.suggestion.as_deref(), suggestion, "{text:?}");
    }
}

#[test]
fn onbuild_triggers_of_the_base_run_first_and_are_not_inherited() {
    let df = parse("FROM parent\nRUN own\n").unwrap();
    let opts = BuildOptions { build_args: Default::default(), target: None, platform: Platform::host() };
    let mut img = base();
    img.config.config.on_build = Some(vec!["RUN echo triggered".into(), "ENV FROM_ONBUILD=1".into()]);
    let resolver: ResolvedImages = [(("parent".to_string(), Platform::host()), img)].into();
    let l = lower(&df, &opts, &resolver).unwrap();
    let cmds: Vec<String> = execs(&l).iter().map(|e| e.args.join(" ")).collect();
    assert_eq!(cmds, ["/bin/sh -c echo triggered", "/bin/sh -c own"]);
    assert_eq!(l.config.config.env_get("FROM_ONBUILD"), Some("1"));
    assert_eq!(l.config.config.on_build, None, "triggers are not passed on to the child image");
}

#[test]
fn build_platform_stages_run_natively_and_the_final_stage_is_the_target() {
    let host = Platform::host().to_string();
    let foreign = if host == "linux/arm64" { "linux/amd64" } else { "linux/arm64" };
    let text = "FROM --platform=$BUILDPLATFORM b AS build\nARG TARGETARCH\nRUN echo $TARGETARCH > /arch\n\
                FROM scratch\nCOPY --from=build /arch /arch\nCOPY --from=tool /t /t\n";
    let (l, wanted) = lower_for(text, &[], foreign).unwrap();
    let exec = execs(&l)[0];
    assert_eq!(exec.platform.to_string(), host, "the build stage runs on the build platform");
    let arch = foreign.rsplit('/').next().unwrap();
    assert!(exec.env.contains(&format!("TARGETARCH={arch}")), "{:?}", exec.env);
    assert_eq!(l.config.architecture, arch, "a scratch final stage takes the target platform");
    let asked: Vec<String> = wanted.iter().map(|b| format!("{} {}", b.image, b.platform)).collect();
    assert_eq!(asked, [format!("b {host}"), format!("tool {foreign}")], "COPY --from images are for the target");
}

#[test]
fn explicit_and_inherited_stage_platforms() {
    let text = "FROM --platform=linux/arm64 b AS one\nFROM one\nRUN true\n";
    let (l, wanted) = lower_for(text, &[], "linux/amd64").unwrap();
    assert_eq!(execs(&l)[0].platform.to_string(), "linux/arm64", "FROM <stage> keeps the stage's platform");
    assert_eq!(wanted[0].platform.to_string(), "linux/arm64");
    assert_eq!(l.config.architecture, "arm64");
    let (l, _) = lower_for("FROM b\nRUN true\n", &[], "linux/arm/v7").unwrap();
    assert_eq!(execs(&l)[0].platform.to_string(), "linux/arm/v7");
    let d = lower_for("FROM b\nFROM --platform=${NOPE} b\n", &[], "linux/amd64").unwrap_err();
    assert_eq!(d.line, 2, "{d}");
    assert!(d.message.contains("FROM --platform"), "{d}");
}

/// BuildKit's instruction-argument errors (parse_test.go's
/// TestCommandsExactlyOneArgument, TestCommandsAtLeastOneArgument,
/// TestCommandsNoDestinationArgument, TestCommandsBlankNames): the same
/// texts for the same instructions.
#[test]
fn instruction_argument_errors_read_like_buildkit() {
    let message = |text: &str| match parse(&format!("FROM scratch\n{text}\n")) {
        Ok(_) => format!("{text}: accepted"),
        Err(d) => d.message,
    };
    for cmd in ["MAINTAINER", "WORKDIR", "USER", "STOPSIGNAL"] {
        assert_eq!(message(cmd), format!("{cmd} requires exactly one argument"), "{cmd}");
    }
    for cmd in ["ENV", "LABEL", "ONBUILD", "HEALTHCHECK", "EXPOSE", "VOLUME"] {
        assert_eq!(message(cmd), format!("{cmd} requires at least one argument"), "{cmd}");
    }
    for cmd in ["ADD", "COPY"] {
        let want = format!(
            "{cmd} requires at least two arguments, but only one was provided. Destination could not be determined"
        );
        assert_eq!(message(&format!("{cmd} arg1")), want, "{cmd}");
    }
    for cmd in ["ENV", "LABEL"] {
        assert_eq!(message(&format!("{cmd} =arg2")), format!("{cmd} names can not be blank"), "{cmd}");
    }
    assert_eq!(message("HEALTHCHECK CMD"), "Missing command after HEALTHCHECK CMD");
    assert_eq!(message("HEALTHCHECK PING x"), "Unknown type \"PING\" in HEALTHCHECK (try CMD)");
    assert_eq!(message("HEALTHCHECK NONE x"), "HEALTHCHECK NONE takes no arguments");
}

/// BuildKit's instructions TestErrorCases: the same refusals with the
/// same texts (kiln's may add a hint after BuildKit's words).
#[test]
fn instruction_error_cases_read_like_buildkit() {
    let message = |text: &str| match parse(&format!("FROM scratch\n{text}\n")) {
        Ok(_) => format!("{text}: accepted"),
        Err(d) => d.message,
    };
    let cases = [
        ("COPY\t", "COPY requires at least two arguments"),
        ("ONBUILD FROM scratch", "FROM isn't allowed as an ONBUILD trigger"),
        ("MAINTAINER --boo joe@example.com", "unknown flag: --boo"),
        ("ONBUILD ONBUILD RUN touch foobar", "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
        ("FOO bar", "unknown instruction: FOO"),
        ("foo bar", "unknown instruction: foo"),
    ];
    for (text, want) in cases {
        let got = message(text);
        assert!(got.starts_with(want), "{text:?}: {got:?} does not start with {want:?}");
    }
}

/// BuildKit's parser TestDirectives, TestDetectSyntax, TestDetectSyntaxBOM
/// and TestParseDirective, for a Dockerfile: names are case-insensitive, an
/// unknown directive ends them, `syntax` and `check` values stop at the
/// first space and are found below a `#!` line, a byte-order mark is
/// dropped.
#[test]
fn directives_read_like_buildkit() {
    let directives = |text: &str| parse(text).unwrap().directives;
    let pair = |n: &str, v: &str| (n.to_string(), v.to_string());
    assert_eq!(directives("#escape=\\\n# key = FOO bar\n# smth\nFROM x\n"), [pair("escape", "\\")]);
    assert_eq!(directives("# EScape=\\\n# KEY = FOO bar\n# smth\nFROM x\n"), [pair("escape", "\\")]);
    let syntax = "# syntax = dockerfile:experimental // opts\nFROM busybox\n";
    assert_eq!(directives(syntax), [pair("syntax", "dockerfile:experimental")]);
    assert_eq!(
        directives("#!/bin/sh\n# syntax = dockerfile:experimental\nFROM busybox\n"),
        [pair("syntax", "dockerfile:experimental")]
    );
    assert!(directives("FROM busybox\nRUN ls\n").is_empty());
    assert_eq!(directives("\u{feff}# syntax = myfrontend\nFROM busybox\n"), [pair("syntax", "myfrontend")]);
    assert_eq!(directives("#check = skip=all // opts\nFROM busybox\n"), [pair("check", "skip=all")]);
    assert_eq!(directives("#!/bin/sh\n# check = skip=all\nFROM busybox\n"), [pair("check", "skip=all")]);
    assert_eq!(parse("\u{feff}FROM busybox\n").unwrap().instructions.len(), 1, "a BOM before FROM");
}

/// BuildKit's parser TestJSONArraysOfStrings: a JSON array of strings is
/// the exec form (escapes decoded, whitespace around it allowed); a JSON
/// array holding anything but strings is an error.
#[test]
fn json_arrays_of_strings_read_like_buildkit() {
    use crate::frontend::{CommandForm, Kind};
    let form = |json: &str| match parse(&format!("FROM x\nCMD {json}\n")).unwrap().instructions[1].kind.clone() {
        Kind::Cmd(form) => form,
        other => panic!("{other:?}"),
    };
    let exec = |items: &[&str]| CommandForm::Exec(items.iter().map(|s| s.to_string()).collect());
    assert_eq!(form("[]"), exec(&[]));
    assert_eq!(form("[\"\"]"), exec(&[""]));
    assert_eq!(form("[\"a\",\"b\"]"), exec(&["a", "b"]));
    assert_eq!(form("[ \"a\", \"b\" ]"), exec(&["a", "b"]));
    assert_eq!(form("[\t\"a\",\t\"b\"\t]"), exec(&["a", "b"]));
    let escapes = r#"["abc 123", "♥", "☃", "\" \\ \/ \b \f \n \r \t \u0000"]"#;
    assert_eq!(form(escapes), exec(&["abc 123", "♥", "☃", "\" \\ / \u{8} \u{c} \n \r \t \0"]));
    for invalid in
        [r#"["a",42,"b"]"#, r#"["a",{},"b"]"#, r#"["a",["c"],"b"]"#, r#"["a",true,"b"]"#, r#"["a",null,"b"]"#]
    {
        let err = parse(&format!("FROM x\nCMD {invalid}\n")).unwrap_err();
        assert_eq!(err.message, "when using JSON array syntax, arrays must be comprised of strings only", "{invalid}");
    }
}

/// BuildKit's parser line tests (TestParseNameValOldFormat,
/// TestParseNameValNewFormat, TestParseNameValWithoutVal): `LABEL foo bar`
/// is one pair, `foo=bar thing=star` two, `ENV foo` an error.
#[test]
fn name_value_forms_read_like_buildkit() {
    use crate::frontend::Kind;
    let pairs = |text: &str| match parse(&format!("FROM x\n{text}\n")).unwrap().instructions[1].kind.clone() {
        Kind::Label(p) | Kind::Env(p) => p,
        other => panic!("{other:?}"),
    };
    let owned = |v: &[(&str, &str)]| v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
    assert_eq!(pairs("LABEL foo bar"), owned(&[("foo", "bar")]));
    assert_eq!(pairs("LABEL foo=bar thing=star"), owned(&[("foo", "bar"), ("thing", "star")]));
    assert!(parse("FROM x\nENV foo\n").is_err(), "ENV must have two arguments");
}

/// BuildKit's parser TestHeredocChomp: `<<-` strips the body's leading tabs.
#[test]
fn heredoc_chomp_strips_leading_tabs() {
    let lexed = crate::frontend::lexer::lex("FROM x\nRUN cat <<-EOF\n\thello\n\tworld\nEOF\n").unwrap();
    assert_eq!(lexed.lines[1].heredocs[0].body, "hello\nworld\n");
}

/// BuildKit's parser TestParseExtractsHeredoc (the bodies; the markers are
/// in `heredoc.rs`) and TestParseJSONHeredoc: only RUN, COPY and ADD in
/// shell form read here-documents; bodies keep comments, quotes and tabs
/// (`<<-` strips them), and a delimiter line may be tab-indented with `<<-`.
#[test]
fn heredoc_bodies_read_like_buildkit_s_parser() {
    let text = "FROM a\nUSER <<INVALID\nINVALID\nRUN <<EMPTY\nEMPTY\nRUN <<INDENT\n\tfoo\n\tbar\nINDENT\n\
        RUN <<-UNINDENT2\n\tbaz\n\tquux\n\tUNINDENT2\nRUN <<COMMENT\n# internal comment\necho hi # trailing\nCOMMENT\n\
        COPY <<X <<Y /dest\nY\nX\nX\nY\nRUN <<'one two'\necho bar\none two\nRUN <<  EOF  > foo\nEOF\n\
        RUN [\"<<EOF\"]\nRUN [\"<<'EOF'\"]\n";
    let lexed = crate::frontend::lexer::lex(text).unwrap();
    let bodies: Vec<Vec<(&str, &str)>> =
        lexed.lines.iter().map(|l| l.heredocs.iter().map(|h| (h.name.as_str(), h.body.as_str())).collect()).collect();
    let want: Vec<Vec<(&str, &str)>> = vec![
        vec![],
        vec![],
        vec![],
        vec![("EMPTY", "")],
        vec![("INDENT", "\tfoo\n\tbar\n")],
        vec![("UNINDENT2", "baz\nquux\n")],
        vec![("COMMENT", "# internal comment\necho hi # trailing\n")],
        vec![("X", "Y\n"), ("Y", "X\n")],
        vec![("one two", "echo bar\n")],
        vec![("EOF", "")],
        vec![],
        vec![],
    ];
    assert_eq!(bodies, want);
    assert_eq!(lexed.lines[2].text, "INVALID", "USER reads no here-document: the next line is an instruction");
}

/// BuildKit's instructions TestCopyHeredoc and TestErrorCasesHeredoc:
/// which COPY words are inline files (named by their delimiter) and which
/// are paths; a here-document cannot be the destination.
#[test]
fn copy_heredoc_sources_and_destination() {
    let copy = |text: &str| match parse(&format!("FROM a\n{text}\n")).map(|d| d.instructions[1].kind.clone()) {
        Ok(Kind::Copy { sources, dest, inline, .. }) => Ok((sources, dest, inline)),
        Ok(other) => panic!("{other:?}"),
        Err(d) => Err(d.message),
    };
    let file = |name: &str, body: &str, expand: bool| (name.to_string(), body.to_string(), expand);
    assert_eq!(copy("COPY /foo /bar").unwrap(), (vec!["/foo".to_string()], "/bar".into(), vec![]));
    assert_eq!(copy("COPY <<EOF /bar\nEOF").unwrap().2, [file("EOF", "", true)]);
    assert_eq!(copy("COPY <<-EOF /bar\n\tTESTING\nEOF").unwrap().2, [file("EOF", "TESTING\n", true)]);
    assert_eq!(copy("COPY <<'EOF' /bar\nTESTING\nEOF").unwrap().2, [file("EOF", "TESTING\n", false)]);
    assert_eq!(
        copy("COPY <<EOF1 <<EOF2 /bar\nfirst\nEOF1\nsecond\nEOF2").unwrap().2,
        [file("EOF1", "first\n", true), file("EOF2", "second\n", true)]
    );
    let (sources, _, inline) = copy("COPY <<EOF foo.txt /bar\nthis is inline\nEOF").unwrap();
    assert_eq!((sources, inline), (vec!["foo.txt".to_string()], vec![file("EOF", "this is inline\n", true)]));
    assert_eq!(copy("COPY <<EOF /quotes\n\"quotes\"\nEOF").unwrap().2, [file("EOF", "\"quotes\"\n", true)]);
    let err = copy("COPY /foo <<EOF\nEOF").unwrap_err();
    assert!(err.contains("COPY cannot accept a heredoc as a destination"), "{err}");
}

/// BuildKit's instructions TestRunHeredoc: an exec-form RUN keeps `<<EOF`
/// as an argument; a lone `<<EOF` runs its body as the script; otherwise the
/// shell gets the command with the here-documents after it.
#[test]
fn run_heredoc_commands() {
    let run = |text: &str| match parse(&format!("FROM a\n{text}\n")).unwrap().instructions[1].kind.clone() {
        Kind::Run { cmd, .. } => cmd,
        other => panic!("{other:?}"),
    };
    assert_eq!(run("RUN [\"ls\", \"/\"]"), CommandForm::Exec(vec!["ls".into(), "/".into()]));
    assert_eq!(run("RUN [\"<<EOF\"]"), CommandForm::Exec(vec!["<<EOF".into()]));
    assert_eq!(run("RUN ls /"), CommandForm::Shell("ls /".into()));
    assert_eq!(run("RUN <<EOF\nls /\nwhoami\nEOF"), CommandForm::Shell("ls /\nwhoami\n".into()));
    assert_eq!(run("RUN <<-EOF\n\techo test\nEOF"), CommandForm::Shell("echo test\n".into()));
    assert_eq!(
        run("RUN <<'EOF' | python\nprint(\"hello\")\nEOF"),
        CommandForm::Shell("<<'EOF' | python\nprint(\"hello\")\nEOF\n".into())
    );
}

/// BuildKit's step numbering (testStepNames): RUN, COPY, ADD, WORKDIR and
/// the FROM of an image are numbered; `FROM scratch` and stage bases are
/// not; ONBUILD triggers come first with their keyword; one stage has no
/// name unless it reads an image.
#[test]
fn steps_are_numbered_like_buildkit() {
    let labels = |text: &str| -> Vec<String> {
        let l = lower_with(text, &[]).unwrap();
        let locs = l.definition.nodes.iter().filter_map(|n| n.source.as_ref());
        locs.map(|s| format!("[{} {}/{}] {}", s.stage, s.step, s.steps, s.text)).collect()
    };
    let two = "FROM busybox AS base\nENV A=1\nWORKDIR /out\nRUN echo \"base\" > base\n\
               FROM scratch\nLABEL x=y\nCOPY --from=base --chmod=0644 /out /out\n\
               FROM base\nCOPY --from=1 /out /y\n";
    assert_eq!(
        labels(two),
        [
            "[base 1/3] FROM busybox AS base",
            "[base 2/3] WORKDIR /out",
            "[base 3/3] RUN echo \"base\" > base",
            "[stage-1 1/1] COPY --from=base --chmod=0644 /out /out",
            "[stage-2 1/1] COPY --from=1 /out /y",
        ]
    );
    assert_eq!(labels("FROM busybox AS only\nRUN a\n"), ["[ 1/2] FROM busybox AS only", "[ 2/2] RUN a"]);
    let reads_image = labels("FROM scratch AS only\nCOPY --from=busybox /bin/sh /sh\n");
    assert_eq!(reads_image.last().unwrap(), "[only 1/1] COPY --from=busybox /bin/sh /sh");
}

/// BuildKit's TestProxyEnvFromBuildArgsDeterministicOrder and
/// TestProxyEnvFromBuildArgsNilWhenNoProxyArgs: proxy build args in any
/// case, the lower-case one winning, set under both names; none without.
#[test]
fn proxy_env_from_build_args() {
    let proxies = |args: &[(&str, &str)]| execs(&lower_with("FROM b\nRUN x\n", args).unwrap())[0].proxy_env.clone();
    let args = [
        ("ALL_PROXY", "all-upper"),
        ("all_proxy", "all-lower"),
        ("HTTP_PROXY", "http-upper"),
        ("http_proxy", "http-lower"),
        ("NO_PROXY", "no-proxy"),
        ("Ftp_Proxy", ""),
    ];
    let want = [
        "HTTP_PROXY=http-lower",
        "http_proxy=http-lower",
        "NO_PROXY=no-proxy",
        "no_proxy=no-proxy",
        "ALL_PROXY=all-lower",
        "all_proxy=all-lower",
    ];
    assert_eq!(proxies(&args), want);
    assert!(proxies(&[("FOO", "bar")]).is_empty());
}

/// BuildKit's testTargetStageNameArg (its graph half): `TARGETSTAGE` is the
/// target, else the last stage's name, else `default`; declared with ARG.
#[test]
fn targetstage_names_the_stage_built() {
    let df = "FROM b AS base\nRUN echo $TARGETSTAGE\nARG TARGETSTAGE\nRUN echo $TARGETSTAGE\nFROM scratch AS foo\n\
              COPY --from=base / /\nFROM scratch\nCOPY --from=base / /\n";
    let stage_of = |text: &str, target: Option<&str>| {
        let df = parse(text).unwrap();
        let opts = BuildOptions {
            build_args: Default::default(),
            target: target.map(str::to_string),
            platform: Platform::parse("linux/amd64").unwrap(),
        };
        let (resolver, _) = resolve_bases(&df, &opts, |_| Ok::<_, Diagnostic>(base())).unwrap();
        let l = lower(&df, &opts, &resolver).unwrap();
        let runs = execs(&l);
        assert!(!runs[0].env.iter().any(|e| e.starts_with("TARGETSTAGE=")), "not visible before ARG");
        runs[1].env.iter().find_map(|e| e.strip_prefix("TARGETSTAGE=").map(str::to_string)).unwrap()
    };
    assert_eq!(stage_of(df, Some("foo")), "foo");
    assert_eq!(stage_of(df, None), "default");
    assert_eq!(stage_of(&format!("{df}FROM scratch AS final\nCOPY --from=base / /\n"), None), "final");
}

/// BuildKit's parser TestParseErrorCases: an empty file, ENV without a
/// value, a file of comments only, and a JSON array holding a non-string.
#[test]
fn parse_error_cases_like_buildkit() {
    for text in [
        "",
        "FROM busybox\n\nENV PATH\n",
        "# Hello\n# These are just comments\n",
        "FROM busybox\nCMD [ \"echo\", [ \"nested json\" ] ]\n",
    ] {
        assert!(parse(text).is_err(), "{text:?} parses");
    }
    let d = parse("FROM b\nRUN [\"a\", 1]\n").unwrap_err();
    assert_eq!(d.message, "when using JSON array syntax, arrays must be comprised of strings only");
    assert!(parse("FROM b\nRUN [\"a\", \"b\"\n").is_ok(), "invalid JSON is shell form");
}

/// BuildKit's parser TestParseIncludesLineNumbers (start lines: kiln keeps
/// where an instruction starts) and TestParseWarnsOnEmptyContinutationLine
/// (an empty line inside a continuation is noted, a comment line is not).
#[test]
fn instruction_lines_and_empty_continuations() {
    let text =
        "# escape=\\\n\n\n\nFROM brimstone/ubuntu:14.04\n\n\n# TORUN -v x\n\n\nENV GOPATH \\\n/go\n\n\n\n# Install\n\
                RUN apt-get update \\\n\t&& a \\\n\n\n    && b \\\n\n\t&& c\n\n";
    let df = parse(text).unwrap();
    let lines: Vec<usize> = df.instructions.iter().map(|i| i.line).collect();
    assert_eq!(lines, [5, 11, 17]);
    let text =
        "\nFROM alpine:3.6\n\nRUN valid \\\n    continuation\n\nRUN something \\\n\n    following \\\n\n    more\n\n\
                RUN another \\\n\n    thing\n\nRUN non-indented \\\n# this is a comment\n   after-comment\n\n\
                RUN indented \\\n    # this is an indented comment\n    comment\n\t";
    let df = parse(text).unwrap();
    let noted: Vec<&str> =
        df.instructions.iter().filter(|i| i.empty_continuation.is_some()).map(|i| i.text.as_str()).collect();
    assert_eq!(noted, ["RUN something     following     more", "RUN another     thing"]);
}

/// BuildKit's testUnmatchedVars: a variable that is neither set (ENV, ARG
/// value, the base image's env) nor declared is UndefinedVar, with the
/// closest name as a hint; a declared ARG without a value, an ARG from a
/// parent stage, and RUN's own shell variables are not.
#[test]
fn undefined_variables_are_reported_like_buildkit() {
    let found = |text: &str| -> Vec<(usize, String)> {
        lower_with(text, &[]).unwrap().warnings.into_iter().map(|w| (w.line, w.message)).collect()
    };
    assert!(found("\nFROM scratch\nARG foo\nCOPY Dockerfile${foo} .\n").is_empty());
    assert!(found("\nFROM b AS base\nARG foo=Dockerfile\n\nFROM base\nCOPY $foo .\n").is_empty());
    assert!(found("\nFROM b\nRUN echo $PATH\n").is_empty());
    assert_eq!(
        found("\nFROM b\nCOPY $foo .\nARG foo=bar\nRUN echo $foo\n"),
        [(3, "Usage of undefined variable '$foo'".into())]
    );
    assert_eq!(
        found(
            "\nFROM b\nARG DIR_BINARIES=binaries/\nARG DIR_ASSETS=assets/\nARG DIR_CONFIG=config/\nCOPY $DIR_ASSET .\n"
        ),
        [(6, "Usage of undefined variable '$DIR_ASSET' (did you mean $DIR_ASSETS?)".into())]
    );
    assert_eq!(
        found("\nFROM b\nENV PATH=$PAHT:/tmp/bin\n"),
        [(3, "Usage of undefined variable '$PAHT' (did you mean $PATH?)".into())]
    );
}

/// BuildKit's dockerfile2llb TestDockerfileParsing: these lower or fail as
/// there (a target matched without case; a missing one, COPY of a URL and
/// an empty base name fail).
#[test]
fn dockerfile_parsing_cases_like_buildkit() {
    assert!(lower_with("FROM scratch\nENV FOO bar\nCOPY f1 f2 /sub/\nRUN ls -l\n", &[]).is_ok());
    let staged = "FROM scratch AS foo\nENV FOO bar\nFROM foo\nCOPY --from=foo f1 /\nCOPY --from=0 f2 /\n";
    assert!(lower_with(staged, &[]).is_ok());
    let with_target = |target: &str| {
        let df = parse(staged).unwrap();
        let opts = BuildOptions {
            build_args: Default::default(),
            target: Some(target.into()),
            platform: Platform::parse("linux/amd64").unwrap(),
        };
        resolve_bases(&df, &opts, |_| Ok::<_, Diagnostic>(base())).and_then(|(r, _)| lower(&df, &opts, &r))
    };
    assert!(with_target("Foo").is_ok());
    assert!(with_target("nosuch").is_err());
    assert!(lower_with("FROM scratch\n\tADD http://github.com/moby/buildkit/blob/master/README.md /\n", &[]).is_ok());
    let err =
        lower_with("FROM scratch\n\tCOPY http://github.com/moby/buildkit/blob/master/README.md /\n", &[]).unwrap_err();
    assert_eq!(err.message, "source can't be a URL for COPY");
    assert!(lower_with("FROM \"\" AS foo\n", &[]).is_err());
    assert!(lower_with("FROM ${BLANK} AS foo\n", &[]).is_err());
}

/// BuildKit's TestDockerfileCopyExcludePatterns and
/// TestDockerfileAddExcludePatterns: both instructions take repeated
/// `--exclude` patterns, which reach the copy.
#[test]
fn copy_and_add_take_exclude_patterns() {
    for keyword in ["COPY", "ADD"] {
        let df = format!("FROM scratch\n{keyword} --exclude=src/*.go --exclude=tmp/*.txt dir /sub/\n");
        let l = lower_with(&df, &[]).unwrap();
        let excludes: Vec<Vec<String>> = l
            .definition
            .nodes
            .iter()
            .filter_map(|n| match &n.op {
                Op::File(f) => f.actions.iter().find_map(|a| match a {
                    FileAction::Copy(c) => Some(c.exclude.clone()),
                    FileAction::Mkdir { .. } => None,
                }),
                _ => None,
            })
            .collect();
        assert_eq!(excludes, [vec!["src/*.go".to_string(), "tmp/*.txt".to_string()]], "{keyword}");
    }
}

/// BuildKit's TestHandleJSONArgs: a JSON array keeps its elements (none,
/// one or several); other text is one shell command, words joined.
#[test]
fn json_arguments_stay_elements_and_others_one_command() {
    let cmd_of = |text: &str| match &parse(text).unwrap().instructions[1].kind {
        Kind::Cmd(form) => form.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(cmd_of("FROM b\nCMD []\n"), CommandForm::Exec(vec![]));
    assert_eq!(cmd_of("FROM b\nCMD [\"foo\"]\n"), CommandForm::Exec(vec!["foo".into()]));
    assert_eq!(cmd_of("FROM b\nCMD [\"foo\", \"bar\"]\n"), CommandForm::Exec(vec!["foo".into(), "bar".into()]));
    assert_eq!(cmd_of("FROM b\nCMD foo bar\n"), CommandForm::Shell("foo bar".into()));
}
