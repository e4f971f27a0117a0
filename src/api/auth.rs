//! Request signatures, checked in constant time on the raw body before
//! anything is parsed: `X-Build-Signature: sha256=<hex HMAC-SHA256(secret,
//! body)>` (pro-builder), or of-builder's `X-Cloud-Signature` with `sha1=`
//! or `sha256=`. The header is read first, so a request without a usable
//! one is refused before its body; the MAC is computed while the body
//! streams to disk ([`BodyMac`]).

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
    /// An `X-Cloud-Signature` with neither `sha1=` nor `sha256=` (of-builder's text).
    #[error("valid hash prefixes: [sha1=, sha256=], got: {0}")]
    UnknownPrefix(String),
}

/// Why an admin request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminAuthError {
    /// A header is missing.
    #[error("admin endpoints need X-Kiln-Timestamp and X-Kiln-Signature (kiln cache signs them)")]
    Missing,
    /// The timestamp is not a number.
    #[error("X-Kiln-Timestamp is not a number")]
    BadTimestamp,
    /// The timestamp is too far from now (a replay, or a wrong clock).
    #[error("X-Kiln-Timestamp is more than {ADMIN_MAX_SKEW_SECS} s from the server's clock")]
    Stale,
    /// Not `sha256=<hex>`.
    #[error("X-Kiln-Signature must be sha256=<hex>")]
    Malformed,
    /// Wrong digest.
    #[error("invalid message digest or secret")]
    Mismatch,
}

/// The MAC a signature header asks for, fed with the body as it arrives.
pub enum BodyMac {
    /// HMAC-SHA256.
    Sha256(Hmac<Sha256>),
    /// HMAC-SHA1 (of-builder's `X-Cloud-Signature: sha1=` only).
    Sha1(Hmac<sha1::Sha1>),
}

/// A signature header parsed before the body is read.
pub struct Expected {
    mac: BodyMac,
    signature: Vec<u8>,
}

impl Expected {
    /// `X-Build-Signature`: `sha256=<hex>` only.
    pub fn build_signature(secret: &[u8], header: Option<&str>) -> Result<Self, SignatureError> {
        let header = header.ok_or(SignatureError::Missing)?.trim();
        let hex_sig = header.strip_prefix("sha256=").ok_or(SignatureError::Malformed)?;
        let signature = hex::decode(hex_sig).map_err(|_| SignatureError::Malformed)?;
        Ok(Self { mac: BodyMac::Sha256(new_mac(secret)), signature })
    }

    /// `X-Cloud-Signature`: `sha1=<hex>` or `sha256=<hex>`, refused with
    /// of-builder's error texts.
    pub fn cloud_signature(secret: &[u8], header: &str) -> Result<Self, SignatureError> {
        let header = header.trim();
        let (mac, hex_sig) = if let Some(h) = header.strip_prefix("sha1=") {
            let mac = Hmac::<sha1::Sha1>::new_from_slice(secret).expect("HMAC takes any key length");
            (BodyMac::Sha1(mac), h)
        } else if let Some(h) = header.strip_prefix("sha256=") {
            (BodyMac::Sha256(new_mac(secret)), h)
        } else {
            return Err(SignatureError::UnknownPrefix(header.to_string()));
        };
        let signature = hex::decode(hex_sig).map_err(|_| SignatureError::Mismatch)?;
        Ok(Self { mac, signature })
    }

    /// Feeds the next part of the body.
    pub fn update(&mut self, chunk: &[u8]) {
        match &mut self.mac {
            BodyMac::Sha256(m) => m.update(chunk),
            BodyMac::Sha1(m) => m.update(chunk),
        }
    }

    /// Whether the body fed so far carries the expected signature
    /// (compared in constant time).
    pub fn verify(self) -> Result<(), SignatureError> {
        let ok = match self.mac {
            BodyMac::Sha256(m) => m.verify_slice(&self.signature).is_ok(),
            BodyMac::Sha1(m) => m.verify_slice(&self.signature).is_ok(),
        };
        ok.then_some(()).ok_or(SignatureError::Mismatch)
    }
}

use crate::wire::{admin_mac, new_mac};
pub use crate::wire::{admin_signature, sign, ADMIN_MAX_SKEW_SECS, ADMIN_SIGNATURE_HEADER, ADMIN_TIMESTAMP_HEADER};

/// Checks an admin request: a timestamp within [`ADMIN_MAX_SKEW_SECS`] of
/// `now`, and a signature over it (compared in constant time).
pub fn verify_admin(
    secret: &[u8],
    request: (&str, &str, &[u8]),
    timestamp: Option<&str>,
    signature: Option<&str>,
    now: i64,
) -> Result<(), AdminAuthError> {
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(AdminAuthError::Missing);
    };
    let ts: i64 = timestamp.trim().parse().map_err(|_| AdminAuthError::BadTimestamp)?;
    if (now - ts).abs() > ADMIN_MAX_SKEW_SECS {
        return Err(AdminAuthError::Stale);
    }
    let hex_sig = signature.trim().strip_prefix("sha256=").ok_or(AdminAuthError::Malformed)?;
    let sig = hex::decode(hex_sig).map_err(|_| AdminAuthError::Malformed)?;
    admin_mac(secret, request, ts).verify_slice(&sig).map_err(|_| AdminAuthError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verify(secret: &[u8], body: &[u8], header: Option<&str>) -> Result<(), SignatureError> {
        let mut expected = Expected::build_signature(secret, header)?;
        expected.update(body);
        expected.verify()
    }

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

    #[test]
    fn admin_requests_are_bound_to_method_path_time_and_body() {
        let sig = admin_signature(b"key", "POST", "/cache/prune?keep_storage=0", 1000, b"");
        let check = |m, p, ts: &str, now| verify_admin(b"key", (m, p, b""), Some(ts), Some(&sig), now);
        assert_eq!(check("POST", "/cache/prune?keep_storage=0", "1000", 1100), Ok(()));
        assert_eq!(check("GET", "/cache/prune?keep_storage=0", "1000", 1000), Err(AdminAuthError::Mismatch));
        assert!(check("POST", "/cache/prune?keep_storage=5GiB", "1000", 1000).is_err(), "another query");
        assert!(check("POST", "/cache/prune?keep_storage=0", "1001", 1000).is_err(), "another time");
        let stale = check("POST", "/cache/prune?keep_storage=0", "1000", 1000 + ADMIN_MAX_SKEW_SECS + 1);
        assert_eq!(stale, Err(AdminAuthError::Stale));
        assert_eq!(verify_admin(b"key", ("GET", "/cache", b""), None, None, 0), Err(AdminAuthError::Missing));
        assert_eq!(check("POST", "/cache/prune?keep_storage=0", "soon", 1000), Err(AdminAuthError::BadTimestamp));
    }

    #[test]
    fn a_body_fed_in_chunks_verifies_as_a_whole() {
        let body = vec![7u8; 100_000];
        let mut e = Expected::build_signature(b"key", Some(&sign(b"key", &body))).unwrap();
        body.chunks(4097).for_each(|c| e.update(c));
        assert_eq!(e.verify(), Ok(()));
        let mut short = Expected::build_signature(b"key", Some(&sign(b"key", &body))).unwrap();
        short.update(&body[1..]);
        assert_eq!(short.verify(), Err(SignatureError::Mismatch));
    }
}
