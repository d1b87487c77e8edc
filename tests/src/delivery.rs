//! Delivery steps the end-to-end tests share: Tasks created with hooks, completed through the
//! status subresource as the kelos controller does, Secrets, and what the API server records.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kelos_hooks_shared::annotations::{DELIVERIES, REPORT_PHASE};
use kelos_hooks_shared::api::{Hook, Phase, Task};
use kelos_hooks_shared::deliveries::Deliveries;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::dispatcher::Dispatcher;
use crate::tasks;

/// How long a test waits for a delivery to be recorded.
pub const WAIT: Duration = Duration::from_secs(45);

/// RFC 3339 time `ago` before now.
pub fn now_rfc3339(ago: Duration) -> String {
    let secs = i64::try_from(ago.as_secs()).unwrap_or(i64::MAX);
    let now = Timestamp::now();
    now.checked_sub(SignedDuration::from_secs(secs))
        .unwrap_or(now)
        .to_string()
}

/// Creates a claude-code Task (model opus) carrying `hooks`, labelled for `spawner`.
pub async fn create_task(
    api: &Api<Task>,
    name: &str,
    hooks: Option<&[Hook]>,
    spawner: Option<&str>,
) -> Result<Task> {
    let task = tasks::task(name, Some("opus"), hooks, spawner);
    Ok(api.create(&PostParams::default(), &task).await?)
}

/// Moves the Task to Running, then to `phase` (completed `ago`), with outputs, results and usage.
pub async fn complete(api: &Api<Task>, name: &str, phase: Phase, ago: Duration) -> Result<()> {
    let status = json!({"status": {
        "phase": "Running", "startTime": now_rfc3339(ago + Duration::from_secs(60)),
    }});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    let status = json!({"status": {
        "phase": phase.as_str(),
        "message": format!("agent {}", phase.as_str().to_lowercase()),
        "completionTime": now_rfc3339(ago),
        "outputs": ["https://github.com/kelos-dev/demo/pull/7", "branch: fix-flaky"],
        "results": {"pr": "7"},
        "usage": {"costUSD": "0.42", "inputTokens": 1200, "outputTokens": 340},
    }});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(())
}

/// The `kelos.dev/webhook-deliveries` state of `task`.
pub fn deliveries(task: &Task) -> Deliveries {
    let ann = task.metadata.annotations.clone().unwrap_or_default();
    ann.get(DELIVERIES)
        .and_then(|v| Deliveries::parse(v).ok())
        .unwrap_or_else(|| Deliveries::new(Phase::Succeeded))
}

/// Waits for `kelos.dev/webhook-report-phase` = `phase`.
pub async fn wait_reported(
    api: &Api<Task>,
    name: &str,
    phase: Phase,
    d: &Dispatcher,
) -> Result<Task> {
    let deadline = Instant::now() + WAIT;
    loop {
        let t = api.get(name).await?;
        let reported = t
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REPORT_PHASE))
            .cloned();
        if reported.as_deref() == Some(phase.as_str()) {
            return Ok(t);
        }
        if Instant::now() > deadline {
            bail!(
                "Task {name}: report phase {reported:?} after {WAIT:?}; annotations {:?}\n{}",
                t.metadata.annotations,
                d.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The Task's UID.
pub fn uid(t: &Task) -> String {
    t.metadata.uid.clone().unwrap_or_default()
}

/// Creates Secret `name` in `ns` with `data` (string values).
pub async fn secret(
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
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &s)
        .await?;
    Ok(())
}

/// (type, reason, note) of the Events regarding `task`, waiting until one with `reason` and a note
/// containing `note` shows up (Events are published in the background).
pub async fn events_with(
    client: &kube::Client,
    ns: &str,
    task: &str,
    reason: &str,
    note: &str,
) -> Result<Vec<(String, String, String)>> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let all: Vec<(String, String, String)> = api
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(task))
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.note.unwrap_or_default(),
                )
            })
            .collect();
        if all.iter().any(|(_, r, n)| r == reason && n.contains(note)) {
            return Ok(all);
        }
        if Instant::now() > deadline {
            bail!("no {reason} Event with {note:?} for Task {task}; got {all:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
