//! The "simple signing" payload a sigstore (cosign) image signature
//! signs: the manifest digest and the reference it was pushed as. The
//! containers tools parse it strictly (exactly these `critical` fields).

use serde_json::json;

/// The signature type cosign and the containers tools expect.
pub const SIGNATURE_TYPE: &str = "cosign container image signature";
/// The media type of a signature layer.
pub const MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// The payload for `reference` (as pushed) at `digest`. It carries no
/// timestamp, so signing one image again with the same key (ECDSA with
/// RFC 6979 nonces) gives the same signature, which is then kept once.
pub fn payload(reference: &str, digest: &str) -> Vec<u8> {
    let body = json!({
        "critical": {
            "identity": {"docker-reference": reference},
            "image": {"docker-manifest-digest": digest},
            "type": SIGNATURE_TYPE,
        },
        "optional": {"creator": format!("kiln {}", env!("CARGO_PKG_VERSION"))},
    });
    serde_json::to_vec(&body).expect("payload serializes")
}

/// What a payload claims: `(docker-reference, docker-manifest-digest)`.
pub fn claims(payload: &[u8]) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let critical = v.get("critical")?;
    if critical.get("type")?.as_str()? != SIGNATURE_TYPE {
        return None;
    }
    let reference = critical.get("identity")?.get("docker-reference")?.as_str()?.to_string();
    let digest = critical.get("image")?.get("docker-manifest-digest")?.as_str()?.to_string();
    Some((reference, digest))
}

#[cfg(test)]
mod tests {
    #[test]
    fn claims_round_trip() {
        let p = super::payload("r.io/fn:1", "sha256:aa");
        assert_eq!(super::claims(&p), Some(("r.io/fn:1".into(), "sha256:aa".into())));
        assert_eq!(super::claims(b"{}"), None);
    }
}
