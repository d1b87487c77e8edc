//! kelos objects the tests create.

use kelos_hooks_shared::annotations::{ON_COMPLETION, SPAWNER_LABEL, encode_snapshot};
use kelos_hooks_shared::api::{Hook, Task, TaskSpec, Webhook};
use serde_json::json;

/// A webhook hook for every phase, no secrets, the default format.
pub fn hook(name: &str, url: String) -> Hook {
    Hook {
        name: name.into(),
        phases: None,
        webhook: Webhook {
            url,
            secret_ref: None,
            signing_secret_ref: None,
            format: None,
            pager_duty: None,
            template: None,
        },
    }
}

/// A claude-code Task (with `model` when given) carrying the snapshot of `hooks` and the spawner
/// label, when given.
pub fn task(
    name: &str,
    model: Option<&str>,
    hooks: Option<&[Hook]>,
    spawner: Option<&str>,
) -> Task {
    let mut task = Task::new(
        name,
        TaskSpec {
            agent_type: Some("claude-code".into()),
            model: model.map(Into::into),
            ..Default::default()
        },
    );
    task.spec
        .rest
        .insert("prompt".into(), json!("Fix the flaky test"));
    if let Some(h) = hooks {
        task.metadata.annotations = Some([(ON_COMPLETION.to_owned(), encode_snapshot(h))].into());
    }
    if let Some(s) = spawner {
        task.metadata.labels = Some([(SPAWNER_LABEL.to_owned(), s.to_owned())].into());
    }
    task
}
