//! See `kelos_hooks_shared::fuzzing::snapshot`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kelos_hooks_shared::fuzzing::snapshot(data));
