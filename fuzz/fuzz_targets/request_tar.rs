//! libFuzzer target: `kiln::fuzzing::request_tar`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kiln::fuzzing::request_tar(data));
