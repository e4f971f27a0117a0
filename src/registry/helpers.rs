//! Docker credential helpers (`credHelpers`, `credsStore`): `docker-credential-<name> get`
//! with the registry on stdin, JSON `{ServerURL, Username, Secret}` out.
//!
//! Helpers often need files only the supervisor can read (cloud
//! credentials owned by host root), so they run in the supervisor, outside
//! the user namespace. The namespaced server asks over a socketpair, one
//! line per request ([`BrokerClient`]); the supervisor answers from a
//! thread ([`serve_broker`]). Answers are cached for a few minutes.

use super::credential::Credential;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a helper's answer is reused.
const CACHE_TTL: Duration = Duration::from_secs(300);

#[derive(Serialize, Deserialize)]
struct Request {
    helper: String,
    registry: String,
}

#[derive(Serialize, Deserialize, Default)]
struct Reply {
    username: Option<String>,
    secret: Option<String>,
    error: Option<String>,
}

/// Why credentials could not be had.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The Docker `config.json` is malformed.
    #[error("docker config.json: {0}")]
    Config(String),
    /// A helper name that is not `[A-Za-z0-9._-]+`.
    #[error("invalid credential helper name {0:?}")]
    HelperName(String),
    /// The helper could not be run.
    #[error("run {program}: {source}")]
    Run {
        /// `docker-credential-<name>`.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The helper failed.
    #[error("{program} get {server} failed ({status}): {stderr}")]
    HelperFailed {
        /// `docker-credential-<name>`.
        program: String,
        /// The server asked about.
        server: String,
        /// How it exited.
        status: std::process::ExitStatus,
        /// What it printed.
        stderr: String,
    },
    /// The helper printed something other than its JSON.
    #[error("{program}: bad output: {source}")]
    HelperOutput {
        /// `docker-credential-<name>`.
        program: String,
        /// Why it does not parse.
        #[source]
        source: serde_json::Error,
    },
    /// The supervisor's broker is gone or answered nonsense.
    #[error("credential broker: {0}")]
    Broker(String),
    /// The supervisor ran the helper and it failed (its message).
    #[error("{0}")]
    Remote(String),
}

/// Runs a credential helper; `Ok(None)` when it has no credentials.
pub fn run_helper(helper: &str, registry: &str) -> Result<Option<Credential>, CredentialError> {
    let valid = !helper.is_empty() && helper.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !valid {
        return Err(CredentialError::HelperName(helper.to_string()));
    }
    let server = if registry == "docker.io" { "https://index.docker.io/v1/" } else { registry };
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| CredentialError::Run { program: program.clone(), source })?;
    let _ = child.stdin.take().expect("piped").write_all(server.as_bytes());
    let out = child.wait_with_output().map_err(|source| CredentialError::Run { program: program.clone(), source })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        if stdout.contains("credentials not found") {
            return Ok(None);
        }
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(CredentialError::HelperFailed { program, server: server.to_string(), status: out.status, stderr });
    }
    let v: serde_json::Value =
        serde_json::from_str(&stdout).map_err(|source| CredentialError::HelperOutput { program, source })?;
    let user = v["Username"].as_str().unwrap_or("").to_string();
    let secret = v["Secret"].as_str().unwrap_or("").to_string();
    Ok(match (user.as_str(), secret.is_empty()) {
        (_, true) => None,
        ("<token>", false) => Some(Credential::IdentityToken(secret)),
        _ => Some(Credential::Basic { username: user, password: secret }),
    })
}

/// Supervisor side: answers requests until the other end closes.
pub fn serve_broker(sock: UnixStream) {
    let mut writer = match sock.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    for line in BufReader::new(sock).lines() {
        let Ok(line) = line else { return };
        let reply = match serde_json::from_str::<Request>(&line) {
            Ok(req) => match run_helper(&req.helper, &req.registry) {
                Ok(Some(Credential::Basic { username, password })) => {
                    Reply { username: Some(username), secret: Some(password), error: None }
                }
                Ok(Some(Credential::IdentityToken(t))) => {
                    Reply { username: Some("<token>".into()), secret: Some(t), error: None }
                }
                Ok(None) => Reply::default(),
                Err(e) => Reply { error: Some(e.to_string()), ..Default::default() },
            },
            Err(e) => Reply { error: Some(format!("bad broker request: {e}")), ..Default::default() },
        };
        let mut out = serde_json::to_vec(&reply).expect("reply serializes");
        out.push(b'\n');
        if writer.write_all(&out).is_err() {
            return;
        }
    }
}

/// Cached helper answers by (helper, registry), with when they were fetched.
type AnswerCache = HashMap<(String, String), (Instant, Option<Credential>)>;

/// Namespaced-server side: asks the supervisor, caches the answers.
pub struct BrokerClient {
    conn: Mutex<(UnixStream, BufReader<UnixStream>)>,
    cache: Mutex<AnswerCache>,
}

impl BrokerClient {
    /// Wraps the server's end of the socketpair.
    pub fn new(sock: UnixStream) -> std::io::Result<Self> {
        let reader = BufReader::new(sock.try_clone()?);
        Ok(Self { conn: Mutex::new((sock, reader)), cache: Mutex::new(HashMap::new()) })
    }

    /// Credentials from `helper` for `registry` (blocking).
    pub fn get(&self, helper: &str, registry: &str) -> Result<Option<Credential>, CredentialError> {
        let key = (helper.to_string(), registry.to_string());
        if let Some((at, c)) = self.cache.lock().expect("cache lock").get(&key) {
            if at.elapsed() < CACHE_TTL {
                return Ok(c.clone());
            }
        }
        let req =
            serde_json::to_vec(&Request { helper: helper.into(), registry: registry.into() }).expect("serializes");
        let mut conn = self.conn.lock().expect("broker lock");
        let (w, r) = &mut *conn;
        let lost = |e: std::io::Error| CredentialError::Broker(e.to_string());
        w.write_all(&req).and_then(|_| w.write_all(b"\n")).map_err(lost)?;
        let mut line = String::new();
        r.read_line(&mut line).map_err(lost)?;
        let reply: Reply = serde_json::from_str(&line).map_err(|e| CredentialError::Broker(e.to_string()))?;
        if let Some(e) = reply.error {
            return Err(CredentialError::Remote(e));
        }
        let cred = match (reply.username, reply.secret) {
            (Some(u), Some(s)) if u == "<token>" => Some(Credential::IdentityToken(s)),
            (Some(u), Some(s)) => Some(Credential::Basic { username: u, password: s }),
            _ => None,
        };
        self.cache.lock().expect("cache lock").insert(key, (Instant::now(), cred.clone()));
        Ok(cred)
    }
}
