//! Every kelos example survives a trip through our typed API unchanged (with an `onCompletion`
//! block added to TaskSpawners), and the examples with hooks pass validation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use kelos_hooks_shared::api::{Task, TaskSpawner};
use kelos_hooks_shared::validation::{Context, validate_task_spawner};
use serde_json::{Value, json};

/// `/work/shared/kelos-examples`: the contract directory sits two levels above this crate
/// (`<root>/main/shared` is the crate, `<root>/shared` the contract).
fn examples_dir() -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        crate_dir.join("../../shared/kelos-examples"),
        crate_dir.join("../shared/kelos-examples"),
    ];
    for candidate in &candidates {
        if candidate.join("01-simple-task--task.yaml").is_file() || candidate.is_dir() {
            return candidate.canonicalize().unwrap();
        }
    }
    panic!(
        "kelos examples not found; looked in {candidates:?} (expected the contract dir next to the repo checkout)"
    );
}

/// Every document of every YAML file, with its origin.
fn documents() -> Vec<(String, Value)> {
    let dir = examples_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "expected the kelos examples in {}, found {}",
        dir.display(),
        files.len()
    );
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let values: Vec<Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        for (i, value) in values.into_iter().enumerate() {
            if !value.is_null() {
                docs.push((format!("{name}#{i}"), value));
            }
        }
    }
    docs
}

fn on_completion() -> Value {
    json!({
        "hooks": [
            {
                "name": "notify-team",
                "phases": ["Succeeded", "Failed"],
                "webhook": {
                    "url": "https://hooks.example.com/x",
                    "secretRef": {"name": "team-hook-headers"},
                    "signingSecretRef": {"name": "team-hook-signing", "key": "secret"},
                    "format": "Generic",
                },
            },
            {
                "name": "slack",
                "phases": ["Failed"],
                "webhook": {"url": "https://hooks.slack.com/services/T0/B0/X", "secretRef": {"name": "s"}, "format": "Slack"},
            },
            {
                "name": "events",
                "webhook": {"url": "https://events.example.com:8443/in", "signingSecretRef": {"name": "e", "key": "k"}, "format": "CloudEvents"},
            },
        ]
    })
}

#[test]
fn every_example_round_trips_through_the_typed_api() {
    let mut spawners = 0;
    let mut tasks = 0;
    for (origin, mut doc) in documents() {
        let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
        let back = match kind.as_str() {
            "TaskSpawner" => {
                spawners += 1;
                doc["spec"]["onCompletion"] = on_completion();
                let typed: TaskSpawner =
                    serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{origin}: {e}"));
                assert_eq!(typed.hooks().len(), 3, "{origin}");
                assert!(
                    !typed.spec.rest.is_empty(),
                    "{origin}: kelos fields kept in rest"
                );
                serde_json::to_value(&typed).unwrap()
            }
            "Task" => {
                tasks += 1;
                let typed: Task =
                    serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{origin}: {e}"));
                serde_json::to_value(&typed).unwrap()
            }
            // Secrets, Workspaces and other kinds in the same files are not ours.
            _ => continue,
        };
        assert_eq!(
            back, doc,
            "{origin}: the typed round trip changed the object"
        );
    }
    assert!(spawners >= 5, "found only {spawners} TaskSpawners");
    assert!(tasks >= 3, "found only {tasks} Tasks");
}

#[test]
fn every_example_with_hooks_passes_validation() {
    let ctx = Context::default();
    let mut checked = 0;
    for (origin, mut doc) in documents() {
        if doc["kind"] != "TaskSpawner" {
            continue;
        }
        let before = validate_task_spawner(&doc, &ctx);
        assert_eq!(before.errors, [], "{origin} without hooks");
        doc["spec"]["onCompletion"] = on_completion();
        let report = validate_task_spawner(&doc, &ctx);
        assert!(report.is_valid(), "{origin}: {}", report.error_summary());
        assert_eq!(report.warnings, Vec::<String>::new(), "{origin}");
        checked += 1;
    }
    assert!(checked >= 5);
}

/// A round trip that also edits our block leaves kelos's fields alone (read-modify-write).
#[test]
fn editing_hooks_preserves_kelos_fields() {
    for (origin, mut doc) in documents() {
        if doc["kind"] != "TaskSpawner" {
            continue;
        }
        doc["spec"]["onCompletion"] = on_completion();
        let mut typed: TaskSpawner = serde_json::from_value(doc.clone()).unwrap();
        typed.spec.on_completion.as_mut().unwrap().hooks.truncate(1);
        let back = serde_json::to_value(&typed).unwrap();
        let mut expected = doc.clone();
        expected["spec"]["onCompletion"]["hooks"]
            .as_array_mut()
            .unwrap()
            .truncate(1);
        assert_eq!(back, expected, "{origin}");
    }
}
