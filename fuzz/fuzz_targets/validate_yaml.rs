//! See `kelos_hooks_admission::fuzzing::validate_yaml`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kelos_hooks_admission::fuzzing::validate_yaml(data));
