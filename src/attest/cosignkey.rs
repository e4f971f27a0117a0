//! cosign's encrypted private key format: PEM `ENCRYPTED SIGSTORE PRIVATE
//! KEY` around JSON `{kdf: scrypt(N, r, p, salt), cipher: nacl/secretbox
//! (nonce), ciphertext}`, whose plaintext is the PKCS#8 DER key; the
//! password comes from `COSIGN_PASSWORD`, as with cosign.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::XSalsa20Poly1305;
use serde::{Deserialize, Serialize};

/// The PEM label cosign writes.
pub const LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// The largest scrypt cost accepted (cosign uses 2^15).
const MAX_LOG_N: u8 = 20;

#[derive(Serialize, Deserialize)]
struct Sealed {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: Params,
    salt: String,
}

#[derive(Serialize, Deserialize)]
struct Params {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Serialize, Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

/// Why a cosign key does not open.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CosignKeyError(String);

fn bad(msg: impl std::fmt::Display) -> CosignKeyError {
    CosignKeyError(msg.to_string())
}

/// The PEM body between the armour lines, decoded.
fn pem_body(text: &str) -> Result<Vec<u8>, CosignKeyError> {
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    B64.decode(body.trim()).map_err(bad)
}

fn derive(password: &str, salt: &[u8], p: &Params) -> Result<[u8; 32], CosignKeyError> {
    let log_n =
        p.n.checked_ilog2().filter(|l| 1u64 << l == p.n && *l as u8 <= MAX_LOG_N).ok_or_else(|| bad("bad scrypt N"))?;
    let params = scrypt::Params::new(log_n as u8, p.r, p.p, 32).map_err(bad)?;
    let mut key = [0u8; 32];
    scrypt::scrypt(password.as_bytes(), salt, &params, &mut key).map_err(bad)?;
    Ok(key)
}

/// Opens a cosign-format key with `password`: the PKCS#8 DER inside.
pub fn decrypt(text: &str, password: &str) -> Result<Vec<u8>, CosignKeyError> {
    let sealed: Sealed = serde_json::from_slice(&pem_body(text)?).map_err(bad)?;
    if sealed.kdf.name != "scrypt" || sealed.cipher.name != "nacl/secretbox" {
        return Err(bad(format!("unsupported kdf {} or cipher {}", sealed.kdf.name, sealed.cipher.name)));
    }
    let key = derive(password, &B64.decode(&sealed.kdf.salt).map_err(bad)?, &sealed.kdf.params)?;
    let nonce = B64.decode(&sealed.cipher.nonce).map_err(bad)?;
    if nonce.len() != 24 {
        return Err(bad("nonce is not 24 bytes"));
    }
    let ciphertext = B64.decode(&sealed.ciphertext).map_err(bad)?;
    XSalsa20Poly1305::new(&key.into())
        .decrypt(nonce.as_slice().into(), ciphertext.as_slice())
        .map_err(|_| bad("wrong password (COSIGN_PASSWORD) or damaged key"))
}

/// Seals PKCS#8 DER `der` with `password` in cosign's format.
pub fn encrypt(der: &[u8], password: &str) -> String {
    let mut salt = [0u8; 32];
    let mut nonce = [0u8; 24];
    getrandom::fill(&mut salt).expect("random salt");
    getrandom::fill(&mut nonce).expect("random nonce");
    let params = Params { n: 1 << 15, r: 8, p: 1 };
    let key = derive(password, &salt, &params).expect("fixed parameters are valid");
    let ciphertext = XSalsa20Poly1305::new(&key.into()).encrypt((&nonce).into(), der).expect("sealing cannot fail");
    let sealed = Sealed {
        kdf: Kdf { name: "scrypt".into(), params, salt: B64.encode(salt) },
        cipher: Cipher { name: "nacl/secretbox".into(), nonce: B64.encode(nonce) },
        ciphertext: B64.encode(ciphertext),
    };
    let body = B64.encode(serde_json::to_vec(&sealed).expect("serializes"));
    let lines: Vec<&str> =
        body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("base64 is ASCII")).collect();
    format!("-----BEGIN {LABEL}-----\n{}\n-----END {LABEL}-----\n", lines.join("\n"))
}
