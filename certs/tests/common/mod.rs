//! Shared test helpers: an in-process TLS handshake between a client trusting a CA and a server
//! using an issued pair (rustls + webpki, ring provider), over an in-memory duplex stream.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::sync::Arc;

use kelos_hooks_certs::Issued;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{TlsAcceptor, TlsConnector};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca_pem: &str) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    Arc::new(roots)
}

fn chain_and_key(issued: &Issued) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    (
        vec![CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap()],
        PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap(),
    )
}

/// How a handshake ended: the client's and the server's view.
#[derive(Debug)]
pub struct Outcome {
    pub client: Result<(), String>,
    pub server: Result<(), String>,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.client.is_ok() && self.server.is_ok()
    }
}

/// Runs a handshake plus one round trip of application data.
/// `server_name` is the SNI / IP the client verifies; `client_ca_pem` makes the server require a
/// client certificate from that CA; `client_pair` is the certificate the client presents.
pub async fn handshake(
    ca_pem: &str,
    server_pair: &Issued,
    server_name: &str,
    client_ca_pem: Option<&str>,
    client_pair: Option<&Issued>,
) -> Outcome {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca_pem {
        Some(pem) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(roots(pem), provider())
                .build()
                .unwrap(),
        ),
        None => builder.with_no_client_auth(),
    };
    let (chain, key) = chain_and_key(server_pair);
    let server_config = builder.with_single_cert(chain, key).unwrap();

    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(ca_pem));
    let client_config = match client_pair {
        Some(pair) => {
            let (chain, key) = chain_and_key(pair);
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };

    let name = ServerName::try_from(server_name.to_string()).unwrap();
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let acceptor = TlsAcceptor::from(Arc::new(server_config));
    let connector = TlsConnector::from(Arc::new(client_config));

    let server = async move {
        let mut tls = acceptor
            .accept(server_io)
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        tls.write_all(&buf).await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(())
    };
    let client = async move {
        let mut tls = connector
            .connect(name, client_io)
            .await
            .map_err(|e| e.to_string())?;
        tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        if &buf != b"ping" {
            return Err("echo mismatch".to_string());
        }
        Ok::<_, String>(())
    };
    let (client, server) = tokio::join!(client, server);
    Outcome { client, server }
}
