//! Test harness: a real `kiln serve` process (as root or as the
//! unprivileged test user), request tars shaped like the Go SDK's, and
//! independent checks of pushed images with skopeo and umoci.
//!
//! The registries are started by `scripts/test.sh`, which exports their
//! addresses; run the suite through it.

#![allow(dead_code)]

mod browser;
mod files;
#[allow(unused_imports)]
pub use browser::Browser;
#[allow(unused_imports)]
pub use files::FileServer;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The HMAC key every test server uses.
pub const SECRET: &str = "test-payload-secret-value";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the suite with scripts/test.sh, which starts the test registries")
    })
}

/// The anonymous test registry (`host:port`).
pub fn registry() -> String {
    env("KILN_TEST_REGISTRY")
}

/// The token-auth test registry (same credentials as the htpasswd one),
/// the refresh token its token service accepts, and the service's grant log.
pub fn token_registry() -> (String, String, String) {
    (env("KILN_TEST_TOKEN_REGISTRY"), env("KILN_TEST_REFRESH_TOKEN"), env("KILN_TEST_TOKEN_LOG"))
}

/// The htpasswd test registry and its credentials.
pub fn auth_registry() -> (String, String, String) {
    (env("KILN_TEST_AUTH_REGISTRY"), env("KILN_TEST_AUTH_USER"), env("KILN_TEST_AUTH_PASS"))
}

/// A docker `config.json` holding `user:pass` for `registry`.
pub fn docker_config_for(registry: &str, user: &str, pass: &str) -> String {
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    serde_json::json!({"auths": {registry: {"auth": auth}}}).to_string()
}

/// A unique `<registry>/<name>-…:v1` image reference in the anonymous
/// test registry.
pub fn test_image(name: &str) -> String {
    format!("{}/{}:v1", registry(), unique(name))
}

/// A unique repository name for one test.
pub fn unique(name: &str) -> String {
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{name}-{}-{}", std::process::id(), n % 1_000_000_000)
}

/// Options for [`Server::start`].
#[derive(Default)]
pub struct ServerOptions {
    /// Run as this unprivileged user.
    pub user: Option<String>,
    /// Docker config.json content.
    pub docker_config: Option<String>,
    /// Extra `kiln serve` arguments.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// The data directory (default: one in the server's temp dir).
    pub data_dir: Option<PathBuf>,
    /// A command that starts kiln (given as its last arguments) and itself
    /// drops to `user` (e.g. the seccomp loader); started as root.
    pub wrapper: Vec<String>,
}

/// A running `kiln serve`.
pub struct Server {
    child: Child,
    /// Base URL.
    pub url: String,
    /// Metrics base URL.
    pub metrics_url: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// The payload secret file.
    pub secret_file: PathBuf,
    /// The docker config file, if any.
    pub docker_config: Option<PathBuf>,
    /// Keeps the temp dir alive.
    _tmp: tempfile::TempDir,
    log: PathBuf,
    opts: ServerOptions,
    ports: (u16, u16),
}

/// A free loopback port (there is a small race until it is bound).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn user_ids(user: &str) -> (u32, u32) {
    let id = |flag: &str| {
        let out = Command::new("id").arg(flag).arg(user).output().expect("run id");
        assert!(out.status.success(), "test user {user} missing: run scripts/test.sh (it creates it)");
        String::from_utf8(out.stdout).unwrap().trim().parse().unwrap()
    };
    (id("-u"), id("-g"))
}

impl Server {
    /// Starts a server and waits for `/healthz`.
    pub fn start(opts: ServerOptions) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let data_dir = opts.data_dir.clone().unwrap_or_else(|| tmp.path().join("data"));
        let secret_file = tmp.path().join("payload-secret");
        std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
        std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let docker_config = opts.docker_config.as_ref().map(|c| {
            let p = tmp.path().join("config.json");
            std::fs::write(&p, c).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            p
        });
        let (port, metrics_port) = (free_port(), free_port());
        let log = tmp.path().join("server.log");
        let mut server = Server {
            child: Command::new("true").spawn().unwrap(),
            url: format!("http://127.0.0.1:{port}"),
            metrics_url: format!("http://127.0.0.1:{metrics_port}"),
            data_dir,
            secret_file,
            docker_config,
            _tmp: tmp,
            log,
            opts,
            ports: (port, metrics_port),
        };
        let _ = server.child.wait();
        // Free ports are free only until bound: when another test's server
        // took one first, start again on new ports.
        for _ in 0..3 {
            server.child = server.spawn(&[]);
            if server.ready_within(Duration::from_secs(20)) {
                return server;
            }
            if !server.log().contains("Address already in use") {
                break;
            }
            server.stop(libc::SIGKILL);
            std::fs::write(&server.log, "").unwrap();
            server.ports = (free_port(), free_port());
            server.url = format!("http://127.0.0.1:{}", server.ports.0);
            server.metrics_url = format!("http://127.0.0.1:{}", server.ports.1);
        }
        panic!("kiln serve did not become ready:\n{}", server.log());
    }

    /// Stops the server (SIGKILL when `kill9`, else SIGTERM) and starts it
    /// again on the same data dir and ports with `extra` arguments added.
    pub fn restart(&mut self, kill9: bool, extra: &[&str]) {
        self.stop(if kill9 { libc::SIGKILL } else { libc::SIGTERM });
        self.child = self.spawn(extra);
        self.wait_ready();
    }

    /// Stops the server (SIGTERM), runs `between` on its data dir, and
    /// starts it again.
    pub fn restart_after(&mut self, between: impl FnOnce(&Path)) {
        self.stop(libc::SIGTERM);
        between(&self.data_dir);
        self.child = self.spawn(&[]);
        self.wait_ready();
    }

    fn spawn(&self, extra: &[&str]) -> Child {
        let (port, metrics_port) = self.ports;
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let mut cmd = match self.opts.wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(env!("CARGO_BIN_EXE_kiln"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_kiln")),
        };
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--insecure"])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .args(&self.opts.args)
            .args(extra)
            .envs(self.opts.env.iter().cloned())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--payload-secret")
            .arg(&self.secret_file)
            .env_remove("KILN_DATA_DIR")
            .env("HOME", self._tmp.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        if let Some(p) = &self.docker_config {
            cmd.arg("--docker-config").arg(p);
        }
        if let Some(user) = &self.opts.user {
            let (uid, gid) = user_ids(user);
            std::os::unix::fs::chown(self._tmp.path(), Some(uid), Some(gid)).unwrap();
            for f in [Some(&self.secret_file), self.docker_config.as_ref()].into_iter().flatten() {
                std::os::unix::fs::chown(f, Some(uid), Some(gid)).unwrap();
            }
            if self.opts.wrapper.is_empty() {
                cmd.uid(uid).gid(gid);
            }
        }
        cmd.spawn().expect("spawn kiln serve")
    }

    fn stop(&mut self, signal: i32) {
        // SAFETY: plain kill(2) of our own child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits up to `within` for the server to exit: its
    /// exit status, or `None` when it was still running (it is then killed).
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        // SAFETY: plain kill(2) of our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    fn wait_ready(&self) {
        if !self.ready_within(Duration::from_secs(20)) {
            panic!("kiln serve did not become ready:\n{}", self.log());
        }
    }

    /// Whether `/healthz` answers within `limit`.
    fn ready_within(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(r) = reqwest::blocking::get(format!("{}/healthz", self.url)) {
                if r.status().is_success() {
                    return true;
                }
            }
            if self.log().contains("Address already in use") {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The server's process id.
    /// The audit lines the server wrote to its output (`--audit-log -`).
    pub fn audit_lines(&self) -> Vec<serde_json::Value> {
        let log = self.log();
        let records = log.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok());
        records.filter(|v| v.get("request_id").is_some()).collect()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `POST /cache/check` on the internal listener: status and report.
    pub fn check_store(&self) -> (u16, serde_json::Value) {
        let resp = self.admin("POST", "/cache/check");
        let status = resp.status().as_u16();
        (status, resp.json().expect("check report"))
    }

    /// An admin request (`/cache…`, `/doctor…`) on the internal listener,
    /// signed with the payload secret as `kiln cache` signs it.
    pub fn admin(&self, method: &str, path_and_query: &str) -> reqwest::blocking::Response {
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(300)).build().unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        let sig = kiln::api::auth::admin_signature(SECRET.as_bytes(), method, path_and_query, now, b"");
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        client
            .request(method, format!("{}{path_and_query}", self.metrics_url))
            .header(kiln::api::auth::ADMIN_TIMESTAMP_HEADER, now.to_string())
            .header(kiln::api::auth::ADMIN_SIGNATURE_HEADER, sig)
            .send()
            .expect("admin request")
    }

    /// The first page (500) of the build history once it holds `total`
    /// builds, or as it is after 20 s (entries are written by a thread of
    /// their own, just after each reply).
    pub fn history_holding(&self, total: u64) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let resp = self.admin("GET", "/builds?limit=500");
            assert_eq!(resp.status().as_u16(), 200);
            let page: serde_json::Value = resp.json().unwrap();
            if page["total"].as_u64() == Some(total) || Instant::now() > deadline {
                return page;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kiln VERB ARGS` against this server's internal listener, signed
    /// with its payload secret; its standard output (it must succeed).
    pub fn admin_cli(&self, verb: &str, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .arg(verb)
            .args(args)
            .args(["--url", &self.metrics_url])
            .arg("--payload-secret")
            .arg(&self.secret_file)
            .output()
            .unwrap();
        assert!(out.status.success(), "kiln {verb} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// The status of GET /healthz.
    pub fn health(&self) -> u16 {
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
        client.get(format!("{}/healthz", self.url)).send().map(|r| r.status().as_u16()).unwrap_or(0)
    }

    /// POSTs a signed body to /build.
    pub fn build(&self, body: &[u8]) -> (u16, serde_json::Value) {
        self.post(body, Some(&sign(SECRET, body)))
    }

    /// POSTs `body` with an optional signature header.
    pub fn post(&self, body: &[u8], signature: Option<&str>) -> (u16, serde_json::Value) {
        let (status, text) = self.post_text(body, signature);
        let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("reply is not JSON ({e}): {text}"));
        (status, json)
    }

    /// POSTs `body` with an optional signature header; the reply as text.
    pub fn post_text(&self, body: &[u8], signature: Option<&str>) -> (u16, String) {
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(300)).build().unwrap();
        let mut req = client.post(format!("{}/build", self.url)).body(body.to_vec());
        if let Some(s) = signature {
            req = req.header("X-Build-Signature", s);
        }
        let resp = req.send().expect("POST /build");
        (resp.status().as_u16(), resp.text().unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop(libc::SIGTERM);
    }
}

/// The outcome of reading an NDJSON reply the way faas-cli does.
#[derive(Debug)]
pub struct StreamOutcome {
    /// HTTP status.
    pub status: u16,
    /// Every parsed line.
    pub lines: Vec<serde_json::Value>,
    /// Log entries printed.
    pub log: Vec<String>,
    /// faas-cli's verdict: `Ok(image)` or `Err(error)`.
    pub verdict: Result<String, String>,
}

impl Server {
    /// POSTs a signed body asking for NDJSON (as faas-cli does) and reads
    /// the reply with faas-cli's rules: a line scanner capped at 64 KiB,
    /// every line must be JSON, `success`/`failed` decide, a stream with
    /// neither counts as success.
    pub fn build_stream(&self, body: &[u8]) -> StreamOutcome {
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(300)).build().unwrap();
        let resp = client
            .post(format!("{}/build", self.url))
            .header("X-Build-Signature", sign(SECRET, body))
            .header("Accept", "application/x-ndjson")
            .header("Content-Type", "application/octet-stream")
            .header("User-Agent", "openfaas-go-sdk")
            .body(body.to_vec())
            .send()
            .expect("POST /build");
        let status = resp.status().as_u16();
        if status != 200 && status != 202 {
            let verdict = Err(format!("failed to build function, builder responded with status code {status}"));
            return StreamOutcome { status, lines: vec![], log: vec![], verdict };
        }
        let text = resp.text().unwrap();
        let (mut lines, mut log, mut verdict) = (Vec::new(), Vec::new(), Ok(String::new()));
        for raw in text.split_inclusive('\n') {
            assert!(raw.len() < 64 * 1024, "a line of {} bytes would end faas-cli's scanner", raw.len());
            let raw = raw.strip_suffix('\n').expect("every line ends with a newline");
            assert!(!raw.is_empty(), "blank lines break faas-cli");
            let v: serde_json::Value = serde_json::from_str(raw).unwrap_or_else(|e| panic!("not JSON ({e}): {raw}"));
            for l in v["log"].as_array().into_iter().flatten() {
                log.push(l.as_str().unwrap().to_string());
            }
            match v["status"].as_str() {
                Some("success") => verdict = Ok(v["image"].as_str().unwrap_or("").to_string()),
                Some("failed") => verdict = Err(v["error"].as_str().unwrap_or("").to_string()),
                Some("in_progress") => {}
                other => panic!("unexpected status {other:?} in {raw}"),
            }
            lines.push(v);
        }
        StreamOutcome { status, lines, log, verdict }
    }
}

/// `sha256=<hex>` HMAC as clients compute it.
pub fn sign(secret: &str, body: &[u8]) -> String {
    kiln::api::auth::sign(secret.as_bytes(), body)
}

/// A request tar shaped like the Go SDK's `MakeTar`: a `context` directory
/// entry without a trailing slash, the files, and the config last.
pub fn request_tar(config: &serde_json::Value, files: &[(&str, &[u8])]) -> Vec<u8> {
    use tar::EntryType::{Directory, Regular};
    let mut b = tar::Builder::new(Vec::new());
    tar_entry(&mut b, "context", Directory, 0o700, 0, b"", None);
    for (path, data) in files {
        tar_entry(&mut b, &format!("context/{path}"), Regular, 0o644, 0, data, None);
    }
    let cfg = serde_json::to_vec(config).unwrap();
    tar_entry(&mut b, "com.openfaas.docker.config", Regular, 0o664, 0, &cfg, None);
    b.into_inner().unwrap()
}

/// Appends one hand-made ustar entry (uid = gid = `uid`); `link` is the
/// target of a symlink or hardlink entry.
pub fn tar_entry<W: std::io::Write>(
    b: &mut tar::Builder<W>,
    path: &str,
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    data: &[u8],
    link: Option<&str>,
) {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(uid);
    h.set_mtime(1_700_000_000);
    h.set_size(data.len() as u64);
    match link {
        Some(target) => b.append_link(&mut h, path, target).unwrap(),
        None => b.append_data(&mut h, path, data).unwrap(),
    }
}

/// The log of a reply as one string.
pub fn log_text(reply: &serde_json::Value) -> String {
    reply["log"]
        .as_array()
        .map(|a| a.iter().filter_map(|l| l.as_str()).collect::<Vec<_>>().join("\n"))
        .unwrap_or_default()
}

/// Asserts a reply is a success.
pub fn assert_success(status: u16, reply: &serde_json::Value) {
    assert_eq!(reply["status"], "success", "build failed ({status}): {}\n{}", reply["error"], log_text(reply));
    assert_eq!(status, 200);
}

/// An image pulled with skopeo and unpacked with umoci, independent of kiln.
pub struct Unpacked {
    _tmp: tempfile::TempDir,
    /// The unpacked root filesystem.
    pub rootfs: PathBuf,
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn creds_args(creds: Option<(&str, &str)>, flag: &str) -> Vec<String> {
    creds.map(|(u, p)| vec![flag.to_string(), format!("{u}:{p}")]).unwrap_or_default()
}

/// GET `/v2/<path>` from the anonymous test registry with `Accept`;
/// panics unless it answers 2xx.
pub fn registry_get(path: &str, accept: &str) -> Vec<u8> {
    let resp = reqwest::blocking::Client::new()
        .get(format!("http://{}/v2/{path}", registry()))
        .header("Accept", accept)
        .send()
        .unwrap();
    assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
    resp.bytes().unwrap().to_vec()
}

/// Pulls `image` with skopeo and unpacks it with umoci.
pub fn unpack_image(image: &str, creds: Option<(&str, &str)>) -> Unpacked {
    unpack_with(image, vec![], creds_args(creds, "--src-creds"))
}

/// Pulls `image`'s entry for architecture `arch` (of an index) and unpacks it.
pub fn unpack_image_for(image: &str, arch: &str) -> Unpacked {
    unpack_with(image, vec!["--override-arch".into(), arch.into()], vec![])
}

/// skopeo copy (with `global` options before the command) and umoci unpack.
fn unpack_with(image: &str, global: Vec<String>, copy_args: Vec<String>) -> Unpacked {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("oci");
    run(Command::new("skopeo")
        .args(global)
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .args(copy_args)
        .arg(format!("docker://{image}"))
        .arg(format!("oci:{}:img", layout.display())));
    let bundle = tmp.path().join("bundle");
    run(Command::new("umoci").args(["unpack", "--image"]).arg(format!("{}:img", layout.display())).arg(&bundle));
    Unpacked { rootfs: bundle.join("rootfs"), _tmp: tmp }
}

/// The raw image config blob, fetched by skopeo.
pub fn image_config(image: &str, creds: Option<(&str, &str)>) -> serde_json::Value {
    let out = run(Command::new("skopeo")
        .args(["inspect", "--config", "--raw", "--tls-verify=false"])
        .args(creds_args(creds, "--creds"))
        .arg(format!("docker://{image}")));
    serde_json::from_slice(&out).unwrap()
}

/// The raw image manifest, fetched by skopeo.
pub fn image_manifest(image: &str) -> serde_json::Value {
    let out =
        run(Command::new("skopeo").args(["inspect", "--raw", "--tls-verify=false"]).arg(format!("docker://{image}")));
    serde_json::from_slice(&out).unwrap()
}

/// Completed requests with `method` to `repo`'s upload sessions that the
/// anonymous registry logged so far.
fn upload_requests(method: &str, repo: &str) -> usize {
    let log = std::fs::read_to_string(env("KILN_TEST_REGISTRY_LOG")).unwrap();
    let (uri, method) = (format!("/v2/{repo}/blobs/uploads/"), format!("http.request.method={method}"));
    log.lines().filter(|l| l.contains("msg=\"response completed\"") && l.contains(&method) && l.contains(&uri)).count()
}

/// Upload sessions (POSTs, mounts included) the anonymous registry saw for
/// `repo` so far.
pub fn upload_count(repo: &str) -> usize {
    upload_requests("POST", repo)
}

/// Blob bodies (PUTs to upload sessions) the anonymous registry received
/// for `repo` so far; mounts and existing blobs need none.
pub fn blob_uploads(repo: &str) -> usize {
    upload_requests("PUT", repo)
}

/// `tests/clients/fault_proxy.py` in front of the test registry: it fails
/// requests on purpose, or (mode `log`) only records them.
pub struct RegistryProxy {
    daemon: Daemon,
    output: tempfile::NamedTempFile,
}

impl RegistryProxy {
    /// Starts the proxy in `mode` on a free port.
    pub fn start(mode: &str) -> RegistryProxy {
        let port = free_port();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/fault_proxy.py");
        let output = tempfile::NamedTempFile::new().unwrap();
        let mut cmd = Command::new("python3");
        cmd.args([script, &port.to_string(), &registry(), mode]).stderr(output.reopen().unwrap());
        RegistryProxy { daemon: Daemon::spawn(cmd, port), output }
    }

    /// `127.0.0.1:port`, to name images by.
    pub fn addr(&self) -> &str {
        &self.daemon.addr
    }

    /// Requests the proxy failed on purpose.
    pub fn injected(&self) -> usize {
        self.lines("fault").len()
    }

    /// The proxy's report lines that start with `prefix` (`fault`, or
    /// `request GET /v2/…` in mode `log`).
    pub fn lines(&self, prefix: &str) -> Vec<String> {
        let text = std::fs::read_to_string(self.output.path()).unwrap();
        text.lines().filter(|l| l.starts_with(prefix)).map(str::to_string).collect()
    }
}

/// A helper process (test server, proxy, registry) listening on
/// `127.0.0.1:port`; killed on drop.
pub struct Daemon {
    child: Child,
    /// `127.0.0.1:port`.
    pub addr: String,
}

impl Daemon {
    /// Starts `make(port)` on a free port and waits until it serves there.
    /// Free ports are only free until bound: when the daemon exits at once
    /// (another test's server took the port, and answered the probe), it
    /// is started again on another port.
    pub fn start(make: impl Fn(u16) -> Command) -> Daemon {
        for _ in 0..5 {
            let port = free_port();
            if let Some(d) = Daemon::try_spawn(make(port), port) {
                return d;
            }
        }
        panic!("the daemon could not keep a free port in 5 tries");
    }

    /// Spawns `cmd` and waits until it accepts connections on `port`.
    pub fn spawn(cmd: Command, port: u16) -> Daemon {
        let shown = format!("{cmd:?}");
        Daemon::try_spawn(cmd, port).unwrap_or_else(|| panic!("{shown} exited instead of serving on port {port}"))
    }

    /// `None` when the process exited (its port was taken).
    fn try_spawn(mut cmd: Command, port: u16) -> Option<Daemon> {
        let mut child = cmd.stdout(Stdio::null()).spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let addr = format!("127.0.0.1:{port}");
        for _ in 0..200 {
            if std::net::TcpStream::connect(&addr).is_ok() {
                // Something answers: make sure it is this process.
                std::thread::sleep(Duration::from_millis(100));
                if child.try_wait().unwrap().is_some() {
                    return None;
                }
                return Some(Daemon { child, addr });
            }
            if child.try_wait().unwrap().is_some() {
                return None;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("{cmd:?} did not start listening on {addr}");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `script` with `sh -e` in `dir`; returns its trimmed stdout.
pub fn sh(dir: &Path, script: &str) -> String {
    let out = Command::new("sh").arg("-ec").arg(script).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Uncommitted (active) snapshots in a server's data dir.
pub fn active_snapshots(data_dir: &Path) -> usize {
    let dir = data_dir.join("snapshots");
    std::fs::read_dir(dir).unwrap().flatten().filter(|e| e.path().join("work").exists()).count()
}

/// Owner and mode of a path.
pub fn owner_mode(p: &Path) -> (u32, u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

/// Writes bytes to a file (helper for ad-hoc fixtures).
pub fn write(path: &Path, data: &[u8]) {
    std::fs::File::create(path).unwrap().write_all(data).unwrap();
}

/// RUN steps a build executed: log lines `[…] RUN … <secs>s`.
pub fn executed_runs(reply: &serde_json::Value) -> usize {
    log_text(reply)
        .lines()
        .filter(|l| l.contains("] RUN "))
        .filter(|l| {
            let last = l.rsplit(' ').next().unwrap_or("");
            last.strip_suffix('s').is_some_and(|n| n.parse::<f64>().is_ok())
        })
        .count()
}

/// Processes whose parent is `pid`.
pub fn children(pid: u32) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        let after_comm = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        if after_comm.split_whitespace().nth(1) == Some(&pid.to_string()) {
            out.push(stat.split(')').next().unwrap_or("").to_string());
        }
    }
    out
}

/// Open file descriptors of `pid`.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// `VmRSS` and `VmHWM` (peak) in KiB.
pub fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.split_whitespace().next()?.parse().ok())
    };
    (field("VmRSS:").unwrap_or(0), field("VmHWM:").unwrap_or(0))
}

/// The server process: the supervisor's one child (see the README's
/// process model).
pub fn server_process(supervisor: u32) -> u32 {
    let kids = children(supervisor);
    assert_eq!(kids.len(), 1, "the supervisor has one child, the server: {kids:?}");
    kids[0].split_whitespace().next().unwrap().parse().unwrap()
}

/// Resets `pid`'s peak RSS (`VmHWM`) to its current RSS.
pub fn reset_peak_memory(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("clear_refs (needs root)");
}
