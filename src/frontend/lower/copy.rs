//! COPY and ADD after word expansion: local sources become one copy action
//! from the context (or the `--from` input); each remote ADD source becomes
//! its own source node (HTTP download or Git checkout) and a copy from it,
//! as BuildKit lowers them.

use crate::frontend::instructions::AddFlags;
use crate::frontend::remote::{classify_checked, RemoteSource};
use crate::graph::{CopyAction, Definition, FileAction, GitOp, HttpOp, InlineFile, NodeId, Op, SourceLoc};

/// One COPY/ADD with every word expanded.
pub struct ExpandedCopy {
    /// Sources.
    pub sources: Vec<String>,
    /// Absolute destination.
    pub dest: String,
    /// `--chown`.
    pub chown: Option<String>,
    /// `--chmod`.
    pub chmod: Option<crate::chmod::Chmod>,
    /// The `--from` stage or image node.
    pub from_node: Option<NodeId>,
    /// Here-document files.
    pub inline: Vec<InlineFile>,
    /// ADD's flags, with `checksum` expanded (`None`: COPY).
    pub add: Option<AddFlags>,
    /// `--exclude`.
    pub exclude: Vec<String>,
    /// `--parents`.
    pub parents: bool,
}

/// The file actions of one COPY/ADD and the input nodes (after the parent)
/// they read, in `from_input` order.
pub fn copy_actions(
    def: &mut Definition,
    c: ExpandedCopy,
    loc: &SourceLoc,
) -> Result<(Vec<FileAction>, Vec<NodeId>), CopyError> {
    let remote: Vec<Option<RemoteSource>> = match c.from_node {
        Some(_) => vec![None; c.sources.len()],
        None => c.sources.iter().map(|s| classify_checked(s)).collect::<Result<_, _>>()?,
    };
    check_remote(&c, &remote)?;
    let mut inputs: Vec<NodeId> = c.from_node.into_iter().collect();
    let template = CopyAction {
        sources: Vec::new(),
        dest: c.dest.clone(),
        chown: c.chown.clone(),
        chmod: c.chmod,
        from_input: None,
        inline: Vec::new(),
        unpack: false,
        exclude: Vec::new(),
        parents: false,
    };
    let local: Vec<String> =
        c.sources.iter().zip(&remote).filter(|(_, r)| r.is_none()).map(|(s, _)| s.clone()).collect();
    let mut actions = Vec::new();
    if !local.is_empty() || !c.inline.is_empty() {
        actions.push(FileAction::Copy(CopyAction {
            sources: local,
            from_input: c.from_node.map(|_| 1),
            inline: c.inline.clone(),
            unpack: c.add.as_ref().is_some_and(|a| a.unpack != Some(false)),
            exclude: c.exclude.clone(),
            parents: c.parents,
            ..template.clone()
        }));
    }
    let add = c.add.clone().unwrap_or_default();
    for r in remote.into_iter().flatten() {
        let (op, source, unpack) = remote_op(r, &add)?;
        inputs.push(def.push(op, Vec::new(), Some(loc.clone())));
        actions.push(FileAction::Copy(CopyAction {
            sources: vec![source],
            from_input: Some(inputs.len()),
            unpack,
            ..template.clone()
        }));
    }
    Ok((actions, inputs))
}

/// A COPY or ADD BuildKit refuses (its messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CopyError {
    /// A Git URL with bad options (`?tag=a&branch=b`, `?bogus=1`).
    #[error(transparent)]
    GitRef(#[from] crate::frontend::gitref::GitRefError),
    /// `COPY https://…`.
    #[error("source can't be a URL for COPY")]
    UrlForCopy,
    /// `COPY git@…`.
    #[error("source can't be a git ref for COPY")]
    GitForCopy,
    /// `ADD --checksum` with several sources.
    #[error("checksum can't be specified for multiple sources")]
    ChecksumForMany,
    /// `ADD --checksum` of a local file.
    #[error("checksum requires HTTP(S) or Git sources")]
    ChecksumForLocal,
    /// A download's checksum that is not `sha256:`, `sha384:` or
    /// `sha512:` with its hex digits.
    #[error("invalid --checksum {0:?}: expected sha256:<64 hex digits>, sha384:<96> or sha512:<128>")]
    HttpChecksum(String),
    /// A Git checksum that is not a commit id.
    #[error("invalid --checksum {0:?} for a Git source: expected a commit id in hex")]
    GitChecksum(String),
}

/// BuildKit's rules for remote sources and `--checksum`.
fn check_remote(c: &ExpandedCopy, remote: &[Option<RemoteSource>]) -> Result<(), CopyError> {
    if c.add.is_none() {
        return match remote.iter().flatten().next() {
            Some(RemoteSource::Http { .. }) => Err(CopyError::UrlForCopy),
            Some(RemoteSource::Git(_)) => Err(CopyError::GitForCopy),
            None => Ok(()),
        };
    }
    if c.add.as_ref().is_some_and(|a| a.checksum.is_some()) {
        if c.sources.len() != 1 {
            return Err(CopyError::ChecksumForMany);
        }
        if remote[0].is_none() {
            return Err(CopyError::ChecksumForLocal);
        }
    }
    Ok(())
}

/// The source node for one remote source, the path to copy from it, and
/// whether that copy unpacks archives (downloads only with `--unpack`).
fn remote_op(r: RemoteSource, add: &AddFlags) -> Result<(Op, String, bool), CopyError> {
    Ok(match r {
        RemoteSource::Http { url, filename } => {
            let checksum = add.checksum.as_deref().map(parse_http_checksum).transpose()?;
            (Op::Http(HttpOp { url, filename: filename.clone(), checksum }), filename, add.unpack == Some(true))
        }
        RemoteSource::Git(git) => {
            // The flag's checksum wins over the URL's; --keep-git-dir or
            // the URL's keep-git-dir=true keeps .git.
            let checksum = add.checksum.as_deref().or(git.checksum.as_deref()).map(parse_git_checksum).transpose()?;
            let op = GitOp {
                remote: git.remote,
                reference: git.reference,
                subdir: git.subdir,
                keep_git_dir: add.keep_git_dir || git.keep_git_dir == Some(true),
                checksum,
                submodules: git.submodules != Some(false),
                commit_mtime: git.mtime.as_deref() == Some("commit"),
            };
            (Op::Git(op), "/".into(), false)
        }
    })
}

/// A download checksum in one of the algorithms BuildKit takes (those of
/// go-digest: sha256, sha384, sha512).
fn parse_http_checksum(s: &str) -> Result<String, CopyError> {
    let bad = || CopyError::HttpChecksum(s.to_string());
    let (algorithm, hex) = s.split_once(':').ok_or_else(bad)?;
    let len = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(bad()),
    };
    let lower_hex = hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if hex.len() != len || !lower_hex {
        return Err(bad());
    }
    Ok(s.to_string())
}

fn parse_git_checksum(s: &str) -> Result<String, CopyError> {
    let ok = (7..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !ok {
        return Err(CopyError::GitChecksum(s.to_string()));
    }
    Ok(s.to_ascii_lowercase())
}
