//! The crate's error type.

use crate::ip::InvalidCidr;

/// Errors of the shared crate's fallible operations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An `--allow-cidr` value did not parse.
    #[error(transparent)]
    InvalidCidr(#[from] InvalidCidr),
    /// The `kelos.dev/on-completion` annotation is not the JSON it should be.
    #[error("invalid hook snapshot annotation: {0}")]
    InvalidSnapshot(#[from] serde_json::Error),
}

/// Result with this crate's [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
