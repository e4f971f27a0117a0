//! One platform's image within a build: resolve its base images, lower
//! the Dockerfile for it, solve, and export (pushed under the tag, or by
//! digest when it becomes an entry of a multi-platform index). Log lines
//! of a multi-platform build name the platform: `[linux/arm64 build 2/3]`.

use super::audit::BaseImage;
use super::failure::{blocking, diag_failure, emit, export_failure, fail, BuildFailure};
use super::intake::Intake;
use super::job::Secrets;
use super::logsink::LogSink;
use super::state::AppState;
use crate::errors::ErrorKind;
use crate::exporter::{self, ExportInput, Exported};
use crate::frontend::{self, BaseImageRef, BuildOptions, Diagnostic, ResolvedImage, ResolvedImages};
use crate::graph::{ImageConfig, SourceLoc};
use crate::platform::Platform;
use crate::registry::{Reference, Resolved};
use crate::solver::{Bases, BuildInput, Event};
use crate::worker::regcache::RegistryCache;
use crate::worker::LayerRecord;
use std::sync::Arc;

/// What every platform of one build shares.
pub struct SharedBuild<'a> {
    /// Server state.
    pub state: &'a AppState,
    /// The request.
    pub intake: &'a Intake,
    /// Unsealed build secrets.
    pub secrets: &'a Secrets,
    /// The parsed Dockerfile.
    pub df: &'a std::sync::Arc<frontend::Dockerfile>,
    /// Where the image goes.
    pub target: &'a Reference,
    /// The registry cache, when configured and readable.
    pub cache: Option<&'a RegistryCache>,
    /// Cache mounts kept in the registry, when `--cache-mount-export` is on.
    pub mount_sync: Option<&'a crate::solver::mountsync::MountSync>,
    /// Push, or only export locally (`skipPush`).
    pub push: bool,
    /// More than one platform: manifests are pushed by digest and log
    /// lines name their platform.
    pub multi_platform: bool,
    /// The build log.
    pub log: &'a LogSink,
    /// Where resolved base images are noted.
    pub bases_seen: &'a super::audit::BaseLog,
    /// Where the steps' network destinations are noted.
    pub egress_seen: &'a std::sync::Arc<std::sync::Mutex<super::audit::Egress>>,
    /// Where the steps' times and the bytes moved are noted (history).
    pub trace: &'a std::sync::Arc<crate::history::BuildTrace>,
    /// The check warnings logged so far: a multi-platform build logs each
    /// once, as BuildKit does.
    pub warned: &'a std::sync::Mutex<std::collections::HashSet<String>>,
    /// What the build's evidence shares (request id, start, context).
    pub evidence: &'a super::attached::EvidenceInputs,
}

/// One platform's exported image.
pub struct PlatformImage {
    /// The platform.
    pub platform: Platform,
    /// Its manifest and config.
    pub exported: Exported,
    /// The steps solved for it (for the registry cache).
    pub steps: Vec<(String, Vec<LayerRecord>)>,
    /// The content keys of what its steps read from other stages.
    pub selections: Vec<crate::worker::regcache::Selection>,
    /// Its provenance, SBOM and signature.
    pub attached: super::attached::Attached,
    /// Its BuildKit-layout attestation manifest's index entry.
    pub attestation_entry: Option<crate::oci::Descriptor>,
}

impl SharedBuild<'_> {
    /// Builds and exports the image for `platform`.
    pub async fn build(&self, platform: &Platform) -> Result<PlatformImage, BuildFailure> {
        let state = self.state;
        let mut opts = BuildOptions {
            build_args: self.intake.config.build_args.clone().unwrap_or_default(),
            target: self.intake.config.target.clone().filter(|t| !t.trim().is_empty()),
            platform: platform.clone(),
        };
        let own_epoch = self.own_epoch(&mut opts).await?;
        let server_epoch = state.cfg.source_date_epoch;
        let (bases, resolved) = self.resolve_bases(&opts).await?;
        let (df, lower_opts) = (self.df.clone(), opts.clone());
        let lowered = blocking(move || frontend::lower(&df, &lower_opts, &resolved)).await?.map_err(diag_failure)?;
        self.report_checks(&lowered.warnings)?;
        if !state.cfg.allow_network_host {
            refuse_network_host(&lowered)?;
        }
        let solve_log = super::attached::SharedSolveLog::default();
        let own = own_epoch.filter(|e| Some(*e) != server_epoch);
        let solved = self.solve(&lowered, &bases, platform, own, &solve_log).await?;
        let mut layers = solved.layers;
        state.worker.add_push_origins(&mut layers);
        if state.cfg.serve_images {
            // kiln's own `/v2/` serves every layer from the local store.
            let pulled = state.worker.fetch_blobs(&layers).await.map_err(|e| fail(e.kind(), e.to_string()))?;
            state.metrics.inc("kiln_pulled_bytes_total", &[], pulled as f64);
        }
        let input = ExportInput {
            target: self.target,
            layers: &layers,
            config: &lowered.config,
            history: &lowered.history,
            push: self.push,
            by_digest: self.makes_index(),
            epoch: own_epoch.or(server_epoch),
        };
        let sink = self.log.clone();
        let exported =
            exporter::export(state.worker.store(), state.worker.registry(), &input, &move |l| emit(&sink, l))
                .await
                .map_err(export_failure)?;
        state.metrics.inc("kiln_pushed_bytes_total", &[], exported.pushed_bytes as f64);
        self.trace.pushed(exported.pushed_bytes);
        if self.push {
            state.worker.record_pushed(&layers, &format!("{}/{}", self.target.registry, self.target.repository));
        }
        let solve_log = std::mem::take(&mut *solve_log.lock().unwrap_or_else(|p| p.into_inner()));
        let facts = super::attached::ImageFacts {
            platform,
            exported: &exported,
            layers: &layers,
            bases: &bases,
            solved: &solve_log,
            lowered: &lowered,
            epoch: own_epoch.or(server_epoch),
        };
        let (attached, attestation_entry) = self.attest(&facts).await?;
        let (steps, selections) = (solved.steps, solved.selections);
        Ok(PlatformImage { platform: platform.clone(), exported, steps, selections, attached, attestation_entry })
    }

    /// Whether the tag names an index: several platforms, or BuildKit's
    /// attestation layout.
    pub fn makes_index(&self) -> bool {
        self.multi_platform || (self.attests() && self.state.cfg.docker_attestations)
    }

    /// `[linux/arm64 ` before step names in a multi-platform build.
    fn log_prefix(&self, platform: &Platform) -> String {
        if self.multi_platform {
            format!("{platform} ")
        } else {
            String::new()
        }
    }

    /// Resolves the registry images the target needs on `opts.platform`.
    async fn resolve_bases(&self, opts: &BuildOptions) -> Result<(Bases, ResolvedImages), BuildFailure> {
        let (mut bases, mut resolved) = (Bases::new(), Arc::new(ResolvedImages::new()));
        // Resolved images' ONBUILD triggers may name more (BuildKit adds
        // trigger dependencies before pruning unreachable stages).
        for _ in 0..frontend::MAX_BASE_ROUNDS {
            let (df, base_opts, known) = (self.df.clone(), opts.clone(), resolved.clone());
            let wanted = blocking(move || frontend::base_images(&df, &base_opts, known.as_ref()))
                .await?
                .map_err(diag_failure)?;
            let new: Vec<BaseImageRef> =
                wanted.into_iter().filter(|b| !resolved.contains_key(&(b.image.clone(), b.platform.clone()))).collect();
            if new.is_empty() {
                let resolved = Arc::try_unwrap(resolved).unwrap_or_else(|shared| (*shared).clone());
                return Ok((bases, resolved));
            }
            for b in new {
                let (reference, r, config) = self.resolve_base(&b).await.map_err(|f| f.at_line(b.line))?;
                let seen = BaseImage { reference: reference.to_string(), digest: r.digest.to_string() };
                self.bases_seen.lock().unwrap_or_else(|p| p.into_inner()).push(seen);
                let image = ResolvedImage { reference: reference.to_string(), digest: r.digest.clone(), config };
                Arc::make_mut(&mut resolved).insert((b.image, b.platform), image);
                bases.insert(r.digest.clone(), (reference, r));
            }
        }
        let msg = format!("ONBUILD triggers chain through more than {} images", frontend::MAX_BASE_ROUNDS);
        Err(fail(ErrorKind::InvalidArgument, msg))
    }

    /// Resolves one base image; errors name its Dockerfile line.
    async fn resolve_base(&self, b: &BaseImageRef) -> Result<(Reference, Resolved, ImageConfig), BuildFailure> {
        let at_line = |msg: String| Diagnostic::new(b.line, 1, msg, &b.source_line).to_string();
        let reference =
            Reference::parse(&b.image).map_err(|e| fail(ErrorKind::InvalidArgument, at_line(e.to_string())))?;
        let policy = &self.state.cfg.allowed_images;
        if !policy.allows(&reference) {
            let msg =
                format!("{reference} is not an allowed image on this builder (--allowed-images {})", policy.describe());
            return Err(fail(ErrorKind::InvalidArgument, at_line(msg)));
        }
        if let Some(hint) = &b.hint {
            emit(self.log, format!("WARNING: Dockerfile:{}: {hint}", b.line));
        }
        self.announce(&reference, &b.platform);
        let registry = self.state.worker.registry();
        let spec = b.platform.spec();
        let resolved = crate::registry::resolve(registry, &reference, &spec, self.state.worker.store());
        let r = resolved.await.map_err(|e| {
            let hint = b.hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default();
            fail(ErrorKind::from(&e), at_line(format!("{}: {e}{hint}", b.image)))
        })?;
        let config: ImageConfig = serde_json::from_slice(&r.config)
            .map_err(|e| fail(ErrorKind::Unavailable, at_line(format!("{reference}: bad image config: {e}"))))?;
        self.check_base_platform(b, &config)?;
        Ok((reference, r, config))
    }

    /// Reports the lowering's checks (UndefinedVar) as the Dockerfile's
    /// check configuration says: skipped, warned, or (`error=true`) failed.
    fn report_checks(&self, warnings: &[frontend::lint::Warning]) -> Result<(), BuildFailure> {
        let checks = self.check_config();
        let kept = frontend::lint::retained(self.df, &checks, warnings.to_vec());
        if checks.error && !kept.is_empty() {
            return Err(fail(ErrorKind::InvalidArgument, frontend::lint::violation(&kept)));
        }
        for w in kept {
            self.warn(format!("WARNING: {w}"));
        }
        Ok(())
    }

    /// The check configuration: the `BUILDKIT_DOCKERFILE_CHECK` build arg,
    /// else the `# check=` directive.
    fn check_config(&self) -> frontend::lint::CheckConfig {
        let args = self.intake.config.build_args.as_ref();
        let check_arg = args.and_then(|a| a.get("BUILDKIT_DOCKERFILE_CHECK")).map(String::as_str);
        frontend::lint::check_config(self.df, check_arg).unwrap_or_default()
    }

    /// Warns (or, under `check=error=true`, fails) when a base image's
    /// config names another platform than the one asked for, as BuildKit's
    /// InvalidBaseImagePlatform check does.
    fn check_base_platform(&self, b: &BaseImageRef, config: &ImageConfig) -> Result<(), BuildFailure> {
        let actual = Platform::from_spec(&crate::oci::PlatformSpec {
            os: config.os.clone(),
            architecture: config.architecture.clone(),
            variant: config.variant.clone(),
        });
        let Some(warning) = frontend::lint::base_image_platform(&b.image, b.line, &b.platform, &actual) else {
            return Ok(());
        };
        let checks = self.check_config();
        if checks.skips(warning.rule) {
            return Ok(());
        }
        if checks.error {
            return Err(fail(ErrorKind::InvalidArgument, frontend::lint::violation(&[warning])));
        }
        self.warn(format!("WARNING: {warning}"));
        Ok(())
    }

    /// Logs a warning unless another platform's build logged it.
    pub(super) fn warn(&self, line: String) {
        let first = self.warned.lock().unwrap_or_else(|p| p.into_inner()).insert(line.clone());
        if first {
            emit(self.log, line);
        }
    }

    /// `[internal] load metadata for <ref>`, naming the mirror it comes
    /// through and the platform when that is not obvious.
    fn announce(&self, reference: &Reference, platform: &Platform) {
        let route = self.state.worker.registry().pull_route(reference);
        let via =
            if route.registry != reference.registry { format!(" (mirror {})", route.registry) } else { String::new() };
        let on = if self.multi_platform || !platform.is_native() { format!(" ({platform})") } else { String::new() };
        emit(self.log, format!("[internal] load metadata for {reference}{via}{on}"));
    }

    /// Solves the lowered graph, reporting progress to the log.
    async fn solve(
        &self,
        lowered: &frontend::Lowered,
        bases: &Bases,
        platform: &Platform,
        epoch: Option<i64>,
        solve_log: &super::attached::SharedSolveLog,
    ) -> Result<crate::solver::Solved, BuildFailure> {
        let state = self.state;
        let prefix = self.log_prefix(platform);
        let sources: Vec<Option<SourceLoc>> = lowered.definition.nodes.iter().map(|n| n.source.clone()).collect();
        let ops: Vec<&'static str> = lowered.definition.nodes.iter().map(|n| op_label(&n.op)).collect();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let reporter = Reporter {
            sink: self.log.clone(),
            names: sources.clone(),
            prefix: prefix.clone(),
            ops,
            metrics: state.metrics.clone(),
            egress: self.egress_seen.clone(),
            solved: solve_log.clone(),
            trace: self.trace.clone(),
        };
        let printer = tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                reporter.report(ev);
            }
        });
        let input = BuildInput {
            definition: &lowered.definition,
            root: lowered.root,
            context: &self.intake.context,
            bases,
            progress: &tx,
            secrets: self.secrets,
            registry_cache: self.cache,
            mount_sync: self.mount_sync,
            tenant: &crate::tenant::tenant_of(self.target, state.cfg.tenant_scope),
            epoch,
        };
        let result = state.solver.solve(&input).await;
        drop(tx);
        let _ = printer.await;
        result.map_err(|e| match e.node.and_then(|n| sources[n].as_ref()) {
            Some(loc) => {
                let message =
                    format!("step {} (Dockerfile line {}) failed: {}", step_name(&prefix, loc), loc.line, e.message);
                fail(e.kind, message).at_line(loc.line)
            }
            None => fail(e.kind, e.message),
        })
    }
}

/// `RUN --network=host` needs the `network.host` entitlement, which the
/// operator grants with `--allow-insecure-entitlement network.host` (as
/// BuildKit's daemon does): a step on the host's network reaches whatever
/// the node reaches.
fn refuse_network_host(lowered: &frontend::Lowered) -> Result<(), BuildFailure> {
    let host = lowered
        .definition
        .nodes
        .iter()
        .find(|n| matches!(&n.op, crate::graph::Op::Exec(e) if e.network == crate::graph::NetworkMode::Host));
    let Some(node) = host else { return Ok(()) };
    let (line, text) = node.source.as_ref().map_or((1, String::new()), |l| (l.line, l.text.clone()));
    let msg = "RUN --network=host needs the network.host entitlement: granting entitlement network.host is not \
               allowed by build daemon configuration (the operator enables it with --allow-insecure-entitlement \
               network.host)";
    Err(super::failure::diag_failure(Diagnostic::new(line, 1, msg, &text)))
}

/// `[stage i/n] TEXT`, or `[i/n] TEXT` for the single unnamed stage, after
/// `prefix` (the platform in a multi-platform build).
/// The step number is padded to the width of the count, as BuildKit's
/// (`[ 3/12]`).
fn step_name(prefix: &str, loc: &SourceLoc) -> String {
    let stage = if loc.stage.is_empty() { String::new() } else { format!("{} ", loc.stage) };
    let width = loc.steps.to_string().len();
    format!("[{prefix}{stage}{:>width$}/{}] {}", loc.step, loc.steps, loc.text)
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
    /// The platform, in a multi-platform build.
    prefix: String,
    ops: Vec<&'static str>,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    egress: std::sync::Arc<std::sync::Mutex<super::audit::Egress>>,
    /// Remote sources and cache outcomes, for provenance.
    solved: super::attached::SharedSolveLog,
    /// Steps and bytes, for the build history.
    trace: std::sync::Arc<crate::history::BuildTrace>,
}

impl Reporter {
    fn name(&self, id: usize) -> String {
        self.names[id].as_ref().map(|l| step_name(&self.prefix, l)).unwrap_or_else(|| format!("step {id}"))
    }

    fn note_step(&self, id: usize, cached: bool) {
        self.solved.lock().unwrap_or_else(|p| p.into_inner()).steps.insert(id, cached);
        if self.names[id].is_some() {
            self.trace.step_ended(&self.name(id), cached);
        }
    }

    fn report(&self, ev: Event) {
        match ev {
            // Nodes no instruction names (`FROM scratch`) have no log line,
            // as they have no vertex in BuildKit's progress.
            Event::Started(id) if self.names[id].is_some() => {
                let line = self.names[id].as_ref().map(|l| l.line as u32);
                self.trace.step_started(&self.name(id), line, self.ops[id]);
                emit(&self.sink, self.name(id))
            }
            Event::Started(_) => {}
            Event::Running(id) => {
                if self.names[id].is_some() {
                    self.trace.step_running(&self.name(id));
                }
            }
            Event::Cached(id) => {
                self.note_step(id, true);
                self.metrics.inc("kiln_cache_hits_total", &[], 1.0);
                if self.names[id].is_some() {
                    emit(&self.sink, format!("{} CACHED", self.name(id)));
                }
            }
            Event::Done(id, secs) => {
                self.note_step(id, false);
                self.metrics.inc("kiln_cache_misses_total", &[], 1.0);
                self.metrics.observe("kiln_step_duration_seconds", &[("op", self.ops[id])], secs);
                if self.names[id].is_some() {
                    emit(&self.sink, format!("{} {secs:.2}s", self.name(id)));
                }
            }
            Event::Output(_, line) => emit(&self.sink, line),
            Event::Resolved(_, url, digest) => {
                self.solved.lock().unwrap_or_else(|p| p.into_inner()).remotes.push((url, digest));
            }
            Event::Pulled(_, bytes) => {
                self.trace.pulled(bytes);
                self.metrics.inc("kiln_pulled_bytes_total", &[], bytes as f64)
            }
            Event::Egress(_, ev) => {
                if matches!(ev, crate::egress::EgressEvent::Blocked { .. }) {
                    self.metrics.inc("kiln_step_egress_blocked_total", &[], 1.0);
                }
                emit(&self.sink, ev.log_line());
                self.egress.lock().unwrap_or_else(|p| p.into_inner()).note(&ev);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_numbers_are_padded_to_the_count_s_width() {
        let loc =
            |stage: &str, step, steps| SourceLoc { line: 1, text: "RUN x".into(), stage: stage.into(), step, steps };
        assert_eq!(step_name("", &loc("", 3, 12)), "[ 3/12] RUN x");
        assert_eq!(step_name("linux/arm64 ", &loc("build", 3, 3)), "[linux/arm64 build 3/3] RUN x");
    }
}
