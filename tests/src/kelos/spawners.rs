//! TaskSpawners the tests create on kelos, and what kelos makes of them.

use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kelos_hooks_shared::annotations::SPAWNER_LABEL;
use kelos_hooks_shared::api::Task;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};

use super::Kelos;

/// kelos's TaskSpawner finalizer (`taskSpawnerFinalizer`), added by a full Update of kelos's Go
/// type on the first reconcile.
pub const SPAWNER_FINALIZER: &str = "kelos.dev/taskspawner-finalizer";
/// kelos's Task finalizer (`taskFinalizer`), added and removed by full Updates.
pub const TASK_FINALIZER: &str = "kelos.dev/finalizer";

const WAIT: Duration = Duration::from_secs(60);

/// TaskSpawners (v1alpha2) in `ns`, untyped: exactly what the API server stores.
pub fn spawner_api(client: kube::Client, ns: &str) -> Api<DynamicObject> {
    spawner_api_in(client, ns, "v1alpha2")
}

/// TaskSpawners of `kelos.dev/<version>` in `ns`, untyped.
pub fn spawner_api_in(client: kube::Client, ns: &str, version: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("kelos.dev", version, "TaskSpawner");
    Api::namespaced_with(client, ns, &ApiResource::from_gvk(&gvk))
}

/// The Tasks of one namespace in the version a kelos serves ([`Kelos::api_version`]), read as
/// [`Task`] (typed for v1alpha2, whose fields the tests read are v1alpha1's too).
pub struct Tasks(Api<DynamicObject>);

impl Tasks {
    fn typed(obj: DynamicObject) -> Result<Task> {
        let mut v = serde_json::to_value(obj)?;
        v["apiVersion"] = json!("kelos.dev/v1alpha2");
        Ok(serde_json::from_value(v)?)
    }

    /// Task `name`.
    pub async fn get(&self, name: &str) -> Result<Task> {
        Self::typed(self.0.get(name).await?)
    }

    /// The Tasks `lp` selects.
    pub async fn list(&self, lp: &ListParams) -> Result<Vec<Task>> {
        self.0
            .list(lp)
            .await?
            .items
            .into_iter()
            .map(Self::typed)
            .collect()
    }

    /// The untyped API (watches, patches).
    pub fn api(&self) -> &Api<DynamicObject> {
        &self.0
    }
}

/// [`cron_spawner`] in kelos v1alpha1's shape (kelos PR #1240 has no v1alpha2): the agent's
/// `type`, `model` and `credentials` directly in `taskTemplate`.
pub fn cron_spawner_v1alpha1(
    name: &str,
    on_completion: &Value,
    max_tasks: u32,
    finalizer: bool,
) -> Value {
    let mut s = cron_spawner(name, on_completion, max_tasks, finalizer);
    s["apiVersion"] = json!("kelos.dev/v1alpha1");
    let template = &mut s["spec"]["taskTemplate"];
    if let Some(worker) = template
        .as_object_mut()
        .and_then(|t| t.remove("worker"))
        .and_then(|w| w.as_object().cloned())
    {
        for (k, v) in worker {
            template[k.as_str()] = v;
        }
    }
    s
}

/// A cron TaskSpawner as a user writes one for kelos v1alpha2 (agent in `taskTemplate.worker`:
/// claude-code, model opus, no credentials), firing every minute, creating at most `max_tasks`
/// Tasks, with `on_completion` as `spec.onCompletion` (`Value::Null`: none). With `finalizer` it is
/// created carrying kelos's finalizer, so kelos's controller never rewrites it.
pub fn cron_spawner(name: &str, on_completion: &Value, max_tasks: u32, finalizer: bool) -> Value {
    let mut s = json!({
        "apiVersion": "kelos.dev/v1alpha2", "kind": "TaskSpawner",
        "metadata": {"name": name},
        "spec": {
            "when": {"cron": {"schedule": "* * * * *"}},
            "maxTotalTasks": max_tasks,
            "taskTemplate": {
                "worker": {"type": "claude-code", "model": "opus", "credentials": {"type": "none"}},
                "promptTemplate": "Run the nightly dependency check and open a PR if anything is outdated.",
            },
        },
    });
    if !on_completion.is_null() {
        s["spec"]["onCompletion"] = on_completion.clone();
    }
    if finalizer {
        s["metadata"]["finalizers"] = json!([SPAWNER_FINALIZER]);
    }
    s
}

impl Kelos {
    /// The Tasks of `ns` in this kelos's version.
    pub async fn tasks(&self, ns: &str) -> Result<Tasks> {
        let gvk = GroupVersionKind::gvk("kelos.dev", self.api_version(), "Task");
        Ok(Tasks(Api::namespaced_with(
            self.cluster().client().await?,
            ns,
            &ApiResource::from_gvk(&gvk),
        )))
    }

    /// TaskSpawners of `ns` in this kelos's version, untyped.
    pub async fn spawners(&self, ns: &str) -> Result<Api<DynamicObject>> {
        Ok(spawner_api_in(
            self.cluster().client().await?,
            ns,
            self.api_version(),
        ))
    }

    /// Creates `spawner` (a TaskSpawner manifest) in `ns` as the admin user; fails when the API
    /// server did not keep its `spec.onCompletion` (an un-extended CRD prunes it).
    pub async fn create_spawner(&self, ns: &str, spawner: &Value) -> Result<DynamicObject> {
        let api = self.spawners(ns).await?;
        let obj: DynamicObject = serde_json::from_value(spawner.clone())?;
        let created = api.create(&PostParams::default(), &obj).await?;
        ensure!(
            created.data["spec"].get("onCompletion") == spawner["spec"].get("onCompletion"),
            "the API server did not keep spec.onCompletion at create: {}",
            created.data["spec"]
        );
        Ok(created)
    }

    /// Waits until kelos's controller has reconciled TaskSpawner `ns/name` (its finalizer is on)
    /// and returns the TaskSpawner as stored then.
    pub async fn wait_spawner_finalized(&self, ns: &str, name: &str) -> Result<DynamicObject> {
        let api = self.spawners(ns).await?;
        let deadline = Instant::now() + WAIT;
        loop {
            let s = api.get(name).await?;
            if s.metadata
                .finalizers
                .as_ref()
                .is_some_and(|f| f.iter().any(|f| f == SPAWNER_FINALIZER))
            {
                return Ok(s);
            }
            if Instant::now() > deadline {
                bail!(
                    "kelos did not add {SPAWNER_FINALIZER} to {ns}/{name} within {WAIT:?}:\n{}",
                    self.controller_log_tail(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Makes the spawner's next discovery cycle see `minutes` minutes of cron ticks, as if it
    /// had last run then (`status.lastDiscoveryTime` is the spawner's own bookkeeping, read by
    /// `kelos-spawner`); `maxTotalTasks` caps how many Tasks the cycle creates.
    pub async fn backdate_discovery(&self, ns: &str, name: &str, minutes: i64) -> Result<()> {
        let api = self.spawners(ns).await?;
        let then = Timestamp::now()
            .checked_sub(SignedDuration::from_mins(minutes))?
            .to_string();
        let status = json!({"status": {"lastDiscoveryTime": then}});
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await?;
        Ok(())
    }

    /// The Tasks of spawner `ns/name`, by name (kelos names them `<spawner>-<tick>`: tick order).
    pub async fn spawned_tasks(&self, ns: &str, name: &str) -> Result<Vec<Task>> {
        let mut tasks = self
            .tasks(ns)
            .await?
            .list(&ListParams::default().labels(&format!("{SPAWNER_LABEL}={name}")))
            .await?;
        tasks.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        Ok(tasks)
    }
}
