//! `POST /validate/taskspawners`: every `spec.onCompletion` rule, all violations in one denial.
//! An UPDATE ratchets (see [`super::ratchet`]): unchanged hooks breaking a rule tightened since
//! they were stored come back as warnings.

use kelos_hooks_shared::ip::IpPolicy;
use kelos_hooks_shared::validation::{Context, Report, validate_on_completion_json};
use serde_json::Value;

use super::ratchet::{self, PATH};
use super::{CREATE, UPDATE};
use crate::review::{Decision, Request};

/// Judges a TaskSpawner CREATE/UPDATE; other operations are allowed.
pub fn decide(req: &Request<'_>, policy: &IpPolicy) -> Decision {
    if req.operation != CREATE && req.operation != UPDATE {
        return Decision::allow();
    }
    let Some(object) = req.object.as_ref() else {
        return Decision::deny(400, "the review carries no object to validate");
    };
    let ctx = Context { ip_policy: policy };
    let mut report = match object.spec.on_completion {
        Some(raw) => validate_on_completion_json(raw.get(), PATH, &ctx),
        None => Report::default(),
    };
    let stored = req
        .old_object
        .as_ref()
        .and_then(|old| old.spec.on_completion);
    if let (false, true, Some(new), Some(old)) = (
        report.is_valid(),
        req.operation == UPDATE,
        object.spec.on_completion,
        stored,
    ) {
        // Text that is not JSON already failed above and has nothing unchanged to keep.
        if let (Ok(new), Ok(old)) = (
            serde_json::from_str::<Value>(new.get()),
            serde_json::from_str::<Value>(old.get()),
        ) {
            report = ratchet::ratchet(report, &new, &old, &ctx);
        }
    }
    let name = object.metadata.display_name();
    if report.is_valid() {
        Decision::allow().with_warnings(report.warnings)
    } else {
        let message = format!("TaskSpawner {name}: {}", report.error_summary());
        Decision::deny(400, message).with_warnings(report.warnings)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::fixtures;
    use crate::review::parse;

    fn decide_on(body: &[u8]) -> Decision {
        decide(&parse(body).unwrap(), &IpPolicy::default())
    }

    #[test]
    fn valid_spawner_is_allowed() {
        let body = fixtures::spawner_review("CREATE", fixtures::valid_hooks());
        let d = decide_on(&body);
        assert!(d.allowed, "{d:?}");
        assert!(d.patch.is_none());
    }

    #[test]
    fn spawner_without_on_completion_is_allowed() {
        let body = fixtures::spawner_review("CREATE", serde_json::Value::Null);
        assert!(decide_on(&body).allowed);
    }

    #[test]
    fn every_violation_is_listed_with_its_path() {
        let hooks = serde_json::json!({"hooks": [
            {"name": "a", "webhook": {"url": "http://hooks.example.com/x"}},
            {"name": "Bad_Name", "phases": ["Running"], "webhook": {"url": "https://10.0.0.1/x"}},
        ]});
        let d = decide_on(&fixtures::spawner_review("CREATE", hooks));
        assert!(!d.allowed);
        let status = d.status.unwrap();
        assert_eq!(status.code, 400);
        for path in [
            "spec.onCompletion.hooks[0].webhook.url",
            "spec.onCompletion.hooks[1].name",
            "spec.onCompletion.hooks[1].phases[0]",
            "spec.onCompletion.hooks[1].webhook.url",
        ] {
            assert!(
                status.message.contains(path),
                "{path} missing in {}",
                status.message
            );
        }
        assert!(
            status.message.starts_with("TaskSpawner my-spawner: "),
            "{}",
            status.message
        );
    }

    #[test]
    fn allow_cidr_opens_a_blocked_range() {
        let hooks =
            serde_json::json!({"hooks": [{"name": "a", "webhook": {"url": "https://10.1.2.3/x"}}]});
        let body = fixtures::spawner_review("CREATE", hooks);
        assert!(!decide_on(&body).allowed);
        let policy = IpPolicy::from_cidrs(&["10.0.0.0/8"]).unwrap();
        assert!(decide(&parse(&body).unwrap(), &policy).allowed);
    }

    #[test]
    fn warnings_pass_through() {
        let hooks = serde_json::json!({"hooks": [
            {"name": "a", "webhook": {"url": "https://hooks.example.com/x?token=abc123"}}]});
        let d = decide_on(&fixtures::spawner_review("CREATE", hooks));
        assert!(d.allowed, "{d:?}");
        assert!(
            !d.warnings.is_empty(),
            "expected a warning for a token-looking query"
        );
        assert!(
            d.warnings[0].contains("spec.onCompletion.hooks[0].webhook.url"),
            "{:?}",
            d.warnings
        );
    }

    /// An UPDATE whose stored hooks now break a narrowed --allow-cidr passes with warnings; the
    /// same hooks on CREATE, or a changed hook, are refused.
    #[test]
    fn update_ratchets_unchanged_hooks() {
        let internal = serde_json::json!({"hooks": [
            {"name": "a", "webhook": {"url": "https://10.1.2.3/x"}}]});
        let stored = fixtures::spawner(internal.clone());
        let mut edited = stored.clone();
        edited["spec"]["maxConcurrency"] = serde_json::json!(5);
        let body = fixtures::review_json(
            "UPDATE",
            "TaskSpawner",
            edited.clone(),
            Some(stored.clone()),
            "alice",
        );
        let d = decide_on(&body);
        assert!(d.allowed, "{d:?}");
        let ratcheted: Vec<&String> = d
            .warnings
            .iter()
            .filter(|w| w.contains("unchanged since stored"))
            .collect();
        assert_eq!(ratcheted.len(), 1, "{:?}", d.warnings);
        assert!(
            ratcheted[0].contains("hooks[0].webhook.url"),
            "{ratcheted:?}"
        );
        assert!(!decide_on(&fixtures::spawner_review("CREATE", internal)).allowed);
        edited["spec"]["onCompletion"]["hooks"][0]["webhook"]["url"] =
            serde_json::json!("https://10.1.2.4/x");
        let body = fixtures::review_json("UPDATE", "TaskSpawner", edited, Some(stored), "alice");
        assert!(!decide_on(&body).allowed);
    }

    #[test]
    fn delete_is_allowed_without_looking() {
        let body = fixtures::spawner_review("DELETE", serde_json::json!({"hooks": "garbage"}));
        assert!(decide_on(&body).allowed);
    }
}
