//! CloudEvents 1.0, structured mode, carrying the Generic object as `data`.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::generic::{generic, rfc3339};
use super::{JSON, cloud_event_type};
use crate::api::{Hook, Phase, Task};

/// A CloudEvents 1.0 structured-mode event carrying the Generic object as `data`.
pub fn cloud_event(
    task: &Task,
    hook: &Hook,
    phase: Phase,
    id: &str,
    timestamp: DateTime<Utc>,
) -> Value {
    let ns = task.metadata.namespace.as_deref().unwrap_or_default();
    let name = task.metadata.name.as_deref().unwrap_or_default();
    json!({
        "specversion": "1.0",
        "id": id,
        "source": format!("/apis/kelos.dev/v1alpha2/namespaces/{ns}/tasks/{name}"),
        "type": cloud_event_type(phase),
        "subject": name,
        "time": rfc3339(timestamp),
        "datacontenttype": JSON,
        "data": generic(task, hook, phase, id, timestamp),
    })
}
