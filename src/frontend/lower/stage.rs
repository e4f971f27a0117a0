//! Lowering one stage: layer-producing instructions (RUN, COPY, WORKDIR)
//! become graph nodes; the rest update the image config (see `config.rs`).

use super::{history, BaseResolver, BuildOptions, Platform};
use crate::frontend::diag::Diagnostic;
use crate::frontend::instructions::{CommandForm, Instruction, Kind};
use crate::frontend::paths::join_path;
use crate::frontend::words::{expand_heredoc, process_word};
use crate::graph::{
    Definition, ExecOp, FileAction, FileOp, ImageConfig, InlineFile, NetworkMode, NodeId, Op, RunMount, SecretMount,
    SourceLoc, SourceOp,
};
use std::collections::{BTreeMap, HashMap};

#[path = "config.rs"]
mod config;
#[path = "copy.rs"]
mod copy;
#[path = "expose.rs"]
mod expose;
#[path = "mountkeys.rs"]
mod mountkeys;
#[path = "runmount.rs"]
mod runmount;

use super::budget::{Budget, BudgetSpent};
use super::copyfrom::FromError;
use copy::{copy_actions, ExpandedCopy};
use runmount::ParsedMount;

/// The PATH BuildKit writes when the base image has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub use crate::graph::HistoryStep;

/// The state of a stage while lowering.
#[derive(Debug, Clone)]
pub struct StageState {
    /// Current last node (`None` while the stage has no layers).
    pub node: Option<NodeId>,
    /// Image config so far.
    pub config: ImageConfig,
    /// History so far.
    pub history: Vec<HistoryStep>,
    /// ARGs declared in this stage (value `None` = declared, unset).
    pub args: BTreeMap<String, Option<String>>,
    /// CMD was set in this stage (ENTRYPOINT keeps it then).
    pub cmd_set: bool,
    /// The platform its steps run for.
    pub platform: Platform,
    /// Where each variable of `config.config.env` sits, so that lookups
    /// and updates do not scan the list.
    env_index: HashMap<String, usize>,
}

/// Each key's first position in an environment list.
fn index_env(env: &[String]) -> HashMap<String, usize> {
    let mut index = HashMap::with_capacity(env.len());
    for (i, entry) in env.iter().enumerate() {
        let key = entry.split_once('=').map_or(entry.as_str(), |(k, _)| k);
        index.entry(key.to_string()).or_insert(i);
    }
    index
}

/// A stage's `FROM <image>` line.
pub struct FromImage<'a> {
    /// The instruction.
    pub instr: &'a Instruction,
    /// The image, expanded.
    pub image: &'a str,
    /// The stage's platform.
    pub platform: &'a Platform,
}

/// Per-stage lowering context.
pub struct Ctx<'a> {
    /// UndefinedVar findings, collected as words are expanded.
    pub undefined: &'a std::cell::RefCell<Vec<crate::frontend::lint::Warning>>,
    /// Build options.
    pub opts: &'a BuildOptions,
    /// Escape character.
    pub escape: char,
    /// Stage name for logs.
    pub name: &'a str,
    /// Numbered steps of the stage (see [`numbered_steps`]).
    pub steps: usize,
    /// Whether the FROM is step 1 (a registry image, not scratch or a stage).
    pub from_counts: bool,
    /// How many instructions at the start of the body are ONBUILD triggers.
    pub triggers: usize,
    /// Global ARG values.
    pub meta: &'a BTreeMap<String, String>,
    /// This stage's index.
    pub index: usize,
    /// Every stage's name.
    pub aliases: &'a super::copyfrom::StageNames,
    /// The final node of each earlier stage that was built.
    pub stage_nodes: &'a [Option<NodeId>],
    /// Resolved images (for `COPY --from=<image>`).
    pub resolver: &'a dyn BaseResolver,
    /// What lowering may still produce.
    pub budget: &'a Budget,
    /// Which frontend release's behaviour to follow.
    pub version: crate::frontend::version::FrontendVersion,
}

impl Ctx<'_> {
    /// Expands `w` with the stage's variables, charging the result.
    /// A variable neither set nor declared is BuildKit's UndefinedVar
    /// (not for ARG, whose default may name what is not there yet).
    pub fn expand(&self, w: &str, st: &StageState, instr: &Instruction) -> Result<String, Diagnostic> {
        let err = |msg: String| Diagnostic::new(instr.line, 1, msg, &instr.first);
        let missing = std::cell::RefCell::new(Vec::<String>::new());
        let lookup = |n: &str| {
            let value = st.lookup(n);
            if value.is_none() && !st.args.contains_key(n) {
                missing.borrow_mut().push(n.to_string());
            }
            value
        };
        let out = process_word(w, &lookup, self.escape).map_err(|e| err(e.to_string()))?;
        if !matches!(instr.kind, Kind::Arg(_)) {
            for name in missing.into_inner() {
                self.undefined.borrow_mut().push(undefined_var(st, &name, instr.line));
            }
        }
        self.budget.charge_str(&out).map_err(|e| err(e.to_string()))?;
        Ok(out)
    }
}

/// UndefinedVar for `name`, with the closest variable in scope as a hint.
fn undefined_var(st: &StageState, name: &str, line: usize) -> crate::frontend::lint::Warning {
    let env = st.config.config.env.iter().flatten().filter_map(|e| e.split_once('=').map(|(k, _)| k));
    let names: Vec<&str> = env.chain(st.args.keys().map(String::as_str)).collect();
    let hint =
        crate::frontend::diag::closest(name, names).map(|c| format!(" (did you mean ${c}?)")).unwrap_or_default();
    crate::frontend::lint::Warning {
        rule: "UndefinedVar",
        line,
        message: format!("Usage of undefined variable '${name}'{hint}"),
    }
}

impl StageState {
    /// Starts a stage from a registry image or `scratch`.
    pub fn from_image(
        def: &mut Definition,
        from_image: &FromImage,
        steps: usize,
        stage: &str,
        resolver: &dyn BaseResolver,
        budget: &Budget,
    ) -> Result<Self, Diagnostic> {
        let FromImage { instr: from, image, platform } = *from_image;
        let mut state = StageState {
            node: None,
            config: ImageConfig::default(),
            history: Vec::new(),
            args: BTreeMap::new(),
            cmd_set: false,
            platform: platform.clone(),
            env_index: HashMap::new(),
        };
        state.config.os = platform.os.clone();
        state.config.architecture = platform.architecture.clone();
        state.config.variant = platform.variant.clone();
        let loc = SourceLoc { line: from.line, text: from.text.clone(), stage: stage.into(), step: 1, steps };
        if image.eq_ignore_ascii_case("scratch") {
            // No step in the log, as in BuildKit: there is nothing to pull.
            state.node = Some(def.push(Op::Scratch, vec![], None));
        } else {
            let resolved = resolver.resolve(image, platform).ok_or_else(|| {
                Diagnostic::new(from.line, 1, format!("base image {image} was not resolved"), &from.first)
            })?;
            let op = Op::Source(SourceOp { reference: resolved.reference.clone(), digest: resolved.digest.clone() });
            state.node = Some(def.push(op, vec![], Some(loc)));
            let charge = |e: String| Diagnostic::new(from.line, 1, e, &from.first);
            budget.charge(config_size(&resolved.config)).map_err(|e| charge(e.to_string()))?;
            state.config = resolved.config.clone();
            state.history = std::mem::take(&mut state.config.history)
                .into_iter()
                .map(|entry| HistoryStep { entry, node: None, from_base: true })
                .collect();
            state.config.rootfs = Default::default();
        }
        state.env_index = index_env(state.config.config.env.as_deref().unwrap_or_default());
        if state.env("PATH").is_none() {
            state.set_env("PATH", DEFAULT_PATH);
        }
        Ok(state)
    }

    /// An environment variable of the stage's config.
    pub fn env(&self, name: &str) -> Option<&str> {
        let entry = &self.config.config.env.as_ref()?[*self.env_index.get(name)?];
        entry.split_once('=').map(|(_, v)| v)
    }

    /// Sets (replacing) an environment variable, keeping first-set order.
    pub fn set_env(&mut self, key: &str, value: &str) {
        let env = self.config.config.env.get_or_insert_with(Vec::new);
        let entry = format!("{key}={value}");
        match self.env_index.get(key) {
            Some(&i) => env[i] = entry,
            None => {
                self.env_index.insert(key.to_string(), env.len());
                env.push(entry);
            }
        }
    }

    /// The variables visible to expansion: ENV wins over ARG.
    pub fn lookup(&self, name: &str) -> Option<String> {
        if let Some(v) = self.env(name) {
            return Some(v.to_string());
        }
        self.args.get(name).cloned().flatten()
    }

    /// Roughly the bytes a copy of this state takes (for the budget).
    pub fn size(&self) -> usize {
        let history: usize = self.history.iter().map(|h| h.entry.created_by.as_ref().map_or(0, String::len) + 64).sum();
        config_size(&self.config) + history
    }

    fn workdir(&self) -> String {
        self.config.config.working_dir.clone().filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into())
    }

    fn push_layer(&mut self, def: &mut Definition, op: Op, loc: SourceLoc, created_by: String) {
        self.push_layer_with(def, op, Vec::new(), loc, created_by);
    }

    /// Pushes a layer node whose inputs are the parent plus `sources`.
    fn push_layer_with(
        &mut self,
        def: &mut Definition,
        op: Op,
        sources: Vec<NodeId>,
        loc: SourceLoc,
        created_by: String,
    ) {
        let inputs = self.node.into_iter().chain(sources).collect();
        let node = def.push(op, inputs, Some(loc));
        self.node = Some(node);
        self.history.push(HistoryStep { entry: history(created_by, false), node: Some(node), from_base: false });
    }

    fn push_meta(&mut self, created_by: String) {
        self.history.push(HistoryStep { entry: history(created_by, true), node: None, from_base: false });
    }
}

/// Roughly the bytes of an image config's lists and maps (for the budget).
fn config_size(config: &ImageConfig) -> usize {
    let c = &config.config;
    let list = |l: &Option<Vec<String>>| l.iter().flatten().map(|s| s.len() + 32).sum::<usize>();
    let labels: usize = c.labels.iter().flatten().map(|(k, v)| k.len() + v.len() + 64).sum();
    let history: usize = config.history.iter().map(|h| h.created_by.as_ref().map_or(0, String::len) + 64).sum();
    list(&c.env) + list(&c.on_build) + labels + history
}

/// Whether an instruction is a numbered step in the log (`[stage i/n]`):
/// BuildKit numbers RUN, COPY, ADD and WORKDIR, and the FROM of an image.
pub fn is_numbered(kind: &Kind) -> bool {
    matches!(kind, Kind::Run { .. } | Kind::Copy { .. } | Kind::Workdir(_))
}

/// A stage's step count as BuildKit counts it: the FROM of a registry
/// image, every ONBUILD trigger, and the numbered instructions of the body.
pub fn numbered_steps(from_counts: bool, triggers: usize, body: &[Instruction]) -> usize {
    usize::from(from_counts) + triggers + body.iter().filter(|i| is_numbered(&i.kind)).count()
}

/// Lowers a stage's instructions (after its FROM).
pub fn lower_stage(
    def: &mut Definition,
    mut st: StageState,
    body: &[Instruction],
    ctx: &Ctx,
) -> Result<StageState, Diagnostic> {
    st.cmd_set = false;
    let mut step = usize::from(ctx.from_counts);
    for (i, instr) in body.iter().enumerate() {
        step += usize::from(is_numbered(&instr.kind));
        let text = if i < ctx.triggers { format!("ONBUILD {}", instr.text) } else { instr.text.clone() };
        let loc = SourceLoc { line: instr.line, text, stage: ctx.name.into(), step, steps: ctx.steps };
        let err = |msg: String| Diagnostic::new(instr.line, 1, msg, &instr.first);
        let word = |w: &str, st: &StageState| ctx.expand(w, st, instr);
        match &instr.kind {
            Kind::Run { cmd, mounts, network } => {
                let mut extras = RunExtras::default();
                for m in mounts {
                    match runmount::parse(&word(m, &st)?, &st.workdir()).map_err(|e| err(e.to_string()))? {
                        ParsedMount::Secret(s) => extras.secrets.push(s),
                        ParsedMount::Other(RunMount::Bind { target, source, readwrite, .. }, Some(from)) => {
                            extras
                                .inputs
                                .push(copy_source(def, &word(&from, &st)?, ctx, &loc).map_err(|e| err(e.to_string()))?);
                            let from_input = Some(extras.inputs.len());
                            extras.mounts.push(RunMount::Bind { target, source, from_input, readwrite });
                        }
                        ParsedMount::Other(m, _) => extras.mounts.push(m),
                    }
                }
                extras.network = match network.as_deref().map(|n| word(n, &st)).transpose()?.as_deref() {
                    None | Some("default") => NetworkMode::Default,
                    Some("none") => NetworkMode::None,
                    Some("host") => NetworkMode::Host,
                    Some(other) => {
                        return Err(err(format!("invalid RUN --network={other}: expected default, none or host")))
                    }
                };
                extras.hostname = sandbox_hostname(&ctx.opts.build_args).map_err(err)?;
                let proxies = proxy_env(&st, &ctx.opts.build_args);
                lower_run(def, &mut st, cmd, extras, proxies, loc, ctx.budget).map_err(|e| err(e.to_string()))?;
            }
            Kind::Copy { sources, dest, chown, chmod, from, inline, add, exclude, parents, link } => {
                let exclude = exclude.iter().map(|e| word(e, &st)).collect::<Result<Vec<_>, _>>()?;
                let inline = inline
                    .iter()
                    .map(|(name, body, expand)| {
                        let content = if *expand {
                            expand_heredoc(body, &|n: &str| st.lookup(n)).map_err(|e| err(e.to_string()))?
                        } else {
                            body.clone()
                        };
                        ctx.budget.charge_str(&content).map_err(|e| err(e.to_string()))?;
                        Ok(InlineFile { name: name.clone(), content })
                    })
                    .collect::<Result<Vec<_>, Diagnostic>>()?;
                let from_node = match from {
                    Some(raw) => Some(copy_source(def, &word(raw, &st)?, ctx, &loc).map_err(|e| err(e.to_string()))?),
                    None => None,
                };
                let sources = sources.iter().map(|s| word(s, &st)).collect::<Result<Vec<_>, _>>()?;
                let dest_as_written = word(dest, &st)?;
                let dest = absolute_dest(&dest_as_written, &st.workdir());
                let chown = chown.as_deref().map(|c| word(c, &st)).transpose()?;
                let chmod_text = chmod.as_deref().map(|m| word(m, &st)).transpose()?;
                let chmod =
                    chmod_text.as_deref().map(|m| parse_chmod(m).map_err(|e| err(e.to_string()))).transpose()?;
                let keyword = if add.is_some() { "ADD" } else { "COPY" };
                let flags = CopyFlags { parents: *parents, chown: chown.as_deref(), chmod: chmod_text.as_deref() };
                let created_by = copy_history(keyword, &flags, &sources, &inline, &dest_as_written);
                let mut add = add.clone();
                if let Some(a) = &mut add {
                    a.checksum = a.checksum.as_deref().map(|c| word(c, &st)).transpose()?;
                }
                let expanded =
                    ExpandedCopy { sources, dest, chown, chmod, from_node, inline, add, exclude, parents: *parents };
                let (actions, inputs) = copy_actions(def, expanded, &loc).map_err(|e| err(e.to_string()))?;
                // BuildKit links only without --chmod.
                let link = *link && chmod_text.is_none();
                st.push_layer_with(def, Op::File(FileOp { actions, link }), inputs, loc, created_by);
            }
            Kind::Workdir(path) => {
                let path = join_path(&st.workdir(), &word(path, &st)?);
                st.config.config.working_dir = Some(path.clone());
                if path == "/" {
                    st.push_meta(format!("WORKDIR {path}"));
                } else {
                    let owner = st.config.config.user.clone().unwrap_or_default();
                    let mkdir = vec![FileAction::Mkdir { path: path.clone(), owner }];
                    let op = Op::File(FileOp { actions: mkdir, link: false });
                    st.push_layer(def, op, loc, format!("WORKDIR {path}"));
                }
            }
            Kind::Arg(args) => {
                let mut entry = Vec::new();
                for (name, default) in args {
                    let value = match (ctx.opts.build_args.get(name), default) {
                        (Some(v), _) => Some(v.clone()),
                        (None, Some(d)) => Some(word(d, &st)?),
                        (None, None) => ctx.meta.get(name).cloned(),
                    };
                    entry.push(value.as_ref().map_or_else(|| name.clone(), |v| format!("{name}={v}")));
                    st.args.insert(name.clone(), value);
                }
                // BuildKit records every ARG, with the value it took.
                let created_by = format!("ARG {}", entry.join(" "));
                ctx.budget.charge_str(&created_by).map_err(|e| err(e.to_string()))?;
                st.push_meta(created_by);
            }
            _ => config::apply(&mut st, instr, ctx)?,
        }
    }
    Ok(st)
}

/// The proxy variables BuildKit passes to every RUN from build args of the
/// same name in any case, kept out of history and cache keys.
const PROXY_KINDS: [&str; 5] = ["http_proxy", "https_proxy", "ftp_proxy", "no_proxy", "all_proxy"];

/// The proxy environment of a RUN, as BuildKit builds it: for each kind,
/// the build arg matching its name in any case (the last in sorted order
/// wins), set under both the upper- and lower-case name; an empty value
/// sets nothing. A name the stage declares with ARG is its own.
fn proxy_env(st: &StageState, build_args: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for kind in PROXY_KINDS {
        let value = build_args.iter().filter(|(k, _)| k.eq_ignore_ascii_case(kind)).map(|(_, v)| v).next_back();
        let Some(value) = value.filter(|v| !v.is_empty()) else { continue };
        for name in [kind.to_ascii_uppercase(), kind.to_string()] {
            if !st.args.contains_key(&name) {
                out.push(format!("{name}={value}"));
            }
        }
    }
    out
}

/// The build arg BuildKit reads as the RUN steps' hostname.
const HOSTNAME_ARG: &str = "BUILDKIT_SANDBOX_HOSTNAME";

/// The RUN steps' hostname from [`HOSTNAME_ARG`] (`None`: the default);
/// one label-like name of at most 64 bytes, as `sethostname` takes.
fn sandbox_hostname(build_args: &BTreeMap<String, String>) -> Result<Option<String>, String> {
    let Some(name) = build_args.get(HOSTNAME_ARG).filter(|n| !n.is_empty()) else { return Ok(None) };
    let valid = name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
    if !valid {
        return Err(format!("{HOSTNAME_ARG}={name:?}: a hostname is at most 64 letters, digits, '-', '.' or '_'"));
    }
    Ok(Some(name.clone()))
}

/// What a RUN gets besides its command.
#[derive(Default)]
struct RunExtras {
    secrets: Vec<SecretMount>,
    mounts: Vec<RunMount>,
    network: NetworkMode,
    hostname: Option<String>,
    /// Stages and images bind mounts read, in `from_input` order.
    inputs: Vec<NodeId>,
}

fn lower_run(
    def: &mut Definition,
    st: &mut StageState,
    cmd: &CommandForm,
    extras: RunExtras,
    proxy_env: Vec<String>,
    loc: SourceLoc,
    budget: &Budget,
) -> Result<(), BudgetSpent> {
    let args = match cmd {
        CommandForm::Exec(v) => v.clone(),
        CommandForm::Shell(s) => config::shell(&st.config).into_iter().chain([s.clone()]).collect(),
    };
    let arg_env: Vec<String> = st
        .args
        .iter()
        .filter(|(k, _)| st.env(k).is_none())
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
        .collect();
    budget.charge_all(st.config.config.env.iter().flatten().chain(&arg_env).chain(&args))?;
    let mut env = st.config.config.env.clone().unwrap_or_default();
    env.extend(arg_env.iter().cloned());
    let prefix = if arg_env.is_empty() { String::new() } else { format!("|{} {} ", arg_env.len(), arg_env.join(" ")) };
    let created_by = format!("RUN {prefix}{} # buildkit", args.join(" "));
    budget.charge_str(&created_by)?;
    let user = st.config.config.user.clone().unwrap_or_default();
    let RunExtras { secrets, mounts, network, hostname, inputs } = extras;
    let platform = st.platform.clone();
    let exec = ExecOp { args, env, cwd: st.workdir(), user, secrets, proxy_env, mounts, network, hostname, platform };
    st.push_layer_with(def, Op::Exec(exec), inputs, loc, created_by);
    Ok(())
}

/// The node a `COPY --from` reads: an earlier stage's last node, or a new
/// Source node for an image.
fn copy_source(def: &mut Definition, value: &str, ctx: &Ctx, loc: &SourceLoc) -> Result<NodeId, FromError> {
    match super::copyfrom::classify(value, ctx.aliases)? {
        // Stages are built in order, so a later one is not there yet (as
        // in BuildKit, an error only in a stage the build runs).
        super::copyfrom::FromRef::Stage(j) if j >= ctx.index => {
            let current = if ctx.name.is_empty() { format!("stage-{}", ctx.index) } else { ctx.name.to_string() };
            Err(FromError::NotBefore(value.to_string(), current))
        }
        super::copyfrom::FromRef::Stage(j) => {
            ctx.stage_nodes.get(j).copied().flatten().ok_or_else(|| FromError::NotBuilt(value.to_string()))
        }
        super::copyfrom::FromRef::Image(image) => {
            let r = ctx
                .resolver
                .resolve(&image, &ctx.opts.platform)
                .ok_or_else(|| FromError::NotResolved(image.clone()))?;
            let op = Op::Source(SourceOp { reference: r.reference.clone(), digest: r.digest.clone() });
            Ok(def.push(op, vec![], Some(loc.clone())))
        }
    }
}

/// The flags BuildKit writes into a COPY's history entry.
struct CopyFlags<'a> {
    parents: bool,
    chown: Option<&'a str>,
    chmod: Option<&'a str>,
}

/// `COPY [--parents] [--chown=…] [--chmod=…] <sources> <<heredocs> <dest> #
/// buildkit`, as BuildKit writes it (`--from` is not part of it).
fn copy_history(
    keyword: &str,
    flags: &CopyFlags,
    sources: &[String],
    inline: &[crate::graph::InlineFile],
    dest: &str,
) -> String {
    let mut out = keyword.to_string();
    if flags.parents {
        out.push_str(" --parents");
    }
    if let Some(chown) = flags.chown {
        out.push_str(&format!(" --chown={chown}"));
    }
    if let Some(chmod) = flags.chmod {
        out.push_str(&format!(" --chmod={chmod}"));
    }
    for source in sources {
        out.push_str(&format!(" {source}"));
    }
    for file in inline {
        out.push_str(&format!(" <<{}", file.name));
    }
    format!("{out} {dest} # buildkit")
}

fn parse_chmod(s: &str) -> Result<crate::chmod::Chmod, crate::chmod::ChmodError> {
    crate::chmod::Chmod::parse(s)
}

/// An absolute COPY destination; `""`, `.` and a trailing `/` are kept as
/// "into this directory" (BuildKit: `""` is the working directory).
fn absolute_dest(dest: &str, workdir: &str) -> String {
    let into_dir = dest.is_empty() || dest.ends_with('/') || dest == "." || dest.ends_with("/.");
    let joined = join_path(workdir, dest);
    if into_dir && joined != "/" {
        format!("{joined}/")
    } else {
        joined
    }
}
