//! The dispatcher's error type.

/// Everything that can stop the dispatcher or one of its operations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad flags or files.
    #[error("configuration: {0}")]
    Config(String),
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Serving health/metrics failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Result with the dispatcher's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
