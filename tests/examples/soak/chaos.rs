//! The faults done to the system: SIGKILL of whichever dispatcher replica leads (the Lease's
//! holderIdentity names it, its /metrics confirm it), SIGKILL + restart of the kube-apiserver and
//! of etcd (`hack/cluster-restart.sh`), and the memory the replicas use meanwhile.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::coordination::v1::Lease;
use kelos_hooks_tests::dispatcher::Dispatcher;
use kelos_hooks_tests::process::status_mib;
use kelos_hooks_tests::{Cluster, workspace_root};
use kube::api::Api;

/// The dispatcher's Lease in the soak namespace (named by `Dispatcher::start`).
const LEASE: &str = "dispatcher";
/// Longest wait for the other replica to take the Lease over after a kill.
const FAILOVER_WAIT: Duration = Duration::from_secs(10);
/// Flags on top of the test defaults (2 s request timeout, 200 ms–2 s backoff, 3 s Lease): every
/// hook reaches a final state quickly, and one host (the receiver) may take all the traffic.
const FLAGS: [&str; 6] = [
    "--max-attempts",
    "6",
    "--max-per-host",
    "64",
    "--max-concurrency",
    "128",
];

/// VmRSS samples of the replicas and their peaks.
#[derive(Debug, Default)]
pub struct Memory {
    /// Smallest VmRSS seen (MiB).
    pub min: Option<f64>,
    /// Largest VmRSS seen (MiB).
    pub max: f64,
    /// Largest VmHWM (peak RSS of one process's life) seen (MiB).
    pub peak: f64,
    /// Samples taken.
    pub samples: usize,
}

impl Memory {
    fn add(&mut self, rss: f64, hwm: f64) {
        self.min = Some(self.min.map_or(rss, |m| m.min(rss)));
        self.max = self.max.max(rss);
        self.peak = self.peak.max(hwm);
        self.samples += 1;
    }
}

/// The two dispatcher replicas.
pub struct Replicas {
    replicas: Vec<(String, Dispatcher, bool)>,
    leases: Api<Lease>,
    /// Memory of the replicas so far.
    pub memory: Memory,
    /// Longest a replica process lived.
    pub longest_life: Duration,
    /// Kills after which the other replica took the Lease over.
    pub failovers: usize,
    born: Vec<Instant>,
}

impl Replicas {
    /// Starts replicas `soak-a` and `soak-b` in `ns`, trusting `ca`.
    pub async fn start(c: &Cluster, client: kube::Client, ns: &str, ca: &Path) -> Result<Replicas> {
        let mut replicas = Vec::new();
        for id in ["soak-a", "soak-b"] {
            let d = Dispatcher::start(c, ns, ca, "127.0.0.0/8", id, &FLAGS).await?;
            replicas.push((id.to_owned(), d, true));
        }
        Ok(Replicas {
            born: vec![Instant::now(); replicas.len()],
            replicas,
            leases: Api::namespaced(client, ns),
            memory: Memory::default(),
            longest_life: Duration::ZERO,
            failovers: 0,
        })
    }

    /// The log files of the replicas.
    pub fn logs(&self) -> Vec<PathBuf> {
        self.replicas
            .iter()
            .map(|(_, d, _)| d.log_path().to_owned())
            .collect()
    }

    /// Samples each running replica's VmRSS.
    pub fn sample(&mut self) {
        for (i, (_, d, _)) in self.replicas.iter().enumerate() {
            if let Some(pid) = d.pid()
                && let (Some(rss), Some(hwm)) =
                    (status_mib(pid, "VmRSS:"), status_mib(pid, "VmHWM:"))
            {
                self.memory.add(rss, hwm);
                self.longest_life = self.longest_life.max(self.born[i].elapsed());
            }
        }
    }

    /// The replica that leads now: named by the Lease and confirmed by its own /metrics.
    async fn leader(&self) -> Option<usize> {
        let holder = self
            .leases
            .get_opt(LEASE)
            .await
            .ok()??
            .spec?
            .holder_identity?;
        let i = self.replicas.iter().position(|(id, _, _)| *id == holder)?;
        self.replicas[i].1.is_leader().await.then_some(i)
    }

    /// The Lease's holder, if it can be read.
    async fn holder(&self) -> Option<String> {
        self.leases
            .get_opt(LEASE)
            .await
            .ok()??
            .spec?
            .holder_identity
    }

    /// SIGKILLs the leader (if one is confirmed) and starts it afresh; `true` when one was killed.
    /// With `failover`, the new process starts only once the other replica holds the Lease (a
    /// replaced pod); without, at once (a restarted container: same identity, it may win its
    /// own Lease back).
    pub async fn kill_leader(&mut self, failover: bool) -> bool {
        let Some(i) = self.leader().await else {
            return false;
        };
        self.sample();
        self.replicas[i].1.kill().await;
        if failover {
            let deadline = Instant::now() + FAILOVER_WAIT;
            while Instant::now() < deadline {
                match self.holder().await {
                    Some(h) if h != self.replicas[i].0 => {
                        self.failovers += 1;
                        break;
                    }
                    _ => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        }
        let (id, d, up) = &mut self.replicas[i];
        match d.restart().await {
            Ok(()) => *up = true,
            Err(e) => {
                eprintln!("[soak] {id} did not come back yet: {e:#}");
                *up = false;
            }
        }
        self.born[i] = Instant::now();
        true
    }

    /// Restarts replicas whose last start did not get ready (e.g. the API server was down).
    pub async fn revive(&mut self) {
        for (i, (id, d, up)) in self.replicas.iter_mut().enumerate() {
            if !*up {
                match d.restart().await {
                    Ok(()) => {
                        eprintln!("[soak] {id} is back");
                        *up = true;
                    }
                    Err(e) => eprintln!("[soak] {id} still not ready: {e:#}"),
                }
                self.born[i] = Instant::now();
            }
        }
    }
}

/// SIGKILLs `what` (`apiserver` or `etcd`) of the control plane in `dir` and restarts it on the
/// same ports and data (`hack/cluster-restart.sh`); returns how long it was away.
pub async fn restart_control_plane(dir: &Path, what: &str) -> Result<Duration> {
    let started = Instant::now();
    let out = tokio::process::Command::new(workspace_root().join("hack/cluster-restart.sh"))
        .arg("--dir")
        .arg(dir)
        .arg(what)
        .output()
        .await
        .context("running hack/cluster-restart.sh")?;
    if !out.status.success() {
        bail!(
            "hack/cluster-restart.sh {what} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(started.elapsed())
}
