//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong outside a single admission decision.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A certificate or key file could not be read or parsed.
    #[error("TLS material {path}: {reason}")]
    Tls {
        /// File (or pair) at fault.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Connecting to or talking to the Kubernetes API failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A `--allow-cidr` value is not a CIDR.
    #[error("--allow-cidr: {0}")]
    Cidr(String),
    /// Self-managed certificates: the CA or serving certificate could not be made or stored.
    #[error("self-managed certificates: {0}")]
    SelfManaged(String),
    /// `validate -f`: an input file (or stdin) could not be read.
    #[error("{label}: {source}")]
    Input {
        /// The file name, or `<stdin>`.
        label: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// `validate -f`: an input is not YAML.
    #[error(transparent)]
    Yaml(#[from] serde_saphyr::Error),
    /// `crds`: a CRD could not be written as YAML.
    #[error("cannot write the CRDs as YAML: {0}")]
    CrdYaml(#[from] serde_saphyr::SerializeError),
    /// kelos's TaskSpawner CRD could not be read or patched (the CRD extension).
    #[error("CRD extension: {0}")]
    CrdExtension(String),
    /// Command-line usage problem found after parsing.
    #[error("{0}")]
    Usage(String),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
