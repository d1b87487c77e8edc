//! rustls serving configuration whose certificate is swapped when the files change: new
//! handshakes get the new certificate, open connections keep theirs, no restart.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use kelos_hooks_runtime::Health;

/// Readiness check: a serving certificate is loaded.
pub const READY_CHECK: &str = "serving certificate";

/// The ring provider every TLS object here uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Serves whatever certificate was loaded last.
#[derive(Default)]
pub struct ReloadingResolver {
    current: RwLock<Option<Arc<CertifiedKey>>>,
}

impl fmt::Debug for ReloadingResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingResolver")
            .field("loaded", &self.current().is_some())
            .finish()
    }
}

impl ReloadingResolver {
    /// The certificate new handshakes get.
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().and_then(|c| c.clone())
    }

    fn set(&self, key: CertifiedKey) {
        if let Ok(mut c) = self.current.write() {
            *c = Some(Arc::new(key));
        }
    }
}

impl ResolvesServerCert for ReloadingResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

/// TLS 1.2 + 1.3, ring, ALPN h2 and http/1.1, certificate from `resolver`.
pub fn server_config(resolver: Arc<ReloadingResolver>) -> Result<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::Tls {
            path: PathBuf::new(),
            reason: e.to_string(),
        })?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Parses a PEM certificate chain and private key and checks they belong together.
pub fn load_pair(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, String> {
    let chain = rustls_pemfile::certs(&mut &cert_pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate file: {e}"))?;
    if chain.is_empty() {
        return Err("certificate file holds no PEM CERTIFICATE block".to_owned());
    }
    let key = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| format!("key file: {e}"))?
        .ok_or_else(|| "key file holds no PEM private key".to_owned())?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| format!("certificate and key: {e}"))
}

/// Outcome of one look at the files.
#[derive(Debug, PartialEq, Eq)]
pub enum Poll {
    /// Same contents as last time.
    Unchanged,
    /// A new pair is being served.
    Reloaded,
    /// The files changed but the pair does not load; the previous certificate stays.
    Failed(String),
}

/// Watches the certificate and key files (by content, so any rewrite — in place, by rename or
/// through a kubelet `..data` symlink swap — is seen).
#[derive(Debug)]
pub struct CertFiles {
    cert: PathBuf,
    key: PathBuf,
    loaded: Option<(Vec<u8>, Vec<u8>)>,
    failed: Option<(Vec<u8>, Vec<u8>)>,
}

impl CertFiles {
    /// Files to watch.
    pub fn new(cert: &Path, key: &Path) -> Self {
        CertFiles {
            cert: cert.to_owned(),
            key: key.to_owned(),
            loaded: None,
            failed: None,
        }
    }

    /// Reads both files; loads them into `resolver` when their contents changed (a pair that
    /// failed to load is retried only once the files change again).
    pub fn poll(&mut self, resolver: &ReloadingResolver) -> Poll {
        let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
        let pair = match (read(&self.cert), read(&self.key)) {
            (Ok(c), Ok(k)) => (c, k),
            (Err(e), _) | (_, Err(e)) => return Poll::Failed(e),
        };
        if self.loaded.as_ref() == Some(&pair) || self.failed.as_ref() == Some(&pair) {
            return Poll::Unchanged;
        }
        match load_pair(&pair.0, &pair.1) {
            Ok(key) => {
                resolver.set(key);
                self.loaded = Some(pair);
                self.failed = None;
                Poll::Reloaded
            }
            Err(e) => {
                // A half-written rotation (new key, old cert) fails once; the next write of
                // either file changes the pair and it is tried again.
                self.failed = Some(pair);
                Poll::Failed(e)
            }
        }
    }
}

/// Loads the pair now, then polls every `interval` until `shutdown` resolves.
pub async fn run_reloader(
    mut files: CertFiles,
    resolver: Arc<ReloadingResolver>,
    interval: Duration,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    let mut last_error: Option<String> = None;
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = ticker.tick() => {}
        }
        match files.poll(&resolver) {
            Poll::Unchanged => {}
            Poll::Reloaded => {
                last_error = None;
                metrics.observe_tls_reload(true);
                health.clear(READY_CHECK);
                tracing::info!(cert = %files.cert.display(), "serving certificate loaded");
            }
            Poll::Failed(why) => {
                // Missing files fail on every poll: report each distinct problem once.
                if last_error.as_deref() != Some(why.as_str()) {
                    metrics.observe_tls_reload(false);
                    let keeping = if resolver.current().is_some() {
                        "keeping the previous certificate"
                    } else {
                        "no certificate to serve yet"
                    };
                    tracing::error!(error = %why, "cannot load serving certificate; {keeping}");
                    last_error = Some(why);
                }
                continue;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn garbage_is_refused_with_a_reason() {
        assert!(
            load_pair(b"", b"")
                .unwrap_err()
                .contains("no PEM CERTIFICATE")
        );
        assert!(
            load_pair(
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                b""
            )
            .is_err()
        );
    }

    #[test]
    fn missing_files_fail_without_panicking() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = CertFiles::new(&dir.path().join("c"), &dir.path().join("k"));
        let r = ReloadingResolver::default();
        assert!(matches!(f.poll(&r), Poll::Failed(m) if m.contains("/c")));
        assert!(r.current().is_none());
    }
}

#[cfg(test)]
mod reload_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::net::{IpAddr, Ipv4Addr};

    use kelos_hooks_certs::{Ca, Issued, San, write_pair};
    use kelos_hooks_runtime::ProbeMetrics as _;
    use rustls::pki_types::{CertificateDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn issue(ca: &Ca) -> Issued {
        ca.issue_server(
            "kelos-hooks-admission",
            &[San::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST))],
            DAY,
        )
        .unwrap()
    }

    fn der(pem: &str) -> CertificateDer<'static> {
        rustls_pemfile::certs(&mut pem.as_bytes())
            .next()
            .unwrap()
            .unwrap()
    }

    /// Handshakes with `addr` trusting `ca`; returns the served leaf and the `/ceiling` answer.
    async fn fetch(addr: std::net::SocketAddr, ca: &Ca) -> (CertificateDer<'static>, String) {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der(ca.cert_pem())).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut tls = connector
            .connect(ServerName::IpAddress(addr.ip().into()), tcp)
            .await
            .unwrap();
        let leaf = tls.get_ref().1.peer_certificates().unwrap()[0]
            .clone()
            .into_owned();
        tls.write_all(b"POST /ceiling HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
            .await
            .unwrap();
        let mut out = String::new();
        tls.read_to_string(&mut out).await.unwrap();
        (leaf, out)
    }

    #[tokio::test]
    async fn new_handshakes_get_the_rewritten_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::generate("test-ca", DAY).unwrap();
        let first = issue(&ca);
        write_pair(dir.path(), "tls", &first).unwrap();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));

        let resolver = Arc::new(ReloadingResolver::default());
        let metrics = Arc::new(Metrics::new());
        let health = Arc::new(Health::waiting_for(&[
            (READY_CHECK, "no serving certificate loaded yet"),
            (
                crate::cache::READY_CHECK,
                "TaskSpawner cache not synced yet",
            ),
        ]));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(run_reloader(
            CertFiles::new(&cert, &key),
            resolver.clone(),
            Duration::from_millis(20),
            metrics.clone(),
            health.clone(),
            async move {
                let _ = stop_rx.await;
            },
        ));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = Arc::new(server_config(resolver.clone()).unwrap());
        let router =
            axum::Router::new().route("/ceiling", axum::routing::post(|| async { "ceiling-ok" }));
        tokio::spawn(crate::server::serve_tls(
            listener,
            config,
            router,
            std::future::pending(),
            Duration::from_secs(1),
        ));

        for _ in 0..100 {
            if resolver.current().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (leaf, body) = fetch(addr, &ca).await;
        assert_eq!(leaf, der(&first.cert_pem));
        assert!(
            body.starts_with("HTTP/1.1 200") && body.ends_with("ceiling-ok"),
            "{body}"
        );

        // A broken rewrite keeps the old certificate.
        std::fs::write(&cert, "garbage").unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(fetch(addr, &ca).await.0, der(&first.cert_pem));

        let second = issue(&ca);
        write_pair(dir.path(), "tls", &second).unwrap();
        let mut served = leaf;
        for _ in 0..100 {
            served = fetch(addr, &ca).await.0;
            if served != der(&first.cert_pem) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(served, der(&second.cert_pem));
        let text = metrics.encode();
        assert!(
            text.contains(r#"tls_cert_reloads_total{result="success"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"tls_cert_reloads_total{result="error"} 1"#),
            "{text}"
        );
        assert_eq!(
            health.readiness().unwrap_err().to_string(),
            "TaskSpawner cache not synced yet"
        );
        let _ = stop_tx.send(());
    }
}
