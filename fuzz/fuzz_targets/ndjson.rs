//! libFuzzer target: `kiln::fuzzing::ndjson`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kiln::fuzzing::ndjson(data));
