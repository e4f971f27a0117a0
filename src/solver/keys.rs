//! Cache keys. A key is versioned (changing the scheme changes every key)
//! and covers what decides the step's output: the parent's key, the op
//! itself, and for COPY and RUN bind mounts from the context the content of
//! the selected files (not their mtimes); a stage read through `--from`
//! counts by the content of the paths read (see `Solver::input_keys`), an
//! image by its digest. Cache mount contents never count, as in BuildKit.
//! Source keys are the pinned manifest digest.

use crate::graph::{FileAction, Op, RunMount};
use crate::sources::{expand_sources, hash_sources, SourceError};
use crate::worker::fileop::PlannedAction;
use sha2::{Digest as _, Sha256};
use std::path::Path;

/// Prefix mixed into every key; bump it when the key scheme changes.
pub const CACHE_KEY_VERSION: &str = "kiln-cache-v1";

fn key_of(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    h.update(CACHE_KEY_VERSION.as_bytes());
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// The key of `op` on top of `parent_key`; for file ops also the planned
/// actions with expanded sources.
/// `source_keys` are the keys of the node's inputs after the parent (the
/// stages and images COPY --from reads); they stand in for content hashes.
pub async fn cache_key(
    op: &Op,
    parent_key: &str,
    source_keys: &[&str],
    context: &Path,
) -> Result<(String, Option<Vec<PlannedAction>>), KeyError> {
    let op_json = serde_json::to_vec(op).expect("ops serialize");
    match op {
        Op::Source(src) => Ok((key_of(&[b"source", src.digest.as_str().as_bytes()]), None)),
        Op::Scratch => Ok((key_of(&[b"scratch"]), None)),
        Op::Exec(exec) if exec.mounts.is_empty() => Ok((key_of(&[b"exec", parent_key.as_bytes(), &op_json]), None)),
        Op::Exec(exec) => {
            let binds: Vec<String> = exec
                .mounts
                .iter()
                .filter_map(|m| match m {
                    RunMount::Bind { source, from_input: None, .. } => Some(source.clone()),
                    _ => None,
                })
                .collect();
            let context = context.to_path_buf();
            let hashes = tokio::task::spawn_blocking(move || hash_patterns(&context, &binds).map(|(_, h)| h)).await??;
            let sources = source_keys.join(",");
            Ok((key_of(&[b"exec", parent_key.as_bytes(), &op_json, hashes.as_bytes(), sources.as_bytes()]), None))
        }
        Op::Http(_) | Op::Git(_) => Err(KeyError::Remote),
        Op::File(file) => {
            let (actions, context) = (file.actions.clone(), context.to_path_buf());
            let (planned, hashes) = tokio::task::spawn_blocking(move || plan_file(&actions, &context)).await??;
            let sources = source_keys.join(",");
            let key = key_of(&[b"file", parent_key.as_bytes(), &op_json, hashes.as_bytes(), sources.as_bytes()]);
            Ok((key, Some(planned)))
        }
    }
}

/// `key` for a build with its own `SOURCE_DATE_EPOCH` (its layers' mtimes
/// are clamped to it, so they differ from other builds' layers).
pub fn dated(key: &str, epoch: Option<i64>) -> String {
    match epoch {
        Some(e) => key_of(&[b"dated", key.as_bytes(), e.to_string().as_bytes()]),
        None => key.to_string(),
    }
}

/// The paths `op` reads from its input `input` (an index into the node's
/// inputs): the sources of its `COPY --from` actions and of its bind
/// mounts from that input; empty when it reads none by path.
pub fn selected_paths(op: &Op, input: usize) -> Vec<String> {
    match op {
        Op::Exec(exec) => exec
            .mounts
            .iter()
            .filter_map(|m| match m {
                RunMount::Bind { source, from_input: Some(i), .. } if *i == input => Some(source.clone()),
                _ => None,
            })
            .collect(),
        Op::File(file) => file
            .actions
            .iter()
            .filter_map(|a| match a {
                FileAction::Copy(c) if c.from_input == Some(input) => Some(c.sources.clone()),
                _ => None,
            })
            .flatten()
            .collect(),
        _ => Vec::new(),
    }
}

/// Why an op has no key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A source of the step (COPY or bind mount) is unusable.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Remote sources are keyed by [`remote_key`].
    #[error("remote sources are keyed by what they resolve to (remote_key)")]
    Remote,
    /// Hashing panicked or was cancelled.
    #[error("hash sources: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Whether `op` is a RUN with a cache mount.
pub fn uses_cache_mounts(op: &Op) -> bool {
    matches!(op, Op::Exec(e) if e.mounts.iter().any(|m| matches!(m, RunMount::Cache { .. })))
}

/// `key` within one tenant's scope.
pub fn scoped_to_tenant(key: &str, tenant: &str) -> String {
    key_of(&[b"tenant", tenant.as_bytes(), key.as_bytes()])
}

/// The key of a remote source: what it is (`op`) and what it resolved to
/// (a download's digest and mtime, a Git commit).
pub fn remote_key(op: &Op, resolved: &str) -> String {
    let op_json = serde_json::to_vec(op).expect("ops serialize");
    key_of(&[b"remote", &op_json, resolved.as_bytes()])
}

/// The context paths `patterns` select and the hash of their content.
fn hash_patterns(context: &Path, patterns: &[String]) -> Result<(Vec<String>, String), SourceError> {
    let sources = expand_sources(context, patterns)?;
    let hash = hash_sources(context, &sources).map_err(SourceError::Read)?;
    Ok((sources, hash))
}

fn plan_file(actions: &[FileAction], context: &Path) -> Result<(Vec<PlannedAction>, String), SourceError> {
    let mut planned = Vec::new();
    let mut hashes = String::new();
    for a in actions {
        match a {
            FileAction::Copy(c) => {
                let sources = match c.from_input {
                    Some(_) => c.sources.clone(),
                    None => {
                        let (sources, hash) = hash_patterns(context, &c.sources)?;
                        hashes.push_str(&hash);
                        sources
                    }
                };
                planned.push(PlannedAction::Copy {
                    sources,
                    dest: c.dest.clone(),
                    chown: c.chown.clone(),
                    chmod: c.chmod.clone(),
                    from_input: c.from_input,
                    source_mounts: Vec::new(),
                    inline: c.inline.clone(),
                    unpack: c.unpack,
                    exclude: c.exclude.clone(),
                    parents: c.parents,
                });
            }
            FileAction::Mkdir { path, owner } => {
                planned.push(PlannedAction::Mkdir { path: path.clone(), owner: owner.clone() })
            }
        }
        hashes.push('\n');
    }
    Ok((planned, hashes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::ExecOp;

    /// Pinned keys: an accidental change to the key scheme fails here.
    #[tokio::test]
    async fn golden_keys() {
        let exec = Op::Exec(ExecOp {
            args: vec!["/bin/sh".into(), "-c".into(), "true".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            user: String::new(),
            secrets: vec![],
            proxy_env: vec![],
            mounts: vec![],
            network: Default::default(),
            hostname: None,
            platform: crate::platform::Platform::parse("linux/amd64").unwrap(),
        });
        let (k, _) = cache_key(&exec, "", &[], Path::new("/nonexistent")).await.unwrap();
        assert_eq!(k, "ff57b8460897aed49002ee47ce5b20bbf10e093c22af7bf31aeb147893bc29a0");
        let (k2, _) = cache_key(&exec, &k, &[], Path::new("/nonexistent")).await.unwrap();
        assert_ne!(k, k2, "the parent key is part of the key");
    }
}
