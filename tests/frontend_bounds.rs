//! The frontend under Dockerfiles shaped to multiply its work (see
//! `kiln::frontend::shapes`): at the instruction cap every shape either
//! lowers or stops with the lowering budget's clear error, and a file
//! over the cap is refused at once. `benches/frontend.rs` measures how
//! the time grows with the size.

use kiln::api::fuzzing::frontend_pass;
use kiln::frontend::{self, shapes};

const NATIVE: &[&str] = &["linux/amd64"];

#[test]
fn every_shape_at_the_cap_lowers_or_hits_the_budget() {
    let n = frontend::MAX_INSTRUCTIONS - 2;
    let expect_budget = ["envs_then_runs", "stage_fan_out", "one_big_variable", "onbuild_fan_out"];
    for (name, shape) in shapes::SHAPES {
        let text = shape(n);
        let started = std::time::Instant::now();
        let outcome = frontend_pass(&text, frontend::MAX_INSTRUCTIONS, NATIVE);
        eprintln!("{name}: {:.2}s: {:?}", started.elapsed().as_secs_f64(), outcome.as_ref().map_err(|d| &d.message));
        match outcome {
            Ok(nodes) => assert!(!expect_budget.contains(name), "{name} lowered to {nodes} nodes"),
            Err(d) => {
                assert!(expect_budget.contains(name), "{name}: {d}");
                assert!(d.message.contains("bytes of steps and image configuration"), "{name}: {d}");
                assert!(d.line > 1, "{name}: the error names the line where the budget ran out: {d}");
            }
        }
    }
}

#[test]
fn a_chain_of_stages_lowers_every_stage_once() {
    let text = shapes::stage_chain(9_000);
    assert_eq!(frontend::parse(&text).unwrap().instructions.len(), 1 + 3 * 2_999);
    assert_eq!(frontend_pass(&text, frontend::MAX_INSTRUCTIONS, NATIVE).unwrap(), 1 + 2_999, "scratch + one per RUN");
}

#[test]
fn more_instructions_than_the_cap_are_refused_naming_the_line() {
    let text = shapes::labels(100_000);
    let err = frontend::parse(&text).unwrap_err();
    assert_eq!(err.line, frontend::MAX_INSTRUCTIONS + 1);
    assert!(err.to_string().contains("more than 10000 instructions"), "{err}");
    assert!(frontend::parse_limited(&text, 200_000).is_ok(), "the cap is the server's to raise");
}

#[test]
fn budget_errors_name_the_instruction_that_spent_it() {
    let text = shapes::one_big_variable(1_000);
    let err = frontend_pass(&text, frontend::MAX_INSTRUCTIONS, NATIVE).unwrap_err();
    // 1 MiB per label (its value, and its history entry): the 63rd label
    // (line 65) passes 64 MiB.
    assert_eq!(err.line, 65, "{err}");
    assert!(err.to_string().contains("LABEL l62=$A"), "{err}");
}
