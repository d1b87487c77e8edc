//! Shared core of kelos-hooks: the API types, the validation rules, the IP classification, the
//! annotation formats and the notification payloads. Pure logic only: no I/O lives here, so both
//! binaries, the CRD generator and the tests use one definition of each rule.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod annotations;
pub mod api;
pub mod crd;
pub mod crd_check;
pub mod error;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod ip;
pub mod redact;
pub mod validation;

pub use error::{Error, Result};
pub mod deliveries;
pub mod duration;
pub mod payload;
pub mod retry_after;
