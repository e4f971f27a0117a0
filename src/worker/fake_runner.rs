//! A [`StepRunner`] for tests, with no process, namespace or mount: a RUN
//! step's command is read as a tiny script whose statements (separated by
//! `;`) are `write PATH TEXT` (a file in the step's upper directory),
//! `echo TEXT` (an output line), `repeat N TEXT` (N output lines), `sleep
//! MS` and `exit N`. Every other word fails the step with exit code 127.
//! File ops are refused. It counts what it ran.

use super::fileop::{FileOpRequest, FileOpResult};
use super::runner::{Output, RunError, RunStep, StepRunner};
use futures_util::future::BoxFuture;
use kiln_runtime::step::StepResult;
use kiln_snapshotter::overlay::Mount;
use std::path::PathBuf;
use std::sync::Mutex;

/// The fake runner.
#[derive(Default)]
pub(crate) struct ScriptRunner {
    /// The scripts run so far, in order.
    pub ran: Mutex<Vec<String>>,
}

impl ScriptRunner {
    /// How many steps ran.
    pub fn runs(&self) -> usize {
        self.ran.lock().unwrap().len()
    }
}

/// The writable directory of a step's rootfs mounts.
fn upper_dir(mounts: &[Mount]) -> PathBuf {
    let mount = mounts.last().expect("a rootfs mount");
    let upper = mount.options.iter().find_map(|o| o.strip_prefix("upperdir="));
    match (upper, &mount.cwd) {
        (Some(dir), Some(cwd)) => cwd.join(dir),
        (Some(dir), None) => PathBuf::from(dir),
        (None, _) => mount.source.clone(),
    }
}

impl StepRunner for ScriptRunner {
    fn run_step<'a>(&'a self, job: RunStep, out: Output<'a>) -> BoxFuture<'a, Result<StepResult, RunError>> {
        Box::pin(async move {
            let script = job.request.args.last().cloned().unwrap_or_default();
            self.ran.lock().unwrap().push(script.clone());
            let upper = upper_dir(&job.request.rootfs);
            for statement in script.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                let (word, rest) = statement.split_once(' ').unwrap_or((statement, ""));
                match word {
                    "write" => {
                        let (path, text) = rest.split_once(' ').unwrap_or((rest, ""));
                        let file = upper.join(path.trim_start_matches('/'));
                        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
                        std::fs::write(file, text).unwrap();
                    }
                    "echo" => out(rest.to_string()),
                    "repeat" => {
                        let (n, text) = rest.split_once(' ').unwrap_or((rest, ""));
                        for _ in 0..n.parse::<usize>().unwrap() {
                            out(text.to_string());
                        }
                    }
                    "sleep" => tokio::time::sleep(std::time::Duration::from_millis(rest.parse().unwrap())).await,
                    "exit" => return Ok(StepResult { exit_code: rest.parse().unwrap(), error: None }),
                    other => {
                        out(format!("{other}: not found"));
                        return Ok(StepResult { exit_code: 127, error: None });
                    }
                }
            }
            Ok(StepResult { exit_code: 0, error: None })
        })
    }

    fn run_file_op<'a>(&'a self, _: FileOpRequest, _: Output<'a>) -> BoxFuture<'a, Result<FileOpResult, RunError>> {
        Box::pin(async { Ok(FileOpResult { error: Some("the script runner runs no file ops".into()) }) })
    }
}
