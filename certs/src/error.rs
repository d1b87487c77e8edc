//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while making, loading, inspecting or writing certificates.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// rcgen refused to build, sign or parse something.
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A subject alternative name is neither an IP address nor a valid DNS name.
    #[error("invalid subject alternative name {value:?}: {reason}")]
    InvalidSan {
        /// The rejected input.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A common name or organization is empty.
    #[error("invalid subject: {0}")]
    InvalidSubject(String),
    /// The system random number generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// A PEM or DER certificate could not be parsed.
    #[error("invalid certificate: {0}")]
    InvalidCertificate(String),
    /// A PEM private key could not be parsed.
    #[error("invalid private key: {0}")]
    InvalidKey(String),
    /// The certificate given as a CA is not a CA (no `basicConstraints CA:TRUE`).
    #[error("the certificate is not a CA certificate (basicConstraints CA:TRUE missing)")]
    NotCa,
    /// The private key does not belong to the certificate.
    #[error("the private key does not match the certificate's public key")]
    KeyMismatch,
    /// The requested validity is zero or too large to represent.
    #[error("invalid validity: {0}")]
    InvalidValidity(String),
    /// A file name component (e.g. `--name`) is empty or would escape the output directory.
    #[error("invalid file name {0:?}: use a plain name without '/', '..' or a leading '.'")]
    InvalidName(String),
    /// Refused to overwrite an existing file (pass `--force` on the CLI).
    #[error("{} already exists (pass --force to replace it)", .0.display())]
    AlreadyExists(PathBuf),
    /// A file system operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
