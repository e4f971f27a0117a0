//! The build history page (`/ui/`) in a real headless Chromium: it needs
//! a `kiln ui` login link, lists 1,000 builds fast, and a click on a
//! failed build shows its failing Dockerfile line, its step waterfall and
//! its log (tenant markup as text). A screenshot of that view is saved
//! under the test's output (`target/tmp/history-page/`) for a person to
//! look at.

mod support;

use kiln::history::{BuildEntry, BuildFacts, HistoryStore, StepEntry};
use serde_json::json;
use std::time::{Duration, Instant};
use support::*;

/// A history of `count` earlier builds, written while the server is
/// stopped (owned by the data dir's owner, as the server's own files are).
fn seed_history(data_dir: &std::path::Path, count: u64) {
    use std::os::unix::fs::MetadataExt;
    let path = data_dir.join("history.redb");
    std::fs::remove_file(&path).unwrap();
    let store = HistoryStore::open(&path, 5_000).unwrap();
    let entries = (0..count).map(|i| {
        let facts = BuildFacts {
            request_id: format!("seed-{i}"),
            time: "2026-12-01T10:00:00Z".into(),
            image: format!("registry.example/seed/fn-{i}:v1"),
            result: "success".into(),
            status: 200,
            duration: 0.5,
            cache_hits: 1,
            ..Default::default()
        };
        let step = StepEntry {
            name: "[1/2] FROM busybox".into(),
            line: Some(1),
            op: "source".into(),
            start: 0.1,
            duration: 0.0,
            queued: 0.0,
            cached: true,
            unfinished: false,
        };
        BuildEntry { facts, steps: vec![step], log: vec!["seeded".into()], ..Default::default() }
    });
    store.append(entries.collect()).unwrap();
    let owner = std::fs::metadata(data_dir).unwrap();
    std::os::unix::fs::chown(&path, Some(owner.uid()), Some(owner.gid())).unwrap();
}

fn screenshot_path(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("history-page");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn a_click_on_a_failed_build_shows_its_line_waterfall_and_log() {
    let args = vec!["--history-size".into(), "2000".into()];
    let mut server = Server::start(ServerOptions { args, ..Default::default() });
    server.restart_after(|data_dir| seed_history(data_dir, 1_000));
    let image = test_image("kiln/history-page");
    let build = |run: &str| {
        let dockerfile = format!("FROM {}/busybox\nWORKDIR /app\n{run}\n", registry());
        request_tar(&json!({"image": image}), &[("Dockerfile", dockerfile.as_bytes())])
    };
    let (status, reply) = server.build(&build("RUN echo fine > /f"));
    assert_success(status, &reply);
    let (status, _) = server.build(&build("RUN echo '<b id=\"injected\">tenant</b>' && exit 4"));
    assert_eq!(status, 500);
    assert_eq!(server.history_holding(1_002)["total"], 1_002);

    let browser = Browser::start();
    browser.goto(&format!("{}/ui/", server.metrics_url));
    assert!(browser.body_text().contains("needs a login link"), "refused without one: {}", browser.body_text());
    let link = server.admin_cli("ui", &[]).trim().to_string();
    browser.goto(&link);
    browser.wait_for("#builds tbody tr");
    let rendered = browser.script("return performance.getEntriesByName('kiln-list-rendered')[0].startTime;");
    let millis = rendered.as_f64().unwrap();
    assert!(millis < 1_000.0, "the list took {millis} ms to render with 1,002 builds");
    eprintln!("the list rendered {millis:.0} ms after navigation started (1,002 builds in the history)");
    assert_eq!(browser.count("#builds tbody tr"), 50, "one page of 50");
    assert!(browser.find("#older").is_some(), "a link to older builds");
    assert!(browser.body_text().contains("1002 builds in the history"));
    std::fs::write(screenshot_path("list.png"), browser.screenshot()).unwrap();
    browser.click(&browser.wait_for("#older"));
    browser.wait_for("tr.build[data-seq='952']");
    assert_eq!(browser.count("#builds tbody tr"), 50, "the next page");
    browser.script("document.getElementById('filter-result').value = 'failed'; document.querySelector('form.filters').requestSubmit();");
    let deadline = Instant::now() + Duration::from_secs(10);
    while browser.count("#builds tbody tr") != 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(browser.count("#builds tbody tr.failure"), 1, "only the failed build: {}", browser.body_text());

    let failed = browser.wait_for("tr.build.failure a");
    browser.click(&failed);
    let line = browser.wait_for("#failing-line");
    assert_eq!(browser.text(&line), "Dockerfile line 3");
    assert!(browser.count("#waterfall .step .bar") >= 3, "a bar per step");
    assert_eq!(browser.count("#waterfall .step.unfinished"), 1, "the step it failed in");
    assert!(browser.count("#waterfall .step.cached") >= 1, "cached steps are marked");
    let start = browser.wait_for("#log .failing-start");
    assert!(browser.text(&start).contains("RUN echo"), "the failing step's first log line is highlighted");
    assert!(browser.find("#injected").is_none(), "a log line's markup stays text");
    assert!(!browser.body_text().contains("null"), "nothing left out shows as null");
    let audit = browser.wait_for("#audit-line summary");
    browser.click(&audit);
    assert!(browser.text(&browser.wait_for("#audit-line pre")).contains("\"signature\": \"valid\""), "the audit line");
    assert!(browser.text(&browser.wait_for("#log")).contains("<b id=\"injected\">tenant</b>"));
    let shot = screenshot_path("failed-build.png");
    std::fs::write(&shot, browser.screenshot()).unwrap();
    eprintln!("screenshot of the failed build: {}", shot.display());
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000, "a real screenshot");
}

#[test]
fn the_page_and_its_session_admit_reading_only() {
    let server = Server::start(ServerOptions::default());
    let client = reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    for path in ["/ui/", "/ui/app.js", "/builds"] {
        let resp = client.get(format!("{}{path}", server.metrics_url)).send().unwrap();
        assert_eq!(resp.status().as_u16(), 401, "{path} without credentials");
        let public = client.get(format!("{}{path}", server.url)).send().unwrap();
        assert_eq!(public.status().as_u16(), 404, "{path} is not on the /build listener");
    }
    let link = server.admin_cli("ui", &[]).trim().to_string();
    let forged = link.replace("sig=", "sig=00");
    assert_eq!(client.get(&forged).send().unwrap().status().as_u16(), 401, "a forged link");
    let expired = server.admin_cli("ui", &["--valid-for", "1"]).trim().to_string();
    std::thread::sleep(Duration::from_millis(2_100));
    assert_eq!(client.get(&expired).send().unwrap().status().as_u16(), 401, "an expired link");

    let login = client.get(&link).send().unwrap();
    assert_eq!(login.status().as_u16(), 303);
    let set_cookie = login.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let with_cookie = |method: reqwest::Method, path: &str| {
        let req = client.request(method, format!("{}{path}", server.metrics_url)).header("cookie", &cookie);
        req.send().unwrap()
    };
    let page = with_cookie(reqwest::Method::GET, "/ui/");
    assert_eq!(page.status().as_u16(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(with_cookie(reqwest::Method::GET, "/builds").status().as_u16(), 200);
    for (method, path) in [(reqwest::Method::POST, "/cache/prune?keep_storage=0"), (reqwest::Method::GET, "/cache")] {
        let resp = with_cookie(method.clone(), path);
        assert_eq!(resp.status().as_u16(), 401, "the session does not admit {method} {path}");
    }
}
