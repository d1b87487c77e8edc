//! Certificate tooling for kelos-hooks: a CA, serving certificates for the admission server,
//! client certificates (e.g. for a test kube-apiserver), and service-account signing key pairs.
//! Used by the `kelos-hooks-certs` CLI, the end-to-end tests and the chart's self-managed mode.
//!
//! Keys are ECDSA P-256 (PKCS#8 PEM), signatures ECDSA-SHA256. Certificates get random serials
//! and a `notBefore` backdated by [`validity::BACKDATE`] for clock skew.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod ca;
mod error;
mod files;
mod inspect;
mod keypair;
mod san;
mod subject;
pub mod validity;

pub use ca::{Ca, Issued};
pub use error::{Error, Result};
pub use files::{
    CA_NAME, PRIVATE_MODE, PUBLIC_MODE, load_ca, pair_paths, write_key_pair, write_pair,
};
pub use inspect::{certificate_pem, certificates_der, first_certificate_der, not_after, time_left};
pub use keypair::{KeyPairPem, generate_key_pair};
pub use san::San;
