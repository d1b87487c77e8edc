//! Test notifications: one sample notification to each hook of a TaskSpawner, asked for with the
//! spawner annotation `kelos.dev/webhook-test` or `kelos-hooks-dispatcher send-test`. The request
//! goes through the same path as a delivery (URL rules, SSRF-safe resolution, Secret headers,
//! Standard Webhooks signing, the hook's format); only the Task is a clearly fake sample and the
//! `type` is `kelos.task.test`. One attempt, no retries: the answer is the point.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::ObjectReference;
use kelos_hooks_shared::annotations::SPAWNER_LABEL;
use kelos_hooks_shared::api::{Hook, Phase, Task, TaskSpec, TaskStatus};
use kelos_hooks_shared::payload::{self, Body};
use kelos_hooks_shared::redact::scheme_and_host;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::cluster::events::reason;
use crate::machine::outcome::{Class, Outcome};
use crate::machine::{Attempt, Note, SpawnerTest};
use crate::send::Sender;

/// The Generic payload's `type` of a test notification.
pub const TEST_TYPE: &str = "kelos.task.test";
/// The CloudEvents `type` of a test notification.
pub const CLOUD_TEST_TYPE: &str = "dev.kelos.task.test";
/// Name of the sample Task.
pub const SAMPLE_TASK: &str = "kelos-hooks-test";
/// UID of the sample Task: all zeros, so no receiver mistakes it for a real one.
pub const SAMPLE_UID: &str = "00000000-0000-0000-0000-000000000000";
/// Most characters of the receiver's answer quoted in an Event.
const EXCERPT: usize = 200;

/// The sample Task of a test notification from `spawner` in `namespace`.
pub fn sample_task(namespace: &str, spawner: &str, now: DateTime<Utc>) -> Task {
    let mut task = Task::new(SAMPLE_TASK, TaskSpec::default());
    task.metadata.namespace = Some(namespace.to_owned());
    task.metadata.uid = Some(SAMPLE_UID.to_owned());
    task.metadata.labels = Some([(SPAWNER_LABEL.to_owned(), spawner.to_owned())].into());
    let at = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    task.status = Some(TaskStatus {
        phase: Some(Phase::Succeeded.as_str().to_owned()),
        message: Some(
            "Test notification from kelos-hooks (kelos.dev/webhook-test): no Task ran".into(),
        ),
        start_time: Some(at.clone()),
        completion_time: Some(at),
        ..Default::default()
    });
    task
}

/// `webhook-id` of a test: the same for one request value (a retried request can be deduplicated),
/// different per value, and never a delivery's (`test_` prefix; no `.`).
pub fn webhook_id(namespace: &str, spawner: &str, value: &str, hook: &str) -> String {
    let digest = Sha256::digest(format!("{namespace}\0{spawner}\0{value}").as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("test_{hex}_{hook}")
}

/// Replaces the event types of a built body with the test types (whatever the format: every
/// `type` member holding a delivery type); a body that is not JSON is left as it is.
pub fn mark(body: Body) -> Body {
    let Ok(mut value) = serde_json::from_slice::<Value>(&body.bytes) else {
        return body;
    };
    retype(&mut value);
    Body {
        content_type: body.content_type,
        bytes: serde_json::to_vec(&value).unwrap_or(body.bytes),
    }
}

fn retype(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if k == "type"
                    && let Value::String(s) = child
                {
                    if s == payload::event_type(Phase::Succeeded) {
                        *s = TEST_TYPE.to_owned();
                    } else if s == payload::cloud_event_type(Phase::Succeeded) {
                        *s = CLOUD_TEST_TYPE.to_owned();
                    }
                } else {
                    retype(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(retype),
        _ => {}
    }
}

/// The attempt testing `hook` of the spawner.
pub fn attempt(test: &SpawnerTest, hook: &Hook, now: DateTime<Utc>) -> Attempt {
    let ns = test.spawner.namespace.as_deref().unwrap_or_default();
    let spawner = test.spawner.name.as_deref().unwrap_or_default();
    Attempt {
        uid: SAMPLE_UID.to_owned(),
        phase: Phase::Succeeded,
        task: Arc::new(sample_task(ns, spawner, now)),
        hook: hook.clone(),
        webhook_id: webhook_id(ns, spawner, &test.value, &hook.name),
        test: true,
    }
}

/// One hook's test result as a line: `hook a (https://h): HTTP 200; answer: ok`.
pub fn describe(hook: &Hook, outcome: Option<&Outcome>) -> (bool, String) {
    let url = scheme_and_host(&hook.webhook.url);
    let Some(o) = outcome else {
        return (
            false,
            format!("hook {} ({url}): not sent (shutting down)", hook.name),
        );
    };
    let status = o
        .status
        .map_or_else(|| "no answer".to_owned(), |s| format!("HTTP {s}"));
    let ok = o.class == Class::Success;
    let mut line = format!("hook {} ({url}): {status}", hook.name);
    if let Some(e) = o.error.as_ref().filter(|_| !ok)
        && (o.status.is_none() || !e.starts_with("HTTP"))
    {
        line.push_str(&format!(" ({e})"));
    }
    let excerpt: String = o.body_excerpt.trim().chars().take(EXCERPT).collect();
    if !excerpt.is_empty() {
        line.push_str(&format!("; answer: {excerpt}"));
    }
    for w in &o.warnings {
        line.push_str(&format!("; {w}"));
    }
    (ok, line)
}

/// The Event on the spawner for one hook's result.
pub fn note(test: &SpawnerTest, hook: &Hook, outcome: Option<&Outcome>) -> Note {
    let (ok, line) = describe(hook, outcome);
    let (reason, verb) = if ok {
        (reason::TEST_DELIVERED, "delivered")
    } else {
        (reason::TEST_FAILED, "failed")
    };
    Note {
        object: test.spawner.clone(),
        warning: !ok,
        reason,
        hook: hook.name.clone(),
        message: format!("test notification {verb}: {line}"),
    }
}

/// The Event when the spawner has no hooks to test.
pub fn no_hooks(spawner: &ObjectReference) -> Note {
    Note {
        object: spawner.clone(),
        warning: true,
        reason: reason::TEST_FAILED,
        hook: String::new(),
        message: "test notification not sent: the TaskSpawner has no spec.onCompletion hooks"
            .into(),
    }
}

/// Sends the test to every hook of the spawner (or only `only`), at once; each hook with its
/// outcome (`None`: shutdown came first).
pub async fn send_all(
    sender: &Sender,
    test: &SpawnerTest,
    now: DateTime<Utc>,
) -> Vec<(Hook, Option<Outcome>)> {
    let sends = test.hooks.iter().map(|hook| async move {
        let a = attempt(test, hook, now);
        (hook.clone(), sender.send(&a).await)
    });
    futures::future::join_all(sends).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use kelos_hooks_shared::api::{Format, Webhook};

    fn hook(format: Option<Format>) -> Hook {
        Hook {
            name: "team".into(),
            phases: Some(vec![Phase::Failed]),
            webhook: Webhook::new("https://hooks.example.com/x?token=s3cret", format),
        }
    }

    fn test() -> SpawnerTest {
        SpawnerTest {
            spawner: crate::machine::health::spawner_ref("team-ns", "issues"),
            value: "1".into(),
            hooks: vec![hook(None)],
        }
    }

    #[test]
    fn every_format_gets_the_test_type_and_a_fake_task() {
        let now = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        for format in [None, Some(Format::CloudEvents), Some(Format::Slack)] {
            let a = attempt(&test(), &hook(format), now);
            assert!(a.test && a.webhook_id.starts_with("test_") && !a.webhook_id.contains('.'));
            let body =
                mark(payload::build(&a.task, &a.hook, a.phase, &a.webhook_id, now, None).unwrap());
            let v: Value = serde_json::from_slice(&body.bytes).unwrap();
            let text = v.to_string();
            assert!(!text.contains("kelos.task.succeeded"), "{text}");
            match format {
                None => {
                    assert_eq!(v["type"], TEST_TYPE);
                    assert_eq!(v["id"], a.webhook_id.as_str());
                    assert_eq!(v["task"]["uid"], SAMPLE_UID);
                    assert_eq!(v["task"]["spawner"], "issues");
                    assert_eq!(v["task"]["namespace"], "team-ns");
                }
                Some(Format::CloudEvents) => {
                    assert_eq!(v["type"], CLOUD_TEST_TYPE);
                    assert_eq!(v["data"]["type"], TEST_TYPE);
                }
                _ => assert!(text.contains(SAMPLE_TASK), "{text}"),
            }
        }
    }

    #[test]
    fn ids_are_stable_per_value_and_differ_between_values() {
        let a = webhook_id("n", "s", "1", "h");
        assert_eq!(a, webhook_id("n", "s", "1", "h"));
        assert_ne!(a, webhook_id("n", "s", "2", "h"));
        assert_ne!(a, webhook_id("n", "s2", "1", "h"));
    }

    #[test]
    fn results_read_as_events_without_secrets() {
        let ok = Outcome::answered(200, None, "thanks".into(), std::time::Duration::ZERO);
        let n = note(&test(), &hook(None), Some(&ok));
        assert_eq!((n.reason, n.warning), (reason::TEST_DELIVERED, false));
        assert!(n.message.contains("HTTP 200") && n.message.contains("thanks"));
        assert!(!n.message.contains("s3cret"), "{}", n.message);
        let bad = Outcome::answered(503, None, String::new(), std::time::Duration::ZERO);
        let n = note(&test(), &hook(None), Some(&bad));
        assert_eq!((n.reason, n.warning), (reason::TEST_FAILED, true));
        assert!(n.message.contains("HTTP 503"), "{}", n.message);
        let down = Outcome::unreachable("connection failed: refused".into(), Default::default());
        let (ok, line) = describe(&hook(None), Some(&down));
        assert!(
            !ok && line.contains("no answer (connection failed: refused)"),
            "{line}"
        );
    }
}
