//! The kelos `Task`, typed only where kelos-hooks reads it, where kelos v1alpha2 keeps it
//! (`api/v1alpha2/task_types.go` upstream): the agent in `spec.worker`, the deprecated top-level
//! `spec.type`/`spec.model` still honoured, and `status.usage.costUSD` a Quantity.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Phase, Quantity};

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
    /// `spec.worker`: the agent's execution environment (kelos v1alpha2). kelos's schema, not
    /// ours: left out of the CRD we generate, where `spec` preserves unknown fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(skip)]
    pub worker: Option<Worker>,
    /// Agent type (`claude-code`, `codex`, …) — deprecated by kelos for `spec.worker.type`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub agent_type: Option<String>,
    /// Model override — deprecated by kelos for `spec.worker.model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// kelos' own fields (`prompt`, `credentials`, …), preserved untouched.
    #[serde(flatten)]
    #[schemars(skip)]
    pub rest: BTreeMap<String, Value>,
}

/// `Task.spec.worker`: typed where a notification reads it, everything else kept verbatim.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Worker {
    /// Agent type (`claude-code`, `codex`, …).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub agent_type: Option<String>,
    /// Model override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// kelos' other worker fields (`credentials`, `image`, `podOverrides`, …), preserved untouched.
    #[serde(flatten)]
    pub rest: BTreeMap<String, Value>,
}

fn non_empty(s: Option<&String>) -> Option<&str> {
    s.map(String::as_str).filter(|s| !s.is_empty())
}

impl TaskSpec {
    /// The agent type kelos runs: `spec.worker.type`, else the deprecated `spec.type` (as
    /// kelos's own `resolveTaskType`). `None` for a Task run by a WorkerPool, whose type lives in
    /// the pool.
    pub fn resolved_agent_type(&self) -> Option<&str> {
        non_empty(self.worker.as_ref().and_then(|w| w.agent_type.as_ref()))
            .or_else(|| non_empty(self.agent_type.as_ref()))
    }

    /// The model kelos passes to the agent: `spec.worker.model`, else the deprecated `spec.model`
    /// (as kelos's own `resolveTaskModel`).
    pub fn resolved_model(&self) -> Option<&str> {
        non_empty(self.worker.as_ref().and_then(|w| w.model.as_ref()))
            .or_else(|| non_empty(self.model.as_ref()))
    }
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
    /// Cost in USD: a Quantity, which kelos writes in canonical form (`"420m"` for 0.42).
    #[serde(default, rename = "costUSD", skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<Quantity>,
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
