//! The wire contract shared by the server and kiln's own clients: the
//! request tar's entry names and the HMAC signatures of build and admin
//! requests.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use std::collections::BTreeMap;

/// The config entry's name.
pub const CONFIG_ENTRY: &str = "com.openfaas.docker.config";
/// The sealed build-secrets entry's name.
pub const SECRETS_ENTRY: &str = "com.openfaas.secrets";

/// `com.openfaas.docker.config`. Unknown fields are ignored.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct BuildConfig {
    /// Image to push (required).
    #[serde(default, alias = "Image", alias = "ref", alias = "Ref")]
    pub image: String,
    /// Build args; an empty value is a set value.
    #[serde(default, rename = "buildArgs", alias = "BuildArgs")]
    pub build_args: Option<BTreeMap<String, String>>,
    /// Target platforms.
    #[serde(default, alias = "Platforms")]
    pub platforms: Option<Vec<String>>,
    /// Build without pushing.
    #[serde(default, rename = "skipPush", alias = "SkipPush")]
    pub skip_push: Option<bool>,
    /// Stage to build (kiln extension; default: the last stage).
    #[serde(default, alias = "Target")]
    pub target: Option<String>,
}

/// Signs `body` the way clients do (`X-Hub-Signature-256` of a build).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = new_mac(secret);
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

pub(crate) fn new_mac(secret: &[u8]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length")
}

/// Headers of a signed admin request (`/cache*`, `/doctor`).
pub const ADMIN_SIGNATURE_HEADER: &str = "x-kiln-signature";
/// The request's time, seconds since 1970, covered by its signature.
pub const ADMIN_TIMESTAMP_HEADER: &str = "x-kiln-timestamp";
/// How far an admin request's time may be from the server's.
pub const ADMIN_MAX_SKEW_SECS: i64 = 300;

/// The signature of an admin request: `sha256=` HMAC over its method,
/// path with query, timestamp and body, each on a line of its own.
pub fn admin_signature(secret: &[u8], method: &str, path_and_query: &str, timestamp: i64, body: &[u8]) -> String {
    let mac = admin_mac(secret, (method, path_and_query, body), timestamp);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The MAC an admin request is signed with.
pub(crate) fn admin_mac(
    secret: &[u8],
    (method, path_and_query, body): (&str, &str, &[u8]),
    timestamp: i64,
) -> Hmac<Sha256> {
    let mut mac = new_mac(secret);
    mac.update(format!("{method}\n{path_and_query}\n{timestamp}\n").as_bytes());
    mac.update(body);
    mac
}

/// How long a `kiln ui` login link is valid at most.
pub const UI_LOGIN_MAX_SECS: i64 = 600;
/// How long a history page session lasts.
pub const UI_SESSION_SECS: i64 = 12 * 3600;

/// The `sig` of a login link to the history page that expires at
/// `expires` (seconds since 1970): a MAC with its own purpose line, so it
/// is never a valid signature of anything else.
pub fn ui_login_signature(secret: &[u8], expires: i64) -> String {
    hex::encode(purpose_mac(secret, UI_LOGIN, expires).finalize().into_bytes())
}

/// The MAC part of a history page session cookie expiring at `expires`.
pub fn ui_session_signature(secret: &[u8], expires: i64) -> String {
    hex::encode(purpose_mac(secret, UI_SESSION, expires).finalize().into_bytes())
}

/// The purpose line of a login link's MAC.
pub const UI_LOGIN: &str = "kiln-ui-login";
/// The purpose line of a session cookie's MAC.
pub const UI_SESSION: &str = "kiln-ui-session";

/// Whether `sig_hex` is the MAC of (`purpose`, `expires`), compared in
/// constant time.
pub fn verify_purpose(secret: &[u8], purpose: &str, expires: i64, sig_hex: &str) -> bool {
    let Ok(sig) = hex::decode(sig_hex) else { return false };
    purpose_mac(secret, purpose, expires).verify_slice(&sig).is_ok()
}

fn purpose_mac(secret: &[u8], purpose: &str, expires: i64) -> Hmac<Sha256> {
    let mut mac = new_mac(secret);
    mac.update(format!("{purpose}\n{expires}\n").as_bytes());
    mac
}

/// The path and query of a login link expiring at `expires`.
pub fn ui_login_path(secret: &[u8], expires: i64) -> String {
    format!("/ui/login?expires={expires}&sig={}", ui_login_signature(secret, expires))
}
