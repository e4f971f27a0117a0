//! Registry credentials from a Docker `config.json` (`auths` entries with
//! `auth`, `username`/`password` or `identitytoken`) and the
//! `WWW-Authenticate` challenge parser for Basic and Bearer auth.

use super::helpers::CredentialError;
use base64::Engine;
use std::collections::HashMap;

pub use super::credential::Credential;

/// Credentials for every configured registry: `credHelpers`, then
/// `credsStore`, then `auths` (Docker's order).
#[derive(Clone, Default)]
pub struct Credentials {
    by_host: HashMap<String, Credential>,
    helpers: HashMap<String, String>,
    store: Option<String>,
    broker: Option<std::sync::Arc<super::helpers::BrokerClient>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("registries", &self.by_host.keys().collect::<Vec<_>>())
            .field("helpers", &self.helpers)
            .field("store", &self.store)
            .finish()
    }
}

/// `https://index.docker.io/v1/` → `docker.io`; `https://h:5000/x` → `h:5000`.
fn normalize_host(key: &str) -> String {
    let k = key.trim_start_matches("https://").trim_start_matches("http://");
    let host = k.split('/').next().unwrap_or(k);
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".into(),
        h => h.to_string(),
    }
}

impl Credentials {
    /// Parses a Docker `config.json`.
    pub fn from_docker_config(json: &[u8]) -> Result<Self, CredentialError> {
        let v: serde_json::Value = serde_json::from_slice(json).map_err(|e| CredentialError::Config(e.to_string()))?;
        let mut creds = Self::default();
        if let Some(auths) = v.get("auths").and_then(|a| a.as_object()) {
            for (key, entry) in auths {
                if let Some(c) = parse_entry(entry)? {
                    creds.by_host.insert(normalize_host(key), c);
                }
            }
        }
        if let Some(helpers) = v.get("credHelpers").and_then(|h| h.as_object()) {
            for (key, name) in helpers {
                if let Some(name) = name.as_str().filter(|n| !n.is_empty()) {
                    creds.helpers.insert(normalize_host(key), name.to_string());
                }
            }
        }
        creds.store = v.get("credsStore").and_then(|s| s.as_str()).filter(|s| !s.is_empty()).map(str::to_string);
        Ok(creds)
    }

    /// Routes credential-helper calls through the supervisor's broker.
    pub fn with_broker(mut self, broker: std::sync::Arc<super::helpers::BrokerClient>) -> Self {
        self.broker = Some(broker);
        self
    }

    /// The helper configured for a registry, if any.
    pub fn helper_for(&self, registry: &str) -> Option<&str> {
        self.helpers.get(&normalize_host(registry)).or(self.store.as_ref()).map(String::as_str)
    }

    /// The credential for a registry host (blocking when a helper runs).
    pub fn get(&self, registry: &str) -> Result<Option<Credential>, CredentialError> {
        if let Some(helper) = self.helper_for(registry) {
            let found = match &self.broker {
                Some(b) => b.get(helper, &normalize_host(registry))?,
                None => super::helpers::run_helper(helper, &normalize_host(registry))?,
            };
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(self.by_host.get(&normalize_host(registry)).cloned())
    }
}

fn parse_entry(entry: &serde_json::Value) -> Result<Option<Credential>, CredentialError> {
    let s = |k: &str| entry.get(k).and_then(|v| v.as_str()).filter(|v| !v.is_empty()).map(str::to_string);
    if let Some(token) = s("identitytoken") {
        return Ok(Some(Credential::IdentityToken(token)));
    }
    if let Some(auth) = s("auth") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| CredentialError::Config("an `auth` value is not base64".into()))?;
        let text = String::from_utf8(decoded).map_err(|_| CredentialError::Config("`auth` is not UTF-8".into()))?;
        let (u, p) =
            text.split_once(':').ok_or(CredentialError::Config("`auth` must be base64(user:password)".into()))?;
        return Ok(Some(Credential::Basic { username: u.into(), password: p.into() }));
    }
    match (s("username"), s("password")) {
        (Some(username), Some(password)) => Ok(Some(Credential::Basic { username, password })),
        _ => Ok(None),
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm=…`.
    Basic,
    /// `Bearer realm=…,service=…,scope=…`.
    Bearer { realm: String, service: Option<String>, scope: Option<String> },
}

/// Parses a challenge header value.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, params) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut map = HashMap::new();
    let mut rest = params;
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            (&q[..end], q.get(end + 1..).unwrap_or(""))
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        map.insert(key, value.to_string());
        rest = remaining;
    }
    Some(Challenge::Bearer { realm: map.remove("realm")?, service: map.remove("service"), scope: map.remove("scope") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_config_and_challenges() {
        let cfg = br#"{"auths":{"https://index.docker.io/v1/":{"auth":"dXNlcjpwYXNz"},"127.0.0.1:5001":{"username":"tester","password":"s3cret"},"ghcr.io":{"identitytoken":"tok"}}}"#;
        let c = Credentials::from_docker_config(cfg).unwrap();
        let basic = Credential::Basic { username: "user".into(), password: "pass".into() };
        assert_eq!(c.get("docker.io").unwrap(), Some(basic));
        assert!(matches!(c.get("127.0.0.1:5001"), Ok(Some(Credential::Basic { .. }))));
        assert_eq!(c.get("ghcr.io").unwrap(), Some(Credential::IdentityToken("tok".into())));
        assert_eq!(c.get("quay.io").unwrap(), None);
        let bad = Credentials::from_docker_config(br#"{"auths":{"r.io":{"auth":"bm9jb2xvbg=="}}}"#);
        assert!(matches!(bad, Err(CredentialError::Config(m)) if m.contains("user:password")));
        let h =
            Credentials::from_docker_config(br#"{"credHelpers":{"a.io":"ecr-login"},"credsStore":"pass"}"#).unwrap();
        assert_eq!((h.helper_for("a.io"), h.helper_for("b.io")), (Some("ecr-login"), Some("pass")));
        let ch = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(
            ch,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into())
            })
        );
        assert_eq!(parse_challenge(r#"Basic realm="test-registry""#), Some(Challenge::Basic));
        assert!(Credentials::from_docker_config(b"{").is_err());
    }
}
