//! libFuzzer target: `kiln::api::fuzzing::request_config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kiln::api::fuzzing::request_config(data));
