//! A webhook receiver that misbehaves on purpose, for the chaos soak (`tests/examples/soak/`).
//!
//! Unlike [`crate::receiver::Receiver`] (hyper, well-formed answers), this one speaks HTTP/1.1 by
//! hand over TLS so it can break the exchange anywhere: 5xx answers, a TCP reset in the middle of
//! the status line or of the body, bytes trickled slowly (slow-loris), a 100 MB body, no answer at
//! all. A second listener fails every TLS handshake (a certificate from a CA nobody trusts, or
//! plain-text garbage). The fault is chosen by the request path, `/<fault>/<task>/<hook>`: the
//! first [`FAULTY_ATTEMPTS`] requests carrying one `webhook-id` get the fault, later ones a plain
//! 200 (so a retried hook ends up delivered), except [`Fault::Gone`], which is final. While a
//! burst is on ([`FaultyReceiver::set_burst`]) every request gets a 5xx first.
//!
//! Every request that arrives whole is recorded with its `webhook-id`, the body's `id` and what
//! was answered, so the soak can prove each hook's requests carry one id and no delivery is lost.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

use crate::tls::acceptor_for;

/// Requests per `webhook-id` that get the fault before plain 200s.
pub const FAULTY_ATTEMPTS: u32 = 2;
/// Size of the [`Fault::BigBody`] answer.
pub const BIG_BODY: u64 = 100 << 20;
/// Pause between two trickled bytes of [`Fault::SlowLoris`].
const TRICKLE: Duration = Duration::from_millis(300);
/// Longest a hang or a trickle lasts if the client never gives up.
const GIVE_UP: Duration = Duration::from_secs(60);
/// Largest request (head and body) read.
const MAX_REQUEST: usize = 1 << 20;

/// How a path misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// A well-behaved receiver: 200 at once.
    Ok,
    /// 500, 502, 503 or 504 (the 503s with `Retry-After: 1`).
    ServerError,
    /// A TCP reset after part of the answer: in the status line or, every other time, in the body.
    Reset,
    /// The answer trickled one byte per 300 ms: never complete within a request timeout.
    SlowLoris,
    /// `200` with a 100 MB body (every time): the dispatcher must read only a little of it.
    BigBody,
    /// No answer until the client gives up.
    Hang,
    /// `410 Gone`, every time: a final failure.
    Gone,
    /// Every TLS handshake fails (the other listener; the path is never seen).
    TlsFailure,
}

impl Fault {
    /// Every fault, in a fixed order.
    pub const ALL: [Fault; 8] = [
        Fault::Ok,
        Fault::ServerError,
        Fault::Reset,
        Fault::SlowLoris,
        Fault::BigBody,
        Fault::Hang,
        Fault::Gone,
        Fault::TlsFailure,
    ];

    /// Its name in paths and figures.
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Ok => "ok",
            Fault::ServerError => "5xx",
            Fault::Reset => "reset",
            Fault::SlowLoris => "slowloris",
            Fault::BigBody => "big-body",
            Fault::Hang => "hang",
            Fault::Gone => "gone",
            Fault::TlsFailure => "tls-failure",
        }
    }

    fn parse(s: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|f| f.as_str() == s)
    }

    /// Whether a hook with this fault can only end `Failed`.
    pub fn always_fails(self) -> bool {
        matches!(self, Fault::Gone | Fault::TlsFailure)
    }
}

/// One request that arrived whole.
#[derive(Clone, Debug)]
pub struct Hit {
    /// The request path.
    pub path: String,
    /// The `webhook-id` header (empty when missing).
    pub webhook_id: String,
    /// The body's `id` field (empty when missing or not JSON).
    pub body_id: String,
    /// The status whose head was sent in full (`None`: the head never went out whole).
    pub status: Option<u16>,
    /// Whether the whole answer was written.
    pub complete: bool,
}

#[derive(Default)]
struct State {
    hits: Vec<Hit>,
    attempts: HashMap<String, u32>,
}

/// Counters of what the faults did.
#[derive(Default)]
struct Counters {
    connections: AtomicUsize,
    tls_refused: AtomicUsize,
    big_body_bytes_written: AtomicU64,
    big_bodies: AtomicUsize,
    served: AtomicU64,
}

struct Shared {
    state: Mutex<State>,
    burst: AtomicBool,
    counters: Counters,
}

/// The running receiver; both listeners stop when it is dropped.
pub struct FaultyReceiver {
    addr: SocketAddr,
    tls_failure_addr: SocketAddr,
    ca_file: PathBuf,
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for FaultyReceiver {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, State> {
    shared.state.lock().unwrap_or_else(|e| e.into_inner())
}

impl FaultyReceiver {
    /// Starts both listeners on `ip` (a loopback address), each with a certificate for `ip`;
    /// only the main one's CA is written to [`FaultyReceiver::ca_file`].
    pub async fn start(ip: IpAddr) -> Result<FaultyReceiver> {
        let dir = tempfile::tempdir()?;
        let (ca, acceptor) = acceptor_for("kelos-hooks soak receiver CA", ip)?;
        let (_, untrusted) = acceptor_for("kelos-hooks soak untrusted CA", ip)?;
        let ca_file = dir.path().join("soak-receiver-ca.crt");
        std::fs::write(&ca_file, ca.cert_pem())?;
        let main = TcpListener::bind((ip, 0)).await.context("bind receiver")?;
        let bad = TcpListener::bind((ip, 0))
            .await
            .context("bind TLS-failure listener")?;
        let (addr, tls_failure_addr) = (main.local_addr()?, bad.local_addr()?);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            burst: AtomicBool::new(false),
            counters: Counters::default(),
        });
        let serve = {
            let shared = shared.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((tcp, _)) = main.accept().await else {
                        continue;
                    };
                    shared.counters.connections.fetch_add(1, Ordering::Relaxed);
                    let (acceptor, shared) = (acceptor.clone(), shared.clone());
                    tokio::spawn(async move {
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            serve_connection(tls, &shared).await;
                        }
                    });
                }
            })
        };
        let refuse = {
            let shared = shared.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                loop {
                    let Ok((mut tcp, _)) = bad.accept().await else {
                        continue;
                    };
                    n += 1;
                    shared.counters.tls_refused.fetch_add(1, Ordering::Relaxed);
                    let untrusted = untrusted.clone();
                    tokio::spawn(async move {
                        if n.is_multiple_of(2) {
                            // A certificate the client cannot verify: it aborts the handshake.
                            let _ = untrusted.accept(tcp).await;
                        } else {
                            // Not TLS at all.
                            let _ = tcp.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
                        }
                    });
                }
            })
        };
        Ok(FaultyReceiver {
            addr,
            tls_failure_addr,
            ca_file,
            shared,
            tasks: vec![serve, refuse],
            _dir: dir,
        })
    }

    /// The URL of a hook of `task` named `hook` that suffers `fault`.
    pub fn url(&self, fault: Fault, task: &str, hook: &str) -> String {
        let addr = if fault == Fault::TlsFailure {
            self.tls_failure_addr
        } else {
            self.addr
        };
        format!("https://{addr}/{}/{task}/{hook}", fault.as_str())
    }

    /// PEM file of the CA of the main listener (for the dispatcher's `--ca-file`).
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// Turns a 5xx burst on or off: while on, every request is answered 503 first.
    pub fn set_burst(&self, on: bool) {
        self.shared.burst.store(on, Ordering::SeqCst);
    }

    /// Every request that arrived whole, in arrival order.
    pub fn hits(&self) -> Vec<Hit> {
        lock(&self.shared).hits.clone()
    }

    /// TCP connections accepted by the main listener.
    pub fn connections(&self) -> usize {
        self.shared.counters.connections.load(Ordering::Relaxed)
    }

    /// Connections whose TLS handshake was made to fail.
    pub fn tls_refused(&self) -> usize {
        self.shared.counters.tls_refused.load(Ordering::Relaxed)
    }

    /// 100 MB answers started, and the bytes of them the clients actually took.
    pub fn big_bodies(&self) -> (usize, u64) {
        let c = &self.shared.counters;
        (
            c.big_bodies.load(Ordering::Relaxed),
            c.big_body_bytes_written.load(Ordering::Relaxed),
        )
    }
}

/// A parsed request head and its body.
struct Request {
    path: String,
    webhook_id: String,
    body: Vec<u8>,
    keep_alive: bool,
}

/// Reads one request (`None` at end of stream or on anything malformed).
async fn read_request<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Option<Request> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        if let httparse::Status::Complete(head_len) = req.parse(buf).ok()? {
            let header = |name: &str| {
                req.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8_lossy(h.value).into_owned())
            };
            let len: usize = header("content-length")?.trim().parse().ok()?;
            let keep_alive = !header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close"));
            let path = req.path?.to_owned();
            let webhook_id = header("webhook-id").unwrap_or_default();
            if head_len + len > MAX_REQUEST {
                return None;
            }
            while buf.len() < head_len + len {
                read_more(s, buf).await?;
            }
            let body = buf[head_len..head_len + len].to_vec();
            buf.drain(..head_len + len);
            return Some(Request {
                path,
                webhook_id,
                body,
                keep_alive,
            });
        }
        if buf.len() > MAX_REQUEST {
            return None;
        }
        read_more(s, buf).await?;
    }
}

async fn read_more<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 8192];
    match s.read(&mut chunk).await {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Some(())
        }
    }
}

/// What one request gets, decided under the lock.
fn decide(shared: &Shared, req: &Request) -> (Fault, bool, u32) {
    let fault = req
        .path
        .split('/')
        .nth(1)
        .and_then(Fault::parse)
        .unwrap_or(Fault::Ok);
    let mut state = lock(shared);
    let n = state.attempts.entry(req.webhook_id.clone()).or_default();
    *n += 1;
    let attempt = *n;
    let burst = shared.burst.load(Ordering::SeqCst);
    let fault = match fault {
        Fault::BigBody | Fault::Gone => fault,
        _ if attempt > FAULTY_ATTEMPTS => Fault::Ok,
        f => f,
    };
    (fault, burst, attempt)
}

fn record(shared: &Shared, req: &Request, status: Option<u16>, complete: bool) {
    let body_id = serde_json::from_slice::<serde_json::Value>(&req.body)
        .ok()
        .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_owned))
        .unwrap_or_default();
    lock(shared).hits.push(Hit {
        path: req.path.clone(),
        webhook_id: req.webhook_id.clone(),
        body_id,
        status,
        complete,
    });
}

fn head(status: u16, reason: &str, extra: &str, len: u64) -> String {
    format!("HTTP/1.1 {status} {reason}\r\ncontent-length: {len}\r\n{extra}\r\n")
}

/// Serves requests on one connection until a fault ends it or the client leaves.
async fn serve_connection(mut tls: TlsStream<TcpStream>, shared: &Shared) {
    let mut buf = Vec::new();
    while let Some(req) = read_request(&mut tls, &mut buf).await {
        let served = shared.counters.served.fetch_add(1, Ordering::Relaxed);
        let (fault, burst, attempt) = decide(shared, &req);
        if burst && fault != Fault::Gone {
            let ok = tls
                .write_all(head(503, "Service Unavailable", "retry-after: 1\r\n", 0).as_bytes())
                .await
                .is_ok();
            record(shared, &req, ok.then_some(503), ok);
            if !ok || !req.keep_alive {
                return;
            }
            continue;
        }
        let keep = match fault {
            Fault::Ok | Fault::TlsFailure => {
                let ok = tls
                    .write_all(format!("{}ok", head(200, "OK", "", 2)).as_bytes())
                    .await
                    .is_ok();
                record(shared, &req, ok.then_some(200), ok);
                ok && req.keep_alive
            }
            Fault::ServerError => {
                let (status, extra) = match served % 4 {
                    0 => (500, ""),
                    1 => (502, ""),
                    2 => (503, "retry-after: 1\r\n"),
                    _ => (504, ""),
                };
                let ok = tls
                    .write_all(head(status, "Oops", extra, 0).as_bytes())
                    .await
                    .is_ok();
                record(shared, &req, ok.then_some(status), ok);
                ok && req.keep_alive
            }
            Fault::Gone => {
                let ok = tls
                    .write_all(head(410, "Gone", "", 0).as_bytes())
                    .await
                    .is_ok();
                record(shared, &req, ok.then_some(410), ok);
                ok && req.keep_alive
            }
            Fault::Reset => {
                // Alternate: cut inside the status line, or after the head inside the body.
                let in_body = attempt.is_multiple_of(2);
                let text = if in_body {
                    format!("{}partial", head(200, "OK", "", 100))
                } else {
                    "HTTP/1.1 20".to_owned()
                };
                let ok = tls.write_all(text.as_bytes()).await.is_ok() && tls.flush().await.is_ok();
                record(shared, &req, (ok && in_body).then_some(200), false);
                reset(tls);
                return;
            }
            Fault::SlowLoris => {
                record(shared, &req, None, false);
                let text = head(200, "OK", "x-slow: yes\r\n", 2) + "ok";
                let _ = tokio::time::timeout(GIVE_UP, async {
                    for b in text.as_bytes() {
                        if tls.write_all(&[*b]).await.is_err() || tls.flush().await.is_err() {
                            break;
                        }
                        tokio::time::sleep(TRICKLE).await;
                    }
                })
                .await;
                return;
            }
            Fault::BigBody => {
                shared.counters.big_bodies.fetch_add(1, Ordering::Relaxed);
                let ok = tls
                    .write_all(head(200, "OK", "", BIG_BODY).as_bytes())
                    .await
                    .is_ok();
                record(shared, &req, ok.then_some(200), false);
                let chunk = vec![b'x'; 64 << 10];
                let mut sent = 0u64;
                while ok && sent < BIG_BODY {
                    match tokio::time::timeout(GIVE_UP, tls.write_all(&chunk)).await {
                        Ok(Ok(())) => sent += chunk.len() as u64,
                        _ => break,
                    }
                }
                shared
                    .counters
                    .big_body_bytes_written
                    .fetch_add(sent, Ordering::Relaxed);
                return;
            }
            Fault::Hang => {
                record(shared, &req, None, false);
                // Wait for the client to give up (its read ends) or for GIVE_UP.
                let _ = tokio::time::timeout(GIVE_UP, read_more(&mut tls, &mut buf)).await;
                return;
            }
        };
        if !keep {
            return;
        }
    }
}

/// Drops the connection with a TCP RST instead of an orderly close.
fn reset(tls: TlsStream<TcpStream>) {
    let (tcp, _) = tls.into_inner();
    let _ = tcp.set_zero_linger();
    drop(tcp);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_a_request_and_keeps_what_follows() {
        let raw = b"POST /reset/t1/a HTTP/1.1\r\nwebhook-id: u_Succeeded_a\r\ncontent-length: 9\r\n\r\n{\"id\":\"u\"}GET";
        let mut input: &[u8] = raw;
        let mut buf = Vec::new();
        let req = read_request(&mut input, &mut buf).await.unwrap();
        assert_eq!(req.path, "/reset/t1/a");
        assert_eq!(req.webhook_id, "u_Succeeded_a");
        assert_eq!(req.body, b"{\"id\":\"u\"");
        assert!(req.keep_alive);
        assert_eq!(buf, b"}GET", "the rest stays for the next request");
    }

    #[test]
    fn faults_have_distinct_names() {
        for f in Fault::ALL {
            assert_eq!(Fault::parse(f.as_str()), Some(f));
        }
        assert!(Fault::Gone.always_fails() && !Fault::Hang.always_fails());
    }
}
