//! `kelos-hooks-dispatcher run` as a local process of a test: one namespace, a short Lease, fast
//! backoff, its log in a file, probes and metrics over plain HTTP.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::process::Child;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{Cluster, bin, free_port};

/// A running dispatcher (killed when dropped).
pub struct Dispatcher {
    child: Option<Child>,
    log: PathBuf,
    metrics_port: u16,
    args: Vec<String>,
    kubeconfig: PathBuf,
}

impl Dispatcher {
    /// Starts one watching `ns` (its Lease there too, held as `identity`), trusting the receiver
    /// CA `ca`, allowing `allow` (a CIDR), and waits until it is ready. `extra` is flag/value
    /// pairs; a flag given there replaces its default.
    pub async fn start(
        c: &Cluster,
        ns: &str,
        ca: &Path,
        allow: &str,
        identity: &str,
        extra: &[&str],
    ) -> Result<Dispatcher> {
        let log = std::env::temp_dir().join(format!("kelos-hooks-dispatcher-{ns}-{identity}.log"));
        let defaults = [
            ("--allow-cidr", allow),
            ("--namespace", ns),
            ("--lease-namespace", ns),
            ("--lease-name", "dispatcher"),
            ("--lease-identity", identity),
            ("--lease-duration", "3s"),
            ("--lease-renew-interval", "1s"),
            ("--backoff-base", "200ms"),
            ("--backoff-max", "2s"),
            ("--request-timeout", "2s"),
            ("--shutdown-timeout", "2s"),
        ];
        let ca = ca.display().to_string();
        let mut args = vec!["run".to_owned(), "--ca-file".to_owned(), ca];
        for (flag, value) in defaults {
            if !extra.contains(&flag) {
                args.extend([flag.to_owned(), value.to_owned()]);
            }
        }
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let mut d = Dispatcher {
            child: None,
            log,
            metrics_port: 0,
            args,
            kubeconfig: c.kubeconfig().to_owned(),
        };
        d.spawn().await?;
        Ok(d)
    }

    async fn spawn(&mut self) -> Result<()> {
        self.metrics_port = free_port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        self.child = Some(
            tokio::process::Command::new(bin("kelos-hooks-dispatcher"))
                .args(&self.args)
                .args([
                    "--metrics-listen",
                    &format!("127.0.0.1:{}", self.metrics_port),
                ])
                .env("KUBECONFIG", &self.kubeconfig)
                .env("RUST_LOG", "info,kube=warn")
                .env_remove("POD_NAME")
                .env_remove("POD_NAMESPACE")
                .stdout(Stdio::null())
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .context("starting kelos-hooks-dispatcher")?,
        );
        self.wait_ready().await
    }

    /// SIGKILL, no goodbye.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// SIGKILL, then a fresh process with the same arguments.
    pub async fn restart(&mut self) -> Result<()> {
        self.kill().await;
        self.spawn().await
    }

    /// The process, handed over (e.g. to signal it); `None` once taken or killed.
    pub fn take_child(&mut self) -> Option<Child> {
        self.child.take()
    }

    /// The running process's id (`None` once killed or taken).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// The log file (appended to across restarts).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last 60 lines of the log.
    pub fn logs(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(60).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// A `GET` of `path` on the probe/metrics port (HTTP/1.0: never chunked): the status code
    /// and the body.
    pub async fn get(&self, path: &str) -> Result<(u16, String)> {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).await?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
            .await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        let code = out
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
        Ok((code, body))
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                bail!("dispatcher exited with {status}:\n{}", self.logs());
            }
            if let Ok((200, _)) = self.get("/readyz").await {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("dispatcher not ready after 30s:\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
