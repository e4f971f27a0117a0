//! Reliability under load, crashes and a full disk, against the real
//! registry. The suite runs reduced versions; `scripts/reliability.sh`
//! runs the full ones (`KILN_LOAD_BUILDS=200`, `KILN_CRASH_ROUNDS=20`) and
//! collects the `FIGURE` lines they print.

mod support;

use serde_json::json;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A build with a RUN (shared by every eighth request), a unique COPY and a push.
fn load_request(image: &str, i: usize) -> Vec<u8> {
    let dockerfile = format!(
        "FROM {}/busybox\nARG N\nRUN echo $N > /n && head -c 200000 /dev/urandom > /r\nCOPY app.txt /app.txt\n",
        registry()
    );
    let config = json!({"image": image, "buildArgs": {"N": (i % 8).to_string()}});
    let app = format!("request {i}\n");
    request_tar(&config, &[("Dockerfile", dockerfile.as_bytes()), ("app.txt", app.as_bytes())])
}

/// Mounts under `dir` in `pid`'s mount namespace.
fn mounts_under(pid: u32, dir: &std::path::Path) -> usize {
    let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    info.lines().filter(|l| l.contains(dir.to_str().unwrap())).count()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[test]
fn load_ends_in_success_or_429_and_leaks_nothing() {
    let builds = env_or("KILN_LOAD_BUILDS", 24);
    let clients = 8;
    let server = Server::start(ServerOptions { args: vec!["--max-inflight".into(), "4".into()], ..Default::default() });
    let repo = format!("{}/{}", registry(), unique("kiln/load"));
    let (status, reply) = server.build(&load_request(&format!("{repo}:warm"), 0));
    assert_success(status, &reply);
    let pid = server_process(server.pid());
    let (fds_before, (rss_before, _)) = (fd_count(pid), memory_kib(pid));
    let mounts_before = mounts_under(pid, &server.data_dir);
    let next = Arc::new(Mutex::new(0usize));
    let results = Arc::new(Mutex::new(Vec::new()));
    let answers = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|c| {
            let (next, results, url, repo) = (next.clone(), results.clone(), server.url.clone(), repo.clone());
            let rejected = answers.clone();
            std::thread::spawn(move || loop {
                let i = {
                    let mut n = next.lock().unwrap();
                    *n += 1;
                    *n
                };
                if i > builds {
                    return;
                }
                let body = load_request(&format!("{repo}:c{c}"), i);
                // A platform's queue: a 429 is retried after a pause.
                let (mut status, mut text, mut t) = (429, String::new(), Instant::now());
                for _ in 0..600 {
                    t = Instant::now();
                    let resp = reqwest::blocking::Client::builder()
                        .timeout(Duration::from_secs(600))
                        .build()
                        .unwrap()
                        .post(format!("{url}/build"))
                        .header("X-Build-Signature", sign(SECRET, &body))
                        .body(body.clone())
                        .send()
                        .expect("POST /build");
                    status = resp.status().as_u16();
                    text = resp.text().unwrap_or_default();
                    rejected.lock().unwrap().push(status);
                    if status != 429 {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                results.lock().unwrap().push((status, t.elapsed().as_secs_f64(), text));
            })
        })
        .collect();
    workers.into_iter().for_each(|w| w.join().unwrap());
    let wall = started.elapsed().as_secs_f64();
    let results = results.lock().unwrap();
    let bad: Vec<_> = results.iter().filter(|(s, _, _)| *s != 200).collect();
    assert!(bad.is_empty(), "builds that did not succeed: {bad:?}");
    let answers = answers.lock().unwrap();
    assert!(answers.iter().all(|s| *s == 200 || *s == 429), "every answer is success or 429: {answers:?}");
    let too_many = answers.iter().filter(|s| **s == 429).count();
    let mut ok: Vec<f64> = results.iter().map(|(_, t, _)| *t).collect();
    ok.sort_by(f64::total_cmp);
    assert_eq!(results.len(), builds);
    std::thread::sleep(Duration::from_millis(500));
    let (rss_after, hwm) = memory_kib(pid);
    eprintln!(
        "FIGURE load: {builds} builds, {clients} clients, max_inflight 4: {} ok, {} answers 429 (retried after 0.2 s), {:.2} builds/s, \
         p50 {:.2}s, p95 {:.2}s; RSS {} -> {} MiB (peak {} MiB); fds {} -> {}",
        ok.len(),
        too_many,
        ok.len() as f64 / wall,
        percentile(&ok, 0.5),
        percentile(&ok, 0.95),
        rss_before / 1024,
        rss_after / 1024,
        hwm / 1024,
        fds_before,
        fd_count(pid)
    );
    assert_eq!(server_process(server.pid()), pid, "the server process survived the load");
    assert_eq!(children(pid), Vec::<String>::new(), "no helper or step process outlives its build");
    assert_eq!(mounts_under(pid, &server.data_dir), mounts_before, "no mount is left behind");
    let open_fds = || {
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten();
        fds.filter_map(|e| std::fs::read_link(e.path()).ok()).map(|p| p.display().to_string()).collect::<Vec<_>>()
    };
    assert!(fd_count(pid) <= fds_before + 8, "file descriptors leak: {fds_before} -> {:?}", open_fds());
    assert!(hwm < 1024 * 1024, "peak RSS {} MiB", hwm / 1024);
    assert!(rss_after < rss_before + 256 * 1024, "RSS grew from {rss_before} to {rss_after} KiB");
    let leftovers = std::fs::read_dir(server.data_dir.join("builds")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(leftovers, 0, "request workspaces are removed");
    let (status, report) = server.check_store();
    assert_eq!(status, 200, "store check after load: {report}");
}

/// Every tag in `repo` has all its blobs: skopeo copies each one whole.
fn assert_tags_complete(repo: &str) -> usize {
    let out = Command::new("skopeo").args(["list-tags", "--tls-verify=false", &format!("docker://{repo}")]).output();
    let out = out.unwrap();
    if !out.status.success() {
        return 0; // nothing pushed yet
    }
    let tags: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tags = tags["Tags"].as_array().cloned().unwrap_or_default();
    for tag in &tags {
        let dir = tempfile::tempdir().unwrap();
        let copy = Command::new("skopeo")
            .args(["copy", "--quiet", "--src-tls-verify=false"])
            .arg(format!("docker://{repo}:{}", tag.as_str().unwrap()))
            .arg(format!("dir:{}", dir.path().display()))
            .output()
            .unwrap();
        assert!(copy.status.success(), "tag {tag} is incomplete: {}", String::from_utf8_lossy(&copy.stderr));
    }
    tags.len()
}

/// A pseudo-random sequence (the seed is printed to replay a failure).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

#[test]
fn kill_9_at_random_moments_leaves_a_clean_store_and_complete_tags() {
    let rounds = env_or("KILN_CRASH_ROUNDS", 3);
    let seed = std::env::var("KILN_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("crash test seed {seed} (KILN_CRASH_SEED to replay)");
    let mut rng = Lcg(seed);
    let mut server = Server::start(ServerOptions::default());
    let repo = format!("{}/{}", registry(), unique("kiln/crash"));
    for round in 0..rounds {
        // 8 MB of random data: the push takes a while too.
        let dockerfile = format!(
            "FROM {}/busybox\nRUN echo {round} {seed} > /round && head -c 8000000 /dev/urandom > /big && sleep 0.$((RANDOM%5))\n",
            registry()
        );
        let body = request_tar(&json!({"image": format!("{repo}:r{round}")}), &[("Dockerfile", dockerfile.as_bytes())]);
        let (url, sig) = (format!("{}/build", server.url), sign(SECRET, &body));
        let request = std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
            client.post(url).header("X-Build-Signature", sig).body(body).send().map(|r| r.status().as_u16())
        });
        let delay = rng.next(1500);
        std::thread::sleep(Duration::from_millis(delay));
        server.restart(true, &[]);
        let outcome = request.join().unwrap();
        eprintln!("round {round}: kill -9 after {delay} ms (request: {outcome:?})");
        let (status, report) = server.check_store();
        assert_eq!(status, 200, "round {round}: store check after restart: {report}");
        let tags = assert_tags_complete(&repo);
        eprintln!("round {round}: store clean ({} blobs), {tags} tag(s) complete", report["blobs"]);
    }
    let fine = request_tar(
        &json!({"image": format!("{repo}:after")}),
        &[("Dockerfile", format!("FROM {}/busybox\nRUN echo ok > /ok\n", registry()).as_bytes())],
    );
    let (status, reply) = server.build(&fine);
    assert_success(status, &reply);
    let tags = assert_tags_complete(&repo);
    eprintln!("FIGURE crash: {rounds} kill -9 rounds (seed {seed}): store clean after each, {tags} tags complete");
}

#[test]
fn a_full_disk_fails_clearly_and_service_resumes_when_space_returns() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mount = |opts: &str| {
        let st = Command::new("mount").args(["-t", "tmpfs", "-o", opts, "tmpfs"]).arg(dir.path()).status().unwrap();
        assert!(st.success(), "mount tmpfs {opts}");
    };
    mount("size=48m");
    let _unmount = Unmount(dir.path().to_path_buf());
    let data = dir.path().join("data");
    let opts = ServerOptions { data_dir: Some(data), ..Default::default() };
    let server = Server::start(opts);
    let image = test_image("kiln/disk-full");
    let fill = format!("FROM {}/busybox\nRUN head -c 100000000 /dev/zero > /fill\n", registry());
    let body = request_tar(&json!({"image": image}), &[("Dockerfile", fill.as_bytes())]);
    let (status, reply) = server.build(&body);
    let error = reply["error"].as_str().unwrap_or_default().to_string();
    assert_eq!(status, 507, "{reply}");
    assert!(error.contains("line 2") && error.contains("no space left on device in the data directory"), "{error}");
    assert_eq!(server.health(), 200);
    let (status, report) = server.check_store();
    assert_eq!(status, 200, "nothing is corrupted by the full disk: {report}");
    let remount = Command::new("mount").args(["-o", "remount,size=512m"]).arg(dir.path()).status().unwrap();
    assert!(remount.success());
    let (status, reply) = server.build(&body);
    assert_success(status, &reply);
    let (status, report) = server.check_store();
    assert_eq!(status, 200, "{report}");
    drop(server);
}

/// Unmounts the test's tmpfs (lazily, after the server is gone).
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
