//! Pieces shared by the tests that run `kelos-hooks-admission serve` locally: readiness and
//! probes over plain HTTP, the certificate a TLS handshake gets, and the cluster-scoped webhook
//! configurations they register, read and delete.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use kube::api::{Api, DeleteParams, PostParams};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::{Cluster, bin};

/// `kelos-hooks-admission serve` listening on 127.0.0.1:`port` (probes and metrics on
/// `probe_port`) with `tls.crt` and `tls.key` from `tls_dir`, pointed at the test cluster, killed
/// on drop. The caller adds its own flags, then [`spawn_logged`].
pub fn admission_serve(c: &Cluster, port: u16, probe_port: u16, tls_dir: &Path) -> Command {
    let mut cmd = Command::new(bin("kelos-hooks-admission"));
    cmd.arg("serve")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{probe_port}")])
        .arg("--tls-cert-file")
        .arg(tls_dir.join("tls.crt"))
        .arg("--tls-key-file")
        .arg(tls_dir.join("tls.key"))
        .env("KUBECONFIG", c.kubeconfig())
        // trace: one line per allowed review, with how much of the body was read.
        .env("RUST_LOG", "info,kelos_hooks_admission=trace")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// Starts `cmd` with stdout and stderr written to `server.log` in `dir` (see [`server_log`]).
pub fn spawn_logged(mut cmd: Command, dir: &Path) -> Result<Child> {
    let log = std::fs::File::create(dir.join("server.log"))?;
    cmd.stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting kelos-hooks-admission")
}

/// A `GET` over plain HTTP/1.1: the status code and the whole response.
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    let code = out
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .context("no status line")?;
    Ok((code, out))
}

/// A `GET` of `path` on 127.0.0.1:`port` (the probe and metrics listener).
pub async fn probe(port: u16, path: &str) -> Result<(u16, String)> {
    http_get(SocketAddr::from(([127, 0, 0, 1], port)), path).await
}

/// The `server.log` a test server writes into its directory (empty when unreadable).
pub fn server_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
}

/// Waits up to 30s for `/readyz` on `probe_port` to answer 200; fails early when the child has
/// exited. `log` is shown with either failure.
pub async fn wait_ready(
    child: &mut Option<Child>,
    probe_port: u16,
    log: impl Fn() -> String,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok((200, _)) = probe(probe_port, "/readyz").await {
            return Ok(());
        }
        if let Some(status) = child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
            bail!("server exited with {status}:\n{}", log());
        }
        if Instant::now() > deadline {
            bail!("server not ready within 30s:\n{}", log());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A TLS connection to 127.0.0.1:`port` verified against the certificates of `ca_pem` (one CA or
/// a bundle), offering the ALPN protocols `alpn` (none when empty).
async fn tls_connect(
    port: u16,
    ca_pem: &[u8],
    alpn: &[&[u8]],
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut &ca_pem[..]) {
        roots.add(c?)?;
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    Ok(connector
        .connect(ServerName::IpAddress(Ipv4Addr::LOCALHOST.into()), tcp)
        .await?)
}

/// The leaf certificate a fresh TLS handshake with 127.0.0.1:`port` gets, verified against the
/// certificates of `ca_pem` (one CA or a bundle).
pub async fn served_cert(port: u16, ca_pem: &[u8]) -> Result<CertificateDer<'static>> {
    let tls = tls_connect(port, ca_pem, &[]).await?;
    Ok(tls
        .get_ref()
        .1
        .peer_certificates()
        .context("no certificate")?[0]
        .clone()
        .into_owned())
}

/// The HTTP version of [`post_over`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Http {
    /// HTTP/1.1 (ALPN `http/1.1`).
    One,
    /// HTTP/2 (ALPN `h2`), as the API server calls webhooks.
    Two,
}

/// One `POST` of `body` (JSON) to `path` on 127.0.0.1:`port` over TLS (verified against
/// `ca_pem`) with a raw hyper client speaking exactly `http`: the status and the whole response
/// body. A stream reset or a connection closed before the answer is an error.
pub async fn post_over(
    http: Http,
    port: u16,
    ca_pem: &[u8],
    path: &str,
    body: Vec<u8>,
) -> Result<(u16, Vec<u8>)> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let alpn: &[u8] = match http {
        Http::One => b"http/1.1",
        Http::Two => b"h2",
    };
    let tls = tls_connect(port, ca_pem, &[alpn]).await?;
    let negotiated = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    anyhow::ensure!(
        negotiated.as_deref() == Some(alpn),
        "ALPN: asked for {:?}, got {:?}",
        String::from_utf8_lossy(alpn),
        negotiated.map(|n| String::from_utf8_lossy(&n).into_owned())
    );
    let io = TokioIo::new(tls);
    let request = http::Request::post(format!("https://127.0.0.1:{port}{path}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body))?;
    let response = match http {
        Http::One => {
            let (mut send, conn) = hyper::client::conn::http1::handshake(io).await?;
            tokio::spawn(conn);
            send.send_request(request).await?
        }
        Http::Two => {
            let (mut send, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(conn);
            send.send_request(request).await?
        }
    };
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(axum::body::Body::new(response.into_body()), 1 << 20).await?;
    Ok((status, body.to_vec()))
}

/// Creates both webhook configurations.
pub async fn create_webhook_configs(
    client: kube::Client,
    validating: &ValidatingWebhookConfiguration,
    mutating: &MutatingWebhookConfiguration,
) -> Result<()> {
    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), validating)
        .await?;
    Api::<MutatingWebhookConfiguration>::all(client)
        .create(&PostParams::default(), mutating)
        .await?;
    Ok(())
}

/// Deletes the validating and the mutating webhook configuration called `name`.
pub async fn delete_webhook_configs(client: kube::Client, name: &str) -> Result<()> {
    let dp = DeleteParams::default();
    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .delete(name, &dp)
        .await?;
    Api::<MutatingWebhookConfiguration>::all(client)
        .delete(name, &dp)
        .await?;
    Ok(())
}

/// Every `caBundle` (decoded) of the validating, then the mutating configuration's webhooks, in
/// order.
pub fn ca_bundles(
    v: &ValidatingWebhookConfiguration,
    m: &MutatingWebhookConfiguration,
) -> Vec<Option<Vec<u8>>> {
    v.webhooks
        .iter()
        .flatten()
        .map(|w| w.client_config.ca_bundle.as_ref().map(|b| b.0.clone()))
        .chain(
            m.webhooks
                .iter()
                .flatten()
                .map(|w| w.client_config.ca_bundle.as_ref().map(|b| b.0.clone())),
        )
        .collect()
}
