//! See `kelos_hooks_shared::fuzzing::deliveries`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kelos_hooks_shared::fuzzing::deliveries(data));
