//! `kiln history`: the build history of a running server, from its
//! internal listener (`GET /builds`, `GET /builds/{id}`), as a table or
//! one build's steps and log.

use crate::cli::HistoryArgs;
use crate::client_cli::{admin_call, block_on, print_outcome, read_payload_secret};
use kiln::history::{BuildEntry, Page};
use std::path::Path;
use std::process::ExitCode;

/// Runs `kiln history`.
pub fn history(args: &HistoryArgs) -> ExitCode {
    let base = args.url.trim_end_matches('/');
    let outcome =
        read_payload_secret(args.payload_secret.as_deref()).and_then(|secret| block_on(fetch(args, base, &secret)));
    print_outcome("history", outcome)
}

/// Runs `kiln ui`: prints a login link to the history page.
pub fn ui_link(url: &str, secret: Option<&Path>, valid_for: i64) -> ExitCode {
    let outcome = read_payload_secret(secret).map(|secret| {
        let expires = kiln::timefmt::now_secs() + valid_for;
        format!("{}{}\n", url.trim_end_matches('/'), kiln::wire::ui_login_path(&secret, expires))
    });
    print_outcome("ui", outcome)
}

async fn fetch(args: &HistoryArgs, base: &str, secret: &[u8]) -> Result<String, String> {
    let body = admin_call(reqwest::Method::GET, base, &request_path(args), secret).await?;
    if args.json {
        return Ok(format!("{body}\n"));
    }
    match args.build {
        Some(_) => serde_json::from_str::<BuildEntry>(&body).map(|b| render_build(&b)).map_err(|e| e.to_string()),
        None => serde_json::from_str::<Page>(&body).map(|p| render_page(&p)).map_err(|e| e.to_string()),
    }
}

/// `/builds/{id}` or `/builds?…`, encoded (the signature covers it as sent).
fn request_path(args: &HistoryArgs) -> String {
    let mut url = reqwest::Url::parse("http://admin/builds").expect("a valid URL");
    match &args.build {
        Some(id) => {
            url.path_segments_mut().expect("a base URL").push(id);
        }
        None => {
            let mut query = url.query_pairs_mut();
            query.append_pair("limit", &args.limit.to_string());
            if let Some(image) = &args.image {
                query.append_pair("image", image);
            }
            if args.failed {
                query.append_pair("result", "failed");
            }
        }
    }
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
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
