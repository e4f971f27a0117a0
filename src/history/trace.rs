//! What a build's history entry is made of, gathered while it runs: the
//! steps as the solver reports them, the bytes it moved, and its log.

use super::StepEntry;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Most log bytes an entry keeps: the first quarter and the last three
/// quarters of a longer log (where a failure usually is).
pub const MAX_LOG_BYTES: usize = 256 << 10;
/// Most steps an entry keeps.
const MAX_STEPS: usize = 5_000;

/// Seconds rounded to milliseconds.
fn round_ms(secs: f64) -> f64 {
    (secs * 1000.0).round() / 1000.0
}

/// A log with its head and tail kept within [`MAX_LOG_BYTES`].
#[derive(Debug, Default)]
pub struct LogCapture {
    head: Vec<String>,
    head_bytes: usize,
    tail: VecDeque<String>,
    tail_bytes: usize,
    omitted: u64,
}

impl LogCapture {
    /// Adds a line.
    pub fn push(&mut self, line: &str) {
        if self.omitted == 0 && self.tail.is_empty() && self.head_bytes + line.len() <= MAX_LOG_BYTES / 4 {
            self.head_bytes += line.len();
            self.head.push(line.to_string());
            return;
        }
        self.tail_bytes += line.len();
        self.tail.push_back(line.to_string());
        while self.tail_bytes > MAX_LOG_BYTES - MAX_LOG_BYTES / 4 {
            let Some(gone) = self.tail.pop_front() else { break };
            self.tail_bytes -= gone.len();
            self.omitted += 1;
        }
    }

    /// The lines kept, with a marker where lines were left out, and how
    /// many were.
    pub fn lines(&self) -> (Vec<String>, u64) {
        let mut lines = self.head.clone();
        if self.omitted > 0 {
            lines.push(format!("[history] {} log lines left out here", self.omitted));
        }
        lines.extend(self.tail.iter().cloned());
        (lines, self.omitted)
    }
}

/// A running build's trace: shared by its reporters (one per platform),
/// its log and its push.
#[derive(Debug)]
pub struct BuildTrace {
    started: Instant,
    steps: Mutex<Steps>,
    log: Mutex<LogCapture>,
    pulled: AtomicU64,
    pushed: AtomicU64,
}

#[derive(Debug, Default)]
struct Steps {
    list: Vec<StepEntry>,
    /// Index in `list` of each step by name, while it runs.
    running: HashMap<String, usize>,
    first_start: Option<f64>,
}

impl Default for BuildTrace {
    /// A trace of a request arriving now.
    fn default() -> Self {
        BuildTrace {
            started: Instant::now(),
            steps: Default::default(),
            log: Default::default(),
            pulled: AtomicU64::new(0),
            pushed: AtomicU64::new(0),
        }
    }
}

impl BuildTrace {
    /// Seconds since the request arrived, rounded to milliseconds.
    pub fn elapsed(&self) -> f64 {
        round_ms(self.started.elapsed().as_secs_f64())
    }

    fn with_steps<T>(&self, f: impl FnOnce(&mut Steps) -> T) -> T {
        f(&mut self.steps.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// A step started.
    pub fn step_started(&self, name: &str, line: Option<u32>, op: &str) {
        let start = self.elapsed();
        self.with_steps(|s| {
            s.first_start.get_or_insert(start);
            if s.list.len() >= MAX_STEPS {
                return;
            }
            let entry = StepEntry {
                name: name.to_string(),
                line,
                op: op.to_string(),
                start,
                duration: 0.0,
                queued: 0.0,
                cached: false,
                unfinished: true,
            };
            s.running.insert(name.to_string(), s.list.len());
            s.list.push(entry);
        });
    }

    /// A step got its run slots: the time since it started was queued.
    pub fn step_running(&self, name: &str) {
        let now = self.elapsed();
        self.with_steps(|s| {
            if let Some(step) = s.running.get(name).and_then(|i| s.list.get_mut(*i)) {
                step.queued = round_ms((now - step.start).max(0.0));
            }
        });
    }

    /// A step ended: the cache answered it (`cached`) or it ran.
    pub fn step_ended(&self, name: &str, cached: bool) {
        let end = self.elapsed();
        self.with_steps(|s| {
            if let Some(step) = s.running.remove(name).and_then(|i| s.list.get_mut(i)) {
                step.duration = round_ms((end - step.start).max(0.0));
                step.cached = cached;
                step.unfinished = false;
            }
        });
    }

    /// Compressed bytes downloaded.
    pub fn pulled(&self, bytes: u64) {
        self.pulled.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Compressed bytes uploaded.
    pub fn pushed(&self, bytes: u64) {
        self.pushed.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A line of the build's log.
    pub fn log_line(&self, line: &str) {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).push(line);
    }

    /// Fills in `entry`'s steps (one still running lasts until now),
    /// counts, bytes and log.
    pub fn fill(&self, entry: &mut super::BuildEntry) {
        let end = self.elapsed();
        self.with_steps(|s| {
            entry.steps = s.list.clone();
            entry.queued = s.first_start.unwrap_or(0.0);
        });
        for step in entry.steps.iter_mut().filter(|s| s.unfinished) {
            step.duration = round_ms((end - step.start).max(0.0));
        }
        entry.facts.cache_hits = entry.steps.iter().filter(|s| s.cached).count() as u64;
        entry.cache_misses = entry.steps.iter().filter(|s| !s.cached && !s.unfinished).count() as u64;
        entry.pulled_bytes = self.pulled.load(Ordering::Relaxed);
        entry.pushed_bytes = self.pushed.load(Ordering::Relaxed);
        (entry.log, entry.log_omitted) = self.log.lock().unwrap_or_else(|p| p.into_inner()).lines();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_log_keeps_its_head_and_tail_within_the_bound() {
        let mut log = LogCapture::default();
        let line = "x".repeat(1000);
        for i in 0..2_000 {
            log.push(&format!("{i:04} {line}"));
        }
        let (lines, omitted) = log.lines();
        assert!(lines[0].starts_with("0000 "), "the head is kept");
        assert!(lines.last().unwrap().starts_with("1999 "), "the tail is kept");
        let kept: usize = lines.iter().map(String::len).sum();
        assert!(kept <= MAX_LOG_BYTES + 100, "{kept} bytes");
        assert_eq!(lines.len() as u64 - 1 + omitted, 2_000, "every line is kept or counted");
        assert!(lines.iter().any(|l| l.contains(&format!("{omitted} log lines left out"))));
    }

    #[test]
    fn steps_get_their_times_and_unfinished_ones_are_marked() {
        let trace = BuildTrace::default();
        trace.step_started("[1/3] FROM busybox", Some(1), "source");
        trace.step_ended("[1/3] FROM busybox", true);
        trace.step_started("[2/3] RUN false", Some(2), "exec");
        std::thread::sleep(std::time::Duration::from_millis(10));
        trace.step_running("[2/3] RUN false");
        std::thread::sleep(std::time::Duration::from_millis(20));
        trace.step_ended("[2/3] RUN false", false);
        trace.step_started("[3/3] RUN sleep 9", Some(3), "exec");
        let mut entry = super::super::BuildEntry::default();
        trace.fill(&mut entry);
        assert_eq!(entry.steps.len(), 3);
        assert!(entry.steps[0].cached && !entry.steps[1].cached);
        assert!(entry.steps[1].duration >= 0.03, "{:?}", entry.steps[1]);
        let queued = entry.steps[1].queued;
        assert!((0.01..entry.steps[1].duration - 0.015).contains(&queued), "{:?}", entry.steps[1]);
        assert!(entry.steps[2].unfinished);
        assert_eq!((entry.facts.cache_hits, entry.cache_misses), (1, 1));
        assert_eq!(entry.steps[1].line, Some(2));
    }
}
