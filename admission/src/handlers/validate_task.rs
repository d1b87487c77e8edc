//! `POST /validate/tasks`: the hook snapshot annotation is valid and immutable, and the delivery
//! annotations are changed only by the dispatcher — except a redelivery request
//! (`kelos.dev/webhook-redeliver` and its stamped requester), which a user holding the RBAC verb
//! `redeliver` on the Task may set (a SubjectAccessReview, [`crate::authorize`]).

use kelos_hooks_shared::annotations::{DELIVERY_PREFIX, ON_COMPLETION, REDELIVER, REDELIVER_BY};
use kelos_hooks_shared::ip::IpPolicy;
use kelos_hooks_shared::validation::{Context, validate_snapshot};

use super::{CREATE, UPDATE, spawner_of};
use crate::authorize::Authorizer;
use crate::cache::{SpawnerCache, SpawnerHooks};
use crate::patch::Snapshot;
use crate::review::{Decision, Metadata, Request};

/// Whether `key` is part of a redelivery request (a user RBAC allows may set it).
fn is_request(key: &str) -> bool {
    key == REDELIVER || key == REDELIVER_BY
}

/// Judges a Task CREATE/UPDATE, knowing the cached snapshot of the Task's spawner; asks
/// `authorizer` only for an UPDATE by someone else than the dispatcher that changes the request.
pub async fn handle(
    req: &Request<'_>,
    cache: &SpawnerCache,
    policy: &IpPolicy,
    dispatchers: &[String],
    authorizer: &Authorizer,
) -> Decision {
    // Cache only, never the API: a miss just means the annotation is validated in full.
    let cached = spawner_of(req).and_then(|(namespace, name)| cache.cached(namespace, name));
    let validated = match &cached {
        Some(SpawnerHooks::Snapshot(s)) => Some(s),
        _ => None,
    };
    let asks = req.operation == UPDATE
        && !dispatchers.iter().any(|d| d == req.username())
        && req.object.as_ref().is_some_and(|o| {
            changed_delivery_annotations(req.old_object.as_ref().map(|o| &o.metadata), &o.metadata)
                .iter()
                .any(|k| is_request(k))
        });
    let may_redeliver = if asks {
        authorizer.may_redeliver(req).await.unwrap_or_else(|e| {
            tracing::warn!(uid = %req.uid, error = %e, "could not check the redeliver verb; refusing");
            false
        })
    } else {
        false
    };
    decide(req, policy, dispatchers, validated, may_redeliver)
}

/// Judges a Task CREATE/UPDATE; other operations are allowed.
///
/// At CREATE an annotation equal to `validated` (the spawner's cached snapshot: the value the
/// mutating webhook just wrote, validated under the same policy when the spawner was cached) is
/// not validated again. On UPDATE the snapshot is only compared, not re-validated: it was
/// validated at creation, and a later rule change (e.g. a narrower `--allow-cidr`) must not make
/// existing Tasks un-updatable.
///
/// `may_redeliver`: the requester holds the verb `redeliver` on this Task (asked by [`handle`]).
pub fn decide(
    req: &Request<'_>,
    policy: &IpPolicy,
    dispatchers: &[String],
    validated: Option<&Snapshot>,
    may_redeliver: bool,
) -> Decision {
    let is_create = req.operation == CREATE;
    if !is_create && req.operation != UPDATE {
        return Decision::allow();
    }
    let Some(object) = req.object.as_ref() else {
        return Decision::deny(400, "the review carries no object to validate");
    };
    let new = &object.metadata;
    let old = req.old_object.as_ref().map(|o| &o.metadata);
    let name = new.display_name();

    if is_create {
        let snapshot = new.annotations.as_ref().and_then(|a| a.get(ON_COMPLETION));
        if let Some(snapshot) = snapshot.filter(|s| !validated.is_some_and(|v| v.matches(s))) {
            let report = validate_snapshot(snapshot, &Context { ip_policy: policy });
            if !report.is_valid() {
                return Decision::deny(400, format!("Task {name}: {}", report.error_summary()));
            }
        }
    } else {
        let before = old.and_then(|m| m.annotations.as_ref()?.get(ON_COMPLETION));
        let after = new.annotations.as_ref().and_then(|a| a.get(ON_COMPLETION));
        if before != after {
            let change = match (before, after) {
                (None, _) => "added",
                (_, None) => "removed",
                _ => "changed",
            };
            return Decision::deny(
                403,
                format!(
                    "Task {name}: metadata.annotations[{ON_COMPLETION}] is immutable (it was {change}): \
                     kelos-hooks records the TaskSpawner's hooks there when the Task is created; \
                     change the TaskSpawner's spec.onCompletion for future Tasks instead"
                ),
            );
        }
    }

    let user = req.username();
    if !dispatchers.iter().any(|d| d == user) {
        let (request, changed): (Vec<&str>, Vec<&str>) = changed_delivery_annotations(old, new)
            .into_iter()
            .partition(|k| is_request(k));
        if !request.is_empty() && (is_create || !may_redeliver) {
            return Decision::deny(
                403,
                format!(
                    "Task {name}: user {user:?} may not set metadata.annotations[{REDELIVER}]: it needs \
                     the verb \"redeliver\" on tasks.kelos.dev in namespace {} (the chart's ClusterRole \
                     <release>-kelos-hooks-redeliver, aggregated to edit and admin)",
                    req.namespace().unwrap_or_default()
                ),
            );
        }
        if new.annotation(REDELIVER).is_some()
            && !request.is_empty()
            && new.annotation(REDELIVER_BY) != Some(user)
        {
            return Decision::deny(
                403,
                format!(
                    "Task {name}: metadata.annotations[{REDELIVER_BY}] must be {user:?}: the kelos-hooks \
                     admission server stamps who asked for a redelivery (is it running? webhook \
                     stamp-task-redeliveries.hooks.kelos.dev)"
                ),
            );
        }
        if !changed.is_empty() {
            return Decision::deny(
                403,
                format!(
                    "Task {name}: {} may only be changed by the kelos-hooks dispatcher ({}); user {:?} may not",
                    changed
                        .iter()
                        .map(|k| format!("metadata.annotations[{k}]"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    dispatchers.join(", "),
                    user,
                ),
            );
        }
    }
    Decision::allow()
}

/// Keys under [`DELIVERY_PREFIX`] added, changed or removed between `old` and `new`, sorted.
pub fn changed_delivery_annotations<'m>(
    old: Option<&'m Metadata<'_>>,
    new: &'m Metadata<'_>,
) -> Vec<&'m str> {
    let delivery = |m: Option<&'m Metadata<'_>>| {
        m.and_then(|m| m.annotations.as_ref())
            .into_iter()
            .flat_map(|a| a.iter())
            .filter(|(k, _)| k.starts_with(DELIVERY_PREFIX))
            .map(|(k, v)| (&**k, &**v))
    };
    let mut changed: Vec<&str> = Vec::new();
    for (k, v) in delivery(Some(new)) {
        if old.and_then(|m| m.annotation(k)) != Some(v) {
            changed.push(k);
        }
    }
    for (k, _) in delivery(old) {
        if new.annotation(k).is_none() {
            changed.push(k);
        }
    }
    changed.sort_unstable();
    changed
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use kelos_hooks_shared::annotations::{DELIVERIES, REPORT_PHASE};
    use serde_json::json;

    use super::*;
    use crate::fixtures::{self, DISPATCHER};
    use crate::review::parse;

    fn run(body: &[u8]) -> Decision {
        decide(
            &parse(body).unwrap(),
            &IpPolicy::default(),
            &[DISPATCHER.to_owned()],
            None,
            false,
        )
    }

    fn snapshot() -> String {
        let oc: kelos_hooks_shared::api::OnCompletion =
            serde_json::from_value(fixtures::valid_hooks()).unwrap();
        kelos_hooks_shared::annotations::encode_snapshot(&oc.hooks)
    }

    #[test]
    fn create_with_valid_snapshot_is_allowed() {
        let t = fixtures::spawned_task(json!({ON_COMPLETION: snapshot()}));
        assert!(run(&fixtures::task_create(t, "kelos-controller")).allowed);
    }

    #[test]
    fn snapshot_equal_to_the_validated_one_is_not_validated_again() {
        // Proven with a value that would fail: equal to `validated` means it is taken as is.
        let bad = r#"{"hooks":[{"name":"x","webhook":{"url":"http://evil.example.com"}}]}"#;
        let body = fixtures::task_create(
            fixtures::spawned_task(json!({ON_COMPLETION: bad})),
            "kelos-controller",
        );
        let req = parse(&body).unwrap();
        let policy = IpPolicy::default();
        let ids = [DISPATCHER.to_owned()];
        assert!(decide(&req, &policy, &ids, Some(&Snapshot::new(bad)), false).allowed);
        assert!(!decide(&req, &policy, &ids, Some(&Snapshot::new("{}")), false).allowed);
        assert!(!decide(&req, &policy, &ids, None, false).allowed);
    }

    #[test]
    fn the_cached_snapshot_of_the_spawner_is_the_validated_one() {
        let snap = snapshot();
        let cache = crate::fixtures::cache_with(fixtures::NS, fixtures::SPAWNER, &snap);
        let policy = IpPolicy::default();
        let ids = [DISPATCHER.to_owned()];
        let judge = |annotation: &str| {
            let body = fixtures::task_create(
                fixtures::spawned_task(json!({ON_COMPLETION: annotation})),
                "kelos-controller",
            );
            futures::executor::block_on(handle(
                &parse(&body).unwrap(),
                &cache,
                &policy,
                &ids,
                &Authorizer::default(),
            ))
        };
        assert!(judge(&snap).allowed);
        // Anything else is validated in full.
        assert!(
            !judge(r#"{"hooks":[{"name":"x","webhook":{"url":"http://evil.example.com"}}]}"#)
                .allowed
        );
        // The snapshot the cache computed passes the annotation rules on its own too.
        let report = validate_snapshot(&snap, &Context { ip_policy: &policy });
        assert!(report.is_valid(), "{report:?}");
    }

    #[test]
    fn create_with_invalid_snapshot_is_denied() {
        let bad = r#"{"hooks":[{"name":"x","webhook":{"url":"http://evil.example.com"}}]}"#;
        let t = fixtures::spawned_task(json!({ON_COMPLETION: bad}));
        let d = run(&fixtures::task_create(t, "kelos-controller"));
        assert!(!d.allowed);
        let s = d.status.unwrap();
        assert_eq!(s.code, 400);
        assert!(
            s.message
                .contains("metadata.annotations[kelos.dev/on-completion].hooks[0].webhook.url"),
            "{}",
            s.message
        );
    }

    #[test]
    fn create_with_garbage_snapshot_is_denied() {
        let t = fixtures::spawned_task(json!({ON_COMPLETION: "not json"}));
        assert!(!run(&fixtures::task_create(t, "u")).allowed);
    }

    #[test]
    fn snapshot_is_immutable() {
        let s = snapshot();
        let old = fixtures::spawned_task(json!({ON_COMPLETION: s}));
        // Unchanged, other annotations edited: fine.
        let same = fixtures::spawned_task(json!({ON_COMPLETION: s, "note": "hi"}));
        assert!(run(&fixtures::task_update(old.clone(), same, "alice")).allowed);
        // Changed.
        let changed = fixtures::spawned_task(json!({ON_COMPLETION: r#"{"hooks":[]}"#}));
        let d = run(&fixtures::task_update(old.clone(), changed, "alice"));
        assert_eq!(d.status.as_ref().unwrap().code, 403);
        assert!(
            d.status
                .unwrap()
                .message
                .contains("immutable (it was changed)")
        );
        // Removed.
        let removed = fixtures::spawned_task(json!({"note": "hi"}));
        let d = run(&fixtures::task_update(old, removed.clone(), "alice"));
        assert!(d.status.unwrap().message.contains("it was removed"));
        // Added later.
        let added = fixtures::spawned_task(json!({ON_COMPLETION: s}));
        let d = run(&fixtures::task_update(removed, added, "alice"));
        assert!(d.status.unwrap().message.contains("it was added"));
    }

    #[test]
    fn immutability_binds_the_dispatcher_too() {
        let old = fixtures::spawned_task(json!({ON_COMPLETION: snapshot()}));
        let new = fixtures::spawned_task(json!({}));
        assert!(!run(&fixtures::task_update(old, new, DISPATCHER)).allowed);
    }

    #[test]
    fn delivery_annotations_only_by_the_dispatcher() {
        let old = fixtures::spawned_task(json!({DELIVERIES: "{}"}));
        let new = fixtures::spawned_task(json!({DELIVERIES: r#"{"a":{"state":"Delivered"}}"#}));
        let d = run(&fixtures::task_update(old.clone(), new.clone(), "mallory"));
        assert!(!d.allowed);
        let msg = d.status.as_ref().unwrap().message.clone();
        assert_eq!(d.status.unwrap().code, 403);
        assert!(
            msg.contains("metadata.annotations[kelos.dev/webhook-deliveries]"),
            "{msg}"
        );
        assert!(msg.contains(DISPATCHER) && msg.contains("mallory"), "{msg}");
        assert!(run(&fixtures::task_update(old, new, DISPATCHER)).allowed);
    }

    #[test]
    fn delivery_annotation_added_or_removed_counts() {
        let none = fixtures::spawned_task(json!({}));
        let with = fixtures::spawned_task(json!({REPORT_PHASE: "Succeeded"}));
        assert!(
            !run(&fixtures::task_update(
                none.clone(),
                with.clone(),
                "mallory"
            ))
            .allowed
        );
        assert!(
            !run(&fixtures::task_update(
                with.clone(),
                none.clone(),
                "mallory"
            ))
            .allowed
        );
        // No annotations map at all on either side.
        let bare = fixtures::spawned_task(serde_json::Value::Null);
        assert!(!run(&fixtures::task_update(bare.clone(), with, "mallory")).allowed);
        assert!(run(&fixtures::task_update(bare, none, "mallory")).allowed);
    }

    #[test]
    fn unchanged_delivery_annotations_allow_other_edits() {
        let old = fixtures::spawned_task(json!({DELIVERIES: "{}", REPORT_PHASE: "Failed"}));
        let new =
            fixtures::spawned_task(json!({DELIVERIES: "{}", REPORT_PHASE: "Failed", "x": "y"}));
        assert!(run(&fixtures::task_update(old, new, "mallory")).allowed);
    }

    #[test]
    fn forged_delivery_annotations_on_create_are_denied() {
        let t = fixtures::spawned_task(json!({DELIVERIES: r#"{"a":{"state":"Delivered"}}"#}));
        assert!(!run(&fixtures::task_create(t.clone(), "mallory")).allowed);
        assert!(run(&fixtures::task_create(t, DISPATCHER)).allowed);
    }

    #[test]
    fn configured_identities_replace_the_default() {
        let old = fixtures::spawned_task(json!({}));
        let new = fixtures::spawned_task(json!({DELIVERIES: "{}"}));
        let body = fixtures::task_update(old, new, "system:serviceaccount:x:y");
        let ids = ["a".to_owned(), "system:serviceaccount:x:y".to_owned()];
        assert!(
            decide(
                &parse(&body).unwrap(),
                &IpPolicy::default(),
                &ids,
                None,
                false
            )
            .allowed
        );
        assert!(!run(&body).allowed);
    }

    #[test]
    fn a_redelivery_request_needs_the_verb_and_the_stamp() {
        let old = fixtures::spawned_task(json!({DELIVERIES: "{}"}));
        let asked = fixtures::spawned_task(
            json!({DELIVERIES: "{}", REDELIVER: "*", REDELIVER_BY: "alice"}),
        );
        let body = fixtures::task_update(old.clone(), asked.clone(), "alice");
        let req = parse(&body).unwrap();
        let (policy, ids) = (IpPolicy::default(), [DISPATCHER.to_owned()]);
        let d = decide(&req, &policy, &ids, None, false);
        let msg = d.status.unwrap().message;
        assert!(
            msg.contains("verb \"redeliver\"") && msg.contains("\"alice\""),
            "{msg}"
        );
        assert!(decide(&req, &policy, &ids, None, true).allowed);
        // A stamp naming someone else (the admission server did not run, or a forgery).
        let body = fixtures::task_update(old.clone(), asked.clone(), "bob");
        let d = decide(&parse(&body).unwrap(), &policy, &ids, None, true);
        assert!(d.status.unwrap().message.contains("must be \"bob\""));
        // The verb never opens the rest of the delivery state.
        let forged = fixtures::spawned_task(
            json!({DELIVERIES: "{\"x\":1}", REDELIVER: "*", REDELIVER_BY: "alice"}),
        );
        let body = fixtures::task_update(old.clone(), forged, "alice");
        assert!(!decide(&parse(&body).unwrap(), &policy, &ids, None, true).allowed);
        // Nor a CREATE carrying a request.
        let body = fixtures::task_create(asked.clone(), "alice");
        assert!(!decide(&parse(&body).unwrap(), &policy, &ids, None, true).allowed);
        // The dispatcher removes the request without any verb.
        let body = fixtures::task_update(asked, old, DISPATCHER);
        assert!(decide(&parse(&body).unwrap(), &policy, &ids, None, false).allowed);
    }

    #[test]
    fn delete_is_allowed() {
        let t = fixtures::spawned_task(json!({DELIVERIES: "{}"}));
        let body = fixtures::review_json("DELETE", "Task", t.clone(), Some(t), "mallory");
        assert!(run(&body).allowed);
    }
}
