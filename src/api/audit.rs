//! The audit trail: one JSON line per `/build` request, written when the
//! request ends however it ends (rejected, built, failed, cancelled, or
//! abandoned by its client). It says who asked (client address, signature
//! verdict), for what (image, platforms, build-arg names, Dockerfile
//! digest), from what (base image digests) and with what result (digest,
//! status, error, duration, bytes in and out). It never holds a secret: no
//! build-arg values, no build secrets, no payload secret, no credentials.

use serde::Serialize;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The base images a build resolved (for the audit record).
pub type BaseLog = std::sync::Arc<std::sync::Mutex<Vec<BaseImage>>>;

/// Where audit records go.
pub enum AuditSink {
    /// Nowhere (`off`).
    Off,
    /// The server's standard output (`-` or `stdout`).
    Stdout,
    /// The server's standard error (`stderr`).
    Stderr,
    /// Appended to a file.
    File(Mutex<std::fs::File>, PathBuf),
}

impl AuditSink {
    /// Whether `spec` names no file (`off`, `-`, `stdout`, `stderr`).
    pub fn is_stream(spec: &str) -> bool {
        matches!(spec.trim(), "" | "off" | "-" | "stdout" | "stderr")
    }

    /// Parses `--audit-log`: `off`, `-`/`stdout`, `stderr`, or a file path
    /// (opened for appending, created 0600).
    pub fn open(spec: &str) -> std::io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        Ok(match spec.trim() {
            "" | "off" => AuditSink::Off,
            "-" | "stdout" => AuditSink::Stdout,
            "stderr" => AuditSink::Stderr,
            path => {
                let file = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
                AuditSink::File(Mutex::new(file), PathBuf::from(path))
            }
        })
    }

    /// Writes one record as one line (a single `write` for files opened
    /// with `O_APPEND`, so concurrent records never interleave).
    pub fn write(&self, record: &AuditRecord) {
        if matches!(self, AuditSink::Off) {
            return;
        }
        let mut line = serde_json::to_vec(record).expect("audit record serializes");
        line.push(b'\n');
        let written = match self {
            AuditSink::Off => Ok(()),
            AuditSink::Stdout => std::io::stdout().lock().write_all(&line),
            AuditSink::Stderr => std::io::stderr().lock().write_all(&line),
            AuditSink::File(file, _) => file.lock().unwrap_or_else(|p| p.into_inner()).write_all(&line),
        };
        if let Err(e) = written {
            tracing::error!("audit record not written: {e}");
        }
    }
}

/// Which API family the request came in (and was answered in).
#[derive(Debug, Clone, Copy, Serialize, Default, PartialEq, Eq)]
pub enum ClientApi {
    /// pro-builder's (`com.openfaas.docker.config`, `X-Build-Signature`).
    #[default]
    #[serde(rename = "pro-builder")]
    ProBuilder,
    /// of-builder's (`config`, `X-Cloud-Signature`).
    #[serde(rename = "of-builder")]
    OfBuilder,
}

/// A base image a build resolved.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct BaseImage {
    /// The reference as resolved (registry/repository:tag).
    pub reference: String,
    /// The manifest digest it resolved to.
    pub digest: String,
}

/// Most destinations of each kind one audit line lists.
const MAX_EGRESS: usize = 500;

/// The network destinations of a build's steps.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Egress {
    /// `tcp ADDR:PORT` the steps connected to.
    #[serde(skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub connected: std::collections::BTreeSet<String>,
    /// Destinations refused.
    #[serde(skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub blocked: std::collections::BTreeSet<String>,
    /// Names looked up.
    #[serde(skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub resolved: std::collections::BTreeSet<String>,
}

impl Egress {
    fn is_empty(&self) -> bool {
        self.connected.is_empty() && self.blocked.is_empty() && self.resolved.is_empty()
    }

    /// Notes one event (each list stops growing at its bound).
    pub fn note(&mut self, ev: &crate::egress::EgressEvent) {
        use crate::egress::EgressEvent as E;
        let (list, item) = match ev {
            E::Connected { destination } => (&mut self.connected, destination),
            E::Blocked { destination, .. } => (&mut self.blocked, destination),
            E::Resolved { name } => (&mut self.resolved, name),
            E::Failed { .. } => return,
        };
        if list.len() < MAX_EGRESS {
            list.insert(item.clone());
        }
    }
}

/// One request's audit record.
#[derive(Debug, Clone, Serialize, Default)]
pub struct AuditRecord {
    /// When the request arrived (RFC 3339, UTC).
    pub time: String,
    /// The request's id (also in the reply's `X-Request-Id` header).
    pub request_id: String,
    /// The peer address of the connection.
    pub client: String,
    /// `X-Forwarded-For`, when a proxy set it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarded_for: Option<String>,
    /// `valid`, `invalid`, `missing` or `not checked` (disable_hmac).
    pub signature: &'static str,
    /// The request's API family.
    pub client_api: ClientApi,
    /// The requested image.
    pub image: String,
    /// Requested platforms.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
    /// Names (never values) of the build arguments.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub build_arg_names: Vec<String>,
    /// Build secret ids (never values).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secret_ids: Vec<String>,
    /// SHA-256 of the Dockerfile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dockerfile_digest: Option<String>,
    /// Base images and the digests they resolved to.
    pub base_images: Vec<BaseImage>,
    /// Where the build's RUN steps connected, and what was refused.
    #[serde(skip_serializing_if = "Egress::is_empty")]
    pub egress: Egress,
    /// Pushed or exported manifest (or index) digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The provenance, SBOM and signature attached to it.
    #[serde(flatten)]
    pub evidence: super::attached::Evidence,
    /// Whether the image was pushed (false for skipPush).
    pub pushed: bool,
    /// `success`, `failure`, `rejected`, `cancelled` or `abandoned` (the
    /// client went away).
    pub result: &'static str,
    /// HTTP status of the reply (0 when the client went away first).
    pub status: u16,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Seconds from arrival to the end of the reply.
    pub duration: f64,
    /// Request body bytes.
    pub bytes_in: u64,
    /// Reply body bytes.
    pub bytes_out: u64,
}

/// The record of a request in progress; written to the sink when dropped.
pub struct Audit {
    sink: Arc<AuditSink>,
    /// The record so far.
    pub record: AuditRecord,
    /// Base images, filled in by the build (which may run on other tasks).
    pub bases: Arc<Mutex<Vec<BaseImage>>>,
    /// Network destinations, filled in by the build.
    pub egress: Arc<Mutex<Egress>>,
    /// Provenance, SBOM and signature references, filled in by the build.
    pub evidence: super::attached::EvidenceSlot,
    /// Reply bytes sent so far (a streamed reply counts while it runs).
    pub bytes_out: AtomicU64,
    /// When the request arrived, and then its steps, log and bytes moved
    /// (for the build history).
    pub trace: Arc<crate::history::BuildTrace>,
    /// The Dockerfile line the build's error is about.
    pub error_line: Option<u32>,
    /// Where the request's history entry goes (authenticated requests only).
    history: Option<Arc<crate::history::History>>,
}

impl Audit {
    /// Starts the record of a request from `client`.
    pub fn begin(sink: Arc<AuditSink>, client: Option<SocketAddr>, headers: &axum::http::HeaderMap) -> Self {
        let forwarded_for = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()).map(|v| v.trim().to_string());
        let record = AuditRecord {
            time: crate::timefmt::now(),
            request_id: kiln_snapshotter::SnapshotId::random().as_str().to_string(),
            client: client.map(|c| c.to_string()).unwrap_or_default(),
            forwarded_for,
            signature: "missing",
            result: "abandoned",
            ..Default::default()
        };
        Audit {
            sink,
            record,
            bases: Default::default(),
            egress: Default::default(),
            evidence: Default::default(),
            bytes_out: AtomicU64::new(0),
            trace: Arc::new(crate::history::BuildTrace::default()),
            error_line: None,
            history: None,
        }
    }

    /// Also records the request in `history` when it ends, if its
    /// signature was good (an unauthenticated caller must not be able to
    /// push real builds out of the history).
    pub fn with_history(mut self, history: Option<Arc<crate::history::History>>) -> Self {
        self.history = history;
        self
    }

    /// The request's history entry, from its record and trace.
    fn history_entry(&self) -> crate::history::BuildEntry {
        let r = &self.record;
        let facts = crate::history::BuildFacts {
            request_id: r.request_id.clone(),
            time: r.time.clone(),
            image: r.image.clone(),
            digest: r.digest.clone(),
            result: r.result.to_string(),
            status: r.status,
            duration: r.duration,
            ..Default::default()
        };
        let mut entry = crate::history::BuildEntry {
            facts,
            error: r.error.clone(),
            error_line: self.error_line,
            audit: serde_json::to_value(r).ok(),
            ..Default::default()
        };
        self.trace.fill(&mut entry);
        entry
    }

    /// Seconds since the request arrived, rounded to milliseconds.
    pub fn elapsed(&self) -> f64 {
        self.trace.elapsed()
    }

    /// Marks the request refused before its build started.
    pub fn reject(&mut self, status: u16, error: &str) {
        self.record.result = "rejected";
        self.finish(status, Some(error));
    }

    /// Records a build's outcome and the size of its reply.
    pub fn settle(&mut self, result: &Result<kiln_snapshotter::Digest, super::failure::BuildFailure>, status: u16) {
        match result {
            Ok(digest) => {
                self.record.result = "success";
                self.record.digest = Some(digest.to_string());
                self.record.evidence = self.evidence.lock().unwrap_or_else(|p| p.into_inner()).clone();
                self.finish(status, None);
            }
            Err(f) => {
                let cancelled = f.kind == crate::errors::ErrorKind::ShuttingDown;
                self.record.result = if cancelled { "cancelled" } else { "failure" };
                self.error_line = f.line;
                self.finish(status, Some(&f.message));
            }
        }
    }

    /// Sets the reply's status and error, if any.
    pub fn finish(&mut self, status: u16, error: Option<&str>) {
        self.record.status = status;
        self.record.error = error.map(str::to_string);
    }
}

impl Drop for Audit {
    fn drop(&mut self) {
        let mut bases = self.bases.lock().unwrap_or_else(|p| p.into_inner()).clone();
        bases.sort();
        bases.dedup();
        self.record.base_images = bases;
        self.record.egress = std::mem::take(&mut *self.egress.lock().unwrap_or_else(|p| p.into_inner()));
        self.record.bytes_out = self.bytes_out.load(Ordering::Relaxed);
        self.record.duration = self.elapsed();
        self.sink.write(&self.record);
        if let Some(history) = &self.history {
            if matches!(self.record.signature, "valid" | "not checked") {
                history.record(self.history_entry());
            }
        }
    }
}
