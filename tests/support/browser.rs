//! Headless Chromium driven through ChromeDriver's WebDriver API (Debian's
//! `chromium` and `chromium-driver`), for tests of kiln's history page.

use super::Daemon;
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

/// WebDriver's key for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A browser session; closed on drop.
pub struct Browser {
    _driver: Daemon,
    _profile: tempfile::TempDir,
    session: String,
    client: reqwest::blocking::Client,
}

impl Browser {
    /// Starts ChromeDriver and a headless Chromium session.
    pub fn start() -> Browser {
        let driver = Daemon::start(|port| {
            let mut cmd = Command::new("chromedriver");
            cmd.arg(format!("--port={port}")).stderr(std::process::Stdio::null());
            cmd
        });
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1280,1000".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}
        }}});
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        let reply: Value =
            client.post(format!("http://{}/session", driver.addr)).json(&caps).send().unwrap().json().unwrap();
        let session = reply["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {reply}")).to_string();
        Browser {
            session: format!("http://{}/session/{session}", driver.addr),
            _driver: driver,
            _profile: profile,
            client,
        }
    }

    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.client.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let reply: Value = req.send().unwrap().json().unwrap();
        reply["value"].clone()
    }

    /// Loads `url` (waits for the document's load event).
    pub fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })));
    }

    /// The current document's text.
    pub fn body_text(&self) -> String {
        self.script("return document.body.innerText;").as_str().unwrap_or_default().to_string()
    }

    /// The first element matching `css`, if any.
    pub fn find(&self, css: &str) -> Option<String> {
        let found = self.call(reqwest::Method::POST, "/elements", Some(json!({"using": "css selector", "value": css})));
        found.as_array()?.first().map(|e| e[ELEMENT].as_str().unwrap().to_string())
    }

    /// How many elements match `css`.
    pub fn count(&self, css: &str) -> usize {
        let found = self.call(reqwest::Method::POST, "/elements", Some(json!({"using": "css selector", "value": css})));
        found.as_array().map_or(0, Vec::len)
    }

    /// The first element matching `css`, waiting up to 10 s for it.
    pub fn wait_for(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(e) = self.find(css) {
                return e;
            }
            assert!(Instant::now() < deadline, "no {css} in:\n{}", self.body_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Clicks an element.
    pub fn click(&self, element: &str) {
        self.call(reqwest::Method::POST, &format!("/element/{element}/click"), Some(json!({})));
    }

    /// An element's rendered text.
    pub fn text(&self, element: &str) -> String {
        self.call(reqwest::Method::GET, &format!("/element/{element}/text"), None).as_str().unwrap().to_string()
    }

    /// Runs `script` in the page and returns its result.
    pub fn script(&self, script: &str) -> Value {
        self.call(reqwest::Method::POST, "/execute/sync", Some(json!({"script": script, "args": []})))
    }

    /// The browser's cookies for the current page.
    pub fn cookies(&self) -> Vec<Value> {
        self.call(reqwest::Method::GET, "/cookie", None).as_array().cloned().unwrap_or_default()
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let b64 = self.call(reqwest::Method::GET, "/screenshot", None);
        base64::engine::general_purpose::STANDARD.decode(b64.as_str().unwrap()).unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.client.delete(&self.session).send();
    }
}
