//! A static file server for tests of remote sources.

use super::{unique, Daemon};
use std::path::PathBuf;
use std::process::Command;

/// `http.server` without the `Last-Modified` header: argv is port, dir.
const UNDATED_SERVER: &str = r#"
import functools, http.server, sys
class Undated(http.server.SimpleHTTPRequestHandler):
    def send_header(self, k, v):
        if k != "Last-Modified":
            super().send_header(k, v)
handler = functools.partial(Undated, directory=sys.argv[2])
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), handler).serve_forever()
"#;

/// `python3 -m http.server` serving a directory (removed on drop).
pub struct FileServer {
    /// The server process and its address.
    pub daemon: Daemon,
    /// The directory it serves.
    pub dir: PathBuf,
}

impl FileServer {
    pub fn start(name: &str) -> FileServer {
        Self::serve(name, true)
    }

    /// A server that sends no `Last-Modified` (as BuildKit's test server
    /// for archives without one).
    pub fn start_undated(name: &str) -> FileServer {
        Self::serve(name, false)
    }

    fn serve(name: &str, dated: bool) -> FileServer {
        let dir = std::env::temp_dir().join(unique(name));
        std::fs::create_dir_all(&dir).unwrap();
        let daemon = Daemon::start(|port| {
            let mut cmd = Command::new("python3");
            match dated {
                true => cmd.args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1", "--directory"]),
                false => cmd.args(["-c", UNDATED_SERVER, &port.to_string()]),
            };
            cmd.arg(&dir).stderr(std::process::Stdio::null());
            cmd
        });
        FileServer { daemon, dir }
    }

    /// Server arguments that let ADD reach this loopback server (the
    /// default egress policy refuses the node's loopback).
    pub fn allow(&self) -> Vec<String> {
        vec!["--step-egress-allow".into(), self.daemon.addr.to_string()]
    }

    /// The URL of `path` on it.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.daemon.addr)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
