//! Notification bodies, one module per `format`: `Generic` (documented by
//! `docs/payload.schema.json`), CloudEvents 1.0 structured mode, Slack, PagerDuty Events API v2,
//! Microsoft Teams (Adaptive Card), Discord (embed) and user templates. Pure functions of the Task,
//! the hook, the phase, the delivery id and a timestamp, so a retry sends the same body.

mod cloudevents;
mod discord;
mod facts;
mod generic;
mod msteams;
mod pagerduty;
mod slack;
pub mod template;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;

pub use cloudevents::cloud_event;
pub use discord::discord;
pub use generic::generic;
pub use msteams::ms_teams;
pub use pagerduty::pager_duty;
pub use slack::slack;

use crate::annotations::SPAWNER_LABEL;
use crate::api::{Format, Hook, Phase, Task, TaskSpec, TaskStatus, Webhook};
use crate::error::{Error, Result};

/// `Content-Type` of the Generic and Slack formats.
pub const JSON: &str = "application/json";
/// `Content-Type` of a structured-mode CloudEvent.
pub const CLOUDEVENTS_JSON: &str = "application/cloudevents+json";

/// A serialised request body and its content type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Body {
    /// Value of the `Content-Type` header.
    pub content_type: String,
    /// The bytes to send (and sign).
    pub bytes: Vec<u8>,
}

/// The Generic payload's `type`: `kelos.task.succeeded` | `kelos.task.failed`.
pub fn event_type(phase: Phase) -> &'static str {
    match phase {
        Phase::Succeeded => "kelos.task.succeeded",
        Phase::Failed => "kelos.task.failed",
    }
}

/// The CloudEvents `type`: `dev.kelos.task.succeeded` | `dev.kelos.task.failed`.
pub fn cloud_event_type(phase: Phase) -> &'static str {
    match phase {
        Phase::Succeeded => "dev.kelos.task.succeeded",
        Phase::Failed => "dev.kelos.task.failed",
    }
}

/// The name of a format, as users write it.
pub fn format_name(format: Format) -> &'static str {
    match format {
        Format::Generic => "Generic",
        Format::CloudEvents => "CloudEvents",
        Format::Slack => "Slack",
        Format::PagerDuty => "PagerDuty",
        Format::MsTeams => "MSTeams",
        Format::Discord => "Discord",
        Format::Template => "Template",
    }
}

/// The body for the hook's format. `routing_key` is the PagerDuty routing key read from the
/// hook's Secret (unused by other formats). An error means nothing can be sent for this Task: a
/// template that fails or renders invalid JSON, or a PagerDuty hook without its key.
pub fn build(
    task: &Task,
    hook: &Hook,
    phase: Phase,
    id: &str,
    timestamp: DateTime<Utc>,
    routing_key: Option<&str>,
) -> Result<Body> {
    let format = hook.webhook.format.unwrap_or_default();
    let fail = |reason: String| Error::Payload {
        format: format_name(format),
        reason,
    };
    let (content_type, value) = match format {
        Format::Generic => (JSON, generic(task, hook, phase, id, timestamp)),
        Format::CloudEvents => (
            CLOUDEVENTS_JSON,
            cloud_event(task, hook, phase, id, timestamp),
        ),
        Format::Slack => (JSON, slack(task, hook, phase, id, timestamp)),
        Format::MsTeams => (JSON, ms_teams(task, hook, phase, id, timestamp)),
        Format::Discord => (JSON, discord(task, hook, phase, id, timestamp)),
        Format::PagerDuty => {
            let key = routing_key
                .filter(|k| !k.trim().is_empty())
                .ok_or_else(|| fail("no routing key (pagerDuty.routingKeySecretRef)".into()))?;
            (
                JSON,
                pager_duty(task, hook, phase, id, timestamp, key.trim()),
            )
        }
        Format::Template => {
            let options = hook
                .webhook
                .template
                .as_ref()
                .ok_or_else(|| fail("no template (webhook.template.body)".into()))?;
            let content_type = options.content_type.as_deref().unwrap_or(JSON);
            let vars = generic(task, hook, phase, id, timestamp);
            let bytes = template::render(&options.body, &vars, content_type).map_err(fail)?;
            return Ok(Body {
                content_type: content_type.to_owned(),
                bytes,
            });
        }
    };
    let bytes = serde_json::to_vec(&value).map_err(|e| fail(e.to_string()))?;
    Ok(Body {
        content_type: content_type.to_owned(),
        bytes,
    })
}

/// Generic payloads of made-up Tasks, one per phase, that a template must render for at apply
/// time. The message holds quotes, a backslash and a line break, so a template that pastes a
/// string into JSON without `tojson` is caught before any real Task ends.
pub fn template_samples() -> Vec<Value> {
    let hook = Hook {
        name: "sample-hook".into(),
        phases: None,
        webhook: Webhook::new("https://hooks.example.com/x", Some(Format::Template)),
    };
    let mut task = Task::new(
        "sample-task",
        TaskSpec {
            agent_type: Some("claude-code".into()),
            model: Some("opus".into()),
            ..Default::default()
        },
    );
    task.metadata.namespace = Some("default".into());
    task.metadata.uid = Some("00000000-0000-0000-0000-000000000000".into());
    task.metadata.labels = Some([(SPAWNER_LABEL.to_owned(), "sample-spawner".to_owned())].into());
    task.status = Some(TaskStatus {
        message: Some("Said \"done\" \\ then\nleft".into()),
        start_time: Some("2026-01-01T10:00:00Z".into()),
        completion_time: Some("2026-01-01T10:05:00Z".into()),
        outputs: Some(vec!["https://github.com/o/r/pull/1".into()]),
        results: Some([("pr".to_owned(), "1".to_owned())].into()),
        ..Default::default()
    });
    let at = Utc
        .with_ymd_and_hms(2026, 1, 1, 10, 5, 0)
        .single()
        .unwrap_or_default();
    Phase::ALL
        .iter()
        .map(|&phase| {
            generic(
                &task,
                &hook,
                phase,
                &format!("00000000-0000-0000-0000-000000000000_{phase}_{}", hook.name),
                at,
            )
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::api::{Quantity, TaskSpec, TaskStatus, Usage, Webhook};
    use serde_json::json;

    /// [`build`] for a format that needs no routing key.
    fn built(task: &Task, hook: &Hook, phase: Phase, id: &str, at: DateTime<Utc>) -> Body {
        build(task, hook, phase, id, at, None).unwrap()
    }

    pub(super) fn task() -> Task {
        let mut task = Task::new(
            "fix-123",
            TaskSpec {
                agent_type: Some("claude-code".into()),
                model: Some("opus".into()),
                ..Default::default()
            },
        );
        task.metadata.namespace = Some("team".into());
        task.metadata.uid = Some("0b5c7e1a-uid".into());
        task.metadata.labels = Some([(SPAWNER_LABEL.to_owned(), "issues".to_owned())].into());
        task.status = Some(TaskStatus {
            phase: Some("Succeeded".into()),
            message: Some("Opened <PR> & done".into()),
            start_time: Some("2026-01-01T10:00:00Z".into()),
            completion_time: Some("2026-01-01T10:05:00Z".into()),
            outputs: Some(vec![
                "https://github.com/o/r/pull/1".into(),
                "branch: fix-123".into(),
            ]),
            results: Some([("pr".to_owned(), "1".to_owned())].into()),
            usage: Some(Usage {
                cost_usd: Some(Quantity::Text("420m".into())),
                input_tokens: Some(1200),
                output_tokens: Some(300),
            }),
            ..Default::default()
        });
        task
    }

    pub(super) fn hook(format: Option<Format>) -> Hook {
        Hook {
            name: "notify-team".into(),
            phases: None,
            webhook: Webhook {
                url: "https://hooks.example.com/x".into(),
                secret_ref: None,
                signing_secret_ref: None,
                format,
                pager_duty: None,
                template: None,
            },
        }
    }

    /// A file of `tests/fixtures/formats/` (the receivers' documented schemas and examples).
    pub(super) fn fixture(name: &str) -> Value {
        let path = format!(
            "{}/../tests/fixtures/formats/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// What `schema` (a JSON Schema, draft from its `$schema`) finds wrong with `v`.
    pub(super) fn schema_errors(schema: &Value, v: &Value) -> Vec<String> {
        schema_errors_with(schema, v, true)
    }

    /// [`schema_errors`], `formats` saying whether `format` (date-time, uri…) is checked too.
    pub(super) fn schema_errors_with(schema: &Value, v: &Value, formats: bool) -> Vec<String> {
        let validator = jsonschema::options()
            .should_validate_formats(formats)
            .build(schema)
            .unwrap();
        validator
            .iter_errors(v)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect()
    }

    pub(super) fn ts() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 10, 5, 0).unwrap()
    }

    #[test]
    fn generic_shape() {
        let body = built(
            &task(),
            &hook(None),
            Phase::Succeeded,
            "uid_Succeeded_notify-team",
            ts(),
        );
        assert_eq!(body.content_type, JSON);
        let v: Value = serde_json::from_slice(&body.bytes).unwrap();
        assert_eq!(v["type"], "kelos.task.succeeded");
        assert_eq!(v["id"], "uid_Succeeded_notify-team");
        assert_eq!(v["hook"], "notify-team");
        assert_eq!(v["timestamp"], "2026-01-01T10:05:00Z");
        let t = &v["task"];
        assert_eq!(t["name"], "fix-123");
        assert_eq!(t["namespace"], "team");
        assert_eq!(t["uid"], "0b5c7e1a-uid");
        assert_eq!(t["spawner"], "issues");
        assert_eq!(t["phase"], "Succeeded");
        assert_eq!(t["agentType"], "claude-code");
        assert_eq!(t["model"], "opus");
        assert_eq!(t["outputs"][0], "https://github.com/o/r/pull/1");
        assert_eq!(t["results"]["pr"], "1");
        assert_eq!(
            t["usage"],
            json!({"costUSD": "0.42", "inputTokens": 1200, "outputTokens": 300})
        );
        let failed = generic(&task(), &hook(None), Phase::Failed, "x", ts());
        assert_eq!(failed["type"], "kelos.task.failed");
    }

    /// Tasks exactly as kelos 77d9ad8e left them on the API server in the e2e run
    /// (`KELOS_HOOKS_WRITE_KELOS_FIXTURES`, tests/tests/kelos.rs; managedFields dropped).
    fn kelos_task(json: &str) -> Task {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_real_kelos_task_shows_no_null_where_kelos_has_a_value() {
        let task = kelos_task(include_str!("../../testdata/kelos-task-succeeded.json"));
        assert_eq!(
            task.spec.agent_type, None,
            "kelos v1alpha2 keeps it in spec.worker"
        );
        let v = generic(&task, &hook(None), Phase::Succeeded, "id", ts());
        let t = &v["task"];
        assert_eq!(t["agentType"], "claude-code");
        assert_eq!(t["model"], "opus");
        assert_eq!(t["spawner"], "weekly");
        assert_eq!(t["message"], "Task completed successfully");
        assert_eq!(
            t["startTime"],
            task.status.as_ref().unwrap().start_time.as_deref().unwrap()
        );
        assert!(t["completionTime"].is_string(), "{t}");
        // kelos stores the agent's "cost-usd: 0.42" as the canonical quantity "420m".
        assert_eq!(
            task.status
                .as_ref()
                .unwrap()
                .usage
                .as_ref()
                .unwrap()
                .cost_usd,
            Some(Quantity::Text("420m".into()))
        );
        assert_eq!(
            t["usage"],
            json!({"costUSD": "0.42", "inputTokens": 1200, "outputTokens": 340})
        );
        assert_eq!(t["outputs"][0], "https://github.com/kelos-dev/demo/pull/7");
        assert_eq!(t["results"]["branch"], "deps-update");
        let nulls: Vec<&String> = t
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, v)| v.is_null())
            .map(|(k, _)| k)
            .collect();
        assert!(nulls.is_empty(), "null fields: {nulls:?} in {t}");

        let failed = kelos_task(include_str!("../../testdata/kelos-task-failed.json"));
        let v = generic(&failed, &hook(None), Phase::Failed, "id", ts());
        assert_eq!(v["task"]["message"], "Task failed");
        assert_eq!(v["task"]["agentType"], "claude-code");
        // The failed run printed no output-tokens: the one null kelos has no value for.
        assert_eq!(
            v["task"]["usage"],
            json!({"costUSD": "0.05", "inputTokens": 90, "outputTokens": null})
        );
        let schema: Value =
            serde_json::from_str(include_str!("../../../docs/payload.schema.json")).unwrap();
        schema_check::validate(&schema, &v, "$").unwrap();
    }

    #[test]
    fn the_worker_wins_over_the_deprecated_top_level_fields() {
        let mut task: Task = serde_json::from_value(json!({
            "apiVersion": "kelos.dev/v1alpha2", "kind": "Task", "metadata": {"name": "t"},
            "spec": {"type": "codex", "model": "old", "worker": {"type": "claude-code", "model": ""}},
        }))
        .unwrap();
        assert_eq!(task.spec.resolved_agent_type(), Some("claude-code"));
        assert_eq!(
            task.spec.resolved_model(),
            Some("old"),
            "an empty worker model is unset"
        );
        task.spec.worker = None;
        assert_eq!(task.spec.resolved_agent_type(), Some("codex"));
        let v = generic(&task, &hook(None), Phase::Failed, "x", ts());
        assert_eq!(v["task"]["agentType"], "codex");
        assert_eq!(v["task"]["model"], "old");
        // Unknown worker fields survive a round trip (the dispatcher never rewrites a spec, but
        // a typed read must not lose what kelos owns).
        let w: crate::api::Worker = serde_json::from_value(
            json!({"type": "codex", "image": "x", "podOverrides": {"env": []}}),
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(&w).unwrap(),
            json!({"type": "codex", "image": "x", "podOverrides": {"env": []}})
        );
    }

    #[test]
    fn generic_with_empty_status_has_nulls_not_panics() {
        let bare = Task::new("t", TaskSpec::default());
        let v = generic(&bare, &hook(None), Phase::Failed, "x", ts());
        assert_eq!(v["task"]["spawner"], Value::Null);
        assert_eq!(v["task"]["outputs"], json!([]));
        assert_eq!(v["task"]["usage"]["costUSD"], Value::Null);
    }

    #[test]
    fn cloud_event_shape() {
        let body = built(
            &task(),
            &hook(Some(Format::CloudEvents)),
            Phase::Failed,
            "id1",
            ts(),
        );
        assert_eq!(body.content_type, CLOUDEVENTS_JSON);
        let v: Value = serde_json::from_slice(&body.bytes).unwrap();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["id"], "id1");
        assert_eq!(v["type"], "dev.kelos.task.failed");
        assert_eq!(
            v["source"],
            "/apis/kelos.dev/v1alpha2/namespaces/team/tasks/fix-123"
        );
        assert_eq!(v["subject"], "fix-123");
        assert_eq!(v["datacontenttype"], "application/json");
        assert_eq!(v["time"], "2026-01-01T10:05:00Z");
        assert_eq!(
            v["data"],
            generic(&task(), &hook(None), Phase::Failed, "id1", ts())
        );
    }

    #[test]
    fn slack_shape() {
        let body = built(
            &task(),
            &hook(Some(Format::Slack)),
            Phase::Succeeded,
            "id1",
            ts(),
        );
        assert_eq!(body.content_type, JSON);
        let v: Value = serde_json::from_slice(&body.bytes).unwrap();
        assert_eq!(
            v["text"],
            ":white_check_mark: kelos Task team/fix-123 succeeded"
        );
        let blocks = v["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "header");
        let fields: Vec<&str> = blocks[1]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["text"].as_str().unwrap())
            .collect();
        assert!(fields.contains(&"*Spawner*\nissues"), "{fields:?}");
        assert!(
            fields.contains(&"*Agent*\nclaude-code (opus)"),
            "{fields:?}"
        );
        assert!(fields.contains(&"*Cost*\n$0.42"), "{fields:?}");
        let all = v.to_string();
        assert!(all.contains("Opened &lt;PR&gt; &amp; done"), "{all}");
        assert!(all.contains("<https://github.com/o/r/pull/1>"), "{all}");
        assert!(all.contains("`branch: fix-123`"), "{all}");
    }

    #[test]
    fn generic_validates_against_the_published_schema() {
        let schema: Value =
            serde_json::from_str(include_str!("../../../docs/payload.schema.json")).unwrap();
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        for phase in Phase::ALL {
            let full = generic(&task(), &hook(None), phase, "id", ts());
            schema_check::validate(&schema, &full, "$").unwrap();
            let bare = generic(
                &Task::new("t", TaskSpec::default()),
                &hook(None),
                phase,
                "id",
                ts(),
            );
            schema_check::validate(&schema, &bare, "$").unwrap();
        }
        // The checker is not vacuous: a missing field and a wrong type are caught.
        let mut bad = generic(&task(), &hook(None), Phase::Succeeded, "id", ts());
        bad["task"].as_object_mut().unwrap().remove("uid");
        assert!(schema_check::validate(&schema, &bad, "$").is_err());
        let mut bad = generic(&task(), &hook(None), Phase::Succeeded, "id", ts());
        bad["type"] = json!("kelos.task.running");
        assert!(schema_check::validate(&schema, &bad, "$").is_err());
        let mut bad = generic(&task(), &hook(None), Phase::Succeeded, "id", ts());
        bad["task"]["usage"]["inputTokens"] = json!("many");
        assert!(schema_check::validate(&schema, &bad, "$").is_err());
        let mut bad = generic(&task(), &hook(None), Phase::Succeeded, "id", ts());
        bad["extra"] = json!(1);
        assert!(schema_check::validate(&schema, &bad, "$").is_err());
    }

    /// A checker for the JSON Schema keywords the payload schema uses (`type`, `enum`, `const`,
    /// `required`, `properties`, `additionalProperties`, `items`, `minLength`); it errs on any
    /// other keyword so the schema cannot silently outgrow it.
    mod schema_check {
        use serde_json::Value;

        const KNOWN: &[&str] = &[
            "$schema",
            "$id",
            "title",
            "description",
            "type",
            "enum",
            "const",
            "required",
            "properties",
            "additionalProperties",
            "items",
            "minLength",
            "format",
            "examples",
        ];

        fn type_ok(t: &str, v: &Value) -> bool {
            match t {
                "object" => v.is_object(),
                "array" => v.is_array(),
                "string" => v.is_string(),
                "integer" => v.is_i64() || v.is_u64(),
                "number" => v.is_number(),
                "boolean" => v.is_boolean(),
                "null" => v.is_null(),
                _ => false,
            }
        }

        pub fn validate(schema: &Value, v: &Value, path: &str) -> Result<(), String> {
            let s = schema
                .as_object()
                .ok_or(format!("{path}: schema is not an object"))?;
            if let Some(k) = s.keys().find(|k| !KNOWN.contains(&k.as_str())) {
                return Err(format!("{path}: unsupported keyword {k}"));
            }
            match s.get("type") {
                Some(Value::String(t)) if !type_ok(t, v) => return Err(format!("{path}: not {t}")),
                Some(Value::Array(ts))
                    if !ts.iter().any(|t| t.as_str().is_some_and(|t| type_ok(t, v))) =>
                {
                    return Err(format!("{path}: not any of {ts:?}"));
                }
                _ => {}
            }
            if let Some(e) = s.get("enum").and_then(Value::as_array)
                && !e.contains(v)
            {
                return Err(format!("{path}: {v} not in enum"));
            }
            if let Some(c) = s.get("const")
                && c != v
            {
                return Err(format!("{path}: {v} != const {c}"));
            }
            if let (Some(min), Some(sv)) = (s.get("minLength").and_then(Value::as_u64), v.as_str())
                && (sv.chars().count() as u64) < min
            {
                return Err(format!("{path}: shorter than {min}"));
            }
            if let Some(obj) = v.as_object() {
                for r in s
                    .get("required")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let r = r.as_str().unwrap_or_default();
                    if !obj.contains_key(r) {
                        return Err(format!("{path}: missing {r}"));
                    }
                }
                let props = s.get("properties").and_then(Value::as_object);
                for (k, child) in obj {
                    match props.and_then(|p| p.get(k)) {
                        Some(ps) => validate(ps, child, &format!("{path}.{k}"))?,
                        None => match s.get("additionalProperties") {
                            Some(Value::Bool(false)) => {
                                return Err(format!("{path}: unexpected {k}"));
                            }
                            Some(ap @ Value::Object(_)) => {
                                validate(ap, child, &format!("{path}.{k}"))?
                            }
                            _ => {}
                        },
                    }
                }
            }
            if let (Some(items), Some(arr)) = (s.get("items"), v.as_array()) {
                for (i, child) in arr.iter().enumerate() {
                    validate(items, child, &format!("{path}[{i}]"))?;
                }
            }
            Ok(())
        }
    }
}
