//! libFuzzer target: `kiln::api::fuzzing::dockerignore`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kiln::api::fuzzing::dockerignore(data));
