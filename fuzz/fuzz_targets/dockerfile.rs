//! libFuzzer target: `kiln::api::fuzzing::dockerfile`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kiln::api::fuzzing::dockerfile(data));
