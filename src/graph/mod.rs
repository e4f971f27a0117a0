//! The op graph: the contract between the Dockerfile frontend and the
//! solver, in the spirit of BuildKit's LLB. Pure data, no I/O.
//!
//! A [`Definition`] is a list of [`Node`]s in which inputs always refer to
//! earlier nodes, so the list order is a topological order. Each node's
//! digest is the SHA-256 of a canonical JSON encoding of its op and its
//! inputs' digests; display metadata ([`SourceLoc`]) stays out of it.

mod layer;

pub use crate::oci::{ContainerConfig, HealthConfig, History, ImageConfig, RootFs};
pub use layer::{HistoryStep, LayerRecord};

use kiln_snapshotter::Digest;
use serde::{Deserialize, Serialize};

/// A RUN step's hostname when the build names none: BuildKit's, so that
/// steps reading it see what they see under BuildKit.
pub const DEFAULT_HOSTNAME: &str = "buildkitsandbox";

/// Index of a node in its [`Definition`].
pub type NodeId = usize;

/// One operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// A base image, pinned to its manifest digest.
    Source(SourceOp),
    /// The empty filesystem (`FROM scratch`).
    Scratch,
    /// A command run in a container on top of the input.
    Exec(ExecOp),
    /// File changes on top of the input (COPY, WORKDIR).
    File(FileOp),
    /// A file downloaded over HTTP(S) (`ADD <url>`).
    Http(HttpOp),
    /// A Git repository checkout (`ADD <git url>`).
    Git(GitOp),
}

/// `ADD <url>`: one file, mode 0600, mtime from `Last-Modified`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpOp {
    /// The URL.
    pub url: String,
    /// Name of the file in the op's output.
    pub filename: String,
    /// `--checksum` (`sha256:`, `sha384:` or `sha512:` and lowercase hex):
    /// the content must hash to this; it also keys the cache without a
    /// download.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
}

/// `ADD <git url>[#ref[:subdir]]`: the tree at a ref.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitOp {
    /// Clone URL.
    pub remote: String,
    /// Branch, tag or commit (`None`: the default branch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Subdirectory that becomes the output's root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subdir: Option<String>,
    /// `--keep-git-dir`: keep `.git`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_git_dir: bool,
    /// `--checksum`: the commit the ref must resolve to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// Check out the submodules too (BuildKit's default; `?submodules=false`
    /// turns it off).
    #[serde(default = "checkout_submodules")]
    pub submodules: bool,
    /// `?mtime=commit`: files get the commit's time, not the checkout's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub commit_mtime: bool,
}

fn checkout_submodules() -> bool {
    true
}

/// A registry image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceOp {
    /// Normalised reference (`registry/repo:tag`).
    pub reference: String,
    /// Manifest digest the reference resolved to.
    pub digest: Digest,
}

/// A RUN step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecOp {
    /// argv.
    pub args: Vec<String>,
    /// `KEY=value` environment, in Dockerfile order.
    pub env: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// USER value (resolved inside the rootfs at run time).
    pub user: String,
    /// `--mount=type=secret` mounts (ids only; values never enter the graph).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretMount>,
    /// Predefined proxy build args (`HTTP_PROXY`, …): passed to the step but
    /// never serialized, so they stay out of op digests, cache keys and history.
    #[serde(skip)]
    pub proxy_env: Vec<String>,
    /// `--mount=type=cache|bind|tmpfs`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<RunMount>,
    /// `--network`.
    #[serde(default, skip_serializing_if = "NetworkMode::is_default")]
    pub network: NetworkMode,
    /// The step's hostname (build arg `BUILDKIT_SANDBOX_HOSTNAME`); `None`
    /// is BuildKit's default, [`DEFAULT_HOSTNAME`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The platform the command's binaries are for (part of the cache key).
    pub platform: crate::platform::Platform,
}

/// `RUN --network`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// The host's network (kiln's default, so package managers work).
    #[default]
    Default,
    /// A fresh network namespace with only loopback up.
    None,
    /// The host's network, asked for explicitly.
    Host,
}

impl NetworkMode {
    /// Whether this is the default mode.
    pub fn is_default(&self) -> bool {
        *self == NetworkMode::Default
    }
}

/// `RUN --mount` of a type other than `secret`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RunMount {
    /// A directory kept across builds, never part of a layer.
    Cache {
        /// Absolute path inside the step.
        target: String,
        /// Cache id (default: the target).
        id: String,
        /// Concurrent use by several steps.
        sharing: CacheSharing,
        /// Owner of a newly created cache directory.
        uid: u32,
        /// Group of a newly created cache directory.
        gid: u32,
        /// Mode of a newly created cache directory.
        mode: u32,
        /// Mounted read-only.
        readonly: bool,
    },
    /// Files from the build context, or from an input (stage or image).
    Bind {
        /// Absolute path inside the step.
        target: String,
        /// Path in the source (default `/`).
        source: String,
        /// Input index of the stage or image (`None`: the build context).
        from_input: Option<usize>,
        /// Writable (writes are discarded after the step).
        readwrite: bool,
    },
    /// An empty tmpfs.
    Tmpfs {
        /// Absolute path inside the step.
        target: String,
        /// Size limit in bytes.
        size: Option<u64>,
    },
}

/// `sharing=` of a cache mount.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheSharing {
    /// Steps use it at the same time.
    #[default]
    Shared,
    /// A step that finds it in use gets a fresh, throwaway directory.
    Private,
    /// Steps wait for each other.
    Locked,
}

/// `RUN --mount=type=secret,…`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretMount {
    /// Secret id.
    pub id: String,
    /// File path inside the step (`None`: only an environment variable).
    pub target: Option<String>,
    /// Environment variable to expose the value in.
    pub env: Option<String>,
    /// Fail when the secret was not provided.
    pub required: bool,
    /// File mode.
    pub mode: u32,
    /// File owner.
    pub uid: u32,
    /// File group.
    pub gid: u32,
}

/// File actions applied in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileOp {
    /// The actions.
    pub actions: Vec<FileAction>,
    /// `COPY --link`: the actions run on an empty filesystem and their
    /// layer is stacked on the parent's (BuildKit's merge), so the
    /// destination's parents are always directories with their own modes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub link: bool,
}

/// One file action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum FileAction {
    /// Copy from the build context.
    Copy(CopyAction),
    /// Create a directory (and parents) owned by a user.
    Mkdir {
        /// Absolute path.
        path: String,
        /// USER whose uid/gid own the created directories.
        owner: String,
    },
}

/// COPY from the build context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyAction {
    /// Source paths or patterns, relative to the context root.
    pub sources: Vec<String>,
    /// Absolute destination (a trailing `/` means "into this directory").
    pub dest: String,
    /// `--chown` value.
    pub chown: Option<String>,
    /// `--chmod` value (octal or symbolic).
    pub chmod: Option<crate::chmod::Chmod>,
    /// Copy from this input of the node (a stage or image) instead of the
    /// build context. Input 0 is always the node's parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_input: Option<usize>,
    /// Files given inline as here-documents (`COPY <<EOF`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inline: Vec<InlineFile>,
    /// ADD: extract tar archives (plain or compressed) into the destination.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unpack: bool,
    /// `--exclude` patterns, relative to each source.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// `--parents`: keep each source's path below the destination.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub parents: bool,
}

/// A file whose content is in the Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InlineFile {
    /// File name (used when the destination is a directory).
    pub name: String,
    /// Content (already expanded).
    pub content: String,
}

/// Where a node came from, for logs and errors. Not part of any digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceLoc {
    /// First Dockerfile line (1-based).
    pub line: usize,
    /// The instruction as written (continuations joined).
    pub text: String,
    /// Stage name or index.
    pub stage: String,
    /// Step number within the stage (1-based).
    pub step: usize,
    /// Steps in the stage.
    pub steps: usize,
}

/// One node of the graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// What to do.
    pub op: Op,
    /// Inputs (earlier nodes).
    pub inputs: Vec<NodeId>,
    /// Display metadata.
    pub source: Option<SourceLoc>,
}

/// A whole build graph.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Definition {
    /// Nodes in topological order.
    pub nodes: Vec<Node>,
}

#[derive(Serialize)]
struct Canonical<'a> {
    op: &'a Op,
    inputs: Vec<&'a Digest>,
}

impl Definition {
    /// Appends a node; its inputs must already exist.
    pub fn push(&mut self, op: Op, inputs: Vec<NodeId>, source: Option<SourceLoc>) -> NodeId {
        assert!(inputs.iter().all(|i| *i < self.nodes.len()), "inputs must precede the node");
        self.nodes.push(Node { op, inputs, source });
        self.nodes.len() - 1
    }

    /// The digest of every node, in node order.
    pub fn digests(&self) -> Vec<Digest> {
        let mut out: Vec<Digest> = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            let canonical = Canonical { op: &node.op, inputs: node.inputs.iter().map(|i| &out[*i]).collect() };
            let bytes = serde_json::to_vec(&canonical).expect("ops serialize");
            out.push(Digest::of(&bytes));
        }
        out
    }

    /// The nodes `root` depends on, itself included, in topological order.
    pub fn ancestry(&self, root: NodeId) -> Vec<NodeId> {
        let mut needed = vec![false; self.nodes.len()];
        needed[root] = true;
        for id in (0..=root).rev() {
            if needed[id] {
                for i in &self.nodes[id].inputs {
                    needed[*i] = true;
                }
            }
        }
        (0..=root).filter(|i| needed[*i]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(cmd: &str) -> Op {
        Op::Exec(ExecOp {
            args: vec![cmd.into()],
            env: vec![],
            cwd: "/".into(),
            user: String::new(),
            secrets: vec![],
            proxy_env: vec![],
            mounts: vec![],
            network: Default::default(),
            hostname: None,
            platform: crate::platform::Platform::host(),
        })
    }

    #[test]
    fn digests_ignore_source_locations_and_follow_inputs() {
        let loc = |line| Some(SourceLoc { line, text: "RUN x".into(), stage: "0".into(), step: 1, steps: 1 });
        let mut a = Definition::default();
        let a0 = a.push(exec("a"), vec![], loc(1));
        a.push(exec("b"), vec![a0], loc(2));
        let mut b = Definition::default();
        let b0 = b.push(exec("a"), vec![], loc(7));
        b.push(exec("b"), vec![b0], None);
        assert_eq!(a.digests(), b.digests());
        let mut c = Definition::default();
        let c0 = c.push(exec("z"), vec![], None);
        c.push(exec("b"), vec![c0], None);
        assert_ne!(a.digests()[1], c.digests()[1], "a changed input changes the child");
    }

    #[test]
    fn ancestry_skips_unreachable_nodes() {
        let mut d = Definition::default();
        let a = d.push(exec("a"), vec![], None);
        let _unused = d.push(exec("u"), vec![a], None);
        let b = d.push(exec("b"), vec![a], None);
        assert_eq!(d.ancestry(b), vec![a, b]);
    }
}
