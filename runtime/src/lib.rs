//! The process plumbing both kelos-hooks servers share: one log schema ([`telemetry`]), one
//! readiness model and probe port ([`health`]), the shutdown signal ([`shutdown`]) and the API client
//! ([`kube_client`]).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod health;
pub mod kube_client;
pub mod shutdown;
pub mod telemetry;

pub use health::{Health, NotReady, ProbeMetrics};
pub use kube_client::kube_client;
pub use telemetry::LogFormat;
