//! Test objects: AdmissionReview bodies for TaskSpawners and Tasks, and TaskSpawner caches.

use std::sync::{Arc, Mutex};

use futures::FutureExt;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;
use serde_json::{Value, json};

use crate::cache::{CachedSpawner, Lookup, MissLookup, SpawnerCache, SpawnerHooks};
use crate::metrics::Metrics;

/// Namespace every fixture lives in.
pub const NS: &str = "team-a";
/// Spawner name every fixture Task refers to.
pub const SPAWNER: &str = "my-spawner";
/// The default dispatcher identity.
pub const DISPATCHER: &str = crate::cli::DEFAULT_DISPATCHER_IDENTITY;

/// A review of `object` (and `old`), by `username`.
pub fn review_json(
    op: &str,
    kind: &str,
    object: Value,
    old: Option<Value>,
    username: &str,
) -> Vec<u8> {
    let plural = if kind == "Task" {
        "tasks"
    } else {
        "taskspawners"
    };
    let mut request = json!({
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": {"group": "kelos.dev", "version": "v1alpha2", "kind": kind},
        "resource": {"group": "kelos.dev", "version": "v1alpha2", "resource": plural},
        "requestKind": {"group": "kelos.dev", "version": "v1alpha2", "kind": kind},
        "name": object["metadata"]["name"].clone(),
        "namespace": NS,
        "operation": op,
        "userInfo": {"username": username, "uid": "u-1", "groups": ["system:authenticated"]},
        "object": if op == "DELETE" { Value::Null } else { object },
        "oldObject": old.unwrap_or(Value::Null),
        "dryRun": false,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
    });
    if op == "DELETE" {
        request["object"] = Value::Null;
    }
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": request,
    }))
    .unwrap_or_default()
}

/// A valid `onCompletion` with two hooks.
pub fn valid_hooks() -> Value {
    json!({"hooks": [
        {"name": "notify-team", "phases": ["Succeeded", "Failed"],
         "webhook": {"url": "https://hooks.example.com/x", "secretRef": {"name": "team-hook-headers"}}},
        {"name": "audit", "webhook": {"url": "https://audit.example.com/in", "format": "CloudEvents"}},
    ]})
}

/// A kelos TaskSpawner with `onCompletion` (omitted when `null`).
pub fn spawner(on_completion: Value) -> Value {
    let mut s = json!({
        "apiVersion": "kelos.dev/v1alpha2",
        "kind": "TaskSpawner",
        "metadata": {"name": SPAWNER, "namespace": NS, "uid": "s-uid"},
        "spec": {
            "when": {"githubIssues": {"labels": ["bug"], "state": "open"}},
            "taskTemplate": {"type": "claude-code", "credentials": {"type": "oauth", "secretRef": {"name": "creds"}},
                             "workspaceRef": {"name": "ws"}},
            "maxConcurrency": 3
        }
    });
    if !on_completion.is_null() {
        s["spec"]["onCompletion"] = on_completion;
    }
    s
}

/// A TaskSpawner review.
pub fn spawner_review(op: &str, on_completion: Value) -> Vec<u8> {
    let obj = spawner(on_completion);
    let old = (op == "UPDATE" || op == "DELETE").then(|| obj.clone());
    review_json(op, "TaskSpawner", obj, old, "alice")
}

/// A kelos Task of realistic size; `labels`/`annotations` become its metadata maps when not null.
pub fn task(labels: Value, annotations: Value) -> Value {
    let mut t = json!({
        "apiVersion": "kelos.dev/v1alpha2",
        "kind": "Task",
        "metadata": {"name": "my-spawner-1234", "namespace": NS,
                     "ownerReferences": [{"apiVersion": "kelos.dev/v1alpha2", "kind": "TaskSpawner",
                                          "name": SPAWNER, "uid": "s-uid", "controller": true}]},
        "spec": {
            "type": "claude-code",
            "prompt": "Fix the bug described in issue #1234.\n".repeat(60),
            "credentials": {"type": "oauth", "secretRef": {"name": "creds"}},
            "model": "opus",
            "workspaceRef": {"name": "ws"},
            "ttlSecondsAfterFinished": 3600
        }
    });
    if !labels.is_null() {
        t["metadata"]["labels"] = labels;
    }
    if !annotations.is_null() {
        t["metadata"]["annotations"] = annotations;
    }
    t
}

/// A labelled Task (spawner [`SPAWNER`]) with `annotations`.
pub fn spawned_task(annotations: Value) -> Value {
    task(
        json!({"kelos.dev/taskspawner": SPAWNER, "app": "x"}),
        annotations,
    )
}

/// A Task CREATE review.
pub fn task_create(object: Value, username: &str) -> Vec<u8> {
    review_json("CREATE", "Task", object, None, username)
}

/// A Task UPDATE review.
pub fn task_update(old: Value, new: Value, username: &str) -> Vec<u8> {
    review_json("UPDATE", "Task", new, Some(old), username)
}

/// Miss lookups a test cache was asked to make: (namespace, name).
pub type Calls = Arc<Mutex<Vec<(String, String)>>>;

/// `metadata.resourceVersion` of every [`cached_spawner`].
pub const RESOURCE_VERSION: &str = "3";

/// A TaskSpawner as the cache holds it, at [`RESOURCE_VERSION`].
pub fn cached_spawner(namespace: &str, name: &str, hooks: SpawnerHooks) -> CachedSpawner {
    let mut s = CachedSpawner::default();
    s.metadata.name = Some(name.into());
    s.metadata.namespace = Some(namespace.into());
    s.metadata.resource_version = Some(RESOURCE_VERSION.into());
    s.spec.hooks = hooks;
    s
}

/// A synced TaskSpawner cache holding `objects`; misses answer `miss` and are recorded.
pub fn cache(objects: Vec<CachedSpawner>, miss: Lookup) -> (SpawnerCache, Calls) {
    let mut writer: Writer<CachedSpawner> = Writer::default();
    writer.apply_watcher_event(&watcher::Event::Init);
    for o in objects {
        writer.apply_watcher_event(&watcher::Event::InitApply(o));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    let calls = Calls::default();
    let seen = calls.clone();
    let lookup: MissLookup = Arc::new(move |ns, name| {
        if let Ok(mut seen) = seen.lock() {
            seen.push((ns, name));
        }
        let m = miss.clone();
        async move { m }.boxed()
    });
    (
        SpawnerCache::new(writer.as_reader(), lookup, Arc::new(Metrics::new())),
        calls,
    )
}

/// A synced TaskSpawner cache holding one spawner whose hooks snapshot is `snapshot`; misses find
/// nothing.
pub fn cache_with(namespace: &str, name: &str, snapshot: &str) -> SpawnerCache {
    let spawner = cached_spawner(namespace, name, SpawnerHooks::Snapshot(snapshot.into()));
    cache(vec![spawner], Lookup::NotFound).0
}
