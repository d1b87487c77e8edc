//! kelos objects the tests create, and waiting for what the dispatcher writes back.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kelos_hooks_shared::annotations::{
    DELIVERIES, ON_COMPLETION, REPORT_PHASE, SPAWNER_LABEL, encode_snapshot,
};
use kelos_hooks_shared::api::{Hook, Phase, Task, TaskSpec, Webhook};
use kelos_hooks_shared::deliveries::Deliveries;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// A webhook hook for every phase, no secrets, the default format.
pub fn hook(name: &str, url: String) -> Hook {
    Hook {
        name: name.into(),
        phases: None,
        webhook: Webhook {
            url,
            secret_ref: None,
            signing_secret_ref: None,
            format: None,
            pager_duty: None,
            template: None,
        },
    }
}

/// A claude-code Task (with `model` when given) carrying the snapshot of `hooks` and the spawner
/// label, when given.
pub fn task(
    name: &str,
    model: Option<&str>,
    hooks: Option<&[Hook]>,
    spawner: Option<&str>,
) -> Task {
    let mut task = Task::new(
        name,
        TaskSpec {
            agent_type: Some("claude-code".into()),
            model: model.map(Into::into),
            ..Default::default()
        },
    );
    task.spec
        .rest
        .insert("prompt".into(), json!("Fix the flaky test"));
    if let Some(h) = hooks {
        task.metadata.annotations = Some([(ON_COMPLETION.to_owned(), encode_snapshot(h))].into());
    }
    if let Some(s) = spawner {
        task.metadata.labels = Some([(SPAWNER_LABEL.to_owned(), s.to_owned())].into());
    }
    task
}

/// Creates [`task`] `name` (model `opus`) in `api`'s namespace.
pub async fn create_task(
    api: &Api<Task>,
    name: &str,
    hooks: Option<&[Hook]>,
    spawner: Option<&str>,
) -> Result<Task> {
    let task = task(name, Some("opus"), hooks, spawner);
    Ok(api.create(&PostParams::default(), &task).await?)
}

/// A kelos TaskSpawner manifest (cron source, valid for kelos's schema) with `on_completion` as
/// its `spec.onCompletion` (left out when null).
pub fn spawner_manifest(name: &str, on_completion: Value) -> Value {
    let mut s = json!({
        "apiVersion": "kelos.dev/v1alpha2", "kind": "TaskSpawner",
        "metadata": {"name": name},
        "spec": {"when": {"cron": {"schedule": "0 * * * *"}},
                 "taskTemplate": {"type": "claude-code", "promptTemplate": "Update the dependencies.",
                                  "credentials": {"type": "api-key", "secretRef": {"name": "k"}}}}
    });
    if !on_completion.is_null() {
        s["spec"]["onCompletion"] = on_completion;
    }
    s
}

/// RFC 3339 of `ago` before now.
pub fn rfc3339_ago(ago: Duration) -> String {
    let secs = i64::try_from(ago.as_secs()).unwrap_or(i64::MAX);
    Timestamp::now()
        .checked_sub(SignedDuration::from_secs(secs))
        .unwrap_or_else(|_| Timestamp::now())
        .to_string()
}

/// Moves Task `name` to Running, then to `phase` completed `ago` ago, with outputs, results and
/// usage, through the status subresource as the kelos controller does.
pub async fn complete(api: &Api<Task>, name: &str, phase: Phase, ago: Duration) -> Result<()> {
    let running = json!({"status": {
        "phase": "Running", "startTime": rfc3339_ago(ago + Duration::from_secs(60)),
    }});
    let done = json!({"status": {
        "phase": phase.as_str(),
        "message": format!("agent {}", phase.as_str().to_lowercase()),
        "completionTime": rfc3339_ago(ago),
        "outputs": ["https://github.com/kelos-dev/demo/pull/7", "branch: fix-flaky"],
        "results": {"pr": "7"},
        "usage": {"costUSD": "0.42", "inputTokens": 1200, "outputTokens": 340},
    }});
    for status in [running, done] {
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await?;
    }
    Ok(())
}

/// The `kelos.dev/webhook-deliveries` state of `task` (empty when absent or unreadable).
pub fn deliveries(task: &Task) -> Deliveries {
    task.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DELIVERIES))
        .and_then(|v| Deliveries::parse(v).ok())
        .unwrap_or_else(|| Deliveries::new(Phase::Succeeded))
}

/// Waits up to `wait` for `kelos.dev/webhook-report-phase` = `phase` on Task `name`; on timeout
/// the error shows the annotations and `logs()` (the dispatcher's log).
pub async fn wait_report_phase(
    api: &Api<Task>,
    name: &str,
    phase: Phase,
    wait: Duration,
    logs: impl Fn() -> String,
) -> Result<Task> {
    let deadline = Instant::now() + wait;
    loop {
        let t = api.get(name).await?;
        let ann = t.metadata.annotations.clone().unwrap_or_default();
        if ann.get(REPORT_PHASE).map(String::as_str) == Some(phase.as_str()) {
            return Ok(t);
        }
        if Instant::now() > deadline {
            bail!(
                "Task {name}: no report phase {phase:?} after {wait:?}; annotations {ann:?}\n{}",
                logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates Secret `name` in `ns` with `data` as its string data.
pub async fn create_secret(
    client: &kube::Client,
    ns: &str,
    name: &str,
    data: &[(&str, &str)],
) -> Result<()> {
    let s = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        string_data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &s)
        .await?;
    Ok(())
}

/// One Event as the tests compare it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenEvent {
    /// `Normal` or `Warning`.
    pub type_: String,
    /// e.g. `WebhookDelivered`.
    pub reason: String,
    /// The human-readable note.
    pub note: String,
    /// The controller that reported it.
    pub reporter: String,
}

/// The Events regarding object `name` in `ns`, waiting up to 30 s until one with `reason` and a
/// note containing `note` shows up (Events are published in the background).
pub async fn wait_event(
    client: &kube::Client,
    ns: &str,
    name: &str,
    reason: &str,
    note: &str,
) -> Result<Vec<SeenEvent>> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all: Vec<SeenEvent> = api
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .map(|e| SeenEvent {
                type_: e.type_.unwrap_or_default(),
                reason: e.reason.unwrap_or_default(),
                note: e.note.unwrap_or_default(),
                reporter: e.reporting_controller.unwrap_or_default(),
            })
            .collect();
        if all
            .iter()
            .any(|e| e.reason == reason && e.note.contains(note))
        {
            return Ok(all);
        }
        if Instant::now() > deadline {
            bail!("no {reason} Event with {note:?} for {name}; got {all:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
