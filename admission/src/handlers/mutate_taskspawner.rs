//! `POST /mutate/taskspawners`: keeps a TaskSpawner's stored `spec.onCompletion` on writes that
//! cannot express it.
//!
//! kelos's controller adds its finalizer with a full `Update` of Go types that have no
//! `onCompletion`, so that write would delete the hooks: for kelos's own identities, an UPDATE
//! without `onCompletion` gets the stored one back (a JSON patch from `oldObject`). A user who edits
//! or removes `onCompletion` through v1alpha2 is obeyed.
//!
//! A write through kelos.dev/v1alpha1 cannot be repaired: the API server handles it in v1alpha1
//! (`oldObject` and the patched object are converted through kelos's webhook, which drops the
//! field), so whatever a webhook adds is gone again before storage. Such writes (spec or status)
//! are refused while the spawner has hooks, with a message that says to use v1alpha2; the stored
//! hooks are read from the TaskSpawner cache (v1alpha2) at the `resourceVersion` being replaced.
//!
//! The webhook is registered with `matchPolicy: Exact` for UPDATE of `taskspawners` in v1alpha2
//! and of `taskspawners` and `taskspawners/status` in v1alpha1, so a status write through
//! v1alpha2 (kelos-spawner's, many) never waits for us.

use std::fmt;

use serde_json::value::RawValue;

use crate::cache::{Lookup, SpawnerCache, SpawnerHooks};
use crate::metrics::Metrics;
use crate::patch::Patch;
use crate::review::{Decision, Object, Request};

/// The request version that cannot carry `onCompletion`.
const V1ALPHA1: &str = "v1alpha1";

/// Usernames treated as kelos's own components. `*` as a whole `:`-separated segment matches any
/// one segment: `system:serviceaccount:*:kelos-spawner` is every namespace's spawner account.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identities(Vec<String>);

impl Identities {
    /// Patterns as given (`--kelos-identity`); empty ones are dropped.
    pub fn new(patterns: &[String]) -> Self {
        Identities(
            patterns
                .iter()
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect(),
        )
    }

    /// Whether `username` is one of them.
    pub fn matches(&self, username: &str) -> bool {
        self.0.iter().any(|pattern| {
            let (mut want, mut got) = (pattern.split(':'), username.split(':'));
            loop {
                match (want.next(), got.next()) {
                    (None, None) => return true,
                    (Some(w), Some(g)) if w == "*" || w == g => {}
                    _ => return false,
                }
            }
        })
    }
}

impl fmt::Display for Identities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(", "))
    }
}

/// `spec.onCompletion` of an object, kept as written (`null` reads as absent).
fn on_completion<'a>(object: Option<&Object<'a>>) -> Option<&'a RawValue> {
    object?
        .spec
        .on_completion
        .filter(|v| v.get().trim() != "null")
}

/// The version the client wrote in.
fn written_version<'r>(req: &'r Request<'_>) -> &'r str {
    req.request_kind
        .as_ref()
        .map_or(&req.kind.version, |k| &k.version)
}

/// Whether the stored (v1alpha2) TaskSpawner has hooks a v1alpha1 write would lose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stored {
    /// `spec.onCompletion` with at least one hook (valid or not).
    Hooks,
    /// Nothing to lose.
    NoHooks,
    /// Could not be read.
    Unknown(String),
}

impl From<&SpawnerHooks> for Stored {
    fn from(hooks: &SpawnerHooks) -> Self {
        match hooks {
            SpawnerHooks::None => Stored::NoHooks,
            SpawnerHooks::Snapshot(_) | SpawnerHooks::Invalid(_) => Stored::Hooks,
        }
    }
}

/// What to do with a TaskSpawner write.
#[derive(Debug)]
pub enum Outcome<'a> {
    /// Let it through unchanged.
    Allow,
    /// Put the stored `onCompletion` back.
    Restore(&'a RawValue),
    /// Put the stored `onCompletion` back into a write without any `spec` (adds `spec` whole).
    RestoreSpec(&'a RawValue),
    /// Refuse it, saying why.
    Refuse(String),
}

/// Whether the stored hooks matter for this request (a v1alpha1 UPDATE): then the caller looks
/// them up for [`decide`].
pub fn needs_stored(req: &Request<'_>) -> bool {
    req.operation == "UPDATE" && written_version(req) == V1ALPHA1
}

/// The decision. `stored` is only consulted for a v1alpha1 write ([`needs_stored`]).
pub fn decide<'a>(req: &Request<'a>, kelos: &Identities, stored: Option<&Stored>) -> Outcome<'a> {
    if req.operation != "UPDATE" {
        return Outcome::Allow;
    }
    let short = req.name.as_deref().unwrap_or_default();
    let name = format!("{}/{short}", req.namespace().unwrap_or_default());
    if written_version(req) == V1ALPHA1 {
        return match stored {
            Some(Stored::NoHooks) => Outcome::Allow,
            Some(Stored::Hooks) => Outcome::Refuse(format!(
                "TaskSpawner {name} has spec.onCompletion hooks, which kelos.dev/v1alpha1 cannot carry \
                 (kelos's conversion to the stored kelos.dev/v1alpha2 drops them), so this write would \
                 delete them; make it through kelos.dev/v1alpha2 (apiVersion: kelos.dev/v1alpha2, or \
                 `kubectl … taskspawners.v1alpha2.kelos.dev/{short}`)"
            )),
            Some(Stored::Unknown(why)) => Outcome::Refuse(format!(
                "cannot tell whether TaskSpawner {name} has spec.onCompletion hooks this \
                 kelos.dev/v1alpha1 write would delete ({why}); retry, or write through kelos.dev/v1alpha2"
            )),
            None => Outcome::Refuse(format!(
                "kelos-hooks could not look up TaskSpawner {name}; retry, or write through kelos.dev/v1alpha2"
            )),
        };
    }
    if req.sub_resource.as_ref().is_some_and(|s| !s.is_empty()) || !kelos.matches(req.username()) {
        return Outcome::Allow;
    }
    let new = on_completion(req.object.as_ref());
    let old = on_completion(req.old_object.as_ref());
    match (new, old) {
        // Found by fuzzing: an UPDATE without an object has nothing a patch could apply to.
        (None, Some(old)) => match req.object.as_ref() {
            None => Outcome::Allow,
            Some(o) if !o.spec.present => Outcome::RestoreSpec(old),
            Some(_) => Outcome::Restore(old),
        },
        _ => Outcome::Allow,
    }
}

/// The admission decision of an [`Outcome`].
pub fn to_decision(outcome: &Outcome<'_>) -> Decision {
    match outcome {
        Outcome::Allow => Decision::allow(),
        Outcome::Restore(old) => Decision {
            allowed: true,
            patch: Some(Patch::new(format!(
                r#"[{{"op":"add","path":"/spec/onCompletion","value":{}}}]"#,
                old.get()
            ))),
            ..Decision::default()
        },
        Outcome::RestoreSpec(old) => Decision {
            allowed: true,
            patch: Some(Patch::new(format!(
                r#"[{{"op":"add","path":"/spec","value":{{"onCompletion":{}}}}}]"#,
                old.get()
            ))),
            ..Decision::default()
        },
        Outcome::Refuse(why) => Decision::deny(403, why.clone()),
    }
}

/// Looks up the stored hooks of a v1alpha1 write: the cache when it holds the very
/// `resourceVersion` being replaced, else one direct read.
pub async fn stored(req: &Request<'_>, cache: &SpawnerCache) -> Stored {
    let (Some(namespace), Some(name)) = (req.namespace(), req.name.as_deref()) else {
        return Stored::Unknown("the review names no object".into());
    };
    let version = req
        .old_object
        .as_ref()
        .and_then(|o| o.metadata.resource_version.as_deref());
    if let Some(hooks) = version.and_then(|v| cache.cached_at(namespace, name, v)) {
        return Stored::from(&hooks);
    }
    match cache.lookup(namespace, name).await {
        Lookup::Found(hooks) => Stored::from(&hooks),
        Lookup::NotFound => Stored::NoHooks,
        Lookup::Failed(why) => Stored::Unknown(why),
    }
}

/// Looks the stored hooks up when the decision needs them, decides, counts and logs.
pub async fn handle(
    req: &Request<'_>,
    cache: &SpawnerCache,
    kelos: &Identities,
    metrics: &Metrics,
) -> Decision {
    let stored = if needs_stored(req) {
        Some(stored(req, cache).await)
    } else {
        None
    };
    let outcome = decide(req, kelos, stored.as_ref());
    let (namespace, name, user) = (
        req.namespace().unwrap_or_default(),
        req.name.as_deref().unwrap_or_default(),
        req.username(),
    );
    match &outcome {
        Outcome::Restore(_) | Outcome::RestoreSpec(_) => {
            metrics.observe_hooks_kept("restored");
            tracing::info!(
                namespace,
                name,
                user,
                "kept spec.onCompletion on a write by kelos that lacks the field"
            );
        }
        Outcome::Refuse(why) => {
            metrics.observe_hooks_kept("refused");
            tracing::info!(namespace, name, user, reason = %why, "refused a TaskSpawner write that would delete its hooks");
        }
        Outcome::Allow => {}
    }
    to_decision(&outcome)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::{Value, json};

    use super::*;

    const CONTROLLER: &str = "system:serviceaccount:kelos-system:kelos-controller";
    const HOOKS: &str = r#"{"hooks":[{"name":"a","webhook":{"url":"https://h.example.com/x"}}]}"#;

    fn kelos() -> Identities {
        Identities::new(&[
            CONTROLLER.to_owned(),
            "system:serviceaccount:*:kelos-spawner".to_owned(),
            " ".to_owned(),
        ])
    }

    fn spawner(on_completion: Option<&str>, rv: &str) -> Value {
        let mut spec = json!({"when": {"cron": {"schedule": "0 9 * * 1"}}});
        if let Some(oc) = on_completion {
            spec["onCompletion"] = serde_json::from_str(oc).unwrap();
        }
        json!({"apiVersion": "kelos.dev/v1alpha2", "kind": "TaskSpawner",
               "metadata": {"name": "s", "namespace": "n", "resourceVersion": rv,
                            "finalizers": ["kelos.dev/taskspawner-finalizer"]},
               "spec": spec})
    }

    fn review(version: &str, user: &str, new: Value, old: Value) -> String {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "u1", "operation": "UPDATE", "namespace": "n", "name": "s",
            "kind": {"group": "kelos.dev", "version": version, "kind": "TaskSpawner"},
            "requestKind": {"group": "kelos.dev", "version": version, "kind": "TaskSpawner"},
            "userInfo": {"username": user, "groups": ["system:serviceaccounts"]},
            "object": new, "oldObject": old, "dryRun": false}})
        .to_string()
    }

    fn outcome(body: &str, stored: Option<Stored>) -> String {
        let r = crate::review::parse(body.as_bytes()).unwrap();
        match decide(&r, &kelos(), stored.as_ref()) {
            Outcome::Allow => "allow".into(),
            Outcome::Restore(v) => format!("restore {}", v.get()),
            Outcome::RestoreSpec(v) => format!("restore spec {}", v.get()),
            Outcome::Refuse(why) => format!("refuse {why}"),
        }
    }

    #[test]
    fn identities_match_whole_segments() {
        let k = kelos();
        assert!(k.matches(CONTROLLER));
        assert!(k.matches("system:serviceaccount:team-a:kelos-spawner"));
        assert!(!k.matches("system:serviceaccount:team-a:kelos-spawner-x"));
        assert!(!k.matches("system:serviceaccount:kelos-system:kelos-controller:x"));
        assert!(!k.matches("system:serviceaccount:team-a"));
        assert!(!k.matches("alice"));
        assert!(!k.matches(""));
        assert_eq!(
            k.to_string(),
            format!("{CONTROLLER}, system:serviceaccount:*:kelos-spawner")
        );
    }

    #[test]
    fn kelos_finalizer_update_gets_the_stored_hooks_back() {
        let body = review(
            "v1alpha2",
            CONTROLLER,
            spawner(None, "7"),
            spawner(Some(HOOKS), "7"),
        );
        assert_eq!(outcome(&body, None), format!("restore {HOOKS}"));
        // An explicit null is what a Go type without the field can never mean to write either.
        let null = review(
            "v1alpha2",
            "system:serviceaccount:ns:kelos-spawner",
            spawner(Some("null"), "7"),
            spawner(Some(HOOKS), "7"),
        );
        assert_eq!(outcome(&null, None), format!("restore {HOOKS}"));
    }

    #[test]
    fn the_patch_puts_the_value_back_verbatim() {
        let body = review(
            "v1alpha2",
            CONTROLLER,
            spawner(None, "7"),
            spawner(Some(HOOKS), "7"),
        );
        let r = crate::review::parse(body.as_bytes()).unwrap();
        let d = to_decision(&decide(&r, &kelos(), None));
        assert!(d.allowed);
        let ops: Value = serde_json::from_str(&d.patch.unwrap().json()).unwrap();
        assert_eq!(
            ops,
            json!([{"op": "add", "path": "/spec/onCompletion", "value": serde_json::from_str::<Value>(HOOKS).unwrap()}])
        );
    }

    #[test]
    fn a_write_without_spec_gets_spec_back_whole() {
        // Found by fuzzing: `add /spec/onCompletion` cannot apply where there is no `/spec`.
        let stored = spawner(Some(HOOKS), "7");
        for spec in [None, Some(Value::Null)] {
            let mut new = stored.clone();
            match spec {
                None => new.as_object_mut().unwrap().remove("spec"),
                Some(v) => new.as_object_mut().unwrap().insert("spec".into(), v),
            };
            let body = review("v1alpha2", CONTROLLER, new.clone(), stored.clone());
            let r = crate::review::parse(body.as_bytes()).unwrap();
            let d = to_decision(&decide(&r, &kelos(), None));
            let ops: json_patch::Patch = serde_json::from_str(&d.patch.unwrap().json()).unwrap();
            json_patch::patch(&mut new, &ops).unwrap();
            assert_eq!(new["spec"]["onCompletion"], stored["spec"]["onCompletion"]);
        }
        let mut no_object: Value =
            serde_json::from_str(&review("v1alpha2", CONTROLLER, json!(null), stored)).unwrap();
        no_object["request"]
            .as_object_mut()
            .unwrap()
            .remove("object");
        let body = no_object.to_string();
        let r = crate::review::parse(body.as_bytes()).unwrap();
        assert!(matches!(decide(&r, &kelos(), None), Outcome::Allow));
    }

    #[test]
    fn users_and_writes_that_carry_hooks_are_obeyed() {
        // A user removing the hooks through v1alpha2.
        let removal = review(
            "v1alpha2",
            "alice",
            spawner(None, "7"),
            spawner(Some(HOOKS), "7"),
        );
        assert_eq!(outcome(&removal, None), "allow");
        // kelos writing hooks itself (a build that knows the field), or nothing to restore.
        let other = r#"{"hooks":[]}"#;
        for (new, old) in [
            (Some(other), Some(HOOKS)),
            (None, None),
            (Some(HOOKS), None),
        ] {
            let body = review("v1alpha2", CONTROLLER, spawner(new, "7"), spawner(old, "7"));
            assert_eq!(outcome(&body, None), "allow", "{new:?} {old:?}");
        }
    }

    #[test]
    fn status_writes_and_other_operations_pass() {
        let mut v: Value = serde_json::from_str(&review(
            "v1alpha2",
            CONTROLLER,
            spawner(None, "7"),
            spawner(Some(HOOKS), "7"),
        ))
        .unwrap();
        v["request"]["subResource"] = json!("status");
        assert_eq!(outcome(&v.to_string(), None), "allow");
        v["request"]["subResource"] = Value::Null;
        v["request"]["operation"] = json!("CREATE");
        assert_eq!(outcome(&v.to_string(), None), "allow");
    }

    #[test]
    fn v1alpha1_writes_are_refused_while_the_spawner_has_hooks() {
        // Through v1alpha1, oldObject has already lost the hooks (kelos's conversion).
        let body = review("v1alpha1", "alice", spawner(None, "7"), spawner(None, "7"));
        let r = crate::review::parse(body.as_bytes()).unwrap();
        assert!(needs_stored(&r));
        let refused = outcome(&body, Some(Stored::Hooks));
        assert!(
            refused.starts_with("refuse TaskSpawner n/s has spec.onCompletion hooks")
                && refused.contains("taskspawners.v1alpha2.kelos.dev/s"),
            "{refused}"
        );
        assert_eq!(outcome(&body, Some(Stored::NoHooks)), "allow");
        let unknown = outcome(&body, Some(Stored::Unknown("timeout".into())));
        assert!(unknown.contains("(timeout); retry"), "{unknown}");
        // kelos's identities too, and status writes too: the hooks would be lost either way.
        let mut status: Value = serde_json::from_str(&review(
            "v1alpha1",
            CONTROLLER,
            spawner(None, "7"),
            spawner(None, "7"),
        ))
        .unwrap();
        status["request"]["subResource"] = json!("status");
        assert!(outcome(&status.to_string(), Some(Stored::Hooks)).starts_with("refuse"));
        let v2 = review("v1alpha2", "alice", spawner(None, "7"), spawner(None, "7"));
        assert!(!needs_stored(&crate::review::parse(v2.as_bytes()).unwrap()));
    }

    #[test]
    fn escaped_strings_are_read_too() {
        // Go escapes <, > and & in JSON strings; any escape decodes the same.
        let body = review(
            "v1alpha2",
            CONTROLLER,
            spawner(None, "7"),
            spawner(Some(HOOKS), "7"),
        )
        .replace("kelos-controller\"", "kelos\\u002dcontroller\"");
        assert!(body.contains("\\u002d"));
        assert_eq!(outcome(&body, None), format!("restore {HOOKS}"));
        // A spec that is not an object is a malformed review (a 400), never a guess.
        let odd = review(
            "v1alpha2",
            CONTROLLER,
            json!({"spec": 5}),
            json!({"spec": "x"}),
        );
        assert!(crate::review::parse(odd.as_bytes()).is_err());
    }

    #[test]
    fn request_kind_wins_over_kind() {
        // Under matchPolicy Equivalent a v1alpha1 write arrives converted: requestKind tells.
        let mut v: Value = serde_json::from_str(&review(
            "v1alpha2",
            "alice",
            spawner(None, "7"),
            spawner(None, "7"),
        ))
        .unwrap();
        v["request"]["requestKind"]["version"] = json!("v1alpha1");
        assert!(outcome(&v.to_string(), Some(Stored::Hooks)).starts_with("refuse"));
    }
}
