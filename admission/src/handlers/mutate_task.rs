//! `POST /mutate/tasks`: at CREATE, copy the owning TaskSpawner's hooks into
//! `kelos.dev/on-completion` (overwriting whatever the creator put there).

use super::spawner_of;
use crate::cache::{Resolved, SpawnerCache, SpawnerHooks};
use crate::patch::snapshot_patch;
use crate::review::{Decision, Request};

/// The decision once the spawner's hooks are known. Never denies: mutation only patches.
pub fn decide(req: &Request<'_>, resolved: &Resolved) -> Decision {
    let Some(object) = req.object.as_ref() else {
        return Decision::allow();
    };
    let annotations = object.metadata.annotations.as_ref();
    let mut warnings = Vec::new();
    let desired = match resolved {
        Resolved::Hooks(SpawnerHooks::Snapshot(s)) => Some(s),
        Resolved::Hooks(SpawnerHooks::None) | Resolved::NotFound => None,
        Resolved::Hooks(SpawnerHooks::Invalid(why)) => {
            warnings.push(format!(
                "the TaskSpawner's spec.onCompletion breaks the kelos-hooks rules, so its hooks were not \
                 copied to this Task; fix the TaskSpawner: {why}"
            ));
            None
        }
        // Fail open without a snapshot: a forged one must not survive, the dispatcher then
        // falls back to the spawner's current hooks.
        Resolved::Unknown(_) => None,
    };
    let patch = snapshot_patch(annotations, desired);
    Decision {
        allowed: true,
        status: None,
        patch,
        warnings,
    }
}

/// Resolves the spawner (cache, else one direct read) and decides.
pub async fn handle(req: &Request<'_>, cache: &SpawnerCache) -> Decision {
    let Some((namespace, name)) = spawner_of(req) else {
        return Decision::allow();
    };
    let resolved = cache.resolve(namespace, name).await;
    if let Resolved::Unknown(why) = &resolved {
        tracing::warn!(
            uid = %req.uid, namespace, spawner = name, error = %why,
            "TaskSpawner lookup failed; Task admitted without hook snapshot (dispatcher will fall back)"
        );
    }
    decide(req, &resolved)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use kelos_hooks_shared::annotations::ON_COMPLETION;
    use serde_json::{Value, json};

    use super::*;
    use crate::cache::Lookup;
    use crate::fixtures::{self, Calls, NS, SPAWNER, cache, cached_spawner};
    use crate::review::parse;

    const SNAP: &str = r#"{"hooks":[{"name":"a","webhook":{"url":"https://h.example.com/x"}}]}"#;

    fn with_hooks() -> (SpawnerCache, Calls) {
        cache(
            vec![cached_spawner(
                NS,
                SPAWNER,
                SpawnerHooks::Snapshot(SNAP.into()),
            )],
            Lookup::NotFound,
        )
    }

    async fn run(c: &SpawnerCache, task: Value) -> Decision {
        let body = fixtures::task_create(task, "kelos-controller");
        handle(&parse(&body).unwrap(), c).await
    }

    fn ops(d: &Decision) -> Value {
        serde_json::from_str(&d.patch.as_ref().unwrap().json()).unwrap()
    }

    #[tokio::test]
    async fn labelled_task_without_annotations_gets_the_map() {
        let (c, calls) = with_hooks();
        let d = run(&c, fixtures::spawned_task(Value::Null)).await;
        assert!(d.allowed);
        assert_eq!(
            ops(&d),
            json!([{"op": "add", "path": "/metadata/annotations", "value": {ON_COMPLETION: SNAP}}])
        );
        assert!(
            calls.lock().unwrap().is_empty(),
            "cache hit must not call the API"
        );
    }

    #[tokio::test]
    async fn other_annotations_are_kept() {
        let (c, _) = with_hooks();
        let d = run(&c, fixtures::spawned_task(json!({"team": "a"}))).await;
        assert_eq!(
            ops(&d),
            json!([{"op": "add", "path": "/metadata/annotations/kelos.dev~1on-completion", "value": SNAP}])
        );
    }

    #[tokio::test]
    async fn forged_annotation_is_overwritten() {
        let (c, _) = with_hooks();
        let forged = r#"{"hooks":[{"name":"evil","webhook":{"url":"https://evil.example.com"}}]}"#;
        let d = run(&c, fixtures::spawned_task(json!({ON_COMPLETION: forged}))).await;
        assert_eq!(ops(&d)[0]["value"], SNAP);
    }

    #[tokio::test]
    async fn equal_annotation_needs_no_patch() {
        let (c, _) = with_hooks();
        let d = run(&c, fixtures::spawned_task(json!({ON_COMPLETION: SNAP}))).await;
        assert!(d.allowed && d.patch.is_none());
    }

    #[tokio::test]
    async fn unlabelled_task_is_untouched() {
        let (c, calls) = with_hooks();
        let d = run(
            &c,
            fixtures::task(json!({"app": "x"}), json!({ON_COMPLETION: "forged"})),
        )
        .await;
        assert!(d.allowed && d.patch.is_none());
        assert!(calls.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn spawner_in_another_namespace_does_not_count() {
        let (c, calls) = cache(
            vec![cached_spawner(
                "other",
                SPAWNER,
                SpawnerHooks::Snapshot(SNAP.into()),
            )],
            Lookup::NotFound,
        );
        let d = run(&c, fixtures::spawned_task(Value::Null)).await;
        assert!(d.patch.is_none());
        assert_eq!(
            *calls.lock().unwrap(),
            vec![(NS.to_owned(), SPAWNER.to_owned())]
        );
    }

    #[tokio::test]
    async fn spawner_without_hooks_removes_a_forged_annotation() {
        let (c, _) = cache(
            vec![cached_spawner(NS, SPAWNER, SpawnerHooks::None)],
            Lookup::NotFound,
        );
        let d = run(&c, fixtures::spawned_task(json!({ON_COMPLETION: "forged"}))).await;
        assert_eq!(
            ops(&d),
            json!([{"op": "remove", "path": "/metadata/annotations/kelos.dev~1on-completion"}])
        );
        let d = run(&c, fixtures::spawned_task(json!({"x": "y"}))).await;
        assert!(d.patch.is_none());
    }

    #[tokio::test]
    async fn cache_miss_reads_once_and_uses_the_answer() {
        let (c, calls) = cache(vec![], Lookup::Found(SpawnerHooks::Snapshot(SNAP.into())));
        let d = run(&c, fixtures::spawned_task(Value::Null)).await;
        assert_eq!(ops(&d)[0]["value"][ON_COMPLETION], SNAP);
        assert_eq!(calls.lock().unwrap().len(), 1);
        assert!(
            c.metrics_text()
                .contains(r#"cache_miss_lookups_total{result="found"} 1"#)
        );
    }

    #[tokio::test]
    async fn cache_miss_not_found_means_no_hooks() {
        let (c, _) = cache(vec![], Lookup::NotFound);
        let d = run(&c, fixtures::spawned_task(json!({ON_COMPLETION: "forged"}))).await;
        assert_eq!(ops(&d)[0]["op"], "remove");
    }

    #[tokio::test]
    async fn lookup_failure_fails_open_and_is_counted() {
        let (c, _) = cache(vec![], Lookup::Failed("timeout".into()));
        let d = run(&c, fixtures::spawned_task(Value::Null)).await;
        assert!(d.allowed && d.patch.is_none());
        let d = run(&c, fixtures::spawned_task(json!({ON_COMPLETION: "forged"}))).await;
        assert!(d.allowed);
        assert_eq!(ops(&d)[0]["op"], "remove");
        assert!(
            c.metrics_text()
                .contains(r#"cache_miss_lookups_total{result="error"} 2"#)
        );
    }

    #[tokio::test]
    async fn invalid_spawner_hooks_are_not_copied_and_warned() {
        let (c, _) = cache(
            vec![cached_spawner(
                NS,
                SPAWNER,
                SpawnerHooks::Invalid("hooks[0].webhook.url: must use https".into()),
            )],
            Lookup::NotFound,
        );
        let d = run(&c, fixtures::spawned_task(Value::Null)).await;
        assert!(d.allowed && d.patch.is_none());
        assert!(d.warnings[0].contains("must use https"));
    }

    #[tokio::test]
    async fn only_create_is_mutated() {
        let (c, calls) = with_hooks();
        let t = fixtures::spawned_task(Value::Null);
        let body = fixtures::task_update(t.clone(), t, "u");
        let d = handle(&parse(&body).unwrap(), &c).await;
        assert!(d.allowed && d.patch.is_none());
        assert!(calls.lock().unwrap().is_empty());
    }
}
