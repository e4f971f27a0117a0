//! Every seed in `fuzz/corpus/<target>/` and every input that once broke
//! kiln (`fuzz/regressions/<target>/`) runs through its fuzz harness on
//! each test run, so a fixed crash stays fixed without the fuzzer.

use std::path::Path;

fn inputs(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir).into_iter().flatten().flatten().map(|e| e.path()).collect();
    files.sort();
    files
}

#[test]
fn corpus_and_regressions_pass_every_harness() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut ran = 0;
    for (target, harness) in kiln::api::fuzzing::TARGETS {
        let seeds = inputs(&fuzz.join("corpus").join(target));
        assert!(!seeds.is_empty(), "fuzz/corpus/{target} has no seeds");
        for file in seeds.iter().chain(&inputs(&fuzz.join("regressions").join(target))) {
            let data = std::fs::read(file).unwrap();
            let outcome = std::panic::catch_unwind(|| harness(&data));
            assert!(outcome.is_ok(), "{target}: {} fails its harness", file.display());
            ran += 1;
        }
    }
    assert!(ran >= 100, "only {ran} inputs ran");
}
