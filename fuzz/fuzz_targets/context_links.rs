//! libFuzzer target: `kiln::fuzzing::context_links`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kiln::fuzzing::context_links(data));
