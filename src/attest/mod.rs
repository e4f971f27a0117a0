//! Supply-chain evidence for the images kiln builds: SLSA provenance,
//! an SPDX SBOM made from the image's own files, signatures in the
//! sigstore format and DSSE envelopes, and the OCI artifacts that carry
//! them. Formats only: pushing is the exporter's, scanning storage the
//! worker's.

pub mod cosignkey;
pub mod provenance;
pub mod sbom;
pub mod sign;
pub mod simplesign;

pub use sign::{Envelope, KeyError, PublicKey, SigningKey};

/// The in-toto annotation naming a statement's predicate type.
pub const PREDICATE_ANNOTATION: &str = "in-toto.io/predicate-type";
/// A DSSE envelope's media type.
pub const DSSE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
/// The artifact type of provenance.
pub const PROVENANCE_ARTIFACT: &str = "application/vnd.in-toto+json";
/// The artifact type of an SBOM.
pub const SBOM_ARTIFACT: &str = "application/spdx+json";

/// An in-toto statement's predicate type for an SPDX document.
pub const SPDX_PREDICATE_TYPE: &str = "https://spdx.dev/Document";

/// The in-toto Statement v1 around an SPDX document about `subject`.
pub fn sbom_statement(image: &str, digest: &str, document: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "_type": provenance::STATEMENT_TYPE,
        "subject": [{"name": image, "digest": {"sha256": digest.trim_start_matches("sha256:")}}],
        "predicateType": SPDX_PREDICATE_TYPE,
        "predicate": document,
    })
}
