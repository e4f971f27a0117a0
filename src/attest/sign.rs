//! Signing keys (ECDSA P-256, SHA-256 — the algorithm cosign and the
//! containers tools verify by default) and DSSE envelopes.
//!
//! A key is read from PEM: SEC1 (`EC PRIVATE KEY`), PKCS#8 (`PRIVATE
//! KEY`), or cosign's encrypted form (`ENCRYPTED SIGSTORE PRIVATE KEY`,
//! see [`super::cosignkey`]).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey as EcKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use serde::{Deserialize, Serialize};

/// Key failures.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The text is not a key kiln reads.
    #[error("not an ECDSA P-256 key in PEM (SEC1, PKCS#8 or cosign's encrypted form): {0}")]
    Format(String),
    /// A cosign key that does not open.
    #[error("cosign key: {0}")]
    Cosign(String),
}

/// A private key that signs images and attestations.
pub struct SigningKey(EcKey);

impl SigningKey {
    /// A new random key.
    pub fn generate() -> Self {
        SigningKey(EcKey::random(&mut rand_core::OsRng))
    }

    /// Reads a PEM key; `password` opens a cosign-format key.
    pub fn from_pem(text: &str, password: Option<&str>) -> Result<Self, KeyError> {
        let text = text.trim();
        if text.contains("ENCRYPTED SIGSTORE PRIVATE KEY") || text.contains("ENCRYPTED COSIGN PRIVATE KEY") {
            let der =
                super::cosignkey::decrypt(text, password.unwrap_or("")).map_err(|e| KeyError::Cosign(e.to_string()))?;
            return EcKey::from_pkcs8_der(&der).map(SigningKey).map_err(|e| KeyError::Cosign(e.to_string()));
        }
        if text.contains("BEGIN EC PRIVATE KEY") {
            let secret = p256::SecretKey::from_sec1_pem(text).map_err(|e| KeyError::Format(e.to_string()))?;
            return Ok(SigningKey(secret.into()));
        }
        EcKey::from_pkcs8_pem(text).map(SigningKey).map_err(|e| KeyError::Format(e.to_string()))
    }

    /// The key as unencrypted PKCS#8 PEM.
    pub fn to_pem(&self) -> String {
        self.0.to_pkcs8_pem(LineEnding::LF).expect("a P-256 key encodes").to_string()
    }

    /// The key as PKCS#8 DER.
    pub fn to_der(&self) -> Vec<u8> {
        self.0.to_pkcs8_der().expect("a P-256 key encodes").as_bytes().to_vec()
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(*self.0.verifying_key())
    }

    /// An ASN.1 DER ECDSA signature over SHA-256 of `data`.
    pub fn sign(&self, data: &[u8]) -> Vec<u8> {
        let sig: Signature = self.0.sign(data);
        sig.to_der().as_bytes().to_vec()
    }
}

/// A public key that checks signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Reads a `PUBLIC KEY` PEM (what `cosign generate-key-pair` and
    /// `kiln keygen --signing` write).
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        VerifyingKey::from_public_key_pem(text.trim()).map(PublicKey).map_err(|e| KeyError::Format(e.to_string()))
    }

    /// The key as `PUBLIC KEY` PEM.
    pub fn to_pem(&self) -> String {
        self.0.to_public_key_pem(LineEnding::LF).expect("a P-256 key encodes")
    }

    /// SHA-256 of the key's DER: the key id in DSSE envelopes.
    pub fn key_id(&self) -> String {
        let der = self.0.to_public_key_der().expect("a P-256 key encodes");
        kiln_snapshotter::Digest::of(der.as_bytes()).hex().to_string()
    }

    /// Whether `signature` (DER) signs `data`.
    pub fn verify(&self, data: &[u8], signature: &[u8]) -> bool {
        Signature::from_der(signature).is_ok_and(|s| self.0.verify(data, &s).is_ok())
    }
}

/// The in-toto payload type of DSSE envelopes over statements.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// A DSSE envelope (<https://github.com/secure-systems-lab/dsse>).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// What the payload is.
    pub payload_type: String,
    /// The payload, base64.
    pub payload: String,
    /// Its signatures.
    pub signatures: Vec<EnvelopeSignature>,
}

/// One signature of an [`Envelope`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EnvelopeSignature {
    /// The signing key's id.
    #[serde(default)]
    pub keyid: String,
    /// The signature, base64.
    pub sig: String,
}

/// DSSE's pre-authentication encoding: what is actually signed.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {payload_type} {} ", payload_type.len(), payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

impl Envelope {
    /// Signs `payload` of `payload_type`.
    pub fn sign(key: &SigningKey, payload_type: &str, payload: &[u8]) -> Self {
        let sig = key.sign(&pae(payload_type, payload));
        Envelope {
            payload_type: payload_type.to_string(),
            payload: B64.encode(payload),
            signatures: vec![EnvelopeSignature { keyid: key.public().key_id(), sig: B64.encode(sig) }],
        }
    }

    /// The payload, when one of the signatures is `key`'s.
    pub fn verified_payload(&self, key: &PublicKey) -> Option<Vec<u8>> {
        let payload = B64.decode(&self.payload).ok()?;
        let signed = pae(&self.payload_type, &payload);
        let ok = self.signatures.iter().any(|s| B64.decode(&s.sig).is_ok_and(|sig| key.verify(&signed, &sig)));
        ok.then_some(payload)
    }

    /// The payload, unchecked.
    pub fn payload(&self) -> Option<Vec<u8>> {
        B64.decode(&self.payload).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_round_trips_through_pem_and_signs() {
        let key = SigningKey::generate();
        let again = SigningKey::from_pem(&key.to_pem(), None).unwrap();
        assert_eq!(key.public(), again.public());
        let public = PublicKey::from_pem(&key.public().to_pem()).unwrap();
        let sig = again.sign(b"payload");
        assert!(public.verify(b"payload", &sig));
        assert!(!public.verify(b"payload!", &sig));
        assert!(!SigningKey::generate().public().verify(b"payload", &sig));
    }

    #[test]
    fn a_cosign_sealed_key_opens_with_its_password_only() {
        let key = SigningKey::generate();
        let pem = super::super::cosignkey::encrypt(&key.to_der(), "hunter2");
        assert!(pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
        let opened = SigningKey::from_pem(&pem, Some("hunter2")).unwrap();
        assert_eq!(opened.public(), key.public());
        assert!(matches!(SigningKey::from_pem(&pem, Some("wrong")), Err(KeyError::Cosign(_))));
    }

    #[test]
    fn sec1_keys_are_read_too() {
        let key = SigningKey::generate();
        let secret = p256::SecretKey::from_pkcs8_der(&key.to_der()).unwrap();
        let sec1 = secret.to_sec1_pem(LineEnding::LF).unwrap();
        assert_eq!(SigningKey::from_pem(&sec1, None).unwrap().public(), key.public());
        assert!(matches!(SigningKey::from_pem("not a key", None), Err(KeyError::Format(_))));
    }

    #[test]
    fn envelopes_check_their_signature_over_the_pre_authentication_encoding() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
        let key = SigningKey::generate();
        let mut env = Envelope::sign(&key, IN_TOTO_PAYLOAD_TYPE, b"{}");
        assert_eq!(env.verified_payload(&key.public()).unwrap(), b"{}");
        assert!(env.verified_payload(&SigningKey::generate().public()).is_none());
        env.payload_type = "text/plain".into();
        assert!(env.verified_payload(&key.public()).is_none());
    }
}
