//! Build history: the last `--history-size` builds, kept in the data
//! directory (`history.redb`) across restarts, for operators who want to
//! know why a build was slow or which builds failed. Each entry holds what
//! the audit line says plus the steps' timings, the cache hits, the bytes
//! moved, the log (bounded) and the error with its Dockerfile line.
//!
//! Entries are written by a thread of their own ([`History::record`] never
//! blocks a build), read by the admin endpoints off the async threads.

mod store;
mod trace;
mod writer;

pub use store::{HistoryError, HistoryStore};
pub use trace::{BuildTrace, LogCapture, MAX_LOG_BYTES};
pub use writer::History;

use serde::{Deserialize, Serialize};

/// Default `--history-size`.
pub const DEFAULT_SIZE: u64 = 500;

/// One step of a build, as the history shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepEntry {
    /// `[stage i/n] INSTRUCTION`, as in the log.
    pub name: String,
    /// The Dockerfile line it came from.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub line: Option<u32>,
    /// `source`, `remote`, `exec` or `file`.
    pub op: String,
    /// Seconds from the build's start to the step's start.
    pub start: f64,
    /// Seconds it took (for an unfinished one, until the build ended),
    /// its wait for a run slot included.
    pub duration: f64,
    /// Seconds of `duration` it waited for a run slot (steps of other
    /// builds, or of its own, held them).
    #[serde(default)]
    pub queued: f64,
    /// Whether the cache answered it.
    pub cached: bool,
    /// Whether it was still running when the build ended (it failed, or
    /// the build was cancelled).
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub unfinished: bool,
}

/// What both a build's entry and its line in a list say.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct BuildFacts {
    /// Position in the history (grows by one per build, never reused).
    pub seq: u64,
    /// The request's id (`X-Request-Id`, the audit line's `request_id`).
    pub request_id: String,
    /// When the request arrived (RFC 3339, UTC).
    pub time: String,
    /// The requested image.
    pub image: String,
    /// The pushed manifest (or index) digest.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub digest: Option<String>,
    /// `success`, `failure`, `rejected`, `cancelled` or `abandoned`.
    pub result: String,
    /// HTTP status of the reply.
    pub status: u16,
    /// Seconds from arrival to the end of the reply.
    pub duration: f64,
    /// Steps the cache answered.
    pub cache_hits: u64,
}

/// One build in the history.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct BuildEntry {
    /// Who asked for what, and how it ended.
    #[serde(flatten)]
    pub facts: BuildFacts,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    /// The Dockerfile line the error is about.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error_line: Option<u32>,
    /// Seconds from arrival to the first step (reading, checking and
    /// unpacking the request, resolving base images).
    pub queued: f64,
    /// Steps that ran.
    pub cache_misses: u64,
    /// Compressed bytes downloaded.
    pub pulled_bytes: u64,
    /// Compressed bytes uploaded.
    pub pushed_bytes: u64,
    /// The steps, in the order they started.
    pub steps: Vec<StepEntry>,
    /// The build log (its first and last lines when it was longer than
    /// [`MAX_LOG_BYTES`]).
    pub log: Vec<String>,
    /// Log lines left out of [`BuildEntry::log`].
    #[serde(skip_serializing_if = "is_zero", default)]
    pub log_omitted: u64,
    /// The build's audit record, as written to the audit log (it holds no
    /// secret: names of build args and secrets, never values).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub audit: Option<serde_json::Value>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A line of the history's list: an entry without its steps and log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BuildSummary {
    /// Who asked for what, and how it ended.
    #[serde(flatten)]
    pub facts: BuildFacts,
    /// The error's first line, cut at 300 bytes.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    /// Steps in the build.
    pub steps: usize,
}

impl BuildEntry {
    /// The entry's line in a list.
    pub fn summary(&self) -> BuildSummary {
        BuildSummary {
            facts: self.facts.clone(),
            error: self.error.as_deref().map(first_line),
            steps: self.steps.len(),
        }
    }
}

fn first_line(text: &str) -> String {
    let mut line = text.lines().next().unwrap_or_default().to_string();
    crate::text::truncate_with(&mut line, 300, "…");
    line
}

/// Which builds a list shows.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Filter {
    /// Only images whose reference contains this.
    #[serde(default)]
    pub image: Option<String>,
    /// Only builds with this result (`failed` means anything but success).
    #[serde(default)]
    pub result: Option<String>,
    /// Only builds older than this position (the next page).
    #[serde(default)]
    pub before: Option<u64>,
    /// At most this many (default 50, at most 500).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// Default and largest page of a list.
pub const PAGE: usize = 50;
/// Largest page of a list.
pub const MAX_PAGE: usize = 500;

impl Filter {
    /// Whether `s` is shown.
    pub fn shows(&self, s: &BuildSummary) -> bool {
        let image = self.image.as_deref().is_none_or(|i| s.facts.image.contains(i));
        let result = match self.result.as_deref() {
            None | Some("") => true,
            Some("failed") => s.facts.result != "success",
            Some(r) => s.facts.result == r,
        };
        image && result
    }

    /// The page size asked for, within bounds.
    pub fn page(&self) -> usize {
        self.limit.unwrap_or(PAGE).clamp(1, MAX_PAGE)
    }
}

/// A page of the list, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Page {
    /// The builds on this page.
    pub builds: Vec<BuildSummary>,
    /// `before` for the next page, when there is one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub next: Option<u64>,
    /// Builds the history holds (all of them, not only those shown).
    pub total: u64,
}
