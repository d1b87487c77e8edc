//! HTTP plumbing of the webhook port: body limits, AdmissionReview parsing, dispatch to the
//! handlers, responses, metrics. Bad input gets HTTP 400 with `{"error": "..."}` (a body over the
//! limit 413), never a panic.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use kelos_hooks_shared::ip::IpPolicy;

use crate::body::{BodyError, read_limited};
use crate::cache::SpawnerCache;
use crate::handlers::mutate_taskspawner::Identities;
use crate::handlers::{
    mutate_task, mutate_taskspawner, stamp_redelivery, validate_task, validate_taskspawner,
};
use crate::metrics::{Endpoint, Metrics};
use crate::review::{self, Decision, ParseError, Request};

/// Largest review body accepted (the API server caps objects at about 3 MiB too).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// Stable endpoint paths (the chart's webhook configurations use them).
pub mod paths {
    /// TaskSpawner validation.
    pub const VALIDATE_TASKSPAWNERS: &str = "/validate/taskspawners";
    /// Task mutation.
    pub const MUTATE_TASKS: &str = "/mutate/tasks";
    /// Task validation.
    pub const VALIDATE_TASKS: &str = "/validate/tasks";
    /// TaskSpawner mutation (stored hooks kept on writes that cannot express them).
    pub const MUTATE_TASKSPAWNERS: &str = "/mutate/taskspawners";
    /// Task UPDATE mutation: the requester of a redelivery stamped.
    pub const STAMP_REDELIVERY: &str = "/mutate/tasks/redeliver";
}

/// What the handlers need, shared by every request.
#[derive(Debug)]
pub struct AppState {
    /// TaskSpawner hooks.
    pub cache: SpawnerCache,
    /// `--allow-cidr`.
    pub policy: Arc<IpPolicy>,
    /// `--dispatcher-identity`.
    pub dispatchers: Vec<String>,
    /// `--kelos-identity`.
    pub kelos: Identities,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Answers "may this user redeliver this Task?" (guard=Webhook).
    pub authorizer: crate::authorize::Authorizer,
}

/// The router of the webhook port: one route per [`Endpoint`].
pub fn router(state: Arc<AppState>) -> Router {
    let route = |endpoint: Endpoint| {
        post(
            move |State(state): State<Arc<AppState>>, body: Body| async move {
                serve_review(&state, endpoint, body).await
            },
        )
    };
    Router::new()
        .route(
            paths::VALIDATE_TASKSPAWNERS,
            route(Endpoint::ValidateTaskSpawners),
        )
        .route(paths::MUTATE_TASKS, route(Endpoint::MutateTasks))
        .route(paths::VALIDATE_TASKS, route(Endpoint::ValidateTasks))
        .route(
            paths::MUTATE_TASKSPAWNERS,
            route(Endpoint::MutateTaskSpawners),
        )
        .route(paths::STAMP_REDELIVERY, route(Endpoint::StampRedelivery))
        .with_state(state)
}

fn json_response(status: StatusCode, body: impl Into<Body>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.into(),
    )
        .into_response()
}

/// HTTP 400 with a JSON error body.
pub fn bad_request(message: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        serde_json::json!({ "error": message }).to_string(),
    )
}

/// HTTP 413 with a JSON error body, over HTTP/1.1 and HTTP/2 alike (see [`crate::body`]).
fn too_large() -> Response {
    json_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        serde_json::json!({
            "error": format!("request body is larger than the limit of {MAX_BODY} bytes")
        })
        .to_string(),
    )
}

async fn read_body(body: Body) -> Result<Bytes, Response> {
    read_limited(body, MAX_BODY).await.map_err(|e| match e {
        BodyError::TooLarge => too_large(),
        BodyError::Broken(why) => bad_request(&format!("cannot read request body: {why}")),
    })
}

/// Checks the object kind matches the endpoint: a misrouted review is denied, not judged.
fn kind_mismatch(req: &Request<'_>, expected: &str) -> Option<Decision> {
    if req.kind.group == kelos_hooks_shared::api::GROUP && req.kind.kind == expected {
        return None;
    }
    Some(Decision::deny(
        400,
        format!(
            "this kelos-hooks endpoint judges kelos.dev {expected} objects, got {}/{} {}; check the webhook configuration's rules",
            req.kind.group, req.kind.version, req.kind.kind
        ),
    ))
}

/// Judges one review body for `endpoint`: the response review, or why the body is not a review.
/// Everything between the HTTP body and the HTTP response, so benchmarks can call it directly.
pub async fn answer(
    state: &AppState,
    endpoint: Endpoint,
    body: &[u8],
) -> Result<Vec<u8>, ParseError> {
    let started = Instant::now();
    let req = review::parse(body)?;
    let expected = match endpoint {
        Endpoint::ValidateTaskSpawners | Endpoint::MutateTaskSpawners => "TaskSpawner",
        Endpoint::MutateTasks | Endpoint::ValidateTasks | Endpoint::StampRedelivery => "Task",
    };
    let decision = match kind_mismatch(&req, expected) {
        Some(d) => d,
        None => match endpoint {
            Endpoint::ValidateTaskSpawners => validate_taskspawner::decide(&req, &state.policy),
            Endpoint::ValidateTasks => {
                validate_task::handle(
                    &req,
                    &state.cache,
                    &state.policy,
                    &state.dispatchers,
                    &state.authorizer,
                )
                .await
            }
            Endpoint::MutateTasks => mutate_task::handle(&req, &state.cache).await,
            Endpoint::MutateTaskSpawners => {
                mutate_taskspawner::handle(&req, &state.cache, &state.kelos, &state.metrics).await
            }
            Endpoint::StampRedelivery => stamp_redelivery::decide(&req),
        },
    };
    let out = review::encode_response(&req.uid, &decision);
    state.metrics.observe_request(
        endpoint,
        &req.operation,
        decision.allowed,
        started.elapsed(),
    );
    if !decision.allowed {
        tracing::debug!(
            uid = %req.uid, endpoint = endpoint.as_str(), operation = %req.operation,
            user = req.username(), dry_run = ?req.dry_run, size = body.len(),
            code = decision.status.as_ref().map(|s| s.code), "denied"
        );
    } else {
        tracing::trace!(
            uid = %req.uid, endpoint = endpoint.as_str(), patched = decision.patch.is_some(),
            size = body.len(), "allowed"
        );
    }
    Ok(out)
}

async fn serve_review(state: &AppState, endpoint: Endpoint, body: Body) -> Response {
    let bytes = match read_body(body).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    match answer(state, endpoint, &bytes).await {
        Ok(out) => json_response(StatusCode::OK, out),
        Err(e) => {
            tracing::debug!(endpoint = endpoint.as_str(), error = %e, "rejected review");
            bad_request(&e.to_string())
        }
    }
}

/// `POST /ceiling`, for the admission benchmark only (`--features bench-ceiling`): the same
/// server stack reading the body and answering a fixed allowed review without parsing it.
#[cfg(feature = "bench-ceiling")]
pub fn ceiling_router() -> Router {
    const RESPONSE: &[u8] = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"","allowed":true}}"#;
    Router::new().route(
        "/ceiling",
        post(|body: Body| async move {
            match read_body(body).await {
                Ok(_) => json_response(StatusCode::OK, Bytes::from_static(RESPONSE)),
                Err(resp) => resp,
            }
        }),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use axum::http::Request as HttpRequest;
    use base64::Engine as _;
    use kelos_hooks_shared::annotations::ON_COMPLETION;
    use serde_json::{Value, json};
    use tower::ServiceExt;

    use super::*;
    use crate::fixtures;
    use kelos_hooks_runtime::ProbeMetrics as _;

    const SNAP: &str = r#"{"hooks":[{"name":"a","webhook":{"url":"https://h.example.com/x"}}]}"#;
    const KELOS_CONTROLLER: &str = "system:serviceaccount:kelos-system:kelos-controller";

    fn app() -> Router {
        app_and_metrics().0
    }

    fn app_and_metrics() -> (Router, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new());
        let state = AppState {
            cache: fixtures::cache_with(fixtures::NS, fixtures::SPAWNER, SNAP),
            policy: Arc::new(IpPolicy::default()),
            dispatchers: vec![fixtures::DISPATCHER.to_owned()],
            kelos: Identities::new(&[KELOS_CONTROLLER.to_owned()]),
            metrics: metrics.clone(),
            authorizer: Default::default(),
        };
        (router(Arc::new(state)), metrics)
    }

    async fn post(path: &str, body: impl Into<Body>) -> (StatusCode, Value) {
        let req = HttpRequest::post(path)
            .header("content-type", "application/json")
            .body(body.into())
            .unwrap();
        let resp = app().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    #[tokio::test]
    async fn patch_is_a_base64_string() {
        let body = fixtures::task_create(fixtures::spawned_task(Value::Null), "kelos");
        let (status, v) = post(paths::MUTATE_TASKS, body).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(v["kind"], "AdmissionReview");
        let r = &v["response"];
        assert_eq!(r["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
        assert_eq!(r["allowed"], true);
        assert_eq!(r["patchType"], "JSONPatch");
        let b64 = r["patch"].as_str().expect("patch must be a string");
        let patch: Value = serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            patch,
            json!([{"op": "add", "path": "/metadata/annotations", "value": {ON_COMPLETION: SNAP}}])
        );
    }

    #[tokio::test]
    async fn no_patch_no_patch_type() {
        let body = fixtures::task_create(
            fixtures::spawned_task(json!({ON_COMPLETION: SNAP})),
            "kelos",
        );
        let (_, v) = post(paths::MUTATE_TASKS, body).await;
        assert!(v["response"].get("patch").is_none() && v["response"].get("patchType").is_none());
        assert!(v["response"].get("warnings").is_none());
    }

    #[tokio::test]
    async fn denial_carries_status_and_warnings() {
        let hooks = json!({"hooks": [{"name": "a", "webhook": {"url": "http://h.example.com/x?token=abcdef123456"}}]});
        let (status, v) = post(
            paths::VALIDATE_TASKSPAWNERS,
            fixtures::spawner_review("CREATE", hooks),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let r = &v["response"];
        assert_eq!(r["allowed"], false);
        assert_eq!(r["status"]["code"], 400);
        assert!(
            r["status"]["message"]
                .as_str()
                .unwrap()
                .contains("spec.onCompletion.hooks[0].webhook.url")
        );
    }

    #[tokio::test]
    async fn forbidden_edit_is_403() {
        let old = fixtures::spawned_task(json!({ON_COMPLETION: SNAP}));
        let new = fixtures::spawned_task(json!({ON_COMPLETION: "{}"}));
        let (_, v) = post(
            paths::VALIDATE_TASKS,
            fixtures::task_update(old, new, "alice"),
        )
        .await;
        assert_eq!(v["response"]["status"]["code"], 403);
        assert_eq!(v["response"]["status"]["reason"], "Forbidden");
    }

    #[tokio::test]
    async fn malformed_bodies_are_400_json() {
        for (body, needle) in [
            (b"{not json".to_vec(), "malformed"),
            (b"".to_vec(), "malformed"),
            (br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(), "no request"),
            (br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{}}"#.to_vec(), "apiVersion"),
            (br#"{"apiVersion":"admission.k8s.io/v1","kind":"Pod"}"#.to_vec(), "kind"),
            (br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":5}}"#.to_vec(), "malformed"),
            (b"[1,2,3]".to_vec(), "malformed"),
            // Truncated mid-way, and nested deeper than any stack.
            (truncated(), "EOF while parsing"),
            ("[".repeat(1_000_000).into_bytes(), "malformed"),
        ] {
            for path in [paths::VALIDATE_TASKSPAWNERS, paths::MUTATE_TASKS, paths::VALIDATE_TASKS] {
                let (status, v) = post(path, body.clone()).await;
                assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {}", String::from_utf8_lossy(&body));
                let msg = v["error"].as_str().unwrap_or_default();
                assert!(msg.contains(needle), "{path}: {msg:?} lacks {needle:?}");
            }
        }
    }

    fn truncated() -> Vec<u8> {
        let body = fixtures::task_create(fixtures::spawned_task(Value::Null), "kelos");
        body[..body.len() / 2].to_vec()
    }

    #[tokio::test]
    async fn deep_nesting_is_judged_without_a_panic() {
        let deep = "[".repeat(500_000) + &"]".repeat(500_000);
        // In a field no decision reads: skipped (iteratively), the Task is judged as usual.
        let task = fixtures::task_create(fixtures::spawned_task(Value::Null), "kelos");
        let task = String::from_utf8(task).unwrap().replacen(
            r#""spec":{"#,
            &format!(r#""spec":{{"deep":{deep},"#),
            1,
        );
        let (status, v) = post(paths::MUTATE_TASKS, task).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["response"]["patchType"], "JSONPatch");
        // In onCompletion, which the rules walk: a denial naming serde_json's recursion limit.
        let spawner = fixtures::spawner_review("CREATE", json!({"hooks": "PLACEHOLDER"}));
        let spawner = String::from_utf8(spawner)
            .unwrap()
            .replacen(r#""PLACEHOLDER""#, &deep, 1);
        let (status, v) = post(paths::VALIDATE_TASKSPAWNERS, spawner).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["response"]["allowed"], false);
        let message = v["response"]["status"]["message"].as_str().unwrap();
        assert!(
            message.contains("spec.onCompletion: unreadable: recursion limit exceeded"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn oversized_body_is_413() {
        let big = vec![b' '; MAX_BODY + 1];
        let (status, v) = post(paths::MUTATE_TASKS, big).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(v["error"].as_str().unwrap().contains("limit"));
    }

    #[tokio::test]
    async fn misrouted_kind_is_denied() {
        let body = fixtures::task_create(fixtures::spawned_task(Value::Null), "kelos");
        let (status, v) = post(paths::VALIDATE_TASKSPAWNERS, body).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["response"]["allowed"], false);
        assert!(
            v["response"]["status"]["message"]
                .as_str()
                .unwrap()
                .contains("got kelos.dev/v1alpha2 Task")
        );
    }

    #[tokio::test]
    async fn dry_run_is_judged_the_same() {
        let mut v: Value = serde_json::from_slice(&fixtures::task_create(
            fixtures::spawned_task(Value::Null),
            "k",
        ))
        .unwrap();
        v["request"]["dryRun"] = json!(true);
        let (_, out) = post(paths::MUTATE_TASKS, serde_json::to_vec(&v).unwrap()).await;
        assert_eq!(out["response"]["patchType"], "JSONPatch");
    }

    #[tokio::test]
    async fn the_benchmark_ceiling_is_not_served() {
        let req = HttpRequest::post("/ceiling")
            .body(Body::from("{}"))
            .unwrap();
        let resp = app().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    }

    #[cfg(feature = "bench-ceiling")]
    #[tokio::test]
    async fn ceiling_answers_without_parsing() {
        let req = HttpRequest::post("/ceiling")
            .body(Body::from("anything at all"))
            .unwrap();
        let resp = ceiling_router().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["response"]["allowed"], true);
    }

    #[tokio::test]
    async fn requests_are_counted() {
        let (a, metrics) = app_and_metrics();
        let body = fixtures::task_create(fixtures::spawned_task(Value::Null), "kelos");
        let req = HttpRequest::post(paths::MUTATE_TASKS)
            .body(Body::from(body))
            .unwrap();
        assert_eq!(a.oneshot(req).await.unwrap().status(), StatusCode::OK);
        let text = metrics.encode();
        assert!(
            text.contains(r#"admission_requests_total{endpoint="mutate-tasks",operation="CREATE",allowed="true"} 1"#),
            "{text}"
        );
    }

    #[tokio::test]
    async fn taskspawner_mutation_restores_for_kelos_and_refuses_bad_bodies() {
        let spawner = |oc: Value| {
            json!({"apiVersion": "kelos.dev/v1alpha2", "kind": "TaskSpawner",
            "metadata": {"name": fixtures::SPAWNER, "namespace": fixtures::NS, "resourceVersion": "3"},
            "spec": {"when": {}, "onCompletion": oc}})
        };
        let hooks: Value = serde_json::from_str(SNAP).unwrap();
        let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "u-1", "operation": "UPDATE", "namespace": fixtures::NS, "name": fixtures::SPAWNER,
            "kind": {"group": "kelos.dev", "version": "v1alpha2", "kind": "TaskSpawner"},
            "requestKind": {"group": "kelos.dev", "version": "v1alpha2", "kind": "TaskSpawner"},
            "userInfo": {"username": KELOS_CONTROLLER},
            "object": spawner(Value::Null), "oldObject": spawner(hooks.clone())}});
        let (status, v) = post(paths::MUTATE_TASKSPAWNERS, review.to_string()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["response"]["uid"], "u-1");
        let patch: Value = serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(v["response"]["patch"].as_str().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            patch,
            json!([{"op": "add", "path": "/spec/onCompletion", "value": hooks}])
        );

        // Through v1alpha1 the cache (which has hooks for this spawner) decides: refused.
        let mut v1 = review.clone();
        v1["request"]["requestKind"]["version"] = json!("v1alpha1");
        v1["request"]["kind"]["version"] = json!("v1alpha1");
        let (_, v) = post(paths::MUTATE_TASKSPAWNERS, v1.to_string()).await;
        assert_eq!(v["response"]["allowed"], false);
        assert!(
            v["response"]["status"]["message"]
                .as_str()
                .unwrap()
                .contains("kelos.dev/v1alpha1 cannot carry")
        );

        let mut task = review;
        task["request"]["kind"]["kind"] = json!("Task");
        let (_, v) = post(paths::MUTATE_TASKSPAWNERS, task.to_string()).await;
        assert_eq!(v["response"]["allowed"], false);
        for body in [
            "{",
            "",
            r#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"u","operation":"UPDATE","kind":{}}}"#,
        ] {
            let (status, v) = post(paths::MUTATE_TASKSPAWNERS, body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert!(v["error"].is_string());
        }
    }
}
