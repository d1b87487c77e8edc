//! The delivery id sent as `webhook-id` and as the Generic payload's `id`.

use kelos_hooks_shared::api::Phase;

/// `{task-uid}_{Phase}_{hook-name}`: stable across retries, restarts and leaders, so receivers can
/// deduplicate; no `.`, which the Standard Webhooks signed content uses as a separator.
pub fn webhook_id(task_uid: &str, phase: Phase, hook: &str) -> String {
    format!("{task_uid}_{phase}_{hook}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_is_stable_and_dot_free() {
        let id = webhook_id(
            "0b5c7e1a-1111-2222-3333-444455556666",
            Phase::Succeeded,
            "notify-team",
        );
        assert_eq!(
            id,
            "0b5c7e1a-1111-2222-3333-444455556666_Succeeded_notify-team"
        );
        assert!(!id.contains('.'));
        assert_ne!(
            id,
            webhook_id(
                "0b5c7e1a-1111-2222-3333-444455556666",
                Phase::Failed,
                "notify-team"
            )
        );
    }
}
