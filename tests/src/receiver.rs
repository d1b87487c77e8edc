//! A scriptable local HTTPS webhook receiver for the end-to-end tests.
//!
//! Listens on a loopback address with a certificate from its own test CA (`ca_file()` for the
//! dispatcher's `--ca-file`). Per path, a script of replies is consumed in order (then 200):
//! status codes, `Retry-After`, redirects, hangs, slow answers. Every request is recorded with its
//! method, headers, body and arrival time; TCP connections are counted too, so a test can prove a
//! blocked destination was never even connected to.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use axum::body::Body;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::tls::{acceptor_for, acceptor_from_pem};

/// One scripted answer.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Answer with this status.
    Status(u16),
    /// Answer with this status and `Retry-After: secs`.
    RetryAfter(u16, u64),
    /// `302 Found` with this `Location`.
    Redirect(String),
    /// Never answer (until the connection is dropped).
    Hang,
    /// Wait, then answer with the status.
    Slow(Duration, u16),
    /// Answer with this status and every request header echoed in the body (`name: value`
    /// lines), as some receivers do in their error pages.
    EchoHeaders(u16),
}

/// A recorded request.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// Request path.
    pub path: String,
    /// HTTP method.
    pub method: String,
    /// Headers, names lower-case, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// When it arrived.
    pub at: Instant,
    /// The status it was answered with (0: never answered, e.g. a hang).
    pub status: u16,
}

impl Recorded {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

#[derive(Default)]
struct State {
    scripts: HashMap<String, VecDeque<Reply>>,
    default: Option<Reply>,
    requests: Vec<Recorded>,
}

/// A running receiver; stops when dropped.
pub struct Receiver {
    addr: SocketAddr,
    host: String,
    ca_file: PathBuf,
    state: Arc<Mutex<State>>,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl Receiver {
    /// Starts on 127.0.0.1 with a fresh CA.
    pub async fn start() -> Result<Receiver> {
        Self::start_on("127.0.0.1".parse()?).await
    }

    /// Starts on `ip` (any loopback address) with a fresh CA and a certificate for `ip`.
    pub async fn start_on(ip: IpAddr) -> Result<Receiver> {
        let dir = tempfile::tempdir()?;
        let (ca, acceptor) = acceptor_for("kelos-hooks test receiver CA", ip)?;
        let ca_file = dir.path().join("receiver-ca.crt");
        std::fs::write(&ca_file, ca.cert_pem())?;
        let listener =
            std::net::TcpListener::bind((ip, 0)).with_context(|| format!("bind {ip}:0"))?;
        // URL host form of the IP: IPv6 in brackets.
        let host = SocketAddr::new(ip, 0).to_string();
        let host = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
        Self::spawn(listener, host, acceptor, ca_file, Some(dir))
    }

    /// Serves on `listener` (e.g. one bound inside a network namespace, [`crate::netns`]) with
    /// the certificate `cert_pem` and its key `key_pem`; URLs name `host` (the certificate's
    /// name); `ca_file` is the PEM of the CA that issued it. Call within a tokio runtime.
    pub fn serve(
        listener: std::net::TcpListener,
        host: &str,
        cert_pem: &str,
        key_pem: &str,
        ca_file: &Path,
    ) -> Result<Receiver> {
        let acceptor = acceptor_from_pem(cert_pem, key_pem)?;
        Self::spawn(listener, host, acceptor, ca_file.to_owned(), None)
    }

    fn spawn(
        listener: std::net::TcpListener,
        host: &str,
        acceptor: tokio_rustls::TlsAcceptor,
        ca_file: PathBuf,
        dir: Option<tempfile::TempDir>,
    ) -> Result<Receiver> {
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let connections = Arc::new(AtomicUsize::new(0));
        let task = {
            let state = state.clone();
            let connections = connections.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    connections.fetch_add(1, Ordering::SeqCst);
                    let acceptor = acceptor.clone();
                    let state = state.clone();
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let service =
                            hyper::service::service_fn(move |req| handle(state.clone(), req));
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(tls), service)
                            .await;
                    });
                }
            })
        };
        Ok(Receiver {
            addr,
            host: host.to_owned(),
            ca_file,
            state,
            connections,
            task,
            _dir: dir,
        })
    }

    /// `https://HOST:PORT{path}` (HOST: the IP, or the name given to [`Receiver::serve`]).
    pub fn url(&self, path: &str) -> String {
        format!("https://{}:{}{path}", self.host, self.addr.port())
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// PEM file of the CA that signed the receiver's certificate.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// Queues replies for `path` (consumed in order; afterwards the default, 200).
    pub fn script(&self, path: &str, replies: impl IntoIterator<Item = Reply>) {
        lock(&self.state)
            .scripts
            .entry(path.to_owned())
            .or_default()
            .extend(replies);
    }

    /// Drops what is left of `path`'s script.
    pub fn clear_script(&self, path: &str) {
        lock(&self.state).scripts.remove(path);
    }

    /// The reply for paths without a script left (200 when unset).
    pub fn set_default(&self, reply: Reply) {
        lock(&self.state).default = Some(reply);
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state).requests.clone()
    }

    /// Requests to `path`.
    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Waits until `path` has received at least `n` requests.
    pub async fn wait_for(&self, path: &str, n: usize, timeout: Duration) -> Result<Vec<Recorded>> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.requests_to(path);
            if got.len() >= n {
                return Ok(got);
            }
            if Instant::now() > deadline {
                return Err(anyhow!(
                    "{path}: {} of {n} requests after {timeout:?}",
                    got.len()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn handle(
    state: Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Result<Response<Body>, std::convert::Infallible> {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(Body::new(body), 4 << 20)
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let echoed: String = parts
        .headers
        .iter()
        .map(|(n, v)| format!("{n}: {}\n", String::from_utf8_lossy(v.as_bytes())))
        .collect();
    let reply = {
        let mut s = lock(&state);
        s.requests.push(Recorded {
            path: path.clone(),
            method: parts.method.to_string(),
            headers: parts
                .headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body,
            at: Instant::now(),
            status: 0,
        });
        let default = s.default.clone();
        let reply = s
            .scripts
            .get_mut(&path)
            .and_then(VecDeque::pop_front)
            .or(default)
            .unwrap_or(Reply::Status(200));
        let index = s.requests.len() - 1;
        s.requests[index].status = match &reply {
            Reply::Status(c)
            | Reply::RetryAfter(c, _)
            | Reply::Slow(_, c)
            | Reply::EchoHeaders(c) => *c,
            Reply::Redirect(_) => 302,
            Reply::Hang => 0,
        };
        reply
    };
    let response = |status: u16| Response::builder().status(status);
    let resp = match reply {
        Reply::Status(s) => response(s).body(Body::from(format!("status {s}"))),
        Reply::RetryAfter(s, secs) => response(s)
            .header("retry-after", secs.to_string())
            .body(Body::empty()),
        Reply::Redirect(to) => response(302).header("location", to).body(Body::empty()),
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            response(200).body(Body::empty())
        }
        Reply::Slow(d, s) => {
            tokio::time::sleep(d).await;
            response(s).body(Body::empty())
        }
        Reply::EchoHeaders(s) => response(s).body(Body::from(echoed)),
    };
    Ok(resp.unwrap_or_else(|_| Response::new(Body::empty())))
}
