//! The process plumbing both kelos-hooks servers share: one log schema ([`telemetry`]), one
//! readiness model and probe port ([`health`]), and the shutdown signal ([`shutdown`]).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod health;
pub mod shutdown;
pub mod telemetry;

pub use health::{Health, NotReady, ProbeMetrics};
pub use telemetry::LogFormat;
