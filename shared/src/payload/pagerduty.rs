//! PagerDuty Events API v2 (`tests/fixtures/formats/pagerduty-events-v2.schema.json`): a
//! `trigger` event whose `dedup_key` is the `webhook-id`, so retries, re-sends after a restart and
//! redeliveries update one alert instead of opening a second incident.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::facts::{Facts, truncate};
use super::generic::generic;
use crate::api::{Hook, Phase, Task};

/// PagerDuty's limit on `payload.summary` (characters).
pub const SUMMARY_MAX: usize = 1024;
/// PagerDuty's limit on `dedup_key` (characters); a `webhook-id` is far shorter.
pub const DEDUP_KEY_MAX: usize = 255;
/// Links attached to the alert (the Task's web outputs).
const LINKS_MAX: usize = 10;

/// `payload.severity`: a failed Task is an `error`; a success (sent only when asked) is `info`.
pub fn severity(phase: Phase) -> &'static str {
    match phase {
        Phase::Succeeded => "info",
        Phase::Failed => "error",
    }
}

/// The Events API v2 event for this delivery, routed with `routing_key`.
pub fn pager_duty(
    task: &Task,
    hook: &Hook,
    phase: Phase,
    id: &str,
    timestamp: DateTime<Utc>,
    routing_key: &str,
) -> Value {
    let g = generic(task, hook, phase, id, timestamp);
    let facts = Facts::of(&g, phase);
    let summary = match &facts.message {
        Some(m) => format!("{}: {m}", facts.headline()),
        None => facts.headline(),
    };
    let links: Vec<Value> = facts
        .web_outputs()
        .take(LINKS_MAX)
        .map(|href| json!({"href": href, "text": "Task output"}))
        .collect();
    let mut details = g["task"].clone();
    details["hook"] = json!(hook.name);
    details["webhookId"] = json!(id);
    let mut payload = json!({
        "summary": truncate(&summary, SUMMARY_MAX),
        "source": format!("{}/{}", facts.namespace, facts.name),
        "severity": severity(phase),
        "timestamp": g["timestamp"],
        "class": g["type"],
        "custom_details": details,
    });
    if let Some(spawner) = &facts.spawner {
        payload["group"] = json!(spawner);
    }
    if let Some(agent) = g["task"]["agentType"].as_str() {
        payload["component"] = json!(agent);
    }
    let mut event = json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": truncate(id, DEDUP_KEY_MAX),
        "client": "kelos-hooks",
        "payload": payload,
    });
    if !links.is_empty() {
        event["links"] = Value::Array(links);
    }
    event
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::api::Format;
    use crate::payload::tests::{fixture, hook, schema_errors, schema_errors_with, task, ts};
    use crate::payload::{JSON, build};

    const KEY: &str = "R0UT1NGKEY0000000000000000000000";

    #[test]
    fn the_event_matches_pagerdutys_published_schema() {
        let schema = fixture("pagerduty-events-v2.schema.json");
        // The schema is not vacuous: PagerDuty's own example passes, a keyless event does not.
        // (Its timestamp "2015-07-17T08:42:58.315+0000" is not RFC 3339, so formats are not
        // checked for the example; ours are.)
        let example = fixture("pagerduty-events-v2.example.json");
        assert_eq!(
            schema_errors_with(&schema, &example, false),
            Vec::<String>::new()
        );
        assert!(
            !schema_errors(&schema, &example).is_empty(),
            "formats are checked"
        );
        let mut keyless = example.clone();
        keyless.as_object_mut().unwrap().remove("routing_key");
        assert!(!schema_errors_with(&schema, &keyless, false).is_empty());
        let mut bad_severity = example.clone();
        bad_severity["payload"]["severity"] = json!("fatal");
        assert!(!schema_errors_with(&schema, &bad_severity, false).is_empty());

        for phase in Phase::ALL {
            let v = pager_duty(
                &task(),
                &hook(None),
                phase,
                "uid_Failed_notify-team",
                ts(),
                KEY,
            );
            assert_eq!(schema_errors(&schema, &v), Vec::<String>::new(), "{v}");
            // Every field the documented example sets, we set too (images aside: we have none).
            for key in [
                "routing_key",
                "event_action",
                "dedup_key",
                "client",
                "links",
                "payload",
            ] {
                assert!(v.get(key).is_some(), "{key} missing from {v}");
            }
            for key in [
                "summary",
                "timestamp",
                "severity",
                "source",
                "component",
                "group",
                "class",
                "custom_details",
            ] {
                assert!(
                    v["payload"].get(key).is_some(),
                    "payload.{key} missing from {v}"
                );
            }
        }
    }

    #[test]
    fn the_dedup_key_is_the_webhook_id_and_failed_is_an_error() {
        let v = pager_duty(
            &task(),
            &hook(None),
            Phase::Failed,
            "uid_Failed_h",
            ts(),
            KEY,
        );
        assert_eq!(v["dedup_key"], "uid_Failed_h");
        assert_eq!(v["event_action"], "trigger");
        assert_eq!(v["routing_key"], KEY);
        assert_eq!(v["payload"]["severity"], "error");
        assert_eq!(v["payload"]["source"], "team/fix-123");
        assert_eq!(v["payload"]["group"], "issues");
        assert_eq!(v["payload"]["class"], "kelos.task.failed");
        assert_eq!(
            v["payload"]["summary"],
            "kelos Task team/fix-123 failed: Opened <PR> & done"
        );
        assert_eq!(v["payload"]["custom_details"]["usage"]["costUSD"], "0.42");
        assert_eq!(v["payload"]["custom_details"]["webhookId"], "uid_Failed_h");
        assert_eq!(
            v["links"],
            json!([{"href": "https://github.com/o/r/pull/1", "text": "Task output"}])
        );
        let ok = pager_duty(&task(), &hook(None), Phase::Succeeded, "x", ts(), KEY);
        assert_eq!(ok["payload"]["severity"], "info");
    }

    #[test]
    fn long_messages_are_cut_to_pagerdutys_summary_limit() {
        let mut t = task();
        t.status.as_mut().unwrap().message = Some("x".repeat(5000));
        let v = pager_duty(&t, &hook(None), Phase::Failed, "id", ts(), KEY);
        let summary = v["payload"]["summary"].as_str().unwrap();
        assert_eq!(summary.chars().count(), SUMMARY_MAX);
        assert!(summary.ends_with('…'));
    }

    #[test]
    fn build_needs_the_routing_key() {
        let h = hook(Some(Format::PagerDuty));
        let err = build(&task(), &h, Phase::Failed, "id", ts(), None).unwrap_err();
        assert!(err.to_string().contains("routing key"), "{err}");
        let body = build(&task(), &h, Phase::Failed, "id", ts(), Some(" k \n")).unwrap();
        assert_eq!(body.content_type, JSON);
        let v: Value = serde_json::from_slice(&body.bytes).unwrap();
        assert_eq!(v["routing_key"], "k");
    }
}
