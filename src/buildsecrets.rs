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

fn key_bytes(b64: &str, what: &str) -> Result<[u8; 32], String> {
    let raw = B64.decode(b64.trim()).map_err(|_| format!("{what} is not base64"))?;
    raw.try_into().map_err(|_| format!("{what} must be 32 bytes"))
}

/// The key id clients put in envelopes: the first 8 characters of the
/// base64 public key.
pub fn key_id_of(public_b64: &str) -> String {
    public_b64.chars().take(8).collect()
}

impl BuildKey {
    /// Parses a private key file's text (base64 of 32 bytes).
    pub fn from_private_b64(text: &str) -> Result<Self, String> {
        let secret = SecretKey::from(key_bytes(text, "the build secrets private key")?);
        let public_b64 = B64.encode(secret.public_key().as_bytes());
        Ok(Self { secret, public_b64 })
    }

    /// A fresh key pair as (private, public) base64 text.
    pub fn generate() -> Result<(String, String), String> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| format!("random: {e}"))?;
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
    pub fn unseal(&self, envelope: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, String> {
        let env = Envelope::parse(envelope)?;
        if env.version != VERSION {
            return Err(format!("unsupported secrets envelope version {:?}", env.version));
        }
        if !env.algorithm.is_empty() && env.algorithm != ALGORITHM {
            return Err(format!("unsupported secrets algorithm {:?}", env.algorithm));
        }
        if env.key_id != self.key_id() {
            return Err(format!(
                "secrets were sealed for key {:?} but this builder's key is {:?}; fetch GET /publickey again",
                env.key_id,
                self.key_id()
            ));
        }
        let sender = PublicKey::from(key_bytes(&env.public_key, "the envelope's public_key")?);
        let sbox = SalsaBox::new(&sender, &self.secret);
        let mut out = BTreeMap::new();
        for (name, value) in env.secrets {
            let raw = B64.decode(value.trim()).map_err(|_| format!("secret {name:?} is not base64"))?;
            if raw.len() < 24 + 16 {
                return Err(format!("secret {name:?} is too short"));
            }
            let plain = sbox
                .decrypt(Nonce::from_slice(&raw[..24]), &raw[24..])
                .map_err(|_| format!("secret {name:?} cannot be opened with this builder's key"))?;
            out.insert(name, plain);
        }
        Ok(out)
    }
}

/// Seals `values` for a builder's public key the way the go-sdk does.
pub fn seal(public_b64: &str, values: &BTreeMap<String, Vec<u8>>) -> Result<String, String> {
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
        getrandom::fill(&mut nonce).map_err(|e| format!("random: {e}"))?;
        let sealed =
            sbox.encrypt(Nonce::from_slice(&nonce), value.as_slice()).map_err(|_| "seal failed".to_string())?;
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
    fn parse(raw: &[u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(raw).map_err(|_| "secrets envelope is not UTF-8".to_string())?;
        let mut env = Envelope::default();
        let mut in_secrets = false;
        for line in text.lines().filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')) {
            let indented = line.starts_with(' ') || line.starts_with('\t');
            let (key, value) = line.split_once(':').ok_or_else(|| "malformed secrets envelope".to_string())?;
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
        assert!(err.contains("sealed for key"), "{err}");
        assert!(!err.contains("s3cr3t"));
        assert!(key.unseal(b"version: v99\nalgorithm: nacl/box\n").unwrap_err().contains("version"));
        assert!(key.unseal(b"version: v1\nalgorithm: aes-gcm\n").unwrap_err().contains("algorithm"));
        let tampered = env.replace("pip_token: ", "pip_token: AAAA");
        assert!(key.unseal(tampered.as_bytes()).is_err());
    }
}
