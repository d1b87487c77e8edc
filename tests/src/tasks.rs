//! kelos objects the tests create.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kelos_hooks_shared::annotations::{
    DELIVERIES, ON_COMPLETION, REPORT_PHASE, SPAWNER_LABEL, encode_snapshot,
};
use kelos_hooks_shared::api::{Hook, Phase, Task, TaskSpec, Webhook};
use kelos_hooks_shared::deliveries::Deliveries;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::dispatcher::Dispatcher;

/// How long [`wait_reported`] waits for a delivery's outcome.
pub const DELIVERY_WAIT: Duration = Duration::from_secs(45);

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

/// RFC 3339 time `ago` before now.
pub fn now_rfc3339(ago: Duration) -> String {
    let secs = i64::try_from(ago.as_secs()).unwrap();
    Timestamp::now()
        .checked_sub(SignedDuration::from_secs(secs))
        .unwrap()
        .to_string()
}

/// Moves Task `name` to Running, then to the terminal `phase` that completed `ago`, through the
/// status subresource, as the kelos controller does.
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

/// The Task's `kelos.dev/webhook-deliveries` (empty when absent or unreadable).
pub fn deliveries(task: &Task) -> Deliveries {
    let ann = task.metadata.annotations.clone().unwrap_or_default();
    ann.get(DELIVERIES)
        .and_then(|v| Deliveries::parse(v).ok())
        .unwrap_or_else(|| Deliveries::new(Phase::Succeeded))
}

/// Waits for `kelos.dev/webhook-report-phase` = `phase` (the dispatcher's log shown on failure).
pub async fn wait_reported(
    api: &Api<Task>,
    name: &str,
    phase: Phase,
    d: &Dispatcher,
) -> Result<Task> {
    let deadline = Instant::now() + DELIVERY_WAIT;
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
                "Task {name}: report phase {reported:?} after {DELIVERY_WAIT:?}; annotations {:?}\n{}",
                t.metadata.annotations,
                d.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates Secret `name` in `ns` with `data` as its string data.
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
