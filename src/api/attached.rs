//! What a build's evidence is made from and what it produced: the facts
//! a platform image's solve gathered, and the references to the attached
//! provenance, SBOM and signature that the reply and the audit record
//! carry. Plain data, shared by the build and the replies.

use crate::exporter::Exported;
use crate::platform::Platform;
use crate::solver::Bases;
use crate::worker::LayerRecord;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// What one platform's solve resolved, for its provenance.
#[derive(Debug, Default)]
pub struct SolveLog {
    /// `(url, digest or git:commit)` of every remote source.
    pub remotes: Vec<(String, String)>,
    /// Node → served from the cache.
    pub steps: BTreeMap<usize, bool>,
}

/// Shared with the solve's reporter.
pub type SharedSolveLog = Arc<Mutex<SolveLog>>;

/// What one build shares for its evidence.
pub struct EvidenceInputs {
    /// The request id (the audit record's).
    pub request_id: String,
    /// Unix seconds when the request arrived.
    pub started: i64,
    /// The context's content digest (`sha256:…`), when provenance is on.
    pub context_digest: Option<String>,
}

/// References (`repo@sha256:…`) to what was attached to one image.
#[derive(Debug, Clone, Default, Serialize, PartialEq, serde::Deserialize)]
pub struct Attached {
    /// The provenance artifact.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub provenance: Option<String>,
    /// The SBOM artifact.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sbom: Option<String>,
    /// The signature manifest (`sha256-<hex>.sig`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub signature: Option<String>,
}

/// One platform's image and what it was built from.
pub struct ImageFacts<'a> {
    /// Its platform.
    pub platform: &'a Platform,
    /// Its manifest.
    pub exported: &'a Exported,
    /// Its layers, base first.
    pub layers: &'a [LayerRecord],
    /// The registry images it used.
    pub bases: &'a Bases,
    /// What the solve resolved.
    pub solved: &'a SolveLog,
    /// The lowered graph (for `max`).
    pub lowered: &'a crate::frontend::Lowered,
    /// The effective `SOURCE_DATE_EPOCH`.
    pub epoch: Option<i64>,
}

/// The evidence of a whole build, as the reply and the audit record give
/// it: references by digest; for a multi-platform build the provenance
/// and SBOM are keyed by platform and the signature is the index's.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Evidence {
    /// Provenance artifact reference(s).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub provenance: Option<serde_json::Value>,
    /// SBOM artifact reference(s).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sbom: Option<serde_json::Value>,
    /// The signature manifest's reference.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub signature: Option<serde_json::Value>,
}

impl Evidence {
    /// A single-platform build's evidence.
    pub fn single(a: &Attached) -> Self {
        let text = |s: &Option<String>| s.clone().map(serde_json::Value::String);
        Evidence { provenance: text(&a.provenance), sbom: text(&a.sbom), signature: text(&a.signature) }
    }

    /// A multi-platform build's: per platform, and the index's signature.
    pub fn per_platform(images: &[(String, Attached)], index_signature: Option<String>) -> Self {
        let keyed = |pick: fn(&Attached) -> &Option<String>| {
            let map: serde_json::Map<String, serde_json::Value> = images
                .iter()
                .filter_map(|(p, a)| pick(a).clone().map(|r| (p.clone(), serde_json::Value::String(r))))
                .collect();
            (!map.is_empty()).then_some(serde_json::Value::Object(map))
        };
        Evidence {
            provenance: keyed(|a| &a.provenance),
            sbom: keyed(|a| &a.sbom),
            signature: index_signature.map(serde_json::Value::String),
        }
    }
}

/// Where a build leaves its evidence for the reply and the audit record.
pub type EvidenceSlot = Arc<Mutex<Evidence>>;
