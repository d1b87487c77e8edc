//! kelos-controller as a local process: the chart's container args, the chart's ServiceAccount
//! identity (an impersonating kubeconfig), its webhook serving certificate where
//! controller-runtime looks (`$TMPDIR/k8s-webhook-server/serving-certs/tls.{crt,key}`), and the
//! port kelos cannot change: 9443.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};

use crate::admission_server::{probe, served_cert};
use crate::process::stop_gracefully;
use crate::{free_port, workspace_root};

/// controller-runtime's webhook port, fixed in kelos: one kelos-controller per machine.
pub const WEBHOOK_PORT: u16 = 9443;
/// How long a test run waits for another one's kelos-controller to finish.
const LOCK_WAIT: Duration = Duration::from_secs(30 * 60);

/// Holds the machine-wide lock on port 9443 for this process's lifetime (the kernel releases it
/// when the process exits, however it exits).
pub fn lock_webhook_port(cache: &Path) -> Result<File> {
    let path = cache.join("kelos-controller-9443.lock");
    let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let deadline = Instant::now() + LOCK_WAIT;
    let mut told = false;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => {
                if !told {
                    eprintln!(
                        "[kelos] another test run holds {} (kelos-controller's port 9443 is one per \
                         machine): waiting up to {LOCK_WAIT:?}",
                        path.display()
                    );
                    told = true;
                }
                if Instant::now() > deadline {
                    bail!(
                        "{} still held after {LOCK_WAIT:?}: another kelos-controller test run",
                        path.display()
                    );
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()));
            }
        }
    }
}

/// Waits until nothing listens on 127.0.0.1:9443 any more (a previous run's controller may still
/// be shutting down a moment after its test process released the lock).
async fn wait_port_free() -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", WEBHOOK_PORT))
        .await
        .is_ok()
    {
        if Instant::now() > deadline {
            bail!(
                "127.0.0.1:{WEBHOOK_PORT} is still in use after 30s (a kelos-controller not ours?)"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// What a controller process is started from.
#[derive(Debug)]
pub struct ControllerConfig {
    /// The kelos-controller binary.
    pub bin: PathBuf,
    /// The chart's args (leader election dropped: see [`localize_args`]).
    pub args: Vec<String>,
    /// The impersonating kubeconfig.
    pub kubeconfig: PathBuf,
    /// `TMPDIR` of the process (holds the serving certificate).
    pub tmpdir: PathBuf,
    /// Its log file (appended to across restarts).
    pub log: PathBuf,
    /// The CA that issued the serving certificate (PEM).
    pub ca_pem: String,
    /// Whether it serves webhooks (on [`WEBHOOK_PORT`]) to wait for.
    pub serves_webhooks: bool,
}

/// The running controller (under `hack/kelos-child.sh`, which stops it when the test process
/// exits).
pub struct Controller {
    config: ControllerConfig,
    child: Option<Child>,
}

/// The chart's args for a local process: `--leader-elect` dropped (one local instance; a restart
/// would otherwise wait out the previous Lease), probes on a free loopback port, metrics off.
pub fn localize_args(chart_args: &[String], probe_port: u16) -> Vec<String> {
    chart_args
        .iter()
        .filter(|a| a.as_str() != "--leader-elect")
        .cloned()
        .chain([
            format!("--health-probe-bind-address=127.0.0.1:{probe_port}"),
            "--metrics-bind-address=0".to_owned(),
        ])
        .collect()
}

impl Controller {
    /// Starts it and waits until it serves its webhooks.
    pub async fn start(config: ControllerConfig) -> Result<Controller> {
        let mut c = Controller {
            config,
            child: None,
        };
        c.spawn().await?;
        Ok(c)
    }

    async fn spawn(&mut self) -> Result<()> {
        wait_port_free().await?;
        let probe_port = free_port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.config.log)?;
        let child = Command::new(workspace_root().join("hack/kelos-child.sh"))
            .args(["--watch-pid", &std::process::id().to_string(), "--"])
            .arg(&self.config.bin)
            .args(localize_args(&self.config.args, probe_port))
            .env("KUBECONFIG", &self.config.kubeconfig)
            .env("TMPDIR", &self.config.tmpdir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting kelos-controller")?;
        self.child = Some(child);
        self.wait_ready(probe_port).await
    }

    async fn wait_ready(&mut self, probe_port: u16) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                bail!(
                    "kelos-controller exited with {status}:\n{}",
                    self.log_tail(40)
                );
            }
            let probes_ok = matches!(probe(probe_port, "/readyz").await, Ok((200, _)));
            if probes_ok
                && (!self.config.serves_webhooks
                    || served_cert(WEBHOOK_PORT, self.config.ca_pem.as_bytes())
                        .await
                        .is_ok())
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "kelos-controller not serving within 60s:\n{}",
                    self.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM (graceful, as a Pod deletion), and waits for the process to be gone.
    pub async fn stop(&mut self) -> Result<()> {
        stop_gracefully(self.child.take(), "kelos-controller").await
    }

    /// Stops it and starts a fresh process with the same configuration.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop().await?;
        self.spawn().await
    }

    fn log_tail(&self, lines: usize) -> String {
        tail(&self.config.log, lines)
    }
}

/// The last `lines` lines of kelos's log at `path` (empty when unreadable), its JSON lines
/// shortened to time, level, message, object and error (no stack traces).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let tail: Vec<String> = text.lines().rev().take(lines).map(compact).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

fn compact(line: &str) -> String {
    let Ok(serde_json::Value::Object(entry)) = serde_json::from_str(line) else {
        return line.to_owned();
    };
    let field = |k: &str| match entry.get(k) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    };
    let mut out = format!("{} {} {}", field("ts"), field("level"), field("msg"));
    for k in ["namespace", "name", "error"] {
        if entry.contains_key(k) {
            out.push_str(&format!(" {k}={}", field(k)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_lose_their_stack_traces() {
        let line = r#"{"level":"error","ts":"T","msg":"Reconciler error","namespace":"n","name":"t","error":"boom","stacktrace":"a\nb"}"#;
        assert_eq!(
            compact(line),
            "T error Reconciler error namespace=n name=t error=boom"
        );
        assert_eq!(compact("plain text"), "plain text");
    }

    #[test]
    fn chart_args_keep_everything_but_leader_election() {
        let chart = [
            "--leader-elect",
            "--claude-code-image=ghcr.io/x",
            "--version=latest",
        ]
        .map(String::from);
        assert_eq!(
            localize_args(&chart, 4242),
            [
                "--claude-code-image=ghcr.io/x",
                "--version=latest",
                "--health-probe-bind-address=127.0.0.1:4242",
                "--metrics-bind-address=0"
            ]
        );
    }
}
