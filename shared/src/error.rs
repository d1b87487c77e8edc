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
    /// A notification body could not be built for this Task (e.g. a template that renders
    /// invalid JSON); nothing is sent.
    #[error("cannot build the {format} body: {reason}")]
    Payload {
        /// The hook's format.
        format: &'static str,
        /// What went wrong, for the Warning Event.
        reason: String,
    },
}

/// Result with this crate's [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
