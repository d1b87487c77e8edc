//! Fuzz target bodies for the admission server (feature `fuzzing`): each webhook endpoint end to
//! end, and the `validate -f` YAML reader.
//!
//! An endpoint target posts the fuzzer's bytes as a review body through the real router (body
//! limit, parsing, decision, encoding) and checks the HTTP answer: 200 with a well-formed
//! `admission.k8s.io/v1` AdmissionReview echoing the request's uid, or 400 with a JSON error.
//! The cargo-fuzz binaries in `fuzz/fuzz_targets/` call these functions; this crate's tests
//! replay every kept input on stable (`kelos_hooks_shared::fuzzing::replay`).

use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::body::Body;
use axum::http::{Request as HttpRequest, StatusCode};
use base64::Engine as _;
use kelos_hooks_shared::ip::IpPolicy;
use kelos_hooks_shared::validation::Context;
use serde_json::Value;
use tower::ServiceExt as _;

use crate::admission::{AppState, paths, router};
use crate::cache::{Lookup, SpawnerHooks};
use crate::cli::{DEFAULT_DISPATCHER_IDENTITY, DEFAULT_KELOS_IDENTITIES};
use crate::fixtures;
use crate::handlers::mutate_taskspawner::Identities;
use crate::metrics::{Endpoint, Metrics};
use crate::review;
use crate::validate_cmd::{judge_documents, parse_documents};

/// The server under test: a synced cache with [`fixtures::SPAWNER`] (valid hooks) and
/// `broken-spawner` (stored hooks that break the rules) in [`fixtures::NS`]; misses find nothing.
struct Server {
    runtime: tokio::runtime::Runtime,
    router: Router,
}

static SERVER: LazyLock<Option<Server>> = LazyLock::new(|| {
    let policy = Arc::new(IpPolicy::default());
    let valid = SpawnerHooks::from_on_completion(Some(&fixtures::valid_hooks()), &policy);
    let broken =
        SpawnerHooks::Invalid("spec.onCompletion.hooks[0].webhook.url: must use https".into());
    let (cache, _) = fixtures::cache(
        vec![
            fixtures::cached_spawner(fixtures::NS, fixtures::SPAWNER, valid),
            fixtures::cached_spawner(fixtures::NS, "broken-spawner", broken),
        ],
        Lookup::NotFound,
    );
    let state = AppState {
        cache,
        policy,
        dispatchers: vec![DEFAULT_DISPATCHER_IDENTITY.to_owned()],
        kelos: Identities::new(&DEFAULT_KELOS_IDENTITIES.map(String::from)),
        metrics: Arc::new(Metrics::new()),
        authorizer: Default::default(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().build().ok()?;
    Some(Server {
        runtime,
        router: router(Arc::new(state)),
    })
});

fn path_of(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::ValidateTaskSpawners => paths::VALIDATE_TASKSPAWNERS,
        Endpoint::MutateTasks => paths::MUTATE_TASKS,
        Endpoint::ValidateTasks => paths::VALIDATE_TASKS,
        Endpoint::MutateTaskSpawners => paths::MUTATE_TASKSPAWNERS,
        Endpoint::StampRedelivery => paths::STAMP_REDELIVERY,
    }
}

/// `fuzz_targets/<endpoint>.rs`: `data` posted to `endpoint` as a review body.
///
/// Properties: the answer is 200 exactly when the body is a review ([`review::parse`]), else 400
/// with `{"error": "..."}`. A 200 carries a valid AdmissionReview: `admission.k8s.io/v1`, the
/// request's uid, `allowed`, a `status` (code 4xx, message, reason) exactly when denied,
/// `warnings` as strings, and a patch only when allowed, typed `JSONPatch`, whose base64 decodes
/// to a JSON Patch that applies to the object under review.
pub fn endpoint(endpoint: Endpoint, data: &[u8]) {
    let Some(server) = SERVER.as_ref() else {
        panic!("cannot start a tokio runtime for the admission router");
    };
    let (status, body) = server
        .runtime
        .block_on(post(&server.router, endpoint, data));
    let answer: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => panic!("HTTP {status}: body is not JSON ({e})"),
    };
    let request = review::parse(data);
    match status {
        StatusCode::OK => {
            let request = match request {
                Ok(r) => r,
                Err(e) => panic!("200 for a body that is not a review: {e}"),
            };
            check_review(&answer, &request.uid, data);
        }
        StatusCode::BAD_REQUEST => {
            assert!(request.is_err(), "400 for a review that parses: {answer}");
            assert!(
                answer["error"].as_str().is_some_and(|e| !e.is_empty()),
                "400 without an error: {answer}"
            );
        }
        other => panic!("unexpected HTTP {other}: {answer}"),
    }
}

async fn post(router: &Router, endpoint: Endpoint, data: &[u8]) -> (StatusCode, Vec<u8>) {
    let req = match HttpRequest::post(path_of(endpoint))
        .header("content-type", "application/json")
        .body(Body::from(data.to_vec()))
    {
        Ok(r) => r,
        Err(e) => panic!("cannot build the request: {e}"),
    };
    let resp = match router.clone().oneshot(req).await {
        Ok(r) => r,
        Err(e) => match e {},
    };
    let status = resp.status();
    match axum::body::to_bytes(resp.into_body(), usize::MAX).await {
        Ok(b) => (status, b.to_vec()),
        Err(e) => panic!("cannot read the response body: {e}"),
    }
}

/// Checks a 200 answer against the admission API (`admission.k8s.io/v1` AdmissionResponse).
fn check_review(answer: &Value, uid: &str, body: &[u8]) {
    assert_eq!(answer["apiVersion"], review::API_VERSION, "{answer}");
    assert_eq!(answer["kind"], review::KIND, "{answer}");
    let Some(resp) = answer["response"].as_object() else {
        panic!("no response object: {answer}");
    };
    for key in resp.keys() {
        assert!(
            ["uid", "allowed", "status", "patch", "patchType", "warnings"].contains(&key.as_str()),
            "unknown response field {key}: {answer}"
        );
    }
    assert_eq!(
        resp.get("uid").and_then(Value::as_str),
        Some(uid),
        "uid not echoed"
    );
    let Some(allowed) = resp.get("allowed").and_then(Value::as_bool) else {
        panic!("allowed is not a bool: {answer}");
    };
    match resp.get("status") {
        None => assert!(allowed, "denied without a status: {answer}"),
        Some(status) => {
            assert!(!allowed, "allowed with a status: {answer}");
            let code = status["code"].as_u64().unwrap_or_default();
            assert!((400..500).contains(&code), "status code {code}: {answer}");
            assert!(
                status["message"].as_str().is_some_and(|m| !m.is_empty()),
                "no message: {answer}"
            );
            assert!(
                status["reason"].as_str().is_some_and(|r| !r.is_empty()),
                "no reason: {answer}"
            );
        }
    }
    if let Some(warnings) = resp.get("warnings") {
        let all_strings = warnings
            .as_array()
            .is_some_and(|w| w.iter().all(Value::is_string));
        assert!(all_strings, "warnings are not a list of strings: {answer}");
    }
    match (resp.get("patch"), resp.get("patchType")) {
        (None, None) => {}
        (Some(patch), Some(kind)) => {
            assert!(allowed, "a denial carries a patch: {answer}");
            assert_eq!(kind, "JSONPatch", "{answer}");
            check_patch(patch, body);
        }
        _ => panic!("patch and patchType must come together: {answer}"),
    }
}

/// The patch decodes to a JSON Patch that applies to `request.object` of `body`.
fn check_patch(patch: &Value, body: &[u8]) {
    let Some(b64) = patch.as_str() else {
        panic!("patch is not a string: {patch}");
    };
    let bytes = match base64::engine::general_purpose::STANDARD.decode(b64) {
        Ok(b) => b,
        Err(e) => panic!("patch is not base64 ({e}): {b64}"),
    };
    let ops: json_patch::Patch = match serde_json::from_slice(&bytes) {
        Ok(p) => p,
        Err(e) => panic!(
            "patch is not a JSON Patch ({e}): {}",
            String::from_utf8_lossy(&bytes)
        ),
    };
    // serde skips the strings of fields no decision reads without checking their UTF-8, so a
    // review the server parsed may hold invalid UTF-8 there; the API server never sends that.
    let review: Value = match serde_json::from_str(&String::from_utf8_lossy(body)) {
        Ok(v) => v,
        Err(e) => panic!("a parsed review is not JSON: {e}"),
    };
    let mut object = review["request"]["object"].clone();
    if let Err(e) = json_patch::patch(&mut object, &ops) {
        panic!("patch {ops:?} does not apply to the object: {e}");
    }
}

/// `fuzz_targets/validate_yaml.rs`: `validate -f` reading `data` as a YAML file.
///
/// Properties: YAML that parses is judged without a panic, at most as many TaskSpawners are
/// invalid as were checked, and the report is text.
pub fn validate_yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return; // `validate -f` reads files as UTF-8 and stops at the I/O error
    };
    let Ok(docs) = parse_documents(text) else {
        return;
    };
    let mut out = Vec::new();
    let tally = judge_documents("fuzz.yaml", &docs, &Context::default(), true, &mut out);
    assert!(tally.invalid <= tally.checked, "{tally:?}");
    assert!(String::from_utf8(out).is_ok(), "report is not UTF-8");
}

#[cfg(test)]
mod tests {
    use kelos_hooks_shared::fuzzing::replay;

    use super::*;

    #[test]
    fn validate_taskspawners_corpus() {
        replay("validate_taskspawners", |d| {
            endpoint(Endpoint::ValidateTaskSpawners, d)
        });
    }

    #[test]
    fn mutate_tasks_corpus() {
        replay("mutate_tasks", |d| endpoint(Endpoint::MutateTasks, d));
    }

    #[test]
    fn validate_tasks_corpus() {
        replay("validate_tasks", |d| endpoint(Endpoint::ValidateTasks, d));
    }

    #[test]
    fn mutate_taskspawners_corpus() {
        replay("mutate_taskspawners", |d| {
            endpoint(Endpoint::MutateTaskSpawners, d)
        });
    }

    #[test]
    fn validate_yaml_corpus() {
        replay("validate_yaml", validate_yaml);
    }

    #[test]
    fn the_mutation_seed_is_patched() {
        // The checks above only bite if the fuzzed server really patches: a spawned Task is.
        let body = fixtures::task_create(fixtures::spawned_task(Value::Null), "kelos");
        let out = SERVER.as_ref().map(|s| {
            s.runtime
                .block_on(post(&s.router, Endpoint::MutateTasks, &body))
        });
        let (status, out) = out.unwrap_or_default();
        assert_eq!(status, StatusCode::OK);
        let v: Value = serde_json::from_slice(&out).unwrap_or_default();
        assert_eq!(v["response"]["patchType"], "JSONPatch", "{v}");
        endpoint(Endpoint::MutateTasks, &body);
    }
}
