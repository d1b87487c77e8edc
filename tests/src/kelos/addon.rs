//! The add-on next to kelos: our admission server (webhooks registered by URL through
//! `hack/webhook-configs.sh`, scoped to one namespace) and our dispatcher watching that namespace.
//!
//! The dispatcher runs as the admin user of the test cluster (`kelos-hooks-admin`), which the
//! admission server is told is the dispatcher's identity.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use kelos_hooks_shared::annotations::{ON_COMPLETION, SPAWNER_LABEL};
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;
use tokio::process::Child;

use super::Kelos;
use super::spawners::spawner_api;
use crate::admission_local::Server;
use crate::admission_server::server_log;
use crate::dispatcher::Dispatcher;
use crate::kubectl::kubectl;
use crate::process::stop_gracefully;

/// The identity the dispatcher has here: the CN of the test cluster's admin certificate.
pub const DISPATCHER_IDENTITY: &str = "kelos-hooks-admin";
/// Receivers of these tests listen on loopback, which both binaries are told to allow.
pub const ALLOW_CIDR: &str = "127.0.0.0/8";

/// Our admission server and dispatcher for namespace `ns` of the kelos cluster.
pub struct AddOn {
    ns: String,
    admission: Option<Child>,
    probe_port: u16,
    dir: tempfile::TempDir,
    configs: String,
    registered: bool,
    /// The dispatcher (restart or kill it through this).
    pub dispatcher: Dispatcher,
}

impl AddOn {
    /// Starts the admission server, registers our webhooks for `ns` only and waits until the API
    /// server calls them, then starts a dispatcher for `ns` trusting `receiver_ca`.
    pub async fn start(k: &Kelos, ns: &str, receiver_ca: &Path) -> Result<AddOn> {
        Self::start_with(k, ns, receiver_ca, &[]).await
    }

    /// [`AddOn::start`] with `admission_args` added to `kelos-hooks-admission serve`.
    pub async fn start_with(
        k: &Kelos,
        ns: &str,
        receiver_ca: &Path,
        admission_args: &[&str],
    ) -> Result<AddOn> {
        Self::start_allowing(k, ns, receiver_ca, ALLOW_CIDR, admission_args, &[]).await
    }

    /// [`AddOn::start_with`] with both binaries given `--allow-cidr allow` (instead of
    /// [`ALLOW_CIDR`]) and `dispatcher_args` added to the dispatcher's (a flag there replaces
    /// the test default, see [`Dispatcher::start`]).
    pub async fn start_allowing(
        k: &Kelos,
        ns: &str,
        receiver_ca: &Path,
        allow: &str,
        admission_args: &[&str],
        dispatcher_args: &[&str],
    ) -> Result<AddOn> {
        let c = k.cluster();
        let mut args = vec![
            "--allow-cidr",
            allow,
            "--shutdown-delay",
            "0s",
            "--drain-timeout",
            "2s",
            // As the chart runs it: kelos's TaskSpawner CRD gets spec.onCompletion.
            "--extend-kelos-crd",
        ];
        args.extend_from_slice(admission_args);
        let mut server = Server::start_as(c, ns, DISPATCHER_IDENTITY, &args).await?;
        let name = config_name(ns);
        let configs = server
            .webhook_configs(&[
                "--name",
                &name,
                "--only-namespace",
                ns,
                "--dispatcher-identity",
                DISPATCHER_IDENTITY,
            ])
            .await?;
        let mut addon = AddOn {
            ns: ns.to_owned(),
            admission: server.child.take(),
            probe_port: server.probe_port,
            dir: server.dir,
            configs,
            registered: false,
            dispatcher: Dispatcher::start(
                c,
                ns,
                receiver_ca,
                allow,
                "kelos-e2e",
                &[&["--request-timeout", "5s"], dispatcher_args].concat(),
            )
            .await?,
        };
        addon.register(k).await?;
        Ok(addon)
    }

    /// (Re-)registers our webhook configurations and waits until the API server calls them.
    pub async fn register(&mut self, k: &Kelos) -> Result<()> {
        let out = kubectl(k.cluster(), &["apply", "-f", "-"], Some(&self.configs)).await?;
        ensure!(out.ok, "registering our webhooks: {}", out.stderr);
        self.registered = true;
        self.wait_effective(k).await
    }

    /// The admission server's log.
    pub fn admission_log(&self) -> String {
        server_log(self.dir.path())
    }

    /// The admission server's probe/metrics port.
    pub fn admission_probe_port(&self) -> u16 {
        self.probe_port
    }

    /// Stops the admission server (SIGTERM, waits for it to exit) and leaves our webhook
    /// configurations registered: an outage as the API server sees it.
    pub async fn stop_admission(&mut self) -> Result<()> {
        stop_gracefully(self.admission.take(), "the admission server").await
    }

    /// Deletes our webhook configurations (the API server stops calling them a moment later).
    pub async fn unregister(&mut self, k: &Kelos) -> Result<()> {
        if self.registered {
            let name = config_name(&self.ns);
            let out = kubectl(
                k.cluster(),
                &[
                    "delete",
                    "validatingwebhookconfiguration,mutatingwebhookconfiguration",
                    &name,
                ],
                None,
            )
            .await?;
            ensure!(out.ok, "deleting our webhooks: {}", out.stderr);
            self.registered = false;
            self.wait_forgotten(k).await?;
        }
        Ok(())
    }

    /// [`AddOn::unregister`], then deletes the rest of what `hack/webhook-configs.sh` made for
    /// this namespace (its ValidatingAdmissionPolicy and binding): nothing of ours is left on
    /// the cluster.
    pub async fn remove(&mut self, k: &Kelos) -> Result<()> {
        self.unregister(k).await?;
        let out = kubectl(
            k.cluster(),
            &["delete", "--ignore-not-found", "-f", "-"],
            Some(&self.configs),
        )
        .await?;
        ensure!(out.ok, "deleting our admission objects: {}", out.stderr);
        Ok(())
    }

    /// A forged snapshot on a Task of an unknown spawner (created dry-run): removed while our
    /// mutating webhook is called, kept once it is not.
    fn forged_task() -> Result<DynamicObject> {
        Ok(serde_json::from_value(json!({
            "apiVersion": "kelos.dev/v1alpha2", "kind": "Task",
            "metadata": {"name": "webhook-probe", "labels": {SPAWNER_LABEL: "no-such-spawner"},
                         "annotations": {ON_COMPLETION: "forged"}},
            "spec": {"prompt": "probe", "worker": {"type": "claude-code", "credentials": {"type": "none"}}},
        }))?)
    }

    /// Waits until the API server no longer calls our mutating webhook in this namespace.
    async fn wait_forgotten(&self, k: &Kelos) -> Result<()> {
        let tasks = task_api(k.cluster().client().await?, &self.ns);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let created = tasks.create(&dry_run(), &Self::forged_task()?).await?;
            if created.annotations().contains_key(ON_COMPLETION) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "our webhooks still called in {} 30s after deletion",
                    self.ns
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the API server calls both configurations for this namespace (they are picked
    /// up asynchronously): a TaskSpawner whose hook URL is a blocked address (which the CRD schema
    /// allows and only the webhook refuses) is denied, and a forged snapshot
    /// on a Task of an unknown spawner is removed (both dry-run).
    async fn wait_effective(&self, k: &Kelos) -> Result<()> {
        let client = k.cluster().client().await?;
        let spawners = spawner_api(client.clone(), &self.ns);
        let tasks = task_api(client, &self.ns);
        let bad_spawner: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "kelos.dev/v1alpha2", "kind": "TaskSpawner",
            "metadata": {"name": "webhook-probe"},
            "spec": {
                "when": {"cron": {"schedule": "0 9 * * 1"}},
                "taskTemplate": {"worker": {"type": "claude-code", "credentials": {"type": "none"}},
                                 "promptTemplate": "probe"},
                "onCompletion": {"hooks": [{"name": "probe", "webhook": {"url": "https://10.0.0.1/x"}}]},
            },
        }))?;
        let forged = Self::forged_task()?;
        let dry_run = dry_run();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut validating = false;
        let mut last = String::new();
        loop {
            if !validating {
                match spawners.create(&dry_run, &bad_spawner).await {
                    Err(kube::Error::Api(e)) if e.message.contains("denied the request") => {
                        validating = true;
                    }
                    other => last = format!("TaskSpawner probe: {other:?}"),
                }
            }
            if validating {
                match tasks.create(&dry_run, &forged).await {
                    Ok(t) if t.annotations().get(ON_COMPLETION).is_none() => return Ok(()),
                    other => last = format!("Task probe: {other:?}"),
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "our webhooks not effective in {} within 30s; last probe: {last}\n{}",
                    self.ns,
                    self.admission_log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn dry_run() -> PostParams {
    PostParams {
        dry_run: true,
        ..Default::default()
    }
}

fn task_api(client: kube::Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("kelos.dev", "v1alpha2", "Task");
    Api::namespaced_with(client, ns, &ApiResource::from_gvk(&gvk))
}

fn config_name(ns: &str) -> String {
    format!("kelos-hooks-{ns}")
}
