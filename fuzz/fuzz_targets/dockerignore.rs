//! libFuzzer target: `kiln::fuzzing::dockerignore`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kiln::fuzzing::dockerignore(data));
