//! Build secrets as faas-cli and the go-sdk send them (contract §1.7): the
//! builder's X25519 key pair (base64 files, as `faas-cli secret keygen` and
//! `kiln keygen` write them), `GET /publickey`, and the
//! `com.openfaas.secrets` envelope — YAML whose values are
//! base64(24-byte nonce ‖ NaCl box) sealed with an ephemeral sender key.
//! Secret values never appear in errors or logs.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use crypto_box::aead::Aead;
use crypto_box::{Nonce, PublicKey, SalsaBox, SecretKey};
use std::collections::BTreeMap;

/// The only envelope version and algorithm.
const VERSION: &str = "v1";
const ALGORITHM: &str = "nacl/box";

/// The builder's key pair.
pub struct BuildKey {
    secret: SecretKey,
    public_b64: String,
}

impl std::fmt::Debug for BuildKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BuildKey({})", self.key_id())
    }
}

/// Why keys or an envelope cannot be used. Messages name secrets by id,
/// never by value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretsError {
    /// A key that is not base64 of 32 bytes.
    #[error("{0} is not base64 of 32 bytes")]
    BadKey(&'static str),
    /// The system's random source failed.
    #[error("random: {0}")]
    Random(String),
    /// The envelope is not the flat YAML shape clients send.
    #[error("malformed secrets envelope: {0}")]
    Malformed(&'static str),
    /// An envelope version other than v1.
    #[error("unsupported secrets envelope version {0:?}")]
    Version(String),
    /// An algorithm other than nacl/box.
    #[error("unsupported secrets algorithm {0:?}")]
    Algorithm(String),
    /// Sealed for another builder's key.
    #[error(
        "secrets were sealed for key {sealed_for:?} but this builder's key is {ours:?}; fetch GET /publickey again"
    )]
    WrongKey {
        /// The envelope's key id.
        sealed_for: String,
        /// This builder's key id.
        ours: String,
    },
    /// A secret that is not base64, too short, or does not open.
    #[error("secret {id:?} {why}")]
    BadSecret {
        /// The secret's id.
        id: String,
        /// What is wrong.
        why: &'static str,
    },
    /// Encryption failed.
    #[error("seal failed")]
    Seal,
}

fn key_bytes(b64: &str, what: &'static str) -> Result<[u8; 32], SecretsError> {
    let raw = B64.decode(b64.trim()).map_err(|_| SecretsError::BadKey(what))?;
    raw.try_into().map_err(|_| SecretsError::BadKey(what))
}

/// The key id clients put in envelopes: the first 8 characters of the
/// base64 public key.
pub fn key_id_of(public_b64: &str) -> String {
    public_b64.chars().take(8).collect()
}

impl BuildKey {
    /// Parses a private key file's text (base64 of 32 bytes).
    pub fn from_private_b64(text: &str) -> Result<Self, SecretsError> {
        let secret = SecretKey::from(key_bytes(text, "the build secrets private key")?);
        let public_b64 = B64.encode(secret.public_key().as_bytes());
        Ok(Self { secret, public_b64 })
    }

    /// A fresh key pair as (private, public) base64 text.
    pub fn generate() -> Result<(String, String), SecretsError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| SecretsError::Random(e.to_string()))?;
        let key = Self::from_private_b64(&B64.encode(bytes))?;
        Ok((B64.encode(bytes), key.public_b64))
    }

    /// The public key, base64.
    pub fn public_b64(&self) -> &str {
        &self.public_b64
    }

    /// The key id.
    pub fn key_id(&self) -> String {
        key_id_of(&self.public_b64)
    }

    /// The `GET /publickey` body.
    pub fn public_json(&self) -> serde_json::Value {
        serde_json::json!({"key_id": self.key_id(), "algorithm": ALGORITHM, "public_key": self.public_b64})
    }

    /// Opens an envelope into secret id → value.
    pub fn unseal(&self, envelope: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, SecretsError> {
        let env = Envelope::parse(envelope)?;
        if env.version != VERSION {
            return Err(SecretsError::Version(env.version));
        }
        if !env.algorithm.is_empty() && env.algorithm != ALGORITHM {
            return Err(SecretsError::Algorithm(env.algorithm));
        }
        if env.key_id != self.key_id() {
            return Err(SecretsError::WrongKey { sealed_for: env.key_id, ours: self.key_id() });
        }
        let sender = PublicKey::from(key_bytes(&env.public_key, "the envelope's public_key")?);
        let sbox = SalsaBox::new(&sender, &self.secret);
        let mut out = BTreeMap::new();
        for (name, value) in env.secrets {
            let bad = |why| SecretsError::BadSecret { id: name.clone(), why };
            let raw = B64.decode(value.trim()).map_err(|_| bad("is not base64"))?;
            if raw.len() < 24 + 16 {
                return Err(bad("is too short"));
            }
            let plain = sbox
                .decrypt(Nonce::from_slice(&raw[..24]), &raw[24..])
                .map_err(|_| bad("cannot be opened with this builder's key"))?;
            out.insert(name, plain);
        }
        Ok(out)
    }
}

/// Seals `values` for a builder's public key the way the go-sdk does.
pub fn seal(public_b64: &str, values: &BTreeMap<String, Vec<u8>>) -> Result<String, SecretsError> {
    let builder = PublicKey::from(key_bytes(public_b64, "the builder's public key")?);
    let (eph_private, eph_public) = BuildKey::generate()?;
    let ephemeral = SecretKey::from(key_bytes(&eph_private, "ephemeral key")?);
    let sbox = SalsaBox::new(&builder, &ephemeral);
    let mut yaml = format!(
        "version: {VERSION}\nalgorithm: {ALGORITHM}\nkey_id: {}\npublic_key: {eph_public}\nsecrets:\n",
        key_id_of(public_b64)
    );
    for (name, value) in values {
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).map_err(|e| SecretsError::Random(e.to_string()))?;
        let sealed = sbox.encrypt(Nonce::from_slice(&nonce), value.as_slice()).map_err(|_| SecretsError::Seal)?;
        let mut blob = nonce.to_vec();
        blob.extend(sealed);
        yaml.push_str(&format!("    {name}: {}\n", B64.encode(blob)));
    }
    Ok(yaml)
}

/// The parsed envelope (a fixed, flat YAML shape).
#[derive(Debug, Default)]
struct Envelope {
    version: String,
    algorithm: String,
    key_id: String,
    public_key: String,
    secrets: Vec<(String, String)>,
}

fn unquote(s: &str) -> String {
    let t = s.trim();
    let quoted =
        t.len() >= 2 && ((t.starts_with('"') && t.ends_with('"')) || (t.starts_with('\'') && t.ends_with('\'')));
    if quoted {
        t[1..t.len() - 1].to_string()
    } else {
        t.to_string()
    }
}

impl Envelope {
    fn parse(raw: &[u8]) -> Result<Self, SecretsError> {
        let text = std::str::from_utf8(raw).map_err(|_| SecretsError::Malformed("not UTF-8"))?;
        let mut env = Envelope::default();
        let mut in_secrets = false;
        for line in text.lines().filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')) {
            let indented = line.starts_with(' ') || line.starts_with('\t');
            let (key, value) = line.split_once(':').ok_or(SecretsError::Malformed("a line without a colon"))?;
            let (key, value) = (unquote(key), unquote(value));
            if indented && in_secrets {
                env.secrets.push((key, value));
                continue;
            }
            in_secrets = false;
            match key.as_str() {
                "version" => env.version = value,
                "algorithm" => env.algorithm = value,
                "key_id" => env.key_id = value,
                "public_key" => env.public_key = value,
                "secrets" => in_secrets = true,
                _ => {}
            }
        }
        Ok(env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn other_id(private: &str) -> String {
        BuildKey::from_private_b64(private).unwrap().key_id()
    }

    #[test]
    fn seal_and_unseal_round_trip_and_refuse_wrong_keys() {
        let (private, public) = BuildKey::generate().unwrap();
        let key = BuildKey::from_private_b64(&private).unwrap();
        assert_eq!(key.public_b64(), public);
        assert_eq!(key.key_id(), &public[..8]);
        let mut values = BTreeMap::new();
        values.insert("pip_token".to_string(), b"s3cr3t".to_vec());
        values.insert("ca.crt".to_string(), vec![0, 255, 1, 2]);
        let env = seal(&public, &values).unwrap();
        assert!(env.starts_with("version: v1\nalgorithm: nacl/box\nkey_id: "));
        assert!(!env.contains("s3cr3t"));
        assert_eq!(key.unseal(env.as_bytes()).unwrap(), values);

        let (other, _) = BuildKey::generate().unwrap();
        let err = BuildKey::from_private_b64(&other).unwrap().unseal(env.as_bytes()).unwrap_err();
        assert!(matches!(&err, SecretsError::WrongKey { ours, .. } if *ours == other_id(&other)), "{err}");
        assert!(!err.to_string().contains("s3cr3t"));
        assert_eq!(key.unseal(b"version: v99\nalgorithm: nacl/box\n"), Err(SecretsError::Version("v99".into())));
        assert_eq!(key.unseal(b"version: v1\nalgorithm: aes-gcm\n"), Err(SecretsError::Algorithm("aes-gcm".into())));
        let tampered = env.replace("pip_token: ", "pip_token: AAAA");
        assert!(key.unseal(tampered.as_bytes()).is_err());
    }
}
