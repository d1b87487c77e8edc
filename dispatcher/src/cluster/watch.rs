//! The Task watch: trims each object to what a delivery needs and forwards only terminal Tasks
//! with hooks whose report phase is not yet written.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kelos_hooks_shared::annotations::{
    DELIVERIES, ON_COMPLETION, REDELIVER, REDELIVER_BY, REPORT_PHASE, SPAWNER_LABEL,
};
use kelos_hooks_shared::api::{Task, TaskSpec, Worker};
use kelos_hooks_shared::redact::redact;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::mpsc::UnboundedSender;

use crate::executor::Msg;
use crate::machine::Input;

/// Readiness check: the Task watch has listed everything once.
pub const READY_CHECK: &str = "Task watch";

/// Whether the dispatcher has anything to do for this Task.
pub fn interesting(task: &Task) -> bool {
    let Some(phase) = task.terminal_phase() else {
        return false;
    };
    let ann = task.metadata.annotations.as_ref();
    let has_hooks = ann.is_some_and(|a| a.contains_key(ON_COMPLETION))
        || task
            .metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(SPAWNER_LABEL));
    let reported = ann
        .and_then(|a| a.get(REPORT_PHASE))
        .is_some_and(|p| p == phase.as_str());
    // A redelivery request is work even on a reported Task.
    has_hooks && (!reported || ann.is_some_and(|a| a.contains_key(REDELIVER)))
}

fn keep(map: Option<&BTreeMap<String, String>>, keys: &[&str]) -> Option<BTreeMap<String, String>> {
    let kept: BTreeMap<String, String> = map?
        .iter()
        .filter(|(k, _)| keys.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (!kept.is_empty()).then_some(kept)
}

/// A copy with only what payloads, plans and Events read: no managedFields, no kelos spec.
pub fn trim(task: Task) -> Task {
    let m = task.metadata;
    let mut out = Task::new(
        "",
        TaskSpec {
            worker: task.spec.worker.map(|w| Worker {
                rest: BTreeMap::new(),
                ..w
            }),
            rest: BTreeMap::new(),
            ..task.spec
        },
    );
    out.metadata = ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        uid: m.uid,
        resource_version: m.resource_version,
        labels: keep(m.labels.as_ref(), &[SPAWNER_LABEL]),
        annotations: keep(
            m.annotations.as_ref(),
            &[
                ON_COMPLETION,
                DELIVERIES,
                REPORT_PHASE,
                REDELIVER,
                REDELIVER_BY,
            ],
        ),
        ..Default::default()
    };
    out.status = task.status.map(|mut s| {
        s.rest.clear();
        s
    });
    out
}

/// Runs the watch until the receiver is gone, feeding the dispatcher.
pub async fn run(client: Client, namespace: Option<String>, tx: UnboundedSender<Msg>) {
    let api: Api<Task> = match &namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let mut forwarded: HashSet<String> = HashSet::new();
    let mut seen: Option<HashSet<String>> = None;
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    let mut stream = std::pin::pin!(stream.into_stream());
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(
                    error = %redact(&e.to_string()),
                    "Task watch error (retrying with backoff)"
                );
                continue;
            }
        };
        let sent = match event {
            watcher::Event::Init => {
                seen = Some(HashSet::new());
                true
            }
            watcher::Event::InitDone => {
                let alive = seen.take().unwrap_or_default();
                forwarded.retain(|uid| alive.contains(uid));
                tx.send(Msg::Input(Input::Resync(alive))).is_ok() && tx.send(Msg::Synced).is_ok()
            }
            watcher::Event::Apply(task) | watcher::Event::InitApply(task) => {
                let Some(uid) = task.metadata.uid.clone() else {
                    continue;
                };
                if interesting(&task) {
                    if let Some(s) = seen.as_mut() {
                        s.insert(uid.clone());
                    }
                    forwarded.insert(uid);
                    tx.send(Msg::Input(Input::Upsert(Arc::new(trim(task)))))
                        .is_ok()
                } else if forwarded.remove(&uid) {
                    tx.send(Msg::Input(Input::Forget(uid))).is_ok()
                } else {
                    true
                }
            }
            watcher::Event::Delete(task) => match task.metadata.uid {
                Some(uid) if forwarded.remove(&uid) => {
                    tx.send(Msg::Input(Input::Forget(uid))).is_ok()
                }
                _ => true,
            },
        };
        if !sent {
            return;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use kelos_hooks_shared::api::TaskStatus;

    #[test]
    fn trims_and_filters() {
        let mut t = Task::new(
            "t",
            TaskSpec {
                agent_type: Some("codex".into()),
                ..Default::default()
            },
        );
        t.spec
            .rest
            .insert("prompt".into(), serde_json::json!("a very long prompt"));
        t.metadata.labels = Some(
            [
                (SPAWNER_LABEL.to_owned(), "s".to_owned()),
                ("other".to_owned(), "x".to_owned()),
            ]
            .into(),
        );
        t.metadata.managed_fields = Some(vec![Default::default()]);
        assert!(!interesting(&t), "not terminal");
        t.status = Some(TaskStatus {
            phase: Some("Failed".into()),
            ..Default::default()
        });
        t.status
            .as_mut()
            .unwrap()
            .rest
            .insert("podName".into(), serde_json::json!("p"));
        assert!(interesting(&t));
        let trimmed = trim(t.clone());
        assert!(trimmed.metadata.managed_fields.is_none());
        assert!(trimmed.spec.rest.is_empty());
        assert!(trimmed.status.as_ref().unwrap().rest.is_empty());
        assert_eq!(trimmed.metadata.labels.as_ref().unwrap().len(), 1);
        assert_eq!(trimmed.spec.agent_type.as_deref(), Some("codex"));
        t.metadata.annotations = Some([(REPORT_PHASE.to_owned(), "Failed".to_owned())].into());
        assert!(!interesting(&t), "already reported for this phase");
        let mut asked = t.clone();
        asked.metadata.annotations.as_mut().unwrap().extend([
            (REDELIVER.to_owned(), "*".to_owned()),
            (REDELIVER_BY.to_owned(), "alice".to_owned()),
        ]);
        assert!(interesting(&asked), "a redelivery request is work");
        assert_eq!(trim(asked).metadata.annotations.unwrap().len(), 3);
        t.status.as_mut().unwrap().phase = Some("Succeeded".into());
        assert!(interesting(&t), "a re-run to another phase is new work");
    }
}
