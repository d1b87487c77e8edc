//! The SSRF-safe HTTPS client: rustls (ring) with web PKI roots plus `--ca-file`, our vetting
//! resolver, no redirects, no proxies, HTTPS only.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kelos_hooks_shared::ip::IpPolicy;

use super::resolve::{Lookup, VettingResolver};
use crate::error::{Error, Result};

/// A client whose connections only reach vetted addresses.
#[derive(Clone)]
pub struct SafeClient {
    /// The configured reqwest client.
    pub http: reqwest::Client,
    /// The address policy (also applied to IP-literal hosts before sending).
    pub policy: Arc<IpPolicy>,
}

/// Loads PEM certificates from each file.
pub fn load_cas(files: &[PathBuf]) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    let mut out = Vec::new();
    for f in files {
        let pem = std::fs::read(f)
            .map_err(|e| Error::Config(format!("--ca-file {}: {e}", f.display())))?;
        let certs = rustls_pemfile::certs(&mut pem.as_slice())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Config(format!("--ca-file {}: {e}", f.display())))?;
        if certs.is_empty() {
            return Err(Error::Config(format!(
                "--ca-file {}: no PEM certificates found",
                f.display()
            )));
        }
        out.extend(certs);
    }
    Ok(out)
}

impl SafeClient {
    /// Builds the client.
    pub fn new(
        policy: IpPolicy,
        lookup: Lookup,
        ca_files: &[PathBuf],
        connect_timeout: Duration,
    ) -> Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for cert in load_cas(ca_files)? {
            roots
                .add(cert)
                .map_err(|e| Error::Config(format!("--ca-file: unusable certificate: {e}")))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config(format!("TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let policy = Arc::new(policy);
        let resolver = VettingResolver {
            lookup,
            policy: policy.clone(),
        };
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .redirect(reqwest::redirect::Policy::none())
            // Environment proxies would connect on our behalf, bypassing the address checks.
            .no_proxy()
            .https_only(true)
            .dns_resolver(Arc::new(resolver))
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!(
                "kelos-hooks-dispatcher/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        Ok(SafeClient { http, policy })
    }
}
