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
/// On a Task: hooks to deliver again (`name,name` or `*`), set by a user RBAC allows (verb
/// `redeliver` on `tasks.kelos.dev`); the dispatcher acts on it and removes it.
pub const REDELIVER: &str = "kelos.dev/webhook-redeliver";
/// On a Task: who set [`REDELIVER`], stamped by the admission server from the request's
/// `userInfo` (the dispatcher cannot see who wrote an annotation); removed with it.
pub const REDELIVER_BY: &str = "kelos.dev/webhook-redeliver-by";
/// On a TaskSpawner: a new value sends one test notification to each of its hooks (once per
/// value; the dispatcher records answered values on a Lease of its own).
pub const TEST: &str = "kelos.dev/webhook-test";

/// The hooks a [`REDELIVER`] value names: `All` for `*`, else the names, trimmed, without
/// empties or duplicates, in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Redeliver {
    /// `*`: every hook that fires on the Task's phase.
    All,
    /// These hooks.
    Hooks(Vec<String>),
}

impl Redeliver {
    /// Parses a [`REDELIVER`] value.
    pub fn parse(value: &str) -> Redeliver {
        let mut names: Vec<String> = Vec::new();
        for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "*" {
                return Redeliver::All;
            }
            if !names.iter().any(|n| n == name) {
                names.push(name.to_owned());
            }
        }
        Redeliver::Hooks(names)
    }

    /// Whether `hook` is asked for.
    pub fn names(&self, hook: &str) -> bool {
        match self {
            Redeliver::All => true,
            Redeliver::Hooks(h) => h.iter().any(|n| n == hook),
        }
    }
}

/// Serialises hooks for the [`ON_COMPLETION`] annotation: the same shape as `spec.onCompletion`.
pub fn encode_snapshot(hooks: &[Hook]) -> String {
    let snapshot = OnCompletion {
        hooks: hooks.to_vec(),
    };
    // A struct of strings and enums always serialises.
    serde_json::to_string(&snapshot).unwrap_or_default()
}

/// Parses an [`ON_COMPLETION`] annotation value. Read as a JSON value first, so a key written
/// twice keeps its last value, as the rules (`validation::validate_snapshot`) and the API server
/// read it; typed reading would refuse the first one (found by fuzzing,
/// `fuzz/regressions/snapshot/`).
pub fn decode_snapshot(value: &str) -> Result<OnCompletion, serde_json::Error> {
    serde_json::from_value(serde_json::from_str(value)?)
}

/// Whether an [`ON_COMPLETION`] value is the snapshot a kelos build with its own onCompletion
/// reporter writes (kelos-spawner stamps a JSON list of hooks; kelos-hooks writes an object with
/// `hooks`). kelos's reporter delivers those Tasks, so kelos-hooks must not.
pub fn is_kelos_reporter_snapshot(value: &str) -> bool {
    serde_json::from_str::<Vec<Hook>>(value).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kelos_reporter_snapshots_are_told_apart_from_ours() {
        // What kelos-spawner of kelos's pull request #1240 writes: json.Marshal(spec.onCompletion.hooks).
        let kelos = r#"[{"name":"notify","phases":["Succeeded"],"webhook":{"url":"https://h.example.com/x","secretRef":{"name":"s"}}}]"#;
        assert!(is_kelos_reporter_snapshot(kelos));
        assert!(is_kelos_reporter_snapshot("[]"));
        let ours = r#"{"hooks":[{"name":"notify","webhook":{"url":"https://h.example.com/x"}}]}"#;
        assert!(!is_kelos_reporter_snapshot(ours));
        assert!(decode_snapshot(ours).is_ok() && decode_snapshot(kelos).is_err());
        assert!(!is_kelos_reporter_snapshot("[1, 2]") && !is_kelos_reporter_snapshot("not json"));
    }

    #[test]
    fn redeliver_values() {
        assert_eq!(Redeliver::parse("*"), Redeliver::All);
        assert_eq!(Redeliver::parse("a, *"), Redeliver::All);
        let r = Redeliver::parse(" a,b,,a ");
        assert_eq!(r, Redeliver::Hooks(vec!["a".into(), "b".into()]));
        assert!(r.names("b") && !r.names("c"));
        assert_eq!(Redeliver::parse(" , "), Redeliver::Hooks(vec![]));
    }

    #[test]
    fn a_key_written_twice_keeps_its_last_value() {
        let twice = r#"{"hooks":[{"name":"a","phases":"x","phases":["Failed"],"webhook":{"url":"https://h.example.com/x"}}]}"#;
        let decoded = decode_snapshot(twice).map_err(|e| e.to_string());
        let phases = decoded.map(|oc| oc.hooks.first().and_then(|h| h.phases.clone()));
        assert_eq!(phases, Ok(Some(vec![crate::api::Phase::Failed])));
    }
}
