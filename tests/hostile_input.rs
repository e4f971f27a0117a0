//! Hostile input that must neither read the host nor stop the server:
//! symlink chains out of the context, Dockerfiles shaped to multiply the
//! frontend's work, unsigned bodies meant to fill memory, and builds whose
//! log would fill a JSON reply. While each runs, `/healthz` is polled and
//! must answer within 100 ms.

mod support;

use serde_json::json;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

/// Every test here takes this first: they measure latency and memory, so
/// none may run beside another.
static ALONE: Mutex<()> = Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    ALONE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Polls `/healthz` every 20 ms in the background; [`HealthWatch::worst`]
/// is the slowest answer seen (a failed request counts as 10 s).
struct HealthWatch {
    stop: Arc<AtomicBool>,
    worst: Arc<Mutex<Duration>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HealthWatch {
    fn start(server: &Server) -> Self {
        let (stop, worst) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Duration::ZERO)));
        let url = format!("{}/healthz", server.url);
        let (s, w) = (stop.clone(), worst.clone());
        let thread = std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
            while !s.load(Ordering::Relaxed) {
                let t = Instant::now();
                let ok = client.get(&url).send().is_ok_and(|r| r.status().is_success());
                let took = if ok { t.elapsed() } else { Duration::from_secs(10) };
                let mut worst = w.lock().unwrap();
                *worst = (*worst).max(took);
                drop(worst);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        HealthWatch { stop, worst, thread: Some(thread) }
    }

    /// Stops polling; the slowest answer.
    fn worst(mut self) -> Duration {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        *self.worst.lock().unwrap()
    }
}

/// `a/u0 -> ..`, `a/uN -> u(N-1)/..`: each link alone stays inside, and
/// `a/u11` is twelve levels above the context.
fn chain() -> Vec<(String, String)> {
    let mut links = vec![("a/u0".to_string(), "..".to_string())];
    links.extend((1..12).map(|n| (format!("a/u{n}"), format!("u{}/..", n - 1))));
    links
}

/// Files of a context: name and content.
type Files<'a> = &'a [(&'a str, &'a [u8])];

/// A request whose context holds `files` and the chain, plus `link ->
/// a/u11<target>`.
fn chained_request(link: &str, target: &str, files: Files) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    tar_entry(
        &mut b,
        "com.openfaas.docker.config",
        tar::EntryType::Regular,
        0o644,
        0,
        br#"{"image":"127.0.0.1:1/x:1"}"#,
        None,
    );
    tar_entry(&mut b, "context/a", tar::EntryType::Directory, 0o755, 0, b"", None);
    for (name, data) in files {
        tar_entry(&mut b, &format!("context/{name}"), tar::EntryType::Regular, 0o644, 0, data, None);
    }
    for (name, to) in chain() {
        tar_entry(&mut b, &format!("context/{name}"), tar::EntryType::Symlink, 0o777, 0, b"", Some(&to));
    }
    let to = format!("a/u11{target}");
    tar_entry(&mut b, &format!("context/{link}"), tar::EntryType::Symlink, 0o777, 0, b"", Some(&to));
    b.into_inner().unwrap()
}

#[test]
fn symlink_chains_out_of_the_context_are_refused_and_read_nothing() {
    let _alone = alone();
    let server = Server::start(ServerOptions::default());
    let canary = tempfile::Builder::new().prefix("kiln-canary-").tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(canary.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let secret = format!("FROM scratch\nLABEL canary=kiln-canary-{}", unique("secret"));
    std::fs::write(canary.path().join("secret"), &secret).unwrap();
    std::fs::set_permissions(canary.path().join("secret"), std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .unwrap();
    nix::unistd::mkfifo(&canary.path().join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
    let c = canary.path().display().to_string();
    let dockerfile: &[(&str, &[u8])] = &[("Dockerfile", b"FROM scratch\n")];
    let cases: Vec<(&str, String, Files)> = vec![
        ("Dockerfile", format!("{c}/secret"), &[]),
        (".dockerignore", format!("{c}/secret"), dockerfile),
        ("Dockerfile.dockerignore", format!("{c}/secret"), dockerfile),
        ("Dockerfile", format!("{c}/fifo"), &[]),
        ("Dockerfile", "/dev/zero".into(), &[]),
        ("Dockerfile", "/proc/self/environ".into(), &[]),
    ];
    let watch = HealthWatch::start(&server);
    for (link, target, files) in &cases {
        let started = Instant::now();
        let (status, reply) = server.build(&chained_request(link, target, files));
        let error = reply["error"].as_str().unwrap_or_default();
        eprintln!("{link} -> {target}: {status} in {:.2}s: {error}", started.elapsed().as_secs_f64());
        assert_eq!(status, 400, "{link} -> {target}: {reply}");
        assert!(error.contains(&format!("context/{link}: symlink to")), "names the entry: {error}");
        assert!(error.contains("leads outside the build context"), "{error}");
        assert!(!reply.to_string().contains("kiln-canary-secret"), "the canary leaked: {reply}");
    }
    let worst = watch.worst();
    eprintln!("FIGURE symlink chains: {} cases refused, /healthz at worst {worst:?}", cases.len());
    assert!(worst < Duration::from_millis(100), "/healthz took {worst:?} while the chains were refused");
    assert!(!server.log().contains("kiln-canary-secret"), "the canary reached the server's log");
    assert_eq!(server.health(), 200);
}

#[test]
fn a_hundred_thousand_labels_answer_at_once_with_the_limit() {
    let _alone = alone();
    let server = Server::start(ServerOptions::default());
    let text = kiln::frontend::shapes::labels(100_000);
    let body = request_tar(&json!({"image": test_image("kiln/labels")}), &[("Dockerfile", text.as_bytes())]);
    let watch = HealthWatch::start(&server);
    let started = Instant::now();
    let (status, reply) = server.build(&body);
    let took = started.elapsed();
    let worst = watch.worst();
    eprintln!("FIGURE 100,000 LABEL lines: {status} in {:.2}s, /healthz at worst {worst:?}", took.as_secs_f64());
    assert_eq!(status, 400, "{reply}");
    let error = reply["error"].as_str().unwrap();
    assert!(error.contains("Dockerfile:10001:1: the Dockerfile has more than 10000 instructions"), "{error}");
    assert!(took < Duration::from_secs(2), "answered in {took:?}");
    assert!(worst < Duration::from_millis(100), "/healthz took {worst:?} meanwhile");
}

#[test]
fn with_the_cap_lifted_a_hundred_thousand_labels_build() {
    let _alone = alone();
    let args = vec!["--max-dockerfile-instructions".into(), "200000".into()];
    let server = Server::start(ServerOptions { args, ..Default::default() });
    let text = kiln::frontend::shapes::labels(100_000);
    let image = test_image("kiln/labels-lifted");
    let body = request_tar(&json!({"image": image}), &[("Dockerfile", text.as_bytes())]);
    let watch = HealthWatch::start(&server);
    let started = Instant::now();
    let (status, reply) = server.build(&body);
    let worst = watch.worst();
    eprintln!(
        "FIGURE 100,000 LABEL lines, cap lifted: built in {:.2}s, /healthz at worst {worst:?}",
        started.elapsed().as_secs_f64()
    );
    assert_success(status, &reply);
    // Lowering 100,000 instructions keeps one of the two cores busy for
    // a while: a looser bound than when the cap answers at once.
    assert!(worst < Duration::from_millis(500), "/healthz took {worst:?} while it was lowered");
    // skopeo refuses configs over 4 MiB: read this one from the registry.
    let manifest = image_manifest(&image);
    let (repo, _) = image.split_once('/').unwrap().1.rsplit_once(':').unwrap();
    let url = format!("http://{}/v2/{repo}/blobs/{}", registry(), manifest["config"]["digest"].as_str().unwrap());
    let config: serde_json::Value = reqwest::blocking::get(url).unwrap().json().unwrap();
    let labels = &config["config"]["Labels"];
    assert_eq!((labels["l0"].as_str(), labels["l99999"].as_str()), (Some("v0"), Some("v99999")));
}

/// The server process and its RSS now (KiB), its peak reset to it.
fn idle_memory(server: &Server) -> (u32, u64) {
    let pid = server_process(server.pid());
    let (idle, _) = memory_kib(pid);
    reset_peak_memory(pid);
    (pid, idle)
}

/// A body of `len` zero bytes, streamed (never held by the test).
fn zeros(len: u64) -> reqwest::blocking::Body {
    reqwest::blocking::Body::sized(std::io::repeat(0).take(len), len)
}

#[test]
fn unsigned_bodies_stream_to_disk_and_memory_stays_flat() {
    let _alone = alone();
    const BODY: u64 = 400 << 20;
    let server = Server::start(ServerOptions::default());
    let warm = request_tar(&json!({"image": test_image("kiln/warm")}), &[("Dockerfile", b"FROM scratch\nLABEL a=b\n")]);
    assert_success_pair(server.build(&warm));
    let (pid, idle) = idle_memory(&server);
    let forged = format!("sha256={}", "ab".repeat(32));
    let started = Instant::now();
    let senders: Vec<_> = (0..8)
        .map(|_| {
            let (url, forged) = (server.url.clone(), forged.clone());
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(600)).build().unwrap();
                let resp = client.post(format!("{url}/build")).header("X-Build-Signature", forged).body(zeros(BODY));
                let resp = resp.send().expect("POST /build");
                (resp.status().as_u16(), resp.text().unwrap())
            })
        })
        .collect();
    for s in senders {
        let (status, text) = s.join().unwrap();
        assert_eq!(status, 401, "{text}");
        assert!(text.contains("invalid message digest or secret"), "{text}");
    }
    let (_, peak) = memory_kib(pid);
    eprintln!(
        "FIGURE unsigned 8 x 400 MB: {:.1}s, server RSS idle {} MiB, peak {} MiB",
        started.elapsed().as_secs_f64(),
        idle >> 10,
        peak >> 10
    );
    assert!(peak < idle + (100 << 10), "peak RSS {peak} KiB against {idle} KiB idle");
    let builds = || std::fs::read_dir(server.data_dir.join("builds")).unwrap().count();
    let deadline = Instant::now() + Duration::from_secs(10);
    while builds() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(builds(), 0, "the spooled bodies are removed");
    signed_large_context_builds(&server, BODY);
}

fn assert_success_pair((status, reply): (u16, serde_json::Value)) {
    assert_success(status, &reply);
}

/// A signed request whose context holds a file of `size` bytes builds.
fn signed_large_context_builds(server: &Server, size: u64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("request.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&path).unwrap());
    let image = test_image("kiln/large-context");
    let config = serde_json::to_vec(&json!({"image": image})).unwrap();
    let dockerfile = b"FROM scratch\nCOPY small.txt /\n";
    for (name, data) in
        [("com.openfaas.docker.config", &config[..]), ("context/Dockerfile", dockerfile), ("context/small.txt", b"ok")]
    {
        tar_entry(&mut b, name, tar::EntryType::Regular, 0o644, 0, data, None);
    }
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(0o644);
    b.append_data(&mut h, "context/big.bin", std::io::repeat(7).take(size)).unwrap();
    b.into_inner().unwrap().sync_all().unwrap();
    let signature = file_signature(&path);
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(600)).build().unwrap();
    let len = std::fs::metadata(&path).unwrap().len();
    let body = reqwest::blocking::Body::sized(std::fs::File::open(&path).unwrap(), len);
    let resp = client.post(format!("{}/build", server.url)).header("X-Build-Signature", signature).body(body);
    let resp = resp.send().unwrap();
    let status = resp.status().as_u16();
    let reply: serde_json::Value = resp.json().unwrap();
    assert_success(status, &reply);
}

/// `sha256=` HMAC of a file, computed in chunks.
fn file_signature(path: &std::path::Path) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    let mut f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        mac.update(&buf[..n]);
    }
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[test]
fn a_request_still_uploading_holds_a_build_slot() {
    let _alone = alone();
    let args = vec!["--max-inflight".into(), "1".into()];
    let server = Server::start(ServerOptions { args, ..Default::default() });
    let mut slow = std::net::TcpStream::connect(server.url.trim_start_matches("http://")).unwrap();
    let head = format!(
        "POST /build HTTP/1.1\r\nHost: x\r\nX-Build-Signature: sha256={}\r\nContent-Length: 1000000\r\n\r\n",
        "ab".repeat(32)
    );
    std::io::Write::write_all(&mut slow, head.as_bytes()).unwrap();
    std::io::Write::write_all(&mut slow, &[0u8; 1000]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let body = request_tar(&json!({"image": test_image("kiln/second")}), &[("Dockerfile", b"FROM scratch\n")]);
    let (status, _) = server.post_text(&body, Some(&sign(SECRET, &body)));
    assert_eq!(status, 429, "the uploading request holds the only slot");
    let metrics = reqwest::blocking::get(format!("{}/metrics", server.metrics_url)).unwrap().text().unwrap();
    assert!(metrics.contains("kiln_pending_uploads 1\n"), "{metrics}");
    drop(slow);
    std::thread::sleep(Duration::from_millis(300));
    assert_success_pair(server.build(&body));
}

/// Twelve steps printing 6 MB each (the runtime keeps 4 MiB of each);
/// `run` makes their cache keys new.
fn loud_request(run: &str) -> Vec<u8> {
    let mut dockerfile = format!("FROM {}/busybox\nARG RUN\n", registry());
    for i in 0..12 {
        let letter = (b'a' + i) as char;
        dockerfile.push_str(&format!("RUN head -c 6000000 /dev/zero | tr '\\0' '{letter}' | fold -w 100\n"));
    }
    let config = json!({"image": test_image("kiln/loud"), "buildArgs": {"RUN": run}});
    request_tar(&config, &[("Dockerfile", dockerfile.as_bytes())])
}

#[test]
fn a_json_reply_keeps_a_bounded_log_and_says_what_it_dropped() {
    let _alone = alone();
    let server = Server::start(ServerOptions::default());
    let body = loud_request("json");
    let (pid, idle) = idle_memory(&server);
    let (status, reply) = server.build(&body);
    let (_, peak) = memory_kib(pid);
    assert_success(status, &reply);
    let lines = reply["log"].as_array().unwrap();
    let kept: usize = lines.iter().map(|l| l.as_str().unwrap().len()).sum();
    eprintln!(
        "FIGURE loud build: log kept {} KiB, server RSS idle {} MiB, peak {} MiB",
        kept >> 10,
        idle >> 10,
        peak >> 10
    );
    assert!(kept <= 8 << 20, "the reply keeps at most --max-reply-log: {kept} bytes");
    let gap = lines.iter().filter_map(|l| l.as_str()).find(|l| l.contains("of the build log were dropped here"));
    assert!(gap.is_some(), "the log says what was dropped");
    let tail = lines.iter().rev().filter_map(|l| l.as_str()).find(|l| l.ends_with(&"l".repeat(100)));
    assert!(tail.is_some(), "the last step's output is kept");
    assert!(peak < idle + (96 << 10), "peak RSS {peak} KiB against {idle} KiB idle");
}

/// A connection to `url` whose receive buffer stays at 64 KiB (no
/// autotuning), so the server, not the kernel, holds what is not read.
fn small_window_connect(url: &str) -> std::net::TcpStream {
    use std::os::fd::FromRawFd;
    let addr: std::net::SocketAddrV4 = url.trim_start_matches("http://").parse().unwrap();
    // SAFETY: plain socket calls on a descriptor this function owns.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let size: libc::c_int = 64 << 10;
        let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        let set = libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, (&size as *const libc::c_int).cast(), len);
        assert_eq!(set, 0);
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: addr.port().to_be(),
            sin_addr: libc::in_addr { s_addr: u32::from(*addr.ip()).to_be() },
            sin_zero: [0; 8],
        };
        let sa_len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        assert_eq!(libc::connect(fd, (&sa as *const libc::sockaddr_in).cast(), sa_len), 0);
        std::net::TcpStream::from_raw_fd(fd)
    }
}

/// A streamed reply is backpressure: while its client reads nothing the
/// build waits (its steps block on their full output pipes), so the
/// server holds no more than a bounded backlog; every line still arrives.
#[test]
fn a_stream_read_slowly_holds_the_build_back_not_memory() {
    let _alone = alone();
    let server = Server::start(ServerOptions::default());
    let body = loud_request("stream");
    let (pid, idle) = idle_memory(&server);
    let mut conn = small_window_connect(&server.url);
    let head = format!(
        "POST /build HTTP/1.1\r\nHost: kiln\r\nAccept: application/x-ndjson\r\nConnection: close\r\n\
         X-Build-Signature: {}\r\nContent-Length: {}\r\n\r\n",
        sign(SECRET, &body),
        body.len()
    );
    std::io::Write::write_all(&mut conn, head.as_bytes()).unwrap();
    std::io::Write::write_all(&mut conn, &body).unwrap();
    // A client that reads nothing while the steps print 48 MB.
    std::thread::sleep(Duration::from_secs(20));
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).unwrap();
    let (_, peak) = memory_kib(pid);
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{}", &text[..200.min(text.len())]);
    assert!(text.contains(r#""status":"success""#), "the build ends with success");
    let mb = raw.len() >> 20;
    eprintln!(
        "FIGURE slow stream: {mb} MiB read after 20 s, server RSS idle {} MiB, peak {} MiB",
        idle >> 10,
        peak >> 10
    );
    assert!(mb >= 48, "every step's 4 MiB arrives: {mb} MiB");
    assert!(peak < idle + (64 << 10), "peak RSS {peak} KiB against {idle} KiB idle");
}
