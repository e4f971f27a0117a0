//! libFuzzer target: `kiln::api::fuzzing::context_links`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kiln::api::fuzzing::context_links(data));
