//! Frontend scaling: for each shape of `kiln::frontend::shapes`, the
//! median time of the whole frontend pass (parse, lint, base images,
//! lower) at n and 4n instructions, and their ratio: about 4 when the
//! work is linear, 16 when quadratic. A shape that stops at the lowering
//! budget is marked `(budget)`. Also 100,000 LABEL lines with the
//! instruction cap lifted, which the issue bounds at one second.
//!
//! `cargo bench --bench frontend [-- RUNS]` (default 5 runs per point).

use kiln::api::fuzzing::frontend_pass;
use kiln::frontend::shapes::{self, SHAPES};
use std::time::Instant;

fn median_secs(runs: usize, text: &str) -> (f64, bool) {
    let mut times = Vec::with_capacity(runs);
    let mut budget = false;
    for _ in 0..runs {
        let t = Instant::now();
        let outcome = frontend_pass(text, usize::MAX, &["linux/amd64"]);
        times.push(t.elapsed().as_secs_f64());
        budget = outcome.is_err_and(|d| d.message.contains("bytes of steps"));
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], budget)
}

fn main() {
    let runs = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(5);
    let (n, big) = (2_500, 10_000);
    println!("{:<24} {:>12} {:>12} {:>7}", "shape", format!("n={n}"), format!("n={big}"), "ratio");
    for (name, shape) in SHAPES {
        let (small, b1) = median_secs(runs, &shape(n));
        let (large, b2) = median_secs(runs, &shape(big));
        let mark = |b: bool| if b { " (budget)" } else { "" };
        println!(
            "{name:<24} {:>9.1} ms {:>9.1} ms {:>7.2}{}{}",
            small * 1e3,
            large * 1e3,
            large / small,
            mark(b1),
            mark(b2)
        );
    }
    let (labels, _) = median_secs(runs, &shapes::labels(100_000));
    println!("100,000 LABEL lines (cap lifted): {:.1} ms (median of {runs})", labels * 1e3);
}
