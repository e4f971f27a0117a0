//! Lowering: instructions → [`Definition`] + image config + history, with
//! BuildKit's variable scoping (global ARGs only in FROM, per-stage ARG
//! redeclaration, ENV over ARG, expansion with the values from before the
//! instruction) and only the stages the target reaches.

mod budget;
mod copyfrom;
mod epoch;
mod meta;
mod stage;

pub use budget::MAX_LOWERED_BYTES;
use budget::{Budget, BudgetSpent};

use super::diag::Diagnostic;
use super::instructions::{Instruction, Kind};
use super::words::process_word;
use super::Dockerfile;
use crate::graph::{Definition, History, ImageConfig, NodeId};
use kiln_snapshotter::Digest;
use std::collections::{BTreeMap, HashMap};

pub use crate::platform::Platform;

pub use epoch::{source_date_epoch, with_resolved_epoch, EpochError, EpochSource, SOURCE_DATE_EPOCH};
pub use stage::HistoryStep;

/// What the build was asked for.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// `buildArgs` (an empty value is a set value).
    pub build_args: BTreeMap<String, String>,
    /// Stage to build (default: the last one).
    pub target: Option<String>,
    /// Target platform.
    pub platform: Platform,
}

/// A base image as the registry resolved it.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// Normalised reference.
    pub reference: String,
    /// Manifest digest.
    pub digest: Digest,
    /// Its config.
    pub config: ImageConfig,
}

/// Supplies resolved base images to the lowering.
pub trait BaseResolver {
    /// The image for `reference` as written (after expansion) on `platform`.
    fn resolve(&self, reference: &str, platform: &Platform) -> Option<&ResolvedImage>;
}

/// Resolved images by reference as written and platform.
pub type ResolvedImages = HashMap<(String, Platform), ResolvedImage>;

impl BaseResolver for ResolvedImages {
    fn resolve(&self, reference: &str, platform: &Platform) -> Option<&ResolvedImage> {
        self.get(&(reference.to_string(), platform.clone()))
    }
}

/// The result of lowering.
#[derive(Debug, Clone)]
pub struct Lowered {
    /// The graph.
    pub definition: Definition,
    /// The target's last node (`None` for a layer-less `FROM scratch`).
    pub root: Option<NodeId>,
    /// The target's image config (rootfs and history are filled at export).
    pub config: ImageConfig,
    /// The target's history, base entries first.
    pub history: Vec<HistoryStep>,
    /// Checks that need the variables in scope (UndefinedVar), for the
    /// stages built, in line order.
    pub warnings: Vec<crate::frontend::lint::Warning>,
}

/// One stage's slice of the instruction list.
struct StagePlan<'a> {
    from: &'a Instruction,
    image: String,
    alias: Option<String>,
    /// The platform its steps run for.
    platform: Platform,
    body: &'a [Instruction],
    /// Index of the stage it builds on, when `FROM <stage>`.
    parent: Option<usize>,
    /// What its `COPY --from` flags refer to, with the COPY's line.
    copy_from: Vec<(copyfrom::FromRef, &'a Instruction)>,
    /// What the `--from` flags of its base's ONBUILD triggers refer to
    /// (known once the base image is resolved), with the trigger.
    trigger_from: Vec<(copyfrom::FromRef, Instruction)>,
}

/// The stages up to the target, which of them the target reaches, and the
/// global ARG values.
struct Plan<'a> {
    /// The stages up to the target.
    stages: Vec<StagePlan<'a>>,
    reachable: Vec<bool>,
    meta: BTreeMap<String, String>,
    /// Every stage's name, also those after the target (a `--from` naming
    /// one is a stage, refused as not built yet, never an image).
    aliases: Vec<Option<String>>,
}

/// Plans the stages. `known` holds the base images resolved so far: their
/// ONBUILD triggers may make more stages reachable (as in BuildKit, trigger
/// dependencies count before unreachable stages are pruned).
fn plan<'a>(
    df: &'a Dockerfile,
    opts: &BuildOptions,
    budget: &Budget,
    known: &dyn BaseResolver,
) -> Result<Plan<'a>, Diagnostic> {
    let first_from = df.instructions.iter().position(|i| matches!(i.kind, Kind::From { .. })).expect("parse checked");
    let meta_vars = meta::global_args(&df.instructions, opts, df.escape, budget)?;
    let mut stages: Vec<StagePlan> = Vec::new();
    let mut by_alias: HashMap<String, usize> = HashMap::new();
    let mut idx = first_from;
    while idx < df.instructions.len() {
        let from = &df.instructions[idx];
        let end = df.instructions[idx + 1..]
            .iter()
            .position(|i| matches!(i.kind, Kind::From { .. }))
            .map_or(df.instructions.len(), |p| idx + 1 + p);
        let Kind::From { image, alias, platform } = &from.kind else { unreachable!("stage starts with FROM") };
        let lookup = |n: &str| meta_vars.get(n).cloned();
        let at_from = |e: String| Diagnostic::new(from.line, 1, e, &from.first);
        let image = process_word(image, &lookup, df.escape).map_err(|e| at_from(e.to_string()))?;
        budget.charge_str(&image).map_err(|e| at_from(e.to_string()))?;
        if image.is_empty() {
            return Err(Diagnostic::new(from.line, 1, "base name (FROM) should not be blank", &from.first));
        }
        let parent = by_alias.get(&image.to_ascii_lowercase()).copied();
        let platform = match (platform, parent) {
            (_, Some(p)) => stages[p].platform.clone(),
            (Some(p), None) => {
                let diag = |e: String| Diagnostic::new(from.line, 1, e, &from.first);
                let value = process_word(p, &lookup, df.escape).map_err(|e| diag(e.to_string()))?;
                Platform::parse(&value).map_err(|e| diag(format!("FROM --platform: {e}")))?
            }
            (None, None) => opts.platform.clone(),
        };
        // A repeated name is a lint warning (DuplicateStageName), not an
        // error: as in BuildKit, the name means its latest stage from here on.
        if let Some(a) = alias {
            by_alias.insert(a.clone(), stages.len());
        }
        stages.push(StagePlan {
            from,
            image,
            alias: alias.clone(),
            platform,
            body: &df.instructions[idx + 1..end],
            parent,
            copy_from: Vec::new(),
            trigger_from: Vec::new(),
        });
        idx = end;
    }
    resolve_copy_from(&mut stages, &meta_vars, df.escape, budget)?;
    refuse_cycles(&stages)?;
    let target = match &opts.target {
        None => stages.len() - 1,
        Some(t) => {
            let t = t.to_ascii_lowercase();
            stages.iter().rposition(|s| s.alias.as_deref() == Some(t.as_str())).ok_or_else(|| {
                let names: Vec<&str> = stages.iter().filter_map(|s| s.alias.as_deref()).collect();
                Diagnostic::new(1, 1, format!("target stage {t:?} could not be found"), "").suggest(&t, names)
            })?
        }
    };
    let mut reachable = vec![false; stages.len()];
    let mut todo = vec![target];
    let trigger_ctx = TriggerCtx { known, meta: &meta_vars, escape: df.escape, budget };
    while let Some(i) = todo.pop() {
        if std::mem::replace(&mut reachable[i], true) {
            continue;
        }
        stages[i].trigger_from = trigger_from(&stages, i, &trigger_ctx)?;
        let stage = &stages[i];
        let referenced = stage.copy_from.iter().map(|(r, _)| r).chain(stage.trigger_from.iter().map(|(r, _)| r));
        todo.extend(stage.parent);
        todo.extend(referenced.filter_map(|r| match r {
            copyfrom::FromRef::Stage(j) => Some(*j),
            copyfrom::FromRef::Image(_) => None,
        }));
    }
    let aliases = stages.iter().map(|s| s.alias.clone()).collect();
    stages.truncate(target + 1);
    reachable.truncate(target + 1);
    Ok(Plan { stages, reachable, meta: meta_vars, aliases })
}

/// A registry image the target needs, with the FROM line naming it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseImageRef {
    /// The image as written, after ARG expansion.
    pub image: String,
    /// The FROM instruction's line.
    pub line: usize,
    /// The FROM line as written.
    pub source_line: String,
    /// The platform to resolve it for.
    pub platform: Platform,
    /// For a `COPY --from` name that is close to a stage name: the hint
    /// that it may be a typo.
    pub hint: Option<String>,
}

/// Classifies every `COPY --from` and `RUN --mount=…,from=` (expanded with
/// the global ARGs).
fn resolve_copy_from(
    stages: &mut [StagePlan],
    meta: &BTreeMap<String, String>,
    escape: char,
    budget: &Budget,
) -> Result<(), Diagnostic> {
    let aliases = copyfrom::StageNames::new(stages.iter().map(|s| s.alias.clone()).collect());
    for stage in stages.iter_mut() {
        for instr in stage.body {
            let raws: Vec<&str> = match &instr.kind {
                Kind::Copy { from: Some(raw), .. } => vec![raw.as_str()],
                Kind::Run { mounts, .. } => mounts.iter().filter_map(|m| mount_from(m)).collect(),
                _ => continue,
            };
            let diag = |msg: String| Diagnostic::new(instr.line, 1, msg, &instr.first);
            for raw in raws {
                let value =
                    process_word(raw, &|n: &str| meta.get(n).cloned(), escape).map_err(|e| diag(e.to_string()))?;
                budget.charge_str(&value).map_err(|e| diag(e.to_string()))?;
                let r = copyfrom::classify(&value, &aliases).map_err(|e| diag(e.to_string()))?;
                stage.copy_from.push((r, instr));
            }
        }
    }
    Ok(())
}

/// BuildKit's check before building: no stage may reach itself through
/// `--from` (COPY or RUN mounts).
fn refuse_cycles(stages: &[StagePlan]) -> Result<(), Diagnostic> {
    let edges: Vec<Vec<usize>> = stages
        .iter()
        .map(|s| {
            s.copy_from
                .iter()
                .filter_map(|(r, _)| match r {
                    copyfrom::FromRef::Stage(j) => Some(*j),
                    copyfrom::FromRef::Image(_) => None,
                })
                .collect()
        })
        .collect();
    let Some(i) = copyfrom::find_cycle(&edges) else { return Ok(()) };
    let name = stages[i].alias.clone().unwrap_or_else(|| format!("stage-{i}"));
    let from = stages[i].from;
    Err(Diagnostic::new(from.line, 1, copyfrom::FromError::Circular(name).to_string(), &from.first))
}

/// What [`trigger_from`] reads triggers with.
struct TriggerCtx<'a> {
    known: &'a dyn BaseResolver,
    meta: &'a BTreeMap<String, String>,
    escape: char,
    budget: &'a Budget,
}

/// The stages and images the ONBUILD triggers of stage `i`'s base name in
/// `--from` flags: a base stage's ONBUILD instructions, or a resolved base
/// image's `OnBuild` list (an image not resolved yet has none so far).
fn trigger_from(
    stages: &[StagePlan],
    i: usize,
    ctx: &TriggerCtx,
) -> Result<Vec<(copyfrom::FromRef, Instruction)>, Diagnostic> {
    let s = &stages[i];
    let triggers: Vec<String> = match s.parent {
        Some(p) => stages[p]
            .body
            .iter()
            .filter_map(|instr| match &instr.kind {
                Kind::Onbuild(expr) => Some(expr.clone()),
                _ => None,
            })
            .collect(),
        None => {
            ctx.known.resolve(&s.image, &s.platform).and_then(|r| r.config.config.on_build.clone()).unwrap_or_default()
        }
    };
    let aliases = copyfrom::StageNames::new(stages.iter().map(|s| s.alias.clone()).collect());
    let mut out = Vec::new();
    for text in triggers {
        let instr = parse_trigger(s, &text, ctx.escape, ctx.budget)?;
        let raws: Vec<String> = match &instr.kind {
            Kind::Copy { from: Some(raw), .. } => vec![raw.clone()],
            Kind::Run { mounts, .. } => mounts.iter().filter_map(|m| mount_from(m)).map(str::to_string).collect(),
            _ => continue,
        };
        let diag = |msg: String| Diagnostic::new(instr.line, 1, msg, &instr.first);
        for raw in raws {
            let value =
                process_word(&raw, &|n: &str| ctx.meta.get(n).cloned(), ctx.escape).map_err(|e| diag(e.to_string()))?;
            let r = copyfrom::classify(&value, &aliases).map_err(|e| diag(e.to_string()))?;
            out.push((r, instr.clone()));
        }
    }
    Ok(out)
}

/// One ONBUILD trigger parsed as an instruction on the FROM line.
fn parse_trigger(s: &StagePlan, text: &str, escape: char, budget: &Budget) -> Result<Instruction, Diagnostic> {
    budget.charge(2 * text.len() + 256).map_err(|e| Diagnostic::new(s.from.line, 1, e.to_string(), &s.from.first))?;
    let at_from = |message: String| Diagnostic::new(s.from.line, 1, message, &s.from.first);
    let mut lines = super::lexer::lex_trigger(text, escape).map_err(|d| at_from(d.message))?;
    if lines.len() != 1 {
        return Err(at_from(format!("onbuild trigger should be a single expression: {text:?}")));
    }
    let mut line = lines.remove(0);
    line.line = s.from.line;
    line.first = format!("{}  # ONBUILD {}", s.from.first, line.text);
    super::instructions::parse_line(&line, escape)
}

/// The raw `from=` of a `--mount` value, if any.
fn mount_from(spec: &str) -> Option<&str> {
    spec.split(',')
        .find_map(|f| f.split_once('=').filter(|(k, _)| k.trim().eq_ignore_ascii_case("from")).map(|(_, v)| v))
}

/// The base's ONBUILD triggers, parsed as instructions on the FROM line;
/// they run first in the new stage (and are not inherited further).
fn onbuild_triggers(
    s: &StagePlan,
    built: &[Option<stage::StageState>],
    resolver: &dyn BaseResolver,
    escape: char,
    budget: &Budget,
) -> Result<Vec<Instruction>, Diagnostic> {
    let triggers = match s.parent {
        Some(p) => built[p].as_ref().and_then(|b| b.config.config.on_build.clone()),
        None => resolver.resolve(&s.image, &s.platform).and_then(|r| r.config.config.on_build.clone()),
    };
    triggers.unwrap_or_default().iter().map(|t| parse_trigger(s, t, escape, budget)).collect()
}

/// The registry images the target needs, given the base images `known` so
/// far (their ONBUILD triggers may need more): resolve what it names and
/// ask again until nothing new is named.
pub fn base_images(
    df: &Dockerfile,
    opts: &BuildOptions,
    known: &dyn BaseResolver,
) -> Result<Vec<BaseImageRef>, Diagnostic> {
    let Plan { stages, reachable, aliases, .. } = plan(df, opts, &Budget::default(), known)?;
    let aliases = copyfrom::StageNames::new(aliases);
    let mut out: Vec<BaseImageRef> = Vec::new();
    let mut seen: std::collections::HashSet<(&String, &Platform)> = Default::default();
    for (s, _) in stages.iter().zip(&reachable).filter(|(_, r)| **r) {
        let from_image =
            (s.parent.is_none() && !s.image.eq_ignore_ascii_case("scratch")).then_some((&s.image, s.from, &s.platform));
        // Images named by `COPY --from` are implicit stages for the target platform.
        let copies = s.copy_from.iter().map(|(r, i)| (r, *i)).chain(s.trigger_from.iter().map(|(r, i)| (r, i)));
        let copy_images = copies.filter_map(|(r, i)| match r {
            copyfrom::FromRef::Image(img) => Some((img, i, &opts.platform)),
            copyfrom::FromRef::Stage(_) => None,
        });
        for (image, instr, platform) in from_image.into_iter().chain(copy_images) {
            if seen.insert((image, platform)) {
                let hint = (out.len() < copyfrom::MAX_HINTED_IMAGES)
                    .then(|| copyfrom::stage_typo_hint(image, &aliases))
                    .flatten();
                out.push(BaseImageRef {
                    image: image.clone(),
                    line: instr.line,
                    source_line: instr.first.clone(),
                    platform: platform.clone(),
                    hint,
                });
            }
        }
    }
    Ok(out)
}

/// Most rounds of [`resolve_bases`]: each round resolves at least one new
/// image, and only a newly reachable stage's base can add one.
pub const MAX_BASE_ROUNDS: usize = 64;

/// Resolves every registry image the target needs with `resolve`, asking
/// [`base_images`] again after each round until the resolved images'
/// ONBUILD triggers name nothing new. Returns the images and the list of
/// what was asked for, in order.
pub fn resolve_bases<E: From<Diagnostic>>(
    df: &Dockerfile,
    opts: &BuildOptions,
    mut resolve: impl FnMut(&BaseImageRef) -> Result<ResolvedImage, E>,
) -> Result<(ResolvedImages, Vec<BaseImageRef>), E> {
    let (mut resolved, mut asked) = (ResolvedImages::new(), Vec::new());
    for _ in 0..MAX_BASE_ROUNDS {
        let new: Vec<BaseImageRef> = base_images(df, opts, &resolved)?
            .into_iter()
            .filter(|b| !resolved.contains_key(&(b.image.clone(), b.platform.clone())))
            .collect();
        if new.is_empty() {
            return Ok((resolved, asked));
        }
        for b in new {
            let image = resolve(&b)?;
            resolved.insert((b.image.clone(), b.platform.clone()), image);
            asked.push(b);
        }
    }
    Err(Diagnostic::new(1, 1, format!("ONBUILD triggers chain through more than {MAX_BASE_ROUNDS} images"), "").into())
}

/// Lowers the target stage (and what it depends on) to an op graph.
pub fn lower(df: &Dockerfile, opts: &BuildOptions, resolver: &dyn BaseResolver) -> Result<Lowered, Diagnostic> {
    let budget = Budget::default();
    let version = crate::frontend::version::FrontendVersion::of(df);
    let Plan { stages, reachable, meta: meta_vars, aliases } = plan(df, opts, &budget, resolver)?;
    let stage_count = aliases.len();
    let aliases = copyfrom::StageNames::new(aliases);
    let mut children = vec![0usize; stages.len()];
    for (s, _) in stages.iter().zip(&reachable).filter(|(_, r)| **r) {
        if let Some(p) = s.parent {
            children[p] += 1;
        }
    }
    let undefined = std::cell::RefCell::new(Vec::new());
    let mut def = Definition::default();
    let mut built: Vec<Option<stage::StageState>> = Vec::new();
    let mut stage_nodes: Vec<Option<NodeId>> = Vec::new();
    for (i, s) in stages.iter().enumerate() {
        if !reachable[i] {
            built.push(None);
            stage_nodes.push(None);
            continue;
        }
        // BuildKit names no stage when the build has one (an image that
        // COPY --from or a mount reads counts as another).
        let is_image = |r: &copyfrom::FromRef| matches!(r, copyfrom::FromRef::Image(_));
        let reads_image =
            s.copy_from.iter().any(|(r, _)| is_image(r)) || s.trigger_from.iter().any(|(r, _)| is_image(r));
        let name = match &s.alias {
            _ if stage_count == 1 && !reads_image => String::new(),
            Some(a) => a.clone(),
            None => format!("stage-{i}"),
        };
        let triggers = onbuild_triggers(s, &built, resolver, df.escape, &budget)?;
        let trigger_count = triggers.len();
        let from_counts = s.parent.is_none() && !s.image.eq_ignore_ascii_case("scratch");
        let steps = stage::numbered_steps(from_counts, trigger_count, s.body);
        let body: Vec<Instruction> = triggers.into_iter().chain(s.body.iter().cloned()).collect();
        let mut base = match s.parent {
            Some(p) => inherit(&mut built[p], &mut children[p], &budget)
                .map_err(|e| Diagnostic::new(s.from.line, 1, e.to_string(), &s.from.first))?,
            None => {
                let from = stage::FromImage { instr: s.from, image: &s.image, platform: &s.platform };
                stage::StageState::from_image(&mut def, &from, steps, &name, resolver, &budget)?
            }
        };
        base.config.config.on_build = None;
        let ctx = stage::Ctx {
            undefined: &undefined,
            opts,
            escape: df.escape,
            name: &name,
            steps,
            from_counts,
            triggers: trigger_count,
            meta: &meta_vars,
            index: i,
            aliases: &aliases,
            stage_nodes: &stage_nodes,
            resolver,
            budget: &budget,
            version,
        };
        let done = stage::lower_stage(&mut def, base, &body, &ctx)?;
        stage_nodes.push(done.node);
        built.push(Some(done));
    }
    let last = built.pop().flatten().expect("the target stage is reachable");
    let mut warnings = undefined.into_inner();
    warnings.sort_by_key(|w| w.line);
    warnings.dedup();
    Ok(Lowered { definition: def, root: last.node, config: last.config, history: last.history, warnings })
}

/// The state a `FROM <stage>` child starts from: the parent's own state
/// for its last child (a chain of stages copies nothing), a charged copy
/// for the others.
fn inherit(
    parent: &mut Option<stage::StageState>,
    children_left: &mut usize,
    budget: &Budget,
) -> Result<stage::StageState, BudgetSpent> {
    *children_left -= 1;
    let state = parent.as_ref().expect("parents are reachable and built first");
    if *children_left > 0 {
        budget.charge(state.size())?;
        return Ok(state.clone());
    }
    // Nothing reads the parent's state after its last child: its triggers
    // were read before, and `COPY --from` uses only its node.
    Ok(parent.take().expect("checked above"))
}

/// A history entry for a new instruction.
/// The comment BuildKit's Dockerfile frontend puts on its history entries.
const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

fn history(created_by: String, empty_layer: bool) -> History {
    History { created: None, created_by: Some(created_by), comment: Some(HISTORY_COMMENT.into()), empty_layer }
}

#[cfg(test)]
mod tests;
