//! `POST /validate/taskspawners`: every `spec.onCompletion` rule, all violations in one denial.

use kelos_hooks_shared::ip::IpPolicy;
use kelos_hooks_shared::validation::{Context, Report, validate_on_completion_json};

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
    let report = match object.spec.on_completion {
        Some(raw) => validate_on_completion_json(
            raw.get(),
            "spec.onCompletion",
            &Context { ip_policy: policy },
        ),
        None => Report::default(),
    };
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
        let d = decide_on(&fixtures::spawner_review("UPDATE", hooks));
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

    #[test]
    fn delete_is_allowed_without_looking() {
        let body = fixtures::spawner_review("DELETE", serde_json::json!({"hooks": "garbage"}));
        assert!(decide_on(&body).allowed);
    }
}
