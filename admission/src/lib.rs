//! The kelos-hooks admission server: its modules, used by the `kelos-hooks-admission` binary
//! (`main.rs`) and by the in-process benchmark (`examples/review_cost.rs`).
#![forbid(unsafe_code)]

pub mod admission;
pub mod authorize;
pub mod body;
pub mod cache;
pub mod cli;
pub mod crd_check;
pub mod crd_extension;
pub mod error;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fixtures;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod handlers;
pub mod metrics;
pub mod patch;
pub mod review;
pub mod self_managed;
pub mod server;
pub mod tls;
pub mod validate_cmd;
