//! Start-up (and periodic) check that the TaskSpawner CRD keeps `spec.onCompletion`: the API
//! server prunes undeclared fields, which would make every hook vanish without an error.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{Api, Client};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use kelos_hooks_runtime::Health;

/// Readiness check: the TaskSpawner CRD keeps `spec.onCompletion`.
pub const READY_CHECK: &str = "TaskSpawner CRD";

/// Name of the CRD checked.
pub const CRD_NAME: &str = "taskspawners.kelos.dev";

/// What is wrong with the CRD, or `None` when every served version keeps `spec.onCompletion`.
pub fn problem(crd: &CustomResourceDefinition) -> Option<String> {
    let mut bad = Vec::new();
    for v in crd.spec.versions.iter().filter(|v| v.served) {
        let schema = v
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .and_then(|s| serde_json::to_value(s).ok())
            .unwrap_or(Value::Null);
        let spec = &schema["properties"]["spec"];
        let declared = spec["properties"].get("onCompletion").is_some();
        let preserved = spec["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true);
        if !declared && !preserved {
            bad.push(v.name.clone());
        }
    }
    if bad.is_empty() {
        return None;
    }
    Some(format!(
        "CRD {CRD_NAME} version(s) {} do not declare spec.onCompletion: the API server prunes it, so \
         TaskSpawner hooks are silently dropped. Fix: install a kelos release whose TaskSpawner CRD \
         includes onCompletion, or install kelos-hooks' CRDs (`kelos-hooks-admission crds`, chart \
         value crds.install=true).",
        bad.join(", ")
    ))
}

/// Checks once and updates readiness and metrics; returns the problem.
pub async fn check_once(client: &Client, health: &Health, metrics: &Metrics) -> Option<String> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let problem = match api.get_opt(CRD_NAME).await {
        Ok(Some(crd)) => problem(&crd),
        Ok(None) => Some(format!(
            "CRD {CRD_NAME} is not installed: install kelos or kelos-hooks' CRDs"
        )),
        Err(e) => Some(format!(
            "cannot read CRD {CRD_NAME}: {e} (RBAC needs get on customresourcedefinitions)"
        )),
    };
    match &problem {
        Some(p) => tracing::error!(problem = %p, "TaskSpawner CRD check failed"),
        None => tracing::info!("TaskSpawner CRD declares spec.onCompletion"),
    }
    metrics.crd_ok.set(i64::from(problem.is_none()));
    health.set(READY_CHECK, problem.clone());
    problem
}

/// Re-checks every `interval` until `stop`.
pub async fn run(
    client: Client,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    interval: Duration,
    stop: CancellationToken,
) {
    loop {
        check_once(&client, &health, &metrics).await;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn ours_passes_and_kelos_own_fails() {
        assert_eq!(problem(&kelos_hooks_shared::crd::task_spawner()), None);
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/kelos-crds/taskspawner-crd.yaml"
        );
        if let Ok(text) = std::fs::read_to_string(path) {
            let crd: CustomResourceDefinition =
                serde_json::from_value(yaml_to_json(&text)).unwrap();
            let p = problem(&crd).expect("kelos' CRD lacks onCompletion");
            assert!(p.contains("v1alpha2") && p.contains("v1alpha1"), "{p}");
        }
    }

    /// kelos ships the CRD as a Helm template: drop the template lines.
    fn yaml_to_json(text: &str) -> Value {
        let plain: String = text
            .lines()
            .filter(|l| !l.contains("{{"))
            .map(|l| format!("{l}\n"))
            .collect();
        serde_saphyr::from_str(&plain).unwrap()
    }
}
