//! The build history page (`GET /ui/` on the internal listener): one
//! static page (HTML, JS and CSS embedded in the binary, no framework, no
//! build step) that reads `/builds`. A browser cannot sign requests, so an
//! operator opens a login link `kiln ui` prints (valid for minutes, signed
//! with the payload secret); it sets a session cookie (HttpOnly,
//! SameSite=Strict, 12 hours) that admits read-only `GET`s of the page
//! and the history, nothing else. Without it the page is refused.

use super::AppState;
use crate::wire::{verify_purpose, UI_LOGIN, UI_LOGIN_MAX_SECS, UI_SESSION, UI_SESSION_SECS};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;

const INDEX: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("app.js");
const STYLE: &str = include_str!("app.css");

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "kiln_ui";

/// What every page response carries: nothing but the page's own files
/// may run or load, it may not be framed, and the login link's token
/// never leaves in a `Referer`.
const SECURITY_HEADERS: [(&str, &str); 5] = [
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    ("cache-control", "no-store"),
];

fn page(content_type: &'static str, body: &'static str) -> Response {
    let mut resp = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    secure(resp.headers_mut());
    resp
}

fn secure(headers: &mut HeaderMap) {
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

/// `GET /ui/`: the page.
pub async fn index() -> Response {
    page("text/html; charset=utf-8", INDEX)
}

/// `GET /ui`: to `/ui/`, where the page's relative links resolve.
pub async fn to_index() -> Response {
    (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, "/ui/")]).into_response()
}

/// `GET /ui/{file}`: the page's script and style sheet.
pub async fn asset(Path(file): Path<String>) -> Response {
    match file.as_str() {
        "app.js" => page("text/javascript; charset=utf-8", SCRIPT),
        "app.css" => page("text/css; charset=utf-8", STYLE),
        _ => (StatusCode::NOT_FOUND, "no such file\n").into_response(),
    }
}

/// `GET /ui/login?expires=T&sig=S`: checks a `kiln ui` link, sets the
/// session cookie and goes to the page.
pub async fn login(State(state): State<AppState>, Query(query): Query<HashMap<String, String>>) -> Response {
    let now = crate::timefmt::now_secs();
    let expires = query.get("expires").and_then(|e| e.parse::<i64>().ok());
    let valid = match (expires, query.get("sig")) {
        (Some(expires), Some(sig)) => current(&state.secret, (UI_LOGIN, UI_LOGIN_MAX_SECS), expires, sig, now),
        _ => false,
    };
    if !valid {
        tracing::warn!("refused a history page login link (expired or not signed with the payload secret)");
        return refused("This login link is expired or not valid. Run `kiln ui` for a new one.");
    }
    let until = now + UI_SESSION_SECS;
    let cookie = format!(
        "{SESSION_COOKIE}={until}.{}; Path=/; Max-Age={UI_SESSION_SECS}; HttpOnly; SameSite=Strict",
        crate::wire::ui_session_signature(&state.secret, until)
    );
    let mut resp = (StatusCode::SEE_OTHER, [(header::LOCATION, "/ui/")]).into_response();
    resp.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("cookie is ASCII"));
    secure(resp.headers_mut());
    resp
}

/// Whether `headers` carry a session cookie that is signed and current.
fn has_session(secret: &[u8], headers: &HeaderMap, now: i64) -> bool {
    let cookies = headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok());
    let mut values = cookies.flat_map(|c| c.split(';')).filter_map(|c| c.trim().strip_prefix("kiln_ui="));
    values.any(|value| {
        let Some((until, sig)) = value.split_once('.') else { return false };
        let Ok(until) = until.parse::<i64>() else { return false };
        current(secret, (UI_SESSION, UI_SESSION_SECS), until, sig, now)
    })
}

/// Whether `sig` signs (`purpose`, `until`) and `until` is neither past
/// nor further than `longest` ahead of `now`.
fn current(secret: &[u8], (purpose, longest): (&str, i64), until: i64, sig: &str, now: i64) -> bool {
    until >= now && until <= now + longest && verify_purpose(secret, purpose, until, sig)
}

/// Admits a read-only request with a current session cookie; anything
/// else goes on to the admin signature check.
pub async fn session_or_signature(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let read_only = req.method() == Method::GET || req.method() == Method::HEAD;
    if read_only && has_session(&state.secret, req.headers(), crate::timefmt::now_secs()) {
        return next.run(req).await;
    }
    if req.uri().path().starts_with("/ui") {
        return refused("The build history page needs a login link: run `kiln ui --url <this listener>`.");
    }
    super::admin::require_signature(State(state), req, next).await
}

fn refused(message: &str) -> Response {
    let mut resp =
        (StatusCode::UNAUTHORIZED, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{message}\n"))
            .into_response();
    secure(resp.headers_mut());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cookie(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(&format!("other=1; kiln_ui={value}")).unwrap());
        h
    }

    #[test]
    fn only_a_current_signed_session_is_accepted() {
        let (secret, now) = (b"payload-secret".as_slice(), 1_000_000);
        let good = format!("{}.{}", now + 60, crate::wire::ui_session_signature(secret, now + 60));
        assert!(has_session(secret, &cookie(&good), now));
        assert!(!has_session(secret, &cookie(&good), now + 61), "expired");
        assert!(!has_session(b"another-secret", &cookie(&good), now), "another server's");
        let login = format!("{}.{}", now + 60, crate::wire::ui_login_signature(secret, now + 60));
        assert!(!has_session(secret, &cookie(&login), now), "a login link's MAC is not a session");
        let far = now + UI_SESSION_SECS + 10;
        let forever = format!("{far}.{}", crate::wire::ui_session_signature(secret, far));
        assert!(!has_session(secret, &cookie(&forever), now), "no longer than a session lasts");
        assert!(!has_session(secret, &cookie("garbage"), now));
        assert!(!has_session(secret, &HeaderMap::new(), now));
    }
}
