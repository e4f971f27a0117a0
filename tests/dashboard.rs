//! The Grafana dashboard (deploy/grafana/kiln.json): it type-checks
//! against Grafana's own dashboard types (npm `@grafana/schema`, with the
//! TypeScript compiler) at the schema version that package declares, its
//! queries name only metrics kiln documents, and a real Prometheus
//! (Debian's package) scraping a kiln that ran successful, failed and
//! refused builds answers every panel query with at least one series.
//! The tools come from scripts/setup-host.sh.

mod support;

use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn dashboard() -> Value {
    serde_json::from_str(&std::fs::read_to_string(repo("deploy/grafana/kiln.json")).unwrap()).unwrap()
}

/// Every panel's PromQL expressions, with the panel's title.
fn queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            found.push((panel["title"].as_str().unwrap().to_string(), target["expr"].as_str().unwrap().to_string()));
        }
    }
    found
}

fn grafana_schema() -> PathBuf {
    let dir = std::env::var("KILN_TEST_TOOLS").unwrap_or_else(|_| "/opt/kiln-test-tools".into());
    let path = Path::new(&dir).join("grafana-schema");
    assert!(path.join("node_modules/.bin/tsc").exists(), "run scripts/setup-host.sh: it installs {}", path.display());
    path
}

/// The `schemaVersion` of Grafana's current dashboard model, as the
/// `@grafana/schema` package declares it.
fn grafana_schema_version(schema: &Path) -> u64 {
    let types = schema.join("node_modules/@grafana/schema/dist/esm/raw/dashboard/x/types.gen.mjs");
    let text = std::fs::read_to_string(&types).unwrap();
    let at = text.rfind("schemaVersion:").expect("defaultDashboard's schemaVersion");
    let digits: String = text[at + 14..].trim_start().chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap()
}

/// `tsc --strict` on `const d: Dashboard = <json>`: the compiler's output.
fn type_check(schema: &Path, dashboard: &Value) -> Result<(), String> {
    let tmp = tempfile::tempdir().unwrap();
    let types = schema.join("node_modules/@grafana/schema/dist/types/raw/dashboard/x/types.gen");
    let source = format!(
        "import type {{ Dashboard }} from {:?};\nexport const dashboard: Dashboard = {};\n",
        types.display().to_string(),
        serde_json::to_string_pretty(dashboard).unwrap()
    );
    let file = tmp.path().join("dashboard.ts");
    std::fs::write(&file, source).unwrap();
    let out = Command::new(schema.join("node_modules/.bin/tsc"))
        .args(["--noEmit", "--strict", "--moduleResolution", "node10", "--module", "commonjs", "--target", "es2020"])
        .arg(&file)
        .output()
        .unwrap();
    match out.status.success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&out.stdout).into_owned()),
    }
}

#[test]
fn the_dashboard_is_a_valid_grafana_dashboard_of_the_declared_schema_version() {
    let schema = grafana_schema();
    let dashboard = dashboard();
    assert_eq!(
        dashboard["schemaVersion"],
        grafana_schema_version(&schema),
        "the schema version Grafana's types are for"
    );
    type_check(&schema, &dashboard).unwrap_or_else(|e| panic!("Grafana's dashboard types reject it:\n{e}"));
    let mut broken = dashboard.clone();
    broken["panels"][1]["gridPos"]["width"] = json!(8);
    let refused = type_check(&schema, &broken).expect_err("an unknown gridPos field is refused");
    assert!(refused.contains("'\"width\"' does not exist in type 'GridPos'"), "{refused}");
    let ids: Vec<_> = dashboard["panels"].as_array().unwrap().iter().map(|p| p["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), ids.len(), "panel ids are unique");
}

#[test]
fn every_query_names_only_documented_metrics_and_the_pro_builders_panels_are_there() {
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    let documented: BTreeSet<String> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `kiln_"))
        .map(|rest| format!("kiln_{}", rest.split('`').next().unwrap()))
        .collect();
    assert!(documented.contains("kiln_builds_in_flight") && documented.len() >= 10, "{documented:?}");
    let dashboard = dashboard();
    for (title, expr) in queries(&dashboard) {
        assert!(!expr.contains('$'), "{title}: no Grafana variables, so Prometheus can answer it as it is");
        let names = expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("kiln_"));
        for name in names {
            let base = ["_bucket", "_sum", "_count"].iter().fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
            assert!(documented.contains(base), "{title}: {name} is not a metric the README documents");
        }
    }
    let titles: Vec<_> = queries(&dashboard).into_iter().map(|(t, _)| t.to_lowercase()).collect();
    for wanted in
        ["in flight", "build rate", "average build duration", "status code", "429", "cache hit", "failed builds"]
    {
        assert!(titles.iter().any(|t| t.contains(wanted)), "a panel for {wanted}: {titles:?}");
    }
}

/// A Prometheus scraping `target` every second.
fn prometheus(target: &str, dir: &Path) -> Daemon {
    let config = dir.join("prometheus.yml");
    let scrape = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: kiln\n    static_configs:\n      - targets: [\"{target}\"]\n"
    );
    std::fs::write(&config, scrape).unwrap();
    let (data, log) = (dir.join("data"), dir.join("prometheus.log"));
    Daemon::start(|port| {
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stderr(std::fs::File::create(&log).unwrap());
        cmd
    })
}

/// The series Prometheus answers `expr` with, now.
fn instant_query(prometheus: &Daemon, expr: &str) -> Vec<Value> {
    let url = format!("http://{}/api/v1/query", prometheus.addr);
    let reply: Value =
        reqwest::blocking::Client::new().get(url).query(&[("query", expr)]).send().unwrap().json().unwrap();
    assert_eq!(reply["status"], "success", "{expr}: {reply}");
    reply["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// Runs the builds the panels need: a success, a step failure, and a
/// request refused with 429 while the one build slot is taken.
fn busy_day(server: &Server) {
    let image = test_image("kiln/dashboard");
    let build = |run: &str| {
        let dockerfile = format!("FROM {}/busybox\n{run}\n", registry());
        request_tar(&json!({"image": image}), &[("Dockerfile", dockerfile.as_bytes())])
    };
    let (status, reply) = server.build(&build("RUN echo ok > /f"));
    assert_success(status, &reply);
    let (status, _) = server.build(&build("RUN exit 7"));
    assert_eq!(status, 500);
    std::thread::scope(|s| {
        let slow = s.spawn(|| server.build(&build("RUN sleep 3")));
        let deadline = Instant::now() + Duration::from_secs(20);
        let ready = |url: &str| reqwest::blocking::get(format!("{url}/ready")).map(|r| r.status().as_u16());
        while ready(&server.url).ok() != Some(503) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let body = build("RUN echo refused");
        let (refused, text) = server.post_text(&body, Some(&sign(SECRET, &body)));
        assert_eq!(refused, 429, "the one slot is taken: {text}");
        let (status, reply) = slow.join().unwrap();
        assert_success(status, &reply);
    });
}

#[test]
fn a_real_prometheus_answers_every_panel_query() {
    let server = Server::start(ServerOptions { args: vec!["--max-inflight".into(), "1".into()], ..Default::default() });
    let tmp = tempfile::tempdir().unwrap();
    let target = server.metrics_url.trim_start_matches("http://").to_string();
    let prometheus = prometheus(&target, tmp.path());
    busy_day(&server);
    let mut waiting: Vec<(String, String)> = queries(&dashboard());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !waiting.is_empty() && Instant::now() < deadline {
        waiting.retain(|(_, expr)| instant_query(&prometheus, expr).is_empty());
        std::thread::sleep(Duration::from_millis(500));
    }
    let up = instant_query(&prometheus, "up{job=\"kiln\"}");
    assert!(waiting.is_empty(), "no series for {waiting:#?} (up: {up:?})");
}
