//! HTTPS servers of the tests: a fresh CA, a serving certificate for one IP, a rustls acceptor
//! (or one for a certificate made elsewhere).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow};
use kelos_hooks_certs::{Ca, San};
use tokio_rustls::TlsAcceptor;

/// A fresh CA called `ca_name` and an acceptor serving a certificate it issued for `ip`.
pub fn acceptor_for(ca_name: &str, ip: IpAddr) -> Result<(Ca, TlsAcceptor)> {
    let ca = Ca::generate(ca_name, Duration::from_secs(86400))?;
    let issued = ca.issue_server("server", &[San::Ip(ip)], Duration::from_secs(86400))?;
    Ok((ca, acceptor_from_pem(&issued.cert_pem, &issued.key_pem)?))
}

/// An acceptor serving the certificate chain `cert_pem` with its private key `key_pem`.
pub fn acceptor_from_pem(cert_pem: &str, key_pem: &str) -> Result<TlsAcceptor> {
    let certs = rustls_pemfile::certs(&mut cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key =
        rustls_pemfile::private_key(&mut key_pem.as_bytes())?.ok_or_else(|| anyhow!("no key"))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
