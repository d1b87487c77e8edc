//! Annotation and label keys, and the hook snapshot stored on each Task.

use crate::api::{Hook, OnCompletion};

/// Label kelos puts on every Task a TaskSpawner creates: the spawner's name (same namespace).
pub const SPAWNER_LABEL: &str = "kelos.dev/taskspawner";
/// The hooks in force for a Task, written by the mutating webhook at CREATE (JSON).
pub const ON_COMPLETION: &str = "kelos.dev/on-completion";
/// Terminal phase for which every matching hook reached a final state (written by the dispatcher).
pub const REPORT_PHASE: &str = "kelos.dev/webhook-report-phase";
/// Per-hook delivery state (JSON), written by the dispatcher.
pub const DELIVERIES: &str = "kelos.dev/webhook-deliveries";
/// Prefix of the annotations only the dispatcher may change.
pub const DELIVERY_PREFIX: &str = "kelos.dev/webhook-";

/// Serialises hooks for the [`ON_COMPLETION`] annotation: the same shape as `spec.onCompletion`.
pub fn encode_snapshot(hooks: &[Hook]) -> String {
    let snapshot = OnCompletion {
        hooks: hooks.to_vec(),
    };
    // A struct of strings and enums always serialises.
    serde_json::to_string(&snapshot).unwrap_or_default()
}

/// Parses an [`ON_COMPLETION`] annotation value.
pub fn decode_snapshot(value: &str) -> Result<OnCompletion, serde_json::Error> {
    serde_json::from_str(value)
}
