//! Renders a build stream: on a terminal, step lines stand out and a live
//! status line shows the elapsed time and current step; otherwise plain
//! log lines, one per line, for CI logs.

use std::io::{IsTerminal, Write};

/// Stream renderer.
pub struct Renderer {
    tty: bool,
    current: String,
    status_shown: bool,
}

impl Default for Renderer {
    fn default() -> Self {
        Self::new()
    }
}

impl Renderer {
    /// A renderer for stdout.
    pub fn new() -> Self {
        Self { tty: std::io::stdout().is_terminal(), current: String::new(), status_shown: false }
    }

    /// Handles one NDJSON object; returns `Some(success)` for a final line.
    pub fn event(&mut self, v: &serde_json::Value) -> Option<bool> {
        for line in v["log"].as_array().into_iter().flatten().filter_map(|l| l.as_str()) {
            self.log(line);
        }
        let duration = v["duration"].as_f64().unwrap_or(0.0);
        match v["status"].as_str() {
            Some("success") => {
                self.clear_status();
                println!(
                    "{} {} ({duration:.2}s)",
                    self.paint("32", "built and pushed"),
                    v["image"].as_str().unwrap_or("")
                );
                for field in ["digest", "provenance", "sbom", "signature"] {
                    match &v[field] {
                        serde_json::Value::String(s) => println!("  {field}: {s}"),
                        serde_json::Value::Object(per) => {
                            for (platform, s) in per {
                                println!("  {field} ({platform}): {}", s.as_str().unwrap_or(""));
                            }
                        }
                        _ => {}
                    }
                }
                Some(true)
            }
            Some("failed") | Some("failure") => {
                self.clear_status();
                eprintln!("{} {}", self.paint("31", "build failed:"), v["error"].as_str().unwrap_or("unknown error"));
                Some(false)
            }
            _ => {
                self.status(duration);
                None
            }
        }
    }

    fn log(&mut self, line: &str) {
        self.clear_status();
        let text = line.split_once(' ').map_or(line, |(_, rest)| rest);
        let is_step = text.starts_with('[');
        if is_step {
            self.current = text.to_string();
        }
        if !self.tty {
            println!("{line}");
        } else if text.ends_with(" CACHED") {
            println!("{}", self.paint("36", text));
        } else if is_step {
            println!("{}", self.paint("1", text));
        } else {
            println!("  {}", self.paint("2", text));
        }
    }

    fn status(&mut self, secs: f64) {
        if !self.tty {
            return;
        }
        let step: String = self.current.chars().take(70).collect();
        print!("\r\x1b[K{} {step}", self.paint("33", &format!("building {secs:.1}s")));
        let _ = std::io::stdout().flush();
        self.status_shown = true;
    }

    fn clear_status(&mut self) {
        if self.status_shown {
            print!("\r\x1b[K");
            self.status_shown = false;
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.tty {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    /// Ends the view.
    pub fn done(&mut self) {
        self.clear_status();
    }
}
