//! libFuzzer target: `kiln::api::fuzzing::word_expansion`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kiln::api::fuzzing::word_expansion(data));
