//! `POST /validate/taskspawners`: every `spec.onCompletion` rule, all violations in one denial.

use kelos_hooks_shared::ip::IpPolicy;
use kelos_hooks_shared::validation::{Context, Report, validate_on_completion_json};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{CREATE, UPDATE};
use crate::review::{Decision, Request};

/// The part of a TaskSpawner's `spec` this server judges; kelos's own fields are skipped.
#[derive(Deserialize)]
#[serde(expecting = "an object (a TaskSpawner spec)")]
struct SpawnerSpec<'a> {
    /// Kept as written until validated: the rules walk the JSON as the user wrote it.
    #[serde(rename = "onCompletion", borrow, default)]
    on_completion: Option<&'a RawValue>,
}

/// Judges a TaskSpawner CREATE/UPDATE; other operations are allowed.
pub fn decide(req: &Request<'_>, policy: &IpPolicy) -> Decision {
    if req.operation != CREATE && req.operation != UPDATE {
        return Decision::allow();
    }
    let Some(object) = req.object.as_ref() else {
        return Decision::deny(400, "the review carries no object to validate");
    };
    let name = object.metadata.display_name();
    // `null` reads as no spec. The API server checks the CRD schema (spec: object) before any
    // validating webhook, so the error case is a hand-made review.
    let spec = match object
        .spec
        .map(|raw| serde_json::from_str::<Option<SpawnerSpec<'_>>>(raw.get()))
    {
        None => None,
        Some(Ok(spec)) => spec,
        Some(Err(e)) => return Decision::deny(400, format!("TaskSpawner {name}: spec: {e}")),
    };
    let report = match spec.and_then(|s| s.on_completion) {
        Some(raw) => validate_on_completion_json(
            raw.get(),
            "spec.onCompletion",
            &Context { ip_policy: policy },
        ),
        None => Report::default(),
    };
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

    #[test]
    fn non_object_spec_is_denied() {
        let body = fixtures::review_json(
            "CREATE",
            "TaskSpawner",
            serde_json::json!({"metadata": {"name": "x"}, "spec": 5}),
            None,
            "u",
        );
        let d = decide_on(&body);
        assert!(!d.allowed);
        let message = d.status.unwrap().message;
        assert!(
            message
                .starts_with("TaskSpawner x: spec: invalid type: integer `5`, expected an object"),
            "{message}"
        );
    }
}
