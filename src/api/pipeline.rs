//! One build, end to end: Dockerfile → resolve base images → lower →
//! solve → export/push, reporting progress as pro-builder-style log lines
//! (`<RFC3339> [<stage> <i>/<n>] <INSTRUCTION …>`, the same with
//! ` <secs>s` when done or ` CACHED` for a cache hit).

use super::intake::Intake;
use super::state::AppState;
use crate::errors::ErrorKind;
use crate::exporter::{self, ExportInput};
use crate::frontend::{self, BuildOptions, Diagnostic, Platform, ResolvedImage};
use crate::graph::{ImageConfig, SourceLoc};
use crate::registry::{PlatformSpec, Reference};
use crate::solver::regcache::RegistryCache;
use crate::solver::{Bases, BuildInput, Event};
use crate::timefmt;
use kiln_snapshotter::Digest;
use std::collections::HashMap;
use tokio::sync::mpsc::UnboundedSender;

/// Where log lines go.
pub type LogSink = UnboundedSender<String>;

/// Unsealed build secrets by id.
pub type Secrets = std::collections::BTreeMap<String, Vec<u8>>;

/// Why a build failed.
#[derive(Debug)]
pub struct BuildFailure {
    /// Kind, for the status code.
    pub kind: ErrorKind,
    /// Message for the client.
    pub message: String,
}

fn fail(kind: ErrorKind, message: impl Into<String>) -> BuildFailure {
    BuildFailure { kind, message: message.into() }
}

fn emit(log: &LogSink, msg: impl AsRef<str>) {
    let _ = log.send(format!("{} {}", timefmt::now(), msg.as_ref()));
}

/// `[stage i/n] TEXT`, or `[i/n] TEXT` for the single unnamed stage.
fn step_name(loc: &SourceLoc) -> String {
    let stage = if loc.stage.is_empty() { String::new() } else { format!("{} ", loc.stage) };
    format!("[{stage}{}/{}] {}", loc.step, loc.steps, loc.text)
}

/// Runs the build; returns the manifest digest. The build holds the
/// garbage-collection lock shared from its first step to its push; a
/// collection may follow once it is done.
pub async fn run(state: &AppState, intake: &Intake, secrets: &Secrets, log: &LogSink) -> Result<Digest, BuildFailure> {
    let result = {
        let _guard = state.solver.build_guard().await;
        build(state, intake, secrets, log).await
    };
    let solver = state.solver.clone();
    tokio::spawn(async move { solver.after_build().await });
    result
}

async fn build(state: &AppState, intake: &Intake, secrets: &Secrets, log: &LogSink) -> Result<Digest, BuildFailure> {
    emit(log, "[internal] load build definition from Dockerfile");
    let text = std::fs::read_to_string(intake.context.join("Dockerfile"))
        .map_err(|_| fail(ErrorKind::InvalidArgument, "context/Dockerfile not found in the request tar"))?;
    let df = frontend::parse(&text).map_err(diag_failure)?;
    warn_on_frontend(&df, log);
    run_checks(&df, intake, log)?;
    apply_dockerignore(&intake.context, log).await?;
    let platform = Platform::host();
    check_platforms(intake.config.platforms.as_deref(), &platform)?;
    let target = Reference::parse(&intake.config.image).map_err(|e| fail(ErrorKind::InvalidArgument, e.to_string()))?;
    let opts = BuildOptions {
        build_args: intake.config.build_args.clone().unwrap_or_default(),
        target: intake.config.target.clone().filter(|t| !t.trim().is_empty()),
        platform: platform.clone(),
    };
    let (bases, resolved) = resolve_bases(state, &df, &opts, log).await?;
    let lowered = frontend::lower(&df, &opts, &resolved).map_err(diag_failure)?;
    let cache = load_registry_cache(state, &target, log).await;
    let solved = solve(state, &lowered, intake, &bases, secrets, cache.as_ref(), log).await?;
    let mut layers = solved.layers;
    state.solver.add_push_origins(&mut layers);
    let push = !intake.config.skip_push.unwrap_or(false);
    let input =
        ExportInput { target: &target, layers: &layers, lowered: &lowered, push, epoch: state.cfg.source_date_epoch };
    let sink = log.clone();
    let exported = exporter::export(state.solver.store(), state.solver.registry(), &input, &move |l| emit(&sink, l))
        .await
        .map_err(|e| match &e {
            exporter::ExportError::Push { source, .. } => fail(ErrorKind::from(source), e.to_string()),
            exporter::ExportError::Storage(_) => fail(ErrorKind::Internal, e.to_string()),
        })?;
    state.metrics.inc("kiln_pushed_bytes_total", &[], exported.pushed_bytes as f64);
    if push {
        state.solver.record_pushed(&layers, &format!("{}/{}", target.registry, target.repository));
    }
    if let (Some(cache), true) = (&cache, push) {
        let sink = log.clone();
        if let Err(e) = state.solver.export_cache(cache, &solved.steps, &move |l| emit(&sink, l)).await {
            emit(log, format!("WARNING: registry cache not exported: {e}"));
        }
    }
    Ok(exported.manifest)
}

/// Honours `Dockerfile.dockerignore` (which wins) or `.dockerignore`.
async fn apply_dockerignore(context: &std::path::Path, log: &LogSink) -> Result<(), BuildFailure> {
    let text =
        ["Dockerfile.dockerignore", ".dockerignore"].iter().find_map(|n| std::fs::read_to_string(context.join(n)).ok());
    let Some(text) = text else { return Ok(()) };
    emit(log, "[internal] load .dockerignore");
    let ignore = crate::frontend::dockerignore::DockerIgnore::parse(&text);
    let dir = context.to_path_buf();
    tokio::task::spawn_blocking(move || crate::solver::apply_dockerignore(&dir, &ignore))
        .await
        .map_err(|e| fail(ErrorKind::Internal, e.to_string()))?
        .map_err(|e| fail(ErrorKind::Internal, format!("apply .dockerignore: {e}")))?;
    Ok(())
}

/// kiln always uses its own Dockerfile frontend and fetches none: a
/// `# syntax=` naming something other than docker/dockerfile is reported.
fn warn_on_frontend(df: &frontend::Dockerfile, log: &LogSink) {
    for (name, value) in &df.directives {
        let standard = ["docker/dockerfile", "docker.io/docker/dockerfile"].iter().any(|p| value.starts_with(p));
        if name == "syntax" && !standard {
            emit(log, format!("WARNING: # syntax={value} is ignored: kiln builds with its own Dockerfile frontend"));
        }
    }
}

/// BuildKit's Dockerfile checks: warnings in the log; a failure when the
/// Dockerfile (or the `BUILDKIT_DOCKERFILE_CHECK` build arg) says `error=true`.
fn run_checks(df: &frontend::Dockerfile, intake: &Intake, log: &LogSink) -> Result<(), BuildFailure> {
    let arg = intake.config.build_args.as_ref().and_then(|a| a.get("BUILDKIT_DOCKERFILE_CHECK"));
    let cfg = frontend::lint::check_config(df, arg.map(String::as_str))
        .map_err(|e| fail(ErrorKind::InvalidArgument, format!("Dockerfile check configuration: {e}")))?;
    let warnings = frontend::lint::lint(df, &cfg);
    for w in &warnings {
        emit(log, format!("WARNING: {w}"));
    }
    if cfg.error && !warnings.is_empty() {
        let list: Vec<String> = warnings.iter().map(ToString::to_string).collect();
        let msg = format!("Dockerfile checks failed (check=error=true): {}", list.join("; "));
        return Err(fail(ErrorKind::InvalidArgument, msg));
    }
    Ok(())
}

fn diag_failure(d: Diagnostic) -> BuildFailure {
    fail(ErrorKind::InvalidArgument, d.to_string())
}

fn check_platforms(requested: Option<&[String]>, host: &Platform) -> Result<(), BuildFailure> {
    for p in requested.unwrap_or_default().iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
        if p != host.to_string() {
            return Err(fail(
                ErrorKind::InvalidArgument,
                format!("platform {p} was requested but kiln builds only for its host platform ({host}) so far"),
            ));
        }
    }
    Ok(())
}

async fn resolve_bases(
    state: &AppState,
    df: &frontend::Dockerfile,
    opts: &BuildOptions,
    log: &LogSink,
) -> Result<(Bases, HashMap<String, ResolvedImage>), BuildFailure> {
    let wanted = frontend::base_images(df, opts).map_err(diag_failure)?;
    let spec = PlatformSpec {
        os: opts.platform.os.clone(),
        architecture: opts.platform.architecture.clone(),
        variant: opts.platform.variant.clone(),
    };
    let (mut bases, mut resolved) = (Bases::new(), HashMap::new());
    for b in wanted {
        let at_line = |msg: String| {
            let d = Diagnostic::new(b.line, 1, msg, &b.source_line);
            d.to_string()
        };
        let reference =
            Reference::parse(&b.image).map_err(|e| fail(ErrorKind::InvalidArgument, at_line(e.to_string())))?;
        if let Some(hint) = &b.hint {
            emit(log, format!("WARNING: Dockerfile:{}: {hint}", b.line));
        }
        let route = state.solver.registry().pull_route(&reference);
        let via =
            if route.registry != reference.registry { format!(" (mirror {})", route.registry) } else { String::new() };
        emit(log, format!("[internal] load metadata for {reference}{via}"));
        let r = state.solver.registry().resolve(&reference, &spec, state.solver.store()).await.map_err(|e| {
            let hint = b.hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default();
            fail(ErrorKind::from(&e), at_line(format!("{}: {e}{hint}", b.image)))
        })?;
        let config: ImageConfig = serde_json::from_slice(&r.config)
            .map_err(|e| fail(ErrorKind::Unavailable, at_line(format!("{reference}: bad image config: {e}"))))?;
        resolved.insert(
            b.image.clone(),
            ResolvedImage { reference: reference.to_string(), digest: r.digest.clone(), config },
        );
        bases.insert(r.digest.clone(), (reference, r));
    }
    Ok((bases, resolved))
}

fn op_label(op: &crate::graph::Op) -> &'static str {
    match op {
        crate::graph::Op::Source(_) | crate::graph::Op::Scratch => "source",
        crate::graph::Op::Http(_) | crate::graph::Op::Git(_) => "remote",
        crate::graph::Op::Exec(_) => "exec",
        crate::graph::Op::File(_) => "file",
    }
}

/// Turns solver events into log lines and metrics.
struct Reporter {
    sink: LogSink,
    names: Vec<Option<SourceLoc>>,
    ops: Vec<&'static str>,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
}

impl Reporter {
    fn name(&self, id: usize) -> String {
        self.names[id].as_ref().map(step_name).unwrap_or_else(|| format!("step {id}"))
    }

    fn report(&self, ev: Event) {
        match ev {
            Event::Started(id) => emit(&self.sink, self.name(id)),
            Event::Cached(id) => {
                self.metrics.inc("kiln_cache_hits_total", &[], 1.0);
                emit(&self.sink, format!("{} CACHED", self.name(id)));
            }
            Event::Done(id, secs) => {
                self.metrics.inc("kiln_cache_misses_total", &[], 1.0);
                self.metrics.observe("kiln_step_duration_seconds", &[("op", self.ops[id])], secs);
                emit(&self.sink, format!("{} {secs:.2}s", self.name(id)));
            }
            Event::Output(_, line) => emit(&self.sink, line),
            Event::Pulled(_, bytes) => self.metrics.inc("kiln_pulled_bytes_total", &[], bytes as f64),
        }
    }
}

/// The registry cache for this build, when configured; a cache that
/// cannot be read is skipped with a warning.
async fn load_registry_cache(state: &AppState, target: &Reference, log: &LogSink) -> Option<RegistryCache> {
    let setting = state.cfg.registry_cache.as_deref()?;
    let reference = match setting {
        "image" => Reference { tag: Some("buildcache".into()), digest: None, ..target.clone() },
        other => match Reference::parse(other) {
            Ok(r) => r,
            Err(e) => {
                emit(log, format!("WARNING: registry cache {other:?} is not a reference: {e}"));
                return None;
            }
        },
    };
    match RegistryCache::load(&state.solver, reference).await {
        Ok(c) => {
            emit(log, format!("[internal] registry cache {} ({} entries)", c.reference, c.map.entries.len()));
            Some(c)
        }
        Err(e) => {
            emit(log, format!("WARNING: registry cache not used: {e}"));
            None
        }
    }
}

async fn solve(
    state: &AppState,
    lowered: &frontend::Lowered,
    intake: &Intake,
    bases: &Bases,
    secrets: &Secrets,
    cache: Option<&RegistryCache>,
    log: &LogSink,
) -> Result<crate::solver::Solved, BuildFailure> {
    let sources: Vec<Option<SourceLoc>> = lowered.definition.nodes.iter().map(|n| n.source.clone()).collect();
    let ops: Vec<&'static str> = lowered.definition.nodes.iter().map(|n| op_label(&n.op)).collect();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let reporter = Reporter { sink: log.clone(), names: sources.clone(), ops, metrics: state.metrics.clone() };
    let printer = tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            reporter.report(ev);
        }
    });
    let input = BuildInput {
        definition: &lowered.definition,
        root: lowered.root,
        context: &intake.context,
        bases,
        progress: &tx,
        secrets,
        registry_cache: cache,
    };
    let result = state.solver.solve(&input).await;
    drop(tx);
    let _ = printer.await;
    result.map_err(|e| {
        let message = match e.node.and_then(|n| sources[n].as_ref()) {
            Some(loc) => format!("step {} (Dockerfile line {}) failed: {}", step_name(loc), loc.line, e.message),
            None => e.message,
        };
        fail(e.kind, message)
    })
}
