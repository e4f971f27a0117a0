//! `ADD <git url>[#ref[:subdir]]`: the ref is resolved to a commit with
//! `git ls-remote` (that commit keys the cache, so a moved branch rebuilds
//! and an unchanged one does not), then fetched shallowly (fully from
//! servers that cannot do shallow fetches) and checked out into a snapshot.
//! `.git` is dropped unless `--keep-git-dir`; `--checksum` pins the commit.
//! Runs the `git` command with a scrubbed environment, no prompts, no
//! system or user config, and only the http(s), git and ssh transports —
//! in a step network namespace, so the repository URL (the tenant's) is
//! under the steps' egress policy and its connections are logged.

use super::{keys, BuildInput, LayerRecord, SolveError, Solver};
use crate::egress::StepNetwork;
use crate::errors::ErrorKind;
use crate::graph::{GitOp, NodeId, Op};
use std::path::Path;

impl Solver {
    /// The cache key of a checkout: the op and the commit its ref names now.
    pub(super) async fn git_key(
        &self,
        id: NodeId,
        op: &GitOp,
        input: &BuildInput<'_>,
    ) -> Result<(String, String), SolveError> {
        let net = self.git_network(id, op, input).await?;
        let commit = resolve_commit(op, &net).await.map_err(|m| git_error(id, op, m));
        net.close().await;
        let commit = commit?;
        if let Some(want) = op.checksum.as_ref().filter(|w| !commit.starts_with(w.as_str())) {
            let msg = format!("expected checksum to match {want}, got {commit}");
            return Err(SolveError::new(Some(id), ErrorKind::InvalidArgument, format!("ADD {}: {msg}", op.remote)));
        }
        // The checksum only checks the commit: with or without it, the same
        // checkout is the same step (BuildKit's testAddGitChecksumCache).
        let keyed = GitOp { checksum: None, ..op.clone() };
        Ok((keys::remote_key(&Op::Git(keyed), &commit), commit))
    }

    /// Checks `commit` out into a new snapshot and layer.
    pub(super) async fn run_git(
        &self,
        id: NodeId,
        op: &GitOp,
        commit: &str,
        input: &BuildInput<'_>,
    ) -> Result<Vec<LayerRecord>, SolveError> {
        let work =
            self.worker.data_dir().join("run").join(format!("git-{}", kiln_snapshotter::SnapshotId::random().as_str()));
        let net = self.git_network(id, op, input).await?;
        let checkout = checkout(op, commit, &work, &net).await;
        net.close().await;
        let snap = self.worker.prepare_empty().map_err(|e| SolveError::worker(id, e))?;
        let result = checkout.and_then(|()| {
            if !op.keep_git_dir {
                let _ = std::fs::remove_dir_all(work.join("tree/.git"));
            }
            let tree = subdir(&work.join("tree"), op.subdir.as_deref().unwrap_or(""))?;
            move_contents(&tree, snap.dir())
        });
        let _ = std::fs::remove_dir_all(&work);
        self.finish(id, snap, Vec::new(), result.map_err(|m| git_error(id, op, m)), input.epoch).await
    }
}

impl Solver {
    /// A step network for `git` (its events are the op's).
    async fn git_network(&self, id: NodeId, op: &GitOp, input: &BuildInput<'_>) -> Result<StepNetwork, SolveError> {
        let report = super::network::reporter(id, input.progress);
        self.cfg.networks.take(report).await.map_err(|e| git_error(id, op, format!("prepare the network for git: {e}")))
    }
}

fn git_error(id: NodeId, op: &GitOp, e: impl std::fmt::Display) -> SolveError {
    SolveError::new(Some(id), ErrorKind::Unavailable, format!("ADD {}: {e}", op.remote))
}

/// Why a checkout failed.
#[derive(Debug, thiserror::Error)]
enum GitError {
    /// The server has no `git`.
    #[error("ADD of a Git repository needs the git command on the server")]
    NoGit,
    /// A git command ran past [`GIT_TIMEOUT`].
    #[error("git {0} took longer than {secs} s", secs = GIT_TIMEOUT.as_secs())]
    TimedOut(String),
    /// A git command failed; its stderr.
    #[error("git {verb} failed: {stderr}")]
    Failed {
        /// The git subcommand.
        verb: String,
        /// What it printed.
        stderr: String,
    },
    /// The ref names nothing on the remote.
    #[error("repository does not contain ref {0}")]
    NoSuchRef(String),
    /// The subdirectory is outside the checkout, missing or not a directory.
    #[error("subdirectory {dir:?} {why}")]
    Subdir {
        /// The subdirectory asked for.
        dir: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Local file work (running git, creating or moving the checkout).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> GitError {
    let context = context.into();
    move |source| GitError::Io { context, source }
}

/// Longest a single git command may run.
const GIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// Runs `git` in `dir`, in the network namespace of `net`, and returns
/// its stdout.
async fn git(dir: &Path, args: &[&str], net: &StepNetwork) -> Result<String, GitError> {
    let mut cmd = tokio::process::Command::new("git");
    let netns = net.netns_fd();
    // SAFETY: setns is async-signal-safe; the descriptor stays open until
    // the command has run.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(netns, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_ALLOW_PROTOCOL", "http:https:git:ssh")
        .env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(GIT_TIMEOUT, out)
        .await
        .map_err(|_| GitError::TimedOut(args[0].to_string()))?
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => GitError::NoGit,
            _ => io("run git")(e),
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(GitError::Failed { verb: args[0].to_string(), stderr });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The commit `op.reference` names on the remote (a full commit id is
/// taken as is).
async fn resolve_commit(op: &GitOp, net: &StepNetwork) -> Result<String, GitError> {
    let wanted = op.reference.as_deref().unwrap_or("HEAD");
    if is_full_commit(wanted) {
        return Ok(wanted.to_ascii_lowercase());
    }
    let listing = git(Path::new("/"), &["ls-remote", "--", &op.remote], net).await?;
    pick_ref(&listing, wanted).ok_or_else(|| GitError::NoSuchRef(wanted.to_string()))
}

/// A whole commit id: 40 hex digits (SHA-1) or 64 (SHA-256 repositories).
fn is_full_commit(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// From `ls-remote` output: the commit of an exact ref (`HEAD`,
/// `refs/tags/v1`), else of `refs/tags/<name>` or `refs/heads/<name>`; a
/// peeled annotated tag wins over the tag object.
fn pick_ref(listing: &str, name: &str) -> Option<String> {
    let candidates = [
        format!("{name}^{{}}"),
        name.to_string(),
        format!("refs/tags/{name}^{{}}"),
        format!("refs/tags/{name}"),
        format!("refs/heads/{name}"),
    ];
    let refs: Vec<(&str, &str)> = listing.lines().filter_map(|l| l.split_once('\t')).collect();
    candidates.iter().find_map(|c| refs.iter().find(|(_, r)| r == c).map(|(sha, _)| sha.to_string()))
}

/// Fetches `commit` into `<work>/tree` and checks it out.
async fn checkout(op: &GitOp, commit: &str, work: &Path, net: &StepNetwork) -> Result<(), GitError> {
    let tree = work.join("tree");
    std::fs::create_dir_all(&tree).map_err(io(format!("create {}", tree.display())))?;
    // A SHA-256 repository needs a SHA-256 clone to fetch into.
    let format = if commit.len() == 64 { "--object-format=sha256" } else { "--object-format=sha1" };
    git(&tree, &["init", "-q", format], net).await?;
    git(&tree, &["remote", "add", "origin", "--", &op.remote], net).await?;
    let wanted = op.reference.clone().unwrap_or_else(|| "HEAD".into());
    let shallow = git(&tree, &["fetch", "-q", "--depth=1", "origin", commit], net).await;
    if shallow.is_err() {
        git(&tree, &["fetch", "-q", "--tags", "origin", &wanted], net).await?;
    }
    git(&tree, &["checkout", "-q", "--detach", commit], net).await?;
    if op.submodules && tree.join(".gitmodules").exists() {
        let shallow = git(&tree, &["submodule", "update", "-q", "--init", "--recursive", "--depth=1"], net).await;
        if shallow.is_err() {
            git(&tree, &["submodule", "update", "-q", "--init", "--recursive"], net).await?;
        }
    }
    if op.commit_mtime {
        let time = git(&tree, &["show", "-s", "--format=%ct", commit], net).await?;
        let time: i64 = time.trim().parse().map_err(|_| GitError::Failed {
            verb: "show".into(),
            stderr: format!("unexpected commit time {time:?}"),
        })?;
        set_mtimes(&tree, time).map_err(io("set the commit time on the checkout"))?;
    }
    Ok(())
}

/// The committer time of the commit `op` names (checked against its
/// checksum), from a checkout in a scratch directory under `scratch`.
pub(super) async fn commit_time(op: &GitOp, scratch: &Path, net: &StepNetwork) -> Result<i64, String> {
    let commit = resolve_commit(op, net).await.map_err(|e| e.to_string())?;
    if let Some(want) = op.checksum.as_ref().filter(|w| !commit.starts_with(w.as_str())) {
        return Err(format!("expected checksum to match {want}, got {commit}"));
    }
    let work = scratch.join(format!("git-epoch-{}", kiln_snapshotter::SnapshotId::random().as_str()));
    let time = async {
        checkout(op, &commit, &work, net).await?;
        git(&work.join("tree"), &["show", "-s", "--format=%ct", &commit], net).await
    }
    .await;
    let _ = std::fs::remove_dir_all(&work);
    let time = time.map_err(|e| e.to_string())?;
    time.trim().parse().map_err(|_| format!("unexpected commit time {time:?}"))
}

/// Sets the mtime of everything under `dir`, symlinks themselves (never
/// what they point at).
fn set_mtimes(dir: &Path, secs: i64) -> std::io::Result<()> {
    use nix::sys::stat::{utimensat, UtimensatFlags};
    let time = nix::sys::time::TimeSpec::new(secs, 0);
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        if std::fs::symlink_metadata(&path)?.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                pending.push(entry?.path());
            }
        }
        utimensat(None, &path, &time, &time, UtimensatFlags::NoFollowSymlink)?;
    }
    Ok(())
}

/// `tree/<dir>`, refusing `..` and symlinks on the way so a repository
/// cannot point the copy outside its checkout.
fn subdir(tree: &Path, dir: &str) -> Result<std::path::PathBuf, GitError> {
    let mut path = tree.to_path_buf();
    let refused = |why| GitError::Subdir { dir: dir.to_string(), why };
    for part in dir.split('/').filter(|p| !p.is_empty() && *p != ".") {
        if part == ".." {
            return Err(refused("leaves the repository"));
        }
        path.push(part);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(refused("is not a directory at that ref")),
            Err(_) => return Err(refused("does not exist at that ref")),
        }
    }
    Ok(path)
}

/// Moves every entry of the directory `from` into the directory `to`.
fn move_contents(from: &Path, to: &Path) -> Result<(), GitError> {
    for entry in std::fs::read_dir(from).map_err(io("read checkout"))? {
        let entry = entry.map_err(io("read checkout"))?;
        std::fs::rename(entry.path(), to.join(entry.file_name())).map_err(io("move checkout"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::pick_ref;

    #[test]
    fn picks_peeled_tags_then_branches() {
        let listing = "aaa\tHEAD\nbbb\trefs/heads/main\nccc\trefs/tags/v1\nddd\trefs/tags/v1^{}\neee\trefs/heads/v1\n";
        assert_eq!(pick_ref(listing, "HEAD").as_deref(), Some("aaa"));
        assert_eq!(pick_ref(listing, "main").as_deref(), Some("bbb"));
        assert_eq!(pick_ref(listing, "v1").as_deref(), Some("ddd"));
        assert_eq!(pick_ref(listing, "refs/heads/v1").as_deref(), Some("eee"));
        assert_eq!(pick_ref(listing, "nope"), None);
    }
}
