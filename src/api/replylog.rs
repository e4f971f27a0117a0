//! The build log kept for a reply that is one JSON object (pro-builder's
//! non-streaming reply, of-builder's reply). The whole log cannot be held
//! whatever its size, so a [`ReplyLog`] keeps its start (a quarter of the
//! budget: the steps as they began) and its end (the rest: the last
//! output, where a failure shows), counts what it drops between, and says
//! so in a line where the gap is. A streamed (NDJSON) reply sends every
//! line as it comes instead.

use std::collections::VecDeque;

/// What a kept line costs beyond its bytes.
const LINE_OVERHEAD: usize = 24;

/// A bounded build log.
#[derive(Debug)]
pub struct ReplyLog {
    head_budget: usize,
    tail_budget: usize,
    head: Vec<String>,
    head_bytes: usize,
    tail: VecDeque<String>,
    tail_bytes: usize,
    dropped_lines: u64,
    dropped_bytes: u64,
}

impl ReplyLog {
    /// A log keeping about `max` bytes in all.
    pub fn new(max: usize) -> Self {
        let head_budget = max / 4;
        Self {
            head_budget,
            tail_budget: max - head_budget,
            head: Vec::new(),
            head_bytes: 0,
            tail: VecDeque::new(),
            tail_bytes: 0,
            dropped_lines: 0,
            dropped_bytes: 0,
        }
    }

    /// Adds a line; once the start is full, the oldest line after it goes.
    pub fn push(&mut self, mut line: String) {
        let cost = line.len() + LINE_OVERHEAD;
        if self.tail.is_empty() && self.head_bytes + cost <= self.head_budget {
            self.head_bytes += cost;
            self.head.push(line);
            return;
        }
        if cost > self.tail_budget {
            let (keep, before) = (self.tail_budget.saturating_sub(LINE_OVERHEAD + 8), line.len());
            crate::text::truncate_with(&mut line, keep, " […]");
            self.dropped_bytes += before.saturating_sub(line.len()) as u64;
        }
        self.tail_bytes += line.len() + LINE_OVERHEAD;
        self.tail.push_back(line);
        while self.tail_bytes > self.tail_budget {
            let Some(old) = self.tail.pop_front() else { break };
            self.tail_bytes -= old.len() + LINE_OVERHEAD;
            self.dropped_lines += 1;
            self.dropped_bytes += old.len() as u64;
        }
    }

    /// Lines dropped so far.
    pub fn dropped_lines(&self) -> u64 {
        self.dropped_lines
    }

    /// The kept lines in order, with a line where some were dropped.
    pub fn into_lines(self) -> Vec<String> {
        let mut out = self.head;
        if self.dropped_bytes > 0 {
            out.push(format!(
                "{} [kiln] {} lines ({} bytes) of the build log were dropped here: a JSON reply keeps about {} bytes \
                 of log, its start and its end (--max-reply-log); ask for application/x-ndjson to stream all of it",
                crate::timefmt::now(),
                self.dropped_lines,
                self.dropped_bytes,
                self.head_budget + self.tail_budget
            ));
        }
        out.extend(self.tail);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_start_and_the_end_and_counts_the_rest() {
        let mut log = ReplyLog::new(4000);
        for i in 0..1000 {
            log.push(format!("line {i:04} {}", "x".repeat(66)));
        }
        assert!(log.dropped_lines() > 900);
        let lines = log.into_lines();
        let kept: usize = lines.iter().map(|l| l.len() + LINE_OVERHEAD).sum();
        assert!(kept < 4000 + 400, "kept {kept} bytes");
        assert!(lines[0].starts_with("line 0000") && lines.last().unwrap().starts_with("line 0999"));
        let gap = lines.iter().find(|l| l.contains("[kiln]")).unwrap();
        assert!(gap.contains("lines (") && gap.contains("were dropped here"), "{gap}");
        let mut small = ReplyLog::new(1 << 20);
        small.push("a".into());
        small.push("b".into());
        assert_eq!(small.into_lines(), ["a", "b"], "nothing dropped, no gap line");
    }

    #[test]
    fn one_huge_line_is_cut_to_fit() {
        let mut log = ReplyLog::new(1000);
        log.push("x".repeat(100_000));
        let lines = log.into_lines();
        assert!(lines.iter().map(String::len).sum::<usize>() < 2000);
        assert!(lines[0].contains("bytes) of the build log were dropped"), "{lines:?}");
    }
}
