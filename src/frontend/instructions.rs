//! Parses logical lines into typed instructions: keywords are
//! case-insensitive, flags (`--name=value`) are checked per instruction,
//! and RUN/CMD/ENTRYPOINT/COPY accept both JSON (exec) and shell forms
//! (invalid JSON falls back to the shell form, as in BuildKit).

use super::diag::Diagnostic;
use super::flags::{check_values, is_true, names_of, split_flags, Flag};
use super::lexer::LogicalLine;
use super::words::split_raw;

/// Every instruction keyword of the Dockerfile 1.x syntax.
pub const KEYWORDS: [&str; 18] = [
    "FROM",
    "RUN",
    "CMD",
    "LABEL",
    "MAINTAINER",
    "EXPOSE",
    "ENV",
    "ADD",
    "COPY",
    "ENTRYPOINT",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ARG",
    "ONBUILD",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
];

/// A command in exec (JSON) or shell form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandForm {
    /// `["a", "b"]`.
    Exec(Vec<String>),
    /// Text for the shell.
    Shell(String),
}

/// One parsed instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// 1-based line.
    pub line: usize,
    /// The instruction text (continuations joined).
    pub text: String,
    /// The first physical line (for diagnostics).
    pub first: String,
    /// What it is.
    pub kind: Kind,
    /// A `# check=…` comment right above it (see [`super::lexer::LogicalLine`]).
    pub check: Option<String>,
    /// Its last line, when its continuation held an empty line.
    pub empty_continuation: Option<usize>,
}

/// Instruction payloads; words are kept unexpanded (expansion happens
/// during lowering, with the variables in scope at that point).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `FROM [--platform=p] image [AS name]`.
    From {
        /// The image reference, or a stage name.
        image: String,
        /// The stage name (`AS name`).
        alias: Option<String>,
        /// `--platform`, unexpanded.
        platform: Option<String>,
    },
    /// `RUN [--mount=…] [--network=…]` (values kept raw until lowering).
    Run {
        /// The command.
        cmd: CommandForm,
        /// `--mount` values.
        mounts: Vec<String>,
        /// `--network`.
        network: Option<String>,
    },
    /// `CMD`.
    Cmd(CommandForm),
    /// `ENTRYPOINT`.
    Entrypoint(CommandForm),
    /// `COPY [--from] [--chown] [--chmod] [--link] src… dest`.
    Copy {
        /// Source paths (context or stage).
        sources: Vec<String>,
        /// Destination.
        dest: String,
        /// `--chown`.
        chown: Option<String>,
        /// `--chmod`.
        chmod: Option<String>,
        /// `--from` (a stage, image or context name).
        from: Option<String>,
        /// Here-document sources: (name, body, expand).
        inline: Vec<(String, String, bool)>,
        /// ADD's flags (`None`: COPY).
        add: Option<AddFlags>,
        /// `--exclude` patterns.
        exclude: Vec<String>,
        /// `--parents`.
        parents: bool,
        /// `--link`.
        link: bool,
    },
    /// `ENV` pairs (raw words).
    Env(Vec<(String, String)>),
    /// `LABEL` pairs (raw words).
    Label(Vec<(String, String)>),
    /// `ARG name[=default]…`.
    Arg(Vec<(String, Option<String>)>),
    /// `WORKDIR`.
    Workdir(String),
    /// `USER`.
    User(String),
    /// `EXPOSE` (raw text).
    Expose(String),
    /// `VOLUME` (JSON list or raw words).
    Volume(CommandForm),
    /// `STOPSIGNAL`.
    StopSignal(String),
    /// `SHELL` (JSON only).
    Shell(Vec<String>),
    /// `MAINTAINER` (deprecated; becomes a label).
    Maintainer(String),
    /// `ONBUILD` trigger text.
    Onbuild(String),
    /// `HEALTHCHECK`.
    Healthcheck {
        /// `--interval` and the other flags, as given.
        flags: Vec<(String, String)>,
        /// The check (`None`: `HEALTHCHECK NONE`).
        cmd: Option<CommandForm>,
    },
}

/// ADD's own flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddFlags {
    /// `--checksum` (raw word; expanded during lowering).
    pub checksum: Option<String>,
    /// `--unpack[=bool]`: `None` unpacks local archives only.
    pub unpack: Option<bool>,
    /// `--keep-git-dir[=bool]`.
    pub keep_git_dir: bool,
}

/// A `--name[=value]` flag with its column.
fn parse_json_list(text: &str) -> Option<Vec<String>> {
    let t = text.trim();
    if !t.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(t).ok()
}

/// A JSON array with an element that is not a string: BuildKit's parser
/// refuses it (anything else not a JSON array of strings is shell form).
fn json_array_of_non_strings(text: &str) -> bool {
    let t = text.trim();
    t.starts_with('[')
        && serde_json::from_str::<Vec<serde_json::Value>>(t).is_ok_and(|v| v.iter().any(|e| !e.is_string()))
}

fn command_form(text: &str) -> CommandForm {
    match parse_json_list(text) {
        Some(v) => CommandForm::Exec(v),
        None => CommandForm::Shell(text.to_string()),
    }
}

/// Parses one logical line.
pub fn parse_line(l: &LogicalLine, escape: char) -> Result<Instruction, Diagnostic> {
    let (word, rest) = match l.text.find(char::is_whitespace) {
        Some(i) => (&l.text[..i], l.text[i..].trim()),
        None => (l.text.as_str(), ""),
    };
    let keyword = word.to_ascii_uppercase();
    let column = l.first.len() - l.first.trim_start().len() + 1;
    let err = |col: usize, msg: String| Diagnostic::new(l.line, col, msg, &l.first);
    if !KEYWORDS.contains(&keyword.as_str()) {
        return Err(err(column, format!("unknown instruction: {word}")).suggest(word, KEYWORDS));
    }
    let arg_col = column + word.len() + 1;
    let (flags, args) = split_flags(rest, escape);
    let allowed: Vec<&str> = names_of(&keyword).collect();
    for f in &flags {
        if !allowed.contains(&f.name.as_str()) {
            // A flag BuildKit has and kiln does not says so; any other is
            // unknown, with BuildKit's words and suggestion.
            let msg = if keyword == "RUN" && f.name == "device" {
                "RUN --device is not supported by kiln: a multi-tenant builder gives steps no devices".to_string()
            } else {
                format!("unknown flag: --{}", f.name)
            };
            return Err(err(arg_col + f.column, msg).suggest(&f.name, allowed.iter().copied()));
        }
    }
    check_values(&keyword, &flags).map_err(|(column, msg)| err(arg_col + column, msg))?;
    let flag = |name: &str| flags.iter().find(|f| f.name == name).and_then(|f| f.value.clone());
    let need_args = |n: usize, what: &str| -> Result<(), Diagnostic> {
        if split_raw(args, escape).len() < n {
            return Err(err(arg_col, format!("{keyword} requires {what}")));
        }
        Ok(())
    };
    let json_args = match keyword.as_str() {
        "RUN" | "CMD" | "ENTRYPOINT" | "SHELL" | "VOLUME" | "COPY" | "ADD" => Some(args),
        "HEALTHCHECK" => {
            args.trim_start().get(..3).filter(|w| w.eq_ignore_ascii_case("cmd")).map(|_| args.trim_start()[3..].trim())
        }
        _ => None,
    };
    if json_args.is_some_and(json_array_of_non_strings) {
        return Err(err(arg_col, "when using JSON array syntax, arrays must be comprised of strings only".into()));
    }
    let kind = match keyword.as_str() {
        "FROM" => parse_from(args, flag("platform"), &err, arg_col)?,
        "RUN" => {
            need_args(1, "at least one argument")?;
            let mounts: Vec<String> =
                flags.iter().filter(|f| f.name == "mount").filter_map(|f| f.value.clone()).collect();
            if let Some(f) = flags.iter().find(|f| f.name == "mount" && mount_from_has_variable(f.value.as_deref())) {
                let msg = "'from' doesn't support variable expansion, define alias stage instead";
                return Err(err(arg_col + f.column, msg.into()));
            }
            if let Some(f) = flags.iter().find(|f| f.name == "security" && f.value.as_deref() != Some("sandbox")) {
                let msg =
                    "RUN --security=insecure is not supported: a step never gets more privileges than the sandbox";
                return Err(err(arg_col + f.column, msg.into()));
            }
            let cmd = if l.heredocs.is_empty() { command_form(args) } else { heredoc_run(args, &l.heredocs) };
            Kind::Run { cmd, mounts, network: flag("network") }
        }
        "CMD" => Kind::Cmd(command_form(args)),
        "ENTRYPOINT" => Kind::Entrypoint(command_form(args)),
        "COPY" | "ADD" => {
            let mut copy = parse_copy(&keyword, args, escape, flag("chown"), flag("chmod"), &err, arg_col)?;
            if let Kind::Copy { from, sources, inline, add, exclude, parents, link, .. } = &mut copy {
                if keyword == "ADD" {
                    *add = Some(add_flags(&flags));
                }
                *from = flag("from");
                if let Some(raw) = from.as_deref() {
                    let none = |_: &str| None;
                    if crate::frontend::words::process_word(raw, &none, escape).ok().as_deref() != Some(raw) {
                        let msg = "variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround";
                        return Err(err(arg_col, msg.into()));
                    }
                }
                *exclude = flags.iter().filter(|f| f.name == "exclude").filter_map(|f| f.value.clone()).collect();
                *parents = flags.iter().any(|f| f.name == "parents" && is_true(f));
                *link = flags.iter().any(|f| f.name == "link" && is_true(f));
                take_heredoc_sources(sources, inline, &l.heredocs);
            }
            copy
        }
        "ENV" => Kind::Env(parse_pairs(args, escape, "ENV", &err, arg_col)?),
        "LABEL" => Kind::Label(parse_pairs(args, escape, "LABEL", &err, arg_col)?),
        "ARG" => {
            need_args(1, "at least one argument")?;
            Kind::Arg(split_raw(args, escape).into_iter().map(split_arg).collect())
        }
        "WORKDIR" => {
            need_args(1, "exactly one argument")?;
            Kind::Workdir(args.to_string())
        }
        "USER" => {
            need_args(1, "exactly one argument")?;
            Kind::User(args.to_string())
        }
        "EXPOSE" => {
            need_args(1, "at least one argument")?;
            Kind::Expose(args.to_string())
        }
        "VOLUME" => {
            need_args(1, "at least one argument")?;
            Kind::Volume(command_form(args))
        }
        "STOPSIGNAL" => {
            need_args(1, "exactly one argument")?;
            Kind::StopSignal(args.to_string())
        }
        "SHELL" => Kind::Shell(
            parse_json_list(args)
                .ok_or_else(|| err(arg_col, "SHELL requires the arguments to be in JSON form".into()))?,
        ),
        "MAINTAINER" => {
            need_args(1, "exactly one argument")?;
            Kind::Maintainer(args.to_string())
        }
        "ONBUILD" => parse_onbuild(args, &l.heredocs, &err, arg_col)?,
        "HEALTHCHECK" => parse_healthcheck(args, &flags, &err, arg_col)?,
        _ => unreachable!("keyword list is exhaustive"),
    };
    let (check, empty_continuation) = (l.check.clone(), l.empty_continuation);
    Ok(Instruction { line: l.line, text: l.text.clone(), first: l.first.clone(), kind, check, empty_continuation })
}

/// Whether a `--mount` value's `from=` holds a variable: BuildKit refuses
/// one before expanding anything (a `$` at the very end is a literal).
fn mount_from_has_variable(spec: Option<&str>) -> bool {
    let fields = spec.unwrap_or("").split(',').filter_map(|f| f.split_once('='));
    fields.into_iter().any(|(k, v)| k.eq_ignore_ascii_case("from") && v.find('$').is_some_and(|i| i != v.len() - 1))
}

/// RUN with here-documents: a lone `<<EOF` runs the body as a script (a
/// `#!` body is written to a file and executed); otherwise the shell gets
/// the command and the here-documents as written.
fn heredoc_run(args: &str, docs: &[super::lexer::Heredoc]) -> CommandForm {
    if !docs.is_empty() && super::heredoc::marker(args.trim()).is_some() {
        let body = &docs[0].body;
        if body.starts_with("#!") {
            return CommandForm::Shell(format!(
                "f=$(mktemp) && cat > \"$f\" <<'KILN_HEREDOC_EOF'\n{body}KILN_HEREDOC_EOF\nchmod +x \"$f\" && \"$f\"; rc=$?; rm -f \"$f\"; exit $rc"
            ));
        }
        return CommandForm::Shell(body.clone());
    }
    let raw: String = docs.iter().map(|d| d.raw.as_str()).collect();
    CommandForm::Shell(format!("{args}\n{raw}"))
}

/// Moves `<<NAME` words out of COPY's sources into inline files.
fn take_heredoc_sources(
    sources: &mut Vec<String>,
    inline: &mut Vec<(String, String, bool)>,
    docs: &[super::lexer::Heredoc],
) {
    sources.retain(|w| {
        let Some(marker) = super::heredoc::marker(w) else { return true };
        let body = docs.iter().find(|d| d.name == marker.name).map(|d| d.body.clone()).unwrap_or_default();
        inline.push((marker.name, body, marker.expand));
        false
    });
}

type ErrFn<'a> = dyn Fn(usize, String) -> Diagnostic + 'a;

fn parse_from(args: &str, platform: Option<String>, err: &ErrFn, col: usize) -> Result<Kind, Diagnostic> {
    let words: Vec<&str> = args.split_whitespace().collect();
    match words.as_slice() {
        [image] => Ok(Kind::From { image: image.to_string(), alias: None, platform }),
        [image, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => {
            let name = name.to_ascii_lowercase();
            let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
                && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
            if !valid {
                return Err(err(
                    col,
                    format!(
                        "invalid name for build stage: {name:?}, name can't start with a number or contain symbols"
                    ),
                ));
            }
            Ok(Kind::From { image: image.to_string(), alias: Some(name), platform })
        }
        _ => Err(err(col, "FROM requires either one or three arguments".into())),
    }
}

/// ADD's `--checksum`, `--unpack` and `--keep-git-dir`.
fn add_flags(flags: &[Flag]) -> AddFlags {
    let mut out = AddFlags::default();
    for f in flags {
        match f.name.as_str() {
            "checksum" => out.checksum = Some(f.value.clone().unwrap_or_default()),
            "unpack" => out.unpack = Some(is_true(f)),
            "keep-git-dir" => out.keep_git_dir = is_true(f),
            _ => {}
        }
    }
    out
}

fn parse_copy(
    keyword: &str,
    args: &str,
    escape: char,
    chown: Option<String>,
    chmod: Option<String>,
    err: &ErrFn,
    col: usize,
) -> Result<Kind, Diagnostic> {
    let mut words = match parse_json_list(args) {
        Some(v) => v,
        None => split_raw(args, escape),
    };
    if words.len() < 2 {
        return Err(err(
            col,
            format!("{keyword} requires at least two arguments, but only one was provided. Destination could not be determined"),
        ));
    }
    let dest = words.pop().expect("two or more words");
    if super::heredoc::marker(&dest).is_some() {
        return Err(err(col, format!("{keyword} cannot accept a heredoc as a destination")));
    }
    Ok(Kind::Copy {
        sources: words,
        dest,
        chown,
        chmod,
        from: None,
        inline: Vec::new(),
        add: None,
        exclude: Vec::new(),
        parents: false,
        link: false,
    })
}

fn split_arg(word: String) -> (String, Option<String>) {
    match word.split_once('=') {
        Some((k, v)) => (k.to_string(), Some(v.to_string())),
        None => (word, None),
    }
}

/// `KEY=VALUE …`, or the legacy `KEY VALUE…` form (one pair, the rest of
/// the line is the value).
fn parse_pairs(
    args: &str,
    escape: char,
    what: &str,
    err: &ErrFn,
    col: usize,
) -> Result<Vec<(String, String)>, Diagnostic> {
    let words = split_raw(args, escape);
    let Some(first) = words.first() else {
        return Err(err(col, format!("{what} requires at least one argument")));
    };
    if !first.contains('=') {
        let key = first.clone();
        let value = args.trim_start()[key.len()..].trim().to_string();
        if value.is_empty() {
            return Err(err(col, format!("{what} names can not be blank")));
        }
        return Ok(vec![(key, value)]);
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some(("", _)) => Err(err(col, format!("{what} names can not be blank"))),
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => Err(err(col, format!("Syntax error - can't find = in {w:?}. Must be of the form: name=value"))),
        })
        .collect()
}

/// An ONBUILD trigger, kept as BuildKit keeps it: the instruction, then each
/// here-document's lines and its delimiter, so the child reads it whole.
fn parse_onbuild(args: &str, docs: &[super::lexer::Heredoc], err: &ErrFn, col: usize) -> Result<Kind, Diagnostic> {
    let first = args.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
    match first.as_str() {
        "" => Err(err(col, "ONBUILD requires at least one argument".into())),
        "ONBUILD" => Err(err(col, "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into())),
        "FROM" | "MAINTAINER" => Err(err(col, format!("{first} isn't allowed as an ONBUILD trigger"))),
        _ => {
            let mut text = args.to_string();
            for doc in docs {
                let lines = doc.raw.strip_suffix('\n').unwrap_or(&doc.raw);
                let content = lines.rsplit_once('\n').map_or("", |(c, _)| c);
                text.push('\n');
                if !content.is_empty() {
                    text.push_str(content);
                    text.push('\n');
                }
                text.push_str(&doc.name);
            }
            Ok(Kind::Onbuild(text))
        }
    }
}

fn parse_healthcheck(args: &str, flags: &[Flag], err: &ErrFn, col: usize) -> Result<Kind, Diagnostic> {
    let pairs = flags.iter().map(|f| (f.name.clone(), f.value.clone().unwrap_or_default())).collect();
    let (word, rest) = match args.find(char::is_whitespace) {
        Some(i) => (&args[..i], args[i..].trim()),
        None => (args, ""),
    };
    match word.to_ascii_uppercase().as_str() {
        "" => Err(err(col, "HEALTHCHECK requires at least one argument".into())),
        "NONE" if rest.is_empty() && flags.is_empty() => Ok(Kind::Healthcheck { flags: pairs, cmd: None }),
        "NONE" => Err(err(col, "HEALTHCHECK NONE takes no arguments".into())),
        "CMD" if !rest.is_empty() => Ok(Kind::Healthcheck { flags: pairs, cmd: Some(command_form(rest)) }),
        "CMD" => Err(err(col, "Missing command after HEALTHCHECK CMD".into())),
        other => Err(err(col, format!("Unknown type {other:?} in HEALTHCHECK (try CMD)"))),
    }
}
