//! Dockerfile shapes that multiply work: each is legal, small per line,
//! and at `n` instructions makes a naive frontend do `n²` work or hold
//! `n²` bytes. The frontend's tests and benchmark run them to show that
//! parsing, linting and lowering stay linear, or stop at a clear limit.

/// One shape: its name and how to write it with about `n` instructions.
pub type Shape = (&'static str, fn(usize) -> String);

/// Every shape.
pub const SHAPES: &[Shape] = &[
    ("labels", labels),
    ("envs_then_runs", envs_then_runs),
    ("stage_chain", stage_chain),
    ("stage_fan_out", stage_fan_out),
    ("one_big_variable", one_big_variable),
    ("onbuild_fan_out", onbuild_fan_out),
    ("copy_from_every_stage", copy_from_every_stage),
    ("typo_stage_names", typo_stage_names),
];

/// `FROM scratch` and `n` LABEL lines.
pub fn labels(n: usize) -> String {
    let mut s = String::from("FROM scratch\n");
    (0..n).for_each(|i| s.push_str(&format!("LABEL l{i}=v{i}\n")));
    s
}

/// `n/2` ENV lines, then `n/2` RUNs: every RUN carries every variable.
pub fn envs_then_runs(n: usize) -> String {
    let mut s = String::from("FROM scratch\n");
    (0..n / 2).for_each(|i| s.push_str(&format!("ENV e{i}=v{i}\n")));
    (0..n / 2).for_each(|i| s.push_str(&format!("RUN r{i}\n")));
    s
}

/// Each stage builds on the one before and adds a step and a label.
pub fn stage_chain(n: usize) -> String {
    let mut s = String::from("FROM scratch AS s0\n");
    (1..n / 3).for_each(|i| s.push_str(&format!("FROM s{} AS s{i}\nRUN r{i}\nLABEL l{i}=v\n", i - 1)));
    s
}

/// `n/3` stages built on one stage with `n/3` labels, and a last stage
/// copying from each (so every one is built).
pub fn stage_fan_out(n: usize) -> String {
    let mut s = String::from("FROM scratch AS base\n");
    (0..n / 3).for_each(|i| s.push_str(&format!("LABEL l{i}=v{i}\n")));
    fan_out_from_base(&mut s, n / 3);
    s
}

/// `count` stages `FROM base`, then a stage copying from each.
fn fan_out_from_base(s: &mut String, count: usize) {
    (0..count).for_each(|i| s.push_str(&format!("FROM base AS c{i}\n")));
    s.push_str("FROM scratch\n");
    (0..count).for_each(|i| s.push_str(&format!("COPY --from=c{i} / /\n")));
}

/// A 512 KiB variable expanded into `n` labels.
pub fn one_big_variable(n: usize) -> String {
    let mut s = format!("FROM scratch\nENV A={}\n", "x".repeat(512 << 10));
    (0..n).for_each(|i| s.push_str(&format!("LABEL l{i}=$A\n")));
    s
}

/// A stage with `n/3` ONBUILD triggers, `n/3` stages built on it, and a
/// last stage copying from each.
pub fn onbuild_fan_out(n: usize) -> String {
    let mut s = String::from("FROM scratch AS base\n");
    (0..n / 3).for_each(|i| s.push_str(&format!("ONBUILD LABEL l{i}=v\n")));
    fan_out_from_base(&mut s, n / 3);
    s
}

/// `n/2` named stages, then one stage copying from each.
pub fn copy_from_every_stage(n: usize) -> String {
    let mut s = String::new();
    (0..n / 2).for_each(|i| s.push_str(&format!("FROM scratch AS s{i}\n")));
    s.push_str("FROM scratch\n");
    (0..n / 2).for_each(|i| s.push_str(&format!("COPY --from=s{i} / /s{i}/\n")));
    s
}

/// `n/2` stage names and `n/2` bare image names one letter away from
/// them (each is checked as a possible typo of a stage name).
pub fn typo_stage_names(n: usize) -> String {
    let mut s = String::new();
    (0..n / 2).for_each(|i| s.push_str(&format!("FROM scratch AS stage{i:06}\n")));
    s.push_str("FROM scratch\n");
    (0..n / 2).for_each(|i| s.push_str(&format!("COPY --from=stagf{i:06} / /\n")));
    s
}
