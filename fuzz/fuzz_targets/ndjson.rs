//! libFuzzer target: `kiln::api::fuzzing::ndjson`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kiln::api::fuzzing::ndjson(data));
