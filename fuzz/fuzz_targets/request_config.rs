//! libFuzzer target: `kiln::fuzzing::request_config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kiln::fuzzing::request_config(data));
