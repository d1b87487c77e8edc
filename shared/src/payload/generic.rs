//! The `Generic` payload (documented by `docs/payload.schema.json`): kelos-hooks' own JSON object,
//! also the `data` of a CloudEvent and the variables of a `Template`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::event_type;
use crate::annotations::SPAWNER_LABEL;
use crate::api::{Hook, Phase, Quantity, Task};

pub(super) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn opt(s: Option<&String>) -> Value {
    s.map_or(Value::Null, |s| Value::String(s.clone()))
}

/// The Generic payload object (also the `data` of a CloudEvent).
pub fn generic(
    task: &Task,
    hook: &Hook,
    phase: Phase,
    id: &str,
    timestamp: DateTime<Utc>,
) -> Value {
    let meta = &task.metadata;
    let status = task.status.clone().unwrap_or_default();
    let usage = status.usage.clone().unwrap_or_default();
    // kelos writes costUSD as a canonical Quantity ("420m"): receivers get a decimal ("0.42").
    let cost = usage.cost_usd.as_ref().map(Quantity::to_decimal);
    let spawner = meta.labels.as_ref().and_then(|l| l.get(SPAWNER_LABEL));
    json!({
        "type": event_type(phase),
        "id": id,
        "hook": hook.name,
        "timestamp": rfc3339(timestamp),
        "task": {
            "name": meta.name.clone().unwrap_or_default(),
            "namespace": meta.namespace.clone().unwrap_or_default(),
            "uid": meta.uid.clone().unwrap_or_default(),
            "spawner": opt(spawner),
            "phase": phase.as_str(),
            "message": opt(status.message.as_ref()),
            "agentType": task.spec.resolved_agent_type(),
            "model": task.spec.resolved_model(),
            "startTime": opt(status.start_time.as_ref()),
            "completionTime": opt(status.completion_time.as_ref()),
            "outputs": status.outputs.unwrap_or_default(),
            "results": status.results.unwrap_or_default(),
            "usage": {
                "costUSD": cost,
                "inputTokens": usage.input_tokens,
                "outputTokens": usage.output_tokens,
            },
        },
    })
}
