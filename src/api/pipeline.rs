//! One build, end to end: Dockerfile → resolve base images → lower →
//! solve → export/push, reporting progress as pro-builder-style log lines
//! (`<RFC3339> [<stage> <i>/<n>] <INSTRUCTION …>`, the same with
//! ` <secs>s` when done or ` CACHED` for a cache hit).

use super::failure::{blocking, diag_failure, emit, export_failure, fail, BuildFailure};
use super::image;
use super::job::AcceptedBuild;
use super::state::AppState;
use crate::errors::ErrorKind;
use crate::exporter;
use crate::frontend;
use crate::platform;
use crate::registry::Reference;
use crate::worker::regcache::RegistryCache;
use kiln_snapshotter::Digest;

use super::logsink::LogSink;

/// Runs the build; returns the manifest digest. The build holds the
/// garbage-collection lock shared from its first step to its push; a
/// collection may follow once it is done.
async fn run(state: &AppState, job: &AcceptedBuild, log: &LogSink) -> Result<Digest, BuildFailure> {
    let result = {
        let _guard = state.worker.build_guard().await;
        build(state, job, log).await
    };
    let worker = state.worker.clone();
    tokio::spawn(async move { worker.after_build().await });
    result
}

/// [`run`], unless shutdown cancels it first: then the build's future is
/// dropped (its helpers killed, its uncommitted snapshots removed) and it
/// fails with [`ErrorKind::ShuttingDown`].
pub async fn run_until_cancelled(state: &AppState, job: &AcceptedBuild, log: &LogSink) -> Result<Digest, BuildFailure> {
    tokio::select! {
        result = run(state, job, log) => result,
        () = state.lifecycle.cancelled() => {
            emit(log, format!("ERROR: {}", super::lifecycle::CANCELLED));
            Err(fail(ErrorKind::ShuttingDown, super::lifecycle::CANCELLED))
        }
    }
}

async fn build(state: &AppState, request: &AcceptedBuild, log: &LogSink) -> Result<Digest, BuildFailure> {
    let (intake, secrets, bases) = (&request.intake, &request.secrets, &request.audit.bases);
    let egress = &request.audit.egress;
    emit(log, "[internal] load build definition from Dockerfile");
    let bytes = intake.dockerfile.as_ref().map_err(|e| fail(ErrorKind::InvalidArgument, e.to_string()))?.clone();
    let max = state.cfg.max_instructions;
    let check_arg = intake.config.build_args.as_ref().and_then(|a| a.get("BUILDKIT_DOCKERFILE_CHECK")).cloned();
    let stage = intake.config.target.clone().filter(|t| !t.trim().is_empty());
    let (checks, target_stage) = (check_arg.clone(), stage.clone());
    let sink = log.clone();
    let df = blocking(move || load_dockerfile(bytes, max, check_arg.as_deref(), stage.as_deref(), &sink)).await??;
    let df = std::sync::Arc::new(df);
    if let Some(ignore) = apply_dockerignore(&intake.context, log).await? {
        let df = df.clone();
        let found = blocking(move || copy_ignored(&df, &ignore, checks.as_deref(), target_stage.as_deref())).await??;
        for w in found {
            emit(log, w);
        }
    }
    let platforms = platform::requested(intake.config.platforms.as_deref())
        .map_err(|e| fail(ErrorKind::InvalidArgument, format!("platforms: {e}")))?;
    let target = Reference::parse(&intake.config.image).map_err(|e| fail(ErrorKind::InvalidArgument, e.to_string()))?;
    let cache = load_registry_cache(state, &target, log).await;
    let mount_sync = state
        .cfg
        .cache_mount_export
        .zip(cache.as_ref())
        .map(|(max, c)| std::sync::Arc::new(crate::solver::mountsync::MountSync::new(c.reference.clone(), max)));
    let evidence = evidence_inputs(state, request, intake.config.skip_push.unwrap_or(false)).await?;
    let job = image::SharedBuild {
        state,
        intake,
        secrets,
        df: &df,
        target: &target,
        cache: cache.as_ref(),
        mount_sync: mount_sync.as_deref(),
        push: !intake.config.skip_push.unwrap_or(false),
        multi_platform: platforms.len() > 1,
        log,
        bases_seen: bases,
        egress_seen: egress,
        trace: &request.audit.trace,
        warned: &Default::default(),
        evidence: &evidence,
    };
    let images = futures_util::future::try_join_all(platforms.iter().map(|p| job.build(p))).await?;
    let (digest, evidence) = match images.as_slice() {
        [only] if !job.makes_index() => {
            (only.exported.manifest.clone(), super::attached::Evidence::single(&only.attached))
        }
        _ => {
            let index = push_index(&job, &images).await?;
            let signature = sign_index(&job, &index).await?;
            let evidence = match images.as_slice() {
                [only] => {
                    super::attached::Evidence::single(&super::attached::Attached { signature, ..only.attached.clone() })
                }
                _ => {
                    let attached: Vec<_> =
                        images.iter().map(|i| (i.platform.to_string(), i.attached.clone())).collect();
                    super::attached::Evidence::per_platform(&attached, signature)
                }
            };
            (index, evidence)
        }
    };
    *request.audit.evidence.lock().unwrap_or_else(|p| p.into_inner()) = evidence;
    if state.cfg.serve_images {
        tag_locally(state, &target, &digest, log);
    }
    let push = job.push;
    if let Some(sync) = mount_sync {
        request.after_reply.defer(Box::pin(export_cache_mounts(state.worker.clone(), sync)));
    }
    if let (Some(cache), true) = (cache, push) {
        let steps: Vec<_> = images.iter().flat_map(|i| i.steps.iter().cloned()).collect();
        let selections: Vec<_> = images.iter().flat_map(|i| i.selections.iter().cloned()).collect();
        emit(log, format!("[internal] exporting the build cache to {} after the reply", cache.reference));
        let export = export_registry_cache(state.worker.clone(), cache, steps, selections);
        request.after_reply.defer(Box::pin(export));
    }
    Ok(digest)
}

/// Adds a build's steps to the registry cache (after its reply is out,
/// holding the store against collection): a failure is the server's log
/// line, the build has succeeded.
async fn export_registry_cache(
    worker: std::sync::Arc<crate::worker::Worker>,
    cache: RegistryCache,
    steps: Vec<(String, Vec<crate::worker::LayerRecord>)>,
    selections: Vec<crate::worker::regcache::Selection>,
) {
    let _store_kept = worker.build_guard().await;
    let say = |line: String| tracing::info!(cache = %cache.reference, "{line}");
    if let Err(e) = worker.export_cache(&cache, &steps, &selections, &say).await {
        tracing::warn!(cache = %cache.reference, error = %e, "registry cache not exported");
    }
}

/// Pushes the cache mounts a build's steps used (after its reply is out):
/// a failure is the server's log line, the build has succeeded.
async fn export_cache_mounts(
    worker: std::sync::Arc<crate::worker::Worker>,
    sync: std::sync::Arc<crate::solver::mountsync::MountSync>,
) {
    let root = worker.data_dir().join("cache-mounts");
    for (tenant, id) in sync.used_caches() {
        let reference = sync.reference(&tenant, &id);
        match sync.export(&worker, &root, &tenant, &id).await {
            Ok(true) => tracing::info!(cache = %id, %reference, "cache mount exported"),
            Ok(false) => tracing::debug!(cache = %id, %reference, "cache mount unchanged"),
            Err(e) => tracing::warn!(cache = %id, %reference, error = %e, "cache mount not exported"),
        }
    }
}

/// What every platform's evidence shares; the context's digest (read off
/// the async threads) only when provenance will name it.
async fn evidence_inputs(
    state: &AppState,
    request: &AcceptedBuild,
    skip_push: bool,
) -> Result<super::attached::EvidenceInputs, BuildFailure> {
    let started = crate::timefmt::now_secs() - request.elapsed() as i64;
    let wanted = !skip_push && state.cfg.provenance != crate::attest::provenance::Mode::Off;
    let context_digest = match wanted {
        true => {
            let dir = request.intake.context.clone();
            let hex = blocking(move || crate::sources::context_digest(&dir)).await?.map_err(|e| {
                let (kind, message) = crate::errors::storage_error(Some("hash the context"), &e, ErrorKind::Internal);
                fail(kind, message)
            })?;
            Some(format!("sha256:{hex}"))
        }
        false => None,
    };
    Ok(super::attached::EvidenceInputs { request_id: request.audit.record.request_id.clone(), started, context_digest })
}

/// Signs a multi-platform build's index (what its tag names), when a key
/// is configured.
async fn sign_index(job: &image::SharedBuild<'_>, index: &Digest) -> Result<Option<String>, BuildFailure> {
    let Some(key) = job.state.signing_key.as_deref().filter(|_| job.push) else { return Ok(None) };
    let bytes = kiln_snapshotter::content::read_blob(job.state.worker.store(), index, 64 << 20).map_err(|e| {
        let (kind, message) = crate::errors::storage_error(Some("read the index to sign it"), &e, ErrorKind::Internal);
        fail(kind, message)
    })?;
    let subject = exporter::attach::Subject {
        digest: index.clone(),
        size: bytes.len() as u64,
        media_type: crate::oci::MediaType::OCI_INDEX.into(),
        unseen: false,
    };
    let d = job.sign(key, &subject).await?;
    Ok(Some(format!("{}/{}@{d}", job.target.registry, job.target.repository)))
}

/// Points the image's repository and tag at `digest` in kiln's own `/v2/`.
fn tag_locally(state: &AppState, target: &Reference, digest: &Digest, log: &LogSink) {
    let Some(tag) = target.tag.as_deref().or(target.digest.is_none().then_some("latest")) else { return };
    let tags = crate::worker::tags::LocalTags::new(&state.cfg.data_dir);
    match tags.set(&target.repository, tag, digest) {
        Ok(()) => {
            emit(log, format!("serving {}:{tag} at /v2/{}/manifests/{tag}", target.repository, target.repository))
        }
        Err(e) => emit(log, format!("WARNING: not served at /v2/: {e}")),
    }
}

/// Tags an OCI index over the per-platform images.
async fn push_index(job: &image::SharedBuild<'_>, images: &[image::PlatformImage]) -> Result<Digest, BuildFailure> {
    let entries: Vec<_> = images.iter().map(|i| (i.platform.clone(), i.exported.clone())).collect();
    let attestations: Vec<_> = images.iter().filter_map(|i| i.attestation_entry.clone()).collect();
    let (state, sink) = (job.state, job.log.clone());
    let (store, registry) = (state.worker.store(), state.worker.registry());
    exporter::export_index(store, registry, job.target, &entries, &attestations, job.push, &move |l| emit(&sink, l))
        .await
        .map_err(export_failure)
}

/// Parses and checks the Dockerfile (blocking), logging the warnings. As
/// BuildKit, the checks of the lines before a bad one are still reported.
fn load_dockerfile(
    bytes: Vec<u8>,
    max_instructions: usize,
    check_arg: Option<&str>,
    stage: Option<&str>,
    log: &LogSink,
) -> Result<frontend::Dockerfile, BuildFailure> {
    let text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..at].iter().filter(|b| **b == b'\n').count() + 1;
        fail(ErrorKind::InvalidArgument, format!("Dockerfile line {line} is not UTF-8 text"))
    })?;
    let df = match frontend::parse_limited(&text, max_instructions) {
        Ok(df) => df,
        Err(d) => {
            for w in warnings_before_error(&text, max_instructions, check_arg, stage) {
                emit(log, format!("WARNING: {w}"));
            }
            return Err(diag_failure(d));
        }
    };
    for w in frontend_warnings(&df).into_iter().chain(run_checks(&df, check_arg, stage)?) {
        emit(log, w);
    }
    Ok(df)
}

/// CopyIgnoredFile under the build's check configuration (blocking): the
/// log's warning lines, or the failure under `check=error=true`.
fn copy_ignored(
    df: &frontend::Dockerfile,
    ignore: &str,
    check_arg: Option<&str>,
    stage: Option<&str>,
) -> Result<Vec<String>, BuildFailure> {
    let cfg = frontend::lint::check_config(df, check_arg).unwrap_or_default();
    let found = frontend::lint::retained(df, &cfg, frontend::lint::copy_ignored(df, ignore, stage));
    if cfg.error && !found.is_empty() {
        return Err(fail(ErrorKind::InvalidArgument, frontend::lint::violation(&found)));
    }
    Ok(found.iter().map(|w| format!("WARNING: {w}")).collect())
}

/// Honours `Dockerfile.dockerignore` (which wins) or `.dockerignore`;
/// returns the text of the one applied.
async fn apply_dockerignore(context: &std::path::Path, log: &LogSink) -> Result<Option<String>, BuildFailure> {
    let dir = context.to_path_buf();
    let applied = blocking(move || {
        let text =
            super::contextfs::read_dockerignore(&dir).map_err(|e| fail(ErrorKind::InvalidArgument, e.to_string()))?;
        let Some(text) = text else { return Ok(None) };
        let ignore = crate::dockerignore::DockerIgnore::parse_file(&text)
            .map_err(|e| fail(ErrorKind::InvalidArgument, format!(".dockerignore: {e}")))?;
        crate::sources::apply_dockerignore(&dir, &ignore).map_err(|e| {
            let (kind, message) = crate::errors::storage_error(Some("apply .dockerignore"), &e, ErrorKind::Internal);
            fail(kind, message)
        })?;
        Ok(Some(text))
    })
    .await??;
    if applied.is_some() {
        emit(log, "[internal] load .dockerignore");
    }
    Ok(applied)
}

/// The checks that fire on the instructions before the first bad line.
fn warnings_before_error(
    text: &str,
    max_instructions: usize,
    check_arg: Option<&str>,
    stage: Option<&str>,
) -> Vec<frontend::lint::Warning> {
    let Some(prefix) = frontend::parse_prefix(text, max_instructions) else { return Vec::new() };
    match frontend::lint::check_config(&prefix, check_arg) {
        Ok(cfg) => frontend::lint::lint(&prefix, &cfg, stage),
        Err(_) => Vec::new(),
    }
}

/// kiln always uses its own Dockerfile frontend and fetches none: a
/// `# syntax=` naming something other than docker/dockerfile is reported.
fn frontend_warnings(df: &frontend::Dockerfile) -> Vec<String> {
    let mut out = Vec::new();
    for (name, value) in &df.directives {
        let standard = ["docker/dockerfile", "docker.io/docker/dockerfile"].iter().any(|p| value.starts_with(p));
        if name == "syntax" && !standard {
            out.push(format!("WARNING: # syntax={value} is ignored: kiln builds with its own Dockerfile frontend"));
        }
    }
    out
}

/// BuildKit's Dockerfile checks: warnings for the log; a failure when the
/// Dockerfile (or the `BUILDKIT_DOCKERFILE_CHECK` build arg) says `error=true`.
fn run_checks(
    df: &frontend::Dockerfile,
    check_arg: Option<&str>,
    stage: Option<&str>,
) -> Result<Vec<String>, BuildFailure> {
    let cfg = frontend::lint::check_config(df, check_arg)
        .map_err(|e| fail(ErrorKind::InvalidArgument, format!("Dockerfile check configuration: {e}")))?;
    let warnings = frontend::lint::lint(df, &cfg, stage);
    if cfg.error && !warnings.is_empty() {
        return Err(fail(ErrorKind::InvalidArgument, frontend::lint::violation(&warnings)));
    }
    Ok(warnings.iter().map(|w| format!("WARNING: {w}")).collect())
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
    match RegistryCache::load(&state.worker, reference).await {
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
