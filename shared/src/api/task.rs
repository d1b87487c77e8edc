//! The kelos `Task`, typed only where kelos-hooks reads it.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Phase;

/// `Task.spec`: the fields a notification reports; everything else kept verbatim in `rest`.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "kelos.dev",
    version = "v1alpha2",
    kind = "Task",
    plural = "tasks",
    namespaced,
    status = "TaskStatus",
    schema = "derived"
)]
#[serde(rename_all = "camelCase")]
pub struct TaskSpec {
    /// Agent type (`claude-code`, `codex`, …).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub agent_type: Option<String>,
    /// Model override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// kelos' own fields (`prompt`, `credentials`, …), preserved untouched.
    #[serde(flatten)]
    #[schemars(skip)]
    pub rest: BTreeMap<String, Value>,
}

/// `Task.status` as written by the kelos controller.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskStatus {
    /// `Pending`, `Running`, `Succeeded`, `Failed`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Human-readable detail of the phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the agent started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// When the Task reached a terminal phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
    /// URLs and references the agent produced (branches, PRs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<String>>,
    /// Structured key-value results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<BTreeMap<String, String>>,
    /// Cost and token usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// kelos' other status fields (conditions, podName, …), preserved untouched.
    #[serde(flatten)]
    #[schemars(skip)]
    pub rest: BTreeMap<String, Value>,
}

/// `Task.status.usage`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Cost in USD; kelos stores it as int-or-string (a Quantity).
    #[serde(default, rename = "costUSD", skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<Value>,
    /// Input tokens consumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<i64>,
    /// Output tokens produced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<i64>,
}

impl Task {
    /// The terminal phase, if the Task has reached one.
    pub fn terminal_phase(&self) -> Option<Phase> {
        self.status
            .as_ref()?
            .phase
            .as_deref()
            .and_then(Phase::from_status)
    }
}
