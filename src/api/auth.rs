//! The `X-Build-Signature: sha256=<hex HMAC-SHA256(secret, body)>` check,
//! done in constant time on the raw body before anything is parsed.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-build-signature";

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No header.
    #[error("missing X-Build-Signature header")]
    Missing,
    /// Not `sha256=<hex>`.
    #[error("malformed X-Build-Signature header: expected sha256=<hex HMAC-SHA256 of the body>")]
    Malformed,
    /// Wrong digest.
    #[error("invalid message digest or secret")]
    Mismatch,
}

/// Verifies `header` against `body` with `secret`.
pub fn verify(secret: &[u8], body: &[u8], header: Option<&str>) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?.trim();
    let hex_sig = header.strip_prefix("sha256=").ok_or(SignatureError::Malformed)?;
    let sig = hex::decode(hex_sig).map_err(|_| SignatureError::Malformed)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    mac.verify_slice(&sig).map_err(|_| SignatureError::Mismatch)
}

/// Signs `body` the way clients do (for tests and the client command).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_openssl_and_rejects_tampering() {
        // printf 'body' | openssl dgst -sha256 -hmac key
        let want = "sha256=515aae133b435d4000956731f68ae5cf5eb85d4f0dc6a546d2bfcd3595ec1ae1";
        assert_eq!(sign(b"key", b"body"), want);
        let good = sign(b"key", b"body");
        assert_eq!(verify(b"key", b"body", Some(&good)), Ok(()));
        assert_eq!(verify(b"key", b"body2", Some(&good)), Err(SignatureError::Mismatch));
        assert_eq!(verify(b"other", b"body", Some(&good)), Err(SignatureError::Mismatch));
        assert_eq!(verify(b"key", b"body", None), Err(SignatureError::Missing));
        assert_eq!(verify(b"key", b"body", Some("sha1=abc")), Err(SignatureError::Malformed));
        assert_eq!(verify(b"key", b"body", Some("sha256=zz")), Err(SignatureError::Malformed));
    }
}
