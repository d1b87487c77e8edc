//! `POST /mutate/tasks/redeliver`: a Task UPDATE that sets or changes `kelos.dev/webhook-redeliver`
//! gets the requesting user stamped into `kelos.dev/webhook-redeliver-by`, so the dispatcher (which
//! cannot see who wrote an annotation) can name them in its Event. Whether the user may ask at all
//! is the Task annotation guard's call (RBAC verb `redeliver`), made after this mutation on the
//! stamped object; the guard also checks the stamp equals the requester, so it cannot be forged.

use kelos_hooks_shared::annotations::{REDELIVER, REDELIVER_BY};

use super::UPDATE;
use crate::patch::{Patch, annotation_patch};
use crate::review::{Decision, Request};

/// Never denies: the stamp when the request is new or changed, nothing otherwise.
pub fn decide(req: &Request<'_>) -> Decision {
    if req.operation != UPDATE {
        return Decision::allow();
    }
    let Some(object) = req.object.as_ref() else {
        return Decision::allow();
    };
    let new = &object.metadata;
    let Some(value) = new.annotation(REDELIVER) else {
        return Decision::allow();
    };
    let old = req
        .old_object
        .as_ref()
        .and_then(|o| o.metadata.annotation(REDELIVER));
    if old == Some(value) {
        return Decision::allow();
    }
    let patch = annotation_patch(new.annotations.as_ref(), REDELIVER_BY, Some(req.username()))
        .map(Patch::new);
    Decision {
        allowed: true,
        status: None,
        patch,
        warnings: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::{Value, json};

    use super::*;
    use crate::fixtures;
    use crate::review::parse;

    fn ops(d: &Decision) -> Value {
        serde_json::from_str(&d.patch.as_ref().unwrap().json()).unwrap()
    }

    #[test]
    fn a_new_or_changed_request_is_stamped_with_the_requester() {
        let old = fixtures::spawned_task(json!({}));
        let new = fixtures::spawned_task(json!({REDELIVER: "*", REDELIVER_BY: "mallory"}));
        let body = fixtures::task_update(old, new.clone(), "alice");
        let d = decide(&parse(&body).unwrap());
        assert!(d.allowed);
        assert_eq!(
            ops(&d),
            json!([{"op": "add", "path": "/metadata/annotations/kelos.dev~1webhook-redeliver-by", "value": "alice"}]),
            "a forged requester is overwritten"
        );
        // Changed value: stamped again, by the new requester.
        let changed = fixtures::spawned_task(json!({REDELIVER: "a", REDELIVER_BY: "alice"}));
        let d = decide(&parse(&fixtures::task_update(new.clone(), changed, "bob")).unwrap());
        assert_eq!(ops(&d)[0]["value"], "bob");
    }

    #[test]
    fn other_updates_are_left_alone() {
        let pending = fixtures::spawned_task(json!({REDELIVER: "*", REDELIVER_BY: "alice"}));
        let touched =
            fixtures::spawned_task(json!({REDELIVER: "*", REDELIVER_BY: "alice", "x": "y"}));
        let d = decide(&parse(&fixtures::task_update(pending.clone(), touched, "kelos")).unwrap());
        assert!(d.allowed && d.patch.is_none());
        let cleared = fixtures::spawned_task(json!({}));
        let d = decide(
            &parse(&fixtures::task_update(
                pending.clone(),
                cleared,
                "dispatcher",
            ))
            .unwrap(),
        );
        assert!(d.allowed && d.patch.is_none());
        let create = fixtures::task_create(pending, "alice");
        assert!(decide(&parse(&create).unwrap()).patch.is_none());
    }
}
