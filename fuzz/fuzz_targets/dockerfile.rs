//! libFuzzer target: `kiln::fuzzing::dockerfile`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kiln::fuzzing::dockerfile(data));
