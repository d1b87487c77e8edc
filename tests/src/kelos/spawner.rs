//! `kelos-spawner --one-shot`: one discovery cycle of a TaskSpawner, run as the ServiceAccount
//! kelos's controller creates for spawners in the TaskSpawner's namespace (`kelos-spawner`,
//! bound to the chart's `kelos-spawner-role`) — what the spawner's CronJob would run. Or the
//! same binary long-running ([`Kelos::start_spawner`]), as kelos's spawner Deployment runs it.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::Api;

use super::Kelos;
use crate::impersonate::write_impersonating_kubeconfig;

/// kelos's spawner ServiceAccount and RoleBinding name (`SpawnerServiceAccount`).
pub const SPAWNER_SERVICE_ACCOUNT: &str = "kelos-spawner";

/// One finished `kelos-spawner --one-shot` run.
#[derive(Debug)]
pub struct SpawnerRun {
    /// What it logged (stdout and stderr).
    pub log: String,
    /// How long the process ran.
    pub took: Duration,
}

/// A long-running `kelos-spawner` (killed when dropped).
pub struct LongRunningSpawner {
    child: tokio::process::Child,
    log: PathBuf,
}

impl LongRunningSpawner {
    /// Its process id (`None` once it exited and was reaped).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Its log file (stdout and stderr).
    pub fn log_path(&self) -> &std::path::Path {
        &self.log
    }

    /// Fails with the log tail if the process has exited.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "kelos-spawner exited with {status}:\n{}",
                super::controller::tail(&self.log, 30)
            );
        }
        Ok(())
    }

    /// SIGKILL and reap.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

impl Kelos {
    /// The kubeconfig of TaskSpawner `ns`'s spawner identity, once kelos's controller has made
    /// it: waits for the RoleBinding the controller creates for spawners in `ns` (so a
    /// TaskSpawner must exist there and the controller have reconciled it).
    async fn spawner_kubeconfig(&self, ns: &str) -> Result<PathBuf> {
        let bindings: Api<RoleBinding> = Api::namespaced(self.cluster().client().await?, ns);
        let deadline = Instant::now() + Duration::from_secs(30);
        while bindings.get_opt(SPAWNER_SERVICE_ACCOUNT).await?.is_none() {
            if Instant::now() > deadline {
                bail!(
                    "kelos-controller created no RoleBinding {SPAWNER_SERVICE_ACCOUNT} in {ns} within 30s:\n{}",
                    self.controller_log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let kubeconfig = self
            .cluster()
            .dir()
            .join(format!("kelos-spawner-{ns}.kubeconfig"));
        write_impersonating_kubeconfig(
            self.cluster().kubeconfig(),
            ns,
            SPAWNER_SERVICE_ACCOUNT,
            &kubeconfig,
        )?;
        Ok(kubeconfig)
    }

    /// Starts `kelos-spawner` for TaskSpawner `ns/name` long-running (no `--one-shot`: it
    /// reconciles the TaskSpawner and its Tasks until stopped), as the spawner identity, with
    /// `env` added to its environment. Its log goes to a file in the cluster directory.
    pub async fn start_spawner(
        &self,
        ns: &str,
        name: &str,
        env: &[(&str, &str)],
    ) -> Result<LongRunningSpawner> {
        let kubeconfig = self.spawner_kubeconfig(ns).await?;
        let log = self
            .cluster()
            .dir()
            .join(format!("kelos-spawner-{ns}-{name}.log"));
        let file = std::fs::File::create(&log)?;
        let child = tokio::process::Command::new(self.bin().join("kelos-spawner"))
            .args(["--taskspawner-name", name, "--taskspawner-namespace", ns])
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .context("starting kelos-spawner")?;
        Ok(LongRunningSpawner { child, log })
    }

    /// Runs one discovery cycle of TaskSpawner `ns/name` and returns its log; fails when the
    /// spawner exits non-zero. Waits first for the RoleBinding kelos's controller creates for
    /// spawners in `ns` (so the TaskSpawner must exist and the controller have reconciled it).
    pub async fn run_spawner_once(&self, ns: &str, name: &str) -> Result<SpawnerRun> {
        let kubeconfig = self.spawner_kubeconfig(ns).await?;
        let start = Instant::now();
        let out = tokio::process::Command::new(self.bin().join("kelos-spawner"))
            .arg("--one-shot")
            .args(["--taskspawner-name", name, "--taskspawner-namespace", ns])
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(60), out)
            .await
            .context("kelos-spawner --one-shot ran for more than 60s")?
            .context("starting kelos-spawner")?;
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            bail!(
                "kelos-spawner --one-shot for {ns}/{name} exited with {}:\n{log}",
                out.status
            );
        }
        Ok(SpawnerRun {
            log,
            took: start.elapsed(),
        })
    }
}
