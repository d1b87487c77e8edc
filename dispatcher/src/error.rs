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
    /// The Task is gone, was replaced (new UID), or left the phase: nothing to record.
    #[error("Task gone or no longer in phase")]
    TaskGone,
    /// Writes of the delivery annotation kept conflicting with other writers.
    #[error("too many write conflicts")]
    WriteConflicts,
    /// A Secret a hook references could not be used (the message names it, never its values).
    #[error("{message}")]
    Secret {
        /// What is wrong.
        message: String,
        /// Whether trying again may help (a missing Secret may yet be created).
        retryable: bool,
    },
}

/// Result with the dispatcher's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
