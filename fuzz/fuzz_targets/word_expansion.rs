//! libFuzzer target: `kiln::fuzzing::word_expansion`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kiln::fuzzing::word_expansion(data));
