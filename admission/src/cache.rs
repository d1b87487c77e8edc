//! The TaskSpawner cache: a kube-runtime reflector over every namespace, trimmed to what the
//! mutating webhook needs (the encoded hook snapshot), plus one direct read on a cache miss.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kelos_hooks_shared::annotations::encode_snapshot;
use kelos_hooks_shared::api::OnCompletion;
use kelos_hooks_shared::ip::IpPolicy;
use kelos_hooks_shared::redact::redact;
use kelos_hooks_shared::validation::{Context, validate_on_completion};
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::Deserialize;
use serde_json::Value;

use crate::metrics::{Metrics, MissResult};
use crate::patch::Snapshot;
use kelos_hooks_runtime::Health;

/// Readiness check: the TaskSpawner cache has listed everything once.
pub const READY_CHECK: &str = "TaskSpawner cache";

/// The hooks a spawner hands to its Tasks, computed once per spawner change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SpawnerHooks {
    /// No `onCompletion` or no hooks.
    #[default]
    None,
    /// The `kelos.dev/on-completion` annotation value (already validated).
    Snapshot(Snapshot),
    /// The stored hooks break the rules (created before the webhook was installed): not copied.
    Invalid(Arc<str>),
}

impl SpawnerHooks {
    /// Computes the snapshot of an `onCompletion` value.
    pub fn from_on_completion(value: Option<&Value>, policy: &IpPolicy) -> Self {
        let Some(value) = value.filter(|v| !v.is_null()) else {
            return SpawnerHooks::None;
        };
        let ctx = Context { ip_policy: policy };
        let report = validate_on_completion(value, "spec.onCompletion", &ctx);
        if !report.is_valid() {
            return SpawnerHooks::Invalid(report.error_summary().into());
        }
        match OnCompletion::deserialize(value) {
            Ok(oc) if oc.hooks.is_empty() => SpawnerHooks::None,
            Ok(oc) => SpawnerHooks::Snapshot(Snapshot::new(&encode_snapshot(&oc.hooks))),
            Err(e) => SpawnerHooks::Invalid(
                format!("spec.onCompletion: {}", redact(&e.to_string())).into(),
            ),
        }
    }
}

/// A TaskSpawner as cached: metadata (trimmed) and the precomputed hooks. Everything else of the
/// object is skipped while parsing.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CachedSpawner {
    /// Metadata; managedFields, labels and annotations are dropped after parsing.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// `spec.onCompletion` only.
    #[serde(default)]
    pub spec: CachedSpec,
}

/// The part of `spec` read.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CachedSpec {
    /// Raw `onCompletion`; emptied by [`CachedSpawner::trim`] once `hooks` is computed.
    #[serde(rename = "onCompletion", default)]
    pub on_completion: Option<Value>,
    /// Precomputed snapshot.
    #[serde(skip)]
    pub hooks: SpawnerHooks,
}

impl CachedSpawner {
    /// Computes `hooks` and drops what the cache does not need.
    pub fn trim(&mut self, policy: &IpPolicy) {
        self.spec.hooks =
            SpawnerHooks::from_on_completion(self.spec.on_completion.as_ref(), policy);
        self.spec.on_completion = None;
        let m = &mut self.metadata;
        m.managed_fields = None;
        m.annotations = None;
        m.labels = None;
        m.owner_references = None;
        m.finalizers = None;
    }
}

impl Resource for CachedSpawner {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "TaskSpawner".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        kelos_hooks_shared::api::GROUP.into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        kelos_hooks_shared::api::VERSION.into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "taskspawners".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Answer of a direct read on a cache miss.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The spawner exists with these hooks.
    Found(SpawnerHooks),
    /// It does not exist.
    NotFound,
    /// The API could not say (error or timeout).
    Failed(String),
}

/// Direct read used on a cache miss: (namespace, name) → answer.
pub type MissLookup = Arc<dyn Fn(String, String) -> BoxFuture<'static, Lookup> + Send + Sync>;

/// Where a Task's spawner hooks came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// Known (from the cache or the direct read).
    Hooks(SpawnerHooks),
    /// The spawner does not exist.
    NotFound,
    /// Not known: the direct read failed.
    Unknown(String),
}

/// Read side of the TaskSpawner cache.
#[derive(Clone)]
pub struct SpawnerCache {
    store: Store<CachedSpawner>,
    miss: MissLookup,
    metrics: Arc<Metrics>,
}

impl fmt::Debug for SpawnerCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpawnerCache")
            .field("objects", &self.store.len())
            .finish()
    }
}

impl SpawnerCache {
    /// A cache over `store`, asking `miss` about spawners it does not hold.
    pub fn new(store: Store<CachedSpawner>, miss: MissLookup, metrics: Arc<Metrics>) -> Self {
        SpawnerCache {
            store,
            miss,
            metrics,
        }
    }

    /// The metrics text (tests check miss counting through it).
    #[cfg(test)]
    pub fn metrics_text(&self) -> String {
        kelos_hooks_runtime::ProbeMetrics::encode(&*self.metrics)
    }

    /// The cached hooks of a spawner (no I/O).
    pub fn cached(&self, namespace: &str, name: &str) -> Option<SpawnerHooks> {
        let key = ObjectRef::<CachedSpawner>::new(name).within(namespace);
        self.store.get(&key).map(|s| s.spec.hooks.clone())
    }

    /// The cached hooks of a spawner if the cache holds exactly `resource_version` of it.
    pub fn cached_at(
        &self,
        namespace: &str,
        name: &str,
        resource_version: &str,
    ) -> Option<SpawnerHooks> {
        let key = ObjectRef::<CachedSpawner>::new(name).within(namespace);
        self.store
            .get(&key)
            .filter(|s| s.metadata.resource_version.as_deref() == Some(resource_version))
            .map(|s| s.spec.hooks.clone())
    }

    /// One direct read of a spawner's hooks, whatever the cache holds.
    pub async fn lookup(&self, namespace: &str, name: &str) -> Lookup {
        (self.miss)(namespace.to_owned(), name.to_owned()).await
    }

    /// The hooks of a spawner: from the cache, else one direct read (a spawner created moments
    /// ago may not have reached the watch yet).
    pub async fn resolve(&self, namespace: &str, name: &str) -> Resolved {
        if let Some(hooks) = self.cached(namespace, name) {
            return Resolved::Hooks(hooks);
        }
        match (self.miss)(namespace.to_owned(), name.to_owned()).await {
            Lookup::Found(hooks) => {
                self.metrics.observe_miss(MissResult::Found);
                Resolved::Hooks(hooks)
            }
            Lookup::NotFound => {
                self.metrics.observe_miss(MissResult::NotFound);
                Resolved::NotFound
            }
            Lookup::Failed(why) => {
                self.metrics.observe_miss(MissResult::Error);
                Resolved::Unknown(why)
            }
        }
    }
}

/// The direct read through the API, bounded by `timeout`.
pub fn api_lookup(client: Client, policy: Arc<IpPolicy>, timeout: Duration) -> MissLookup {
    Arc::new(move |namespace: String, name: String| {
        let api: Api<CachedSpawner> = Api::namespaced(client.clone(), &namespace);
        let policy = policy.clone();
        async move {
            match tokio::time::timeout(timeout, api.get_opt(&name)).await {
                Ok(Ok(Some(mut s))) => {
                    s.trim(&policy);
                    Lookup::Found(s.spec.hooks)
                }
                Ok(Ok(None)) => Lookup::NotFound,
                Ok(Err(e)) => Lookup::Failed(e.to_string()),
                Err(_) => Lookup::Failed(format!("no answer within {timeout:?}")),
            }
        }
        .boxed()
    })
}

/// Runs the reflector until the stream ends (it retries with backoff on its own), keeping the
/// cache gauges and the readiness flag current.
pub async fn run_reflector(
    client: Client,
    writer: Writer<CachedSpawner>,
    policy: Arc<IpPolicy>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) {
    let store = writer.as_reader();
    let api: Api<CachedSpawner> = Api::all(client);
    let stream = watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(move |s: &mut CachedSpawner| s.trim(&policy))
        .reflect(writer);
    futures::pin_mut!(stream);
    let mut synced = false;
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::InitDone) if !synced => {
                synced = true;
                health.clear(READY_CHECK);
                metrics.cache_synced.set(1);
                tracing::info!(objects = store.len(), "TaskSpawner cache synced");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "TaskSpawner watch failed; retrying with backoff"),
        }
        metrics
            .cache_objects
            .set(i64::try_from(store.len()).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    #[test]
    fn snapshot_of_valid_hooks() {
        let oc =
            json!({"hooks": [{"name": "a", "webhook": {"url": "https://hooks.example.com/x"}}]});
        match SpawnerHooks::from_on_completion(Some(&oc), &IpPolicy::default()) {
            SpawnerHooks::Snapshot(s) => {
                let decoded = kelos_hooks_shared::annotations::decode_snapshot(s.value()).unwrap();
                assert_eq!(decoded.hooks[0].name, "a");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn no_hooks_and_invalid_hooks() {
        let p = IpPolicy::default();
        assert_eq!(
            SpawnerHooks::from_on_completion(None, &p),
            SpawnerHooks::None
        );
        assert_eq!(
            SpawnerHooks::from_on_completion(Some(&Value::Null), &p),
            SpawnerHooks::None
        );
        assert_eq!(
            SpawnerHooks::from_on_completion(Some(&json!({"hooks": []})), &p),
            SpawnerHooks::None
        );
        let bad = json!({"hooks": [{"name": "a", "webhook": {"url": "http://x.example.com"}}]});
        assert!(
            matches!(SpawnerHooks::from_on_completion(Some(&bad), &p), SpawnerHooks::Invalid(m) if m.contains("hooks[0].webhook.url"))
        );
    }

    #[test]
    fn trim_drops_unneeded_fields() {
        let mut s: CachedSpawner = serde_json::from_value(json!({
            "apiVersion": "kelos.dev/v1alpha2", "kind": "TaskSpawner",
            "metadata": {"name": "s", "namespace": "n", "labels": {"a": "b"},
                         "managedFields": [{"manager": "kubectl"}]},
            "spec": {"when": {"cron": {"schedule": "* * * * *"}},
                     "onCompletion": {"hooks": [{"name": "a", "webhook": {"url": "https://h.example.com"}}]}}
        }))
        .unwrap();
        s.trim(&IpPolicy::default());
        assert!(s.metadata.managed_fields.is_none() && s.metadata.labels.is_none());
        assert!(s.spec.on_completion.is_none());
        assert!(matches!(s.spec.hooks, SpawnerHooks::Snapshot(_)));
        assert_eq!(s.metadata.name.as_deref(), Some("s"));
    }
}
