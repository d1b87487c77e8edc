//! See `kelos_hooks_shared::fuzzing::retry_after`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kelos_hooks_shared::fuzzing::retry_after(data));
