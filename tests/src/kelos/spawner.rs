//! `kelos-spawner --one-shot`: one discovery cycle of a TaskSpawner, run as the ServiceAccount
//! kelos's controller creates for spawners in the TaskSpawner's namespace (`kelos-spawner`,
//! bound to the chart's `kelos-spawner-role`) — what the spawner's CronJob would run.

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

impl Kelos {
    /// Runs one discovery cycle of TaskSpawner `ns/name` and returns its log; fails when the
    /// spawner exits non-zero. Waits first for the RoleBinding kelos's controller creates for
    /// spawners in `ns` (so the TaskSpawner must exist and the controller have reconciled it).
    pub async fn run_spawner_once(&self, ns: &str, name: &str) -> Result<SpawnerRun> {
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
