//! The `validate/taskspawners` webhook endpoint end to end (see `kelos_hooks_admission::fuzzing::endpoint`).
#![no_main]

use kelos_hooks_admission::fuzzing::endpoint;
use kelos_hooks_admission::metrics::Endpoint;

libfuzzer_sys::fuzz_target!(|data: &[u8]| endpoint(Endpoint::ValidateTaskSpawners, data));
