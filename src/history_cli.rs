//! `kiln history`: the build history of a running server, from its
//! internal listener (`GET /builds`, `GET /builds/{id}`), as a table or
//! one build's steps and log.

use crate::client_cli::{admin_call, read_payload_secret};
use kiln::history::{BuildEntry, Page};
use std::path::Path;
use std::process::ExitCode;

/// What `kiln history` was asked for.
pub struct HistoryQuery<'a> {
    /// One build (position or request id), or the list.
    pub build: Option<&'a str>,
    /// Only images whose reference contains this.
    pub image: Option<&'a str>,
    /// Only builds that did not succeed.
    pub failed: bool,
    /// Most builds listed.
    pub limit: usize,
    /// Print the server's JSON as it is.
    pub json: bool,
}

/// Runs `kiln history`.
pub fn history(query: &HistoryQuery, url: &str, secret: Option<&Path>) -> ExitCode {
    let outcome = read_payload_secret(secret).and_then(|secret| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
            .and_then(|rt| rt.block_on(fetch(query, url.trim_end_matches('/'), &secret)))
    });
    match outcome {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kiln history: {e}");
            ExitCode::from(1)
        }
    }
}

/// Runs `kiln ui`: prints a login link to the history page.
pub fn ui_link(url: &str, secret: Option<&Path>, valid_for: i64) -> ExitCode {
    match read_payload_secret(secret) {
        Ok(secret) => {
            let expires = kiln::timefmt::now_secs() + valid_for;
            println!("{}{}", url.trim_end_matches('/'), kiln::wire::ui_login_path(&secret, expires));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kiln ui: {e}");
            ExitCode::from(1)
        }
    }
}

async fn fetch(query: &HistoryQuery<'_>, base: &str, secret: &[u8]) -> Result<String, String> {
    let path = match query.build {
        Some(id) => format!("/builds/{}", encode(id)),
        None => list_path(query),
    };
    let body = admin_call(reqwest::Method::GET, base, &path, secret).await?;
    if query.json {
        return Ok(format!("{body}\n"));
    }
    match query.build {
        Some(_) => serde_json::from_str::<BuildEntry>(&body).map(|b| render_build(&b)).map_err(|e| e.to_string()),
        None => serde_json::from_str::<Page>(&body).map(|p| render_page(&p)).map_err(|e| e.to_string()),
    }
}

fn list_path(query: &HistoryQuery) -> String {
    let mut path = format!("/builds?limit={}", query.limit);
    if let Some(image) = query.image {
        path.push_str(&format!("&image={}", encode(image)));
    }
    if query.failed {
        path.push_str("&result=failed");
    }
    path
}

/// Percent-encodes everything but unreserved characters.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn render_page(page: &Page) -> String {
    let mut out =
        format!("{:>6}  {:<20}  {:<9} {:>8} {:>6}  {}\n", "#", "TIME", "RESULT", "SECONDS", "CACHED", "IMAGE");
    for b in &page.builds {
        out.push_str(&format!(
            "{:>6}  {:<20}  {:<9} {:>8.2} {:>3}/{:<2}  {}\n",
            b.facts.seq, b.facts.time, b.facts.result, b.facts.duration, b.facts.cache_hits, b.steps, b.facts.image
        ));
        if let Some(error) = &b.error {
            out.push_str(&format!("{:>8}{error}\n", ""));
        }
    }
    out.push_str(&format!("{} shown, {} in the history\n", page.builds.len(), page.total));
    out
}

fn render_build(b: &BuildEntry) -> String {
    let f = &b.facts;
    let mut out = format!("build {} ({}), {} at {}\n", f.seq, f.request_id, f.result, f.time);
    out.push_str(&format!("image   {}\n", f.image));
    if let Some(digest) = &f.digest {
        out.push_str(&format!("digest  {digest}\n"));
    }
    out.push_str(&format!(
        "time    {:.2}s ({:.2}s before the first step); pulled {} B, pushed {} B\n",
        f.duration, b.queued, b.pulled_bytes, b.pushed_bytes
    ));
    if let Some(error) = &b.error {
        let line = b.error_line.map(|l| format!(" (Dockerfile line {l})")).unwrap_or_default();
        out.push_str(&format!("error{line}: {error}\n"));
    }
    out.push_str("steps\n");
    for s in &b.steps {
        let how = if s.unfinished {
            "UNFINISHED".to_string()
        } else if s.cached {
            "CACHED".to_string()
        } else if s.queued >= 0.005 {
            format!("{:.2}s ({:.2}s queued)", s.duration, s.queued)
        } else {
            format!("{:.2}s", s.duration)
        };
        out.push_str(&format!("  {:>7.2}s  {:<22}  {}\n", s.start, how, s.name));
    }
    out.push_str("log\n");
    for line in &b.log {
        out.push_str(&format!("  {line}\n"));
    }
    out
}
