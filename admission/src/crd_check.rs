//! Start-up (and periodic) check that the installed TaskSpawner CRD keeps `spec.onCompletion`:
//! the API server prunes undeclared fields, which would make every hook vanish silently.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource};

use crate::metrics::Metrics;
use kelos_hooks_runtime::Health;

/// Readiness check: the TaskSpawner CRD keeps `spec.onCompletion`.
pub const READY_CHECK: &str = "TaskSpawner CRD";

/// Name of the CRD checked.
pub const CRD_NAME: &str = "taskspawners.kelos.dev";

const FIX: &str = "install a kelos release whose TaskSpawner CRD declares spec.onCompletion, or (clusters \
                   without kelos's CRDs) apply kelos-hooks' CRDs: `kelos-hooks-admission crds | kubectl apply -f -` \
                   or the chart with crds.install=true";

fn keeps_on_completion(root: &JSONSchemaProps) -> bool {
    if root.x_kubernetes_preserve_unknown_fields == Some(true)
        && root
            .properties
            .as_ref()
            .is_none_or(|p| !p.contains_key("spec"))
    {
        return true;
    }
    let Some(spec) = root.properties.as_ref().and_then(|p| p.get("spec")) else {
        return false;
    };
    spec.x_kubernetes_preserve_unknown_fields == Some(true)
        || spec
            .properties
            .as_ref()
            .is_some_and(|p| p.contains_key("onCompletion"))
}

/// `Ok` when every served version keeps `spec.onCompletion` (declared, or `spec` preserves
/// unknown fields); else what is wrong and how to fix it.
pub fn check(crd: &CustomResourceDefinition) -> Result<(), String> {
    let bad: Vec<&str> = crd
        .spec
        .versions
        .iter()
        .filter(|v| v.served)
        .filter(|v| {
            !v.schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .is_some_and(keeps_on_completion)
        })
        .map(|v| v.name.as_str())
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    Err(format!(
        "CRD {CRD_NAME}: served version(s) {} do not declare spec.onCompletion, so the API server \
         silently drops every hook; {FIX}",
        bad.join(", ")
    ))
}

/// Checks now and every `interval`, updating readiness, the metric, logs and a Warning Event on
/// the CRD when a problem appears or changes.
pub async fn run(client: Client, health: Arc<Health>, metrics: Arc<Metrics>, interval: Duration) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let reporter = Reporter {
        controller: "kelos-hooks-admission".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let recorder = Recorder::new(client, reporter);
    let mut last: Option<String> = None;
    let mut ticker = tokio::time::interval(interval.max(Duration::from_secs(1)));
    loop {
        ticker.tick().await;
        let (problem, crd) = match api.get_opt(CRD_NAME).await {
            Ok(Some(crd)) => (check(&crd).err(), Some(crd)),
            Ok(None) => (
                Some(format!("CRD {CRD_NAME} is not installed; {FIX}")),
                None,
            ),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read CRD {CRD_NAME}; keeping the previous verdict");
                continue;
            }
        };
        health.set(READY_CHECK, problem.clone());
        metrics.crd_problem.set(i64::from(problem.is_some()));
        if problem == last {
            continue;
        }
        match (&problem, crd) {
            (Some(p), crd) => {
                tracing::error!("{p}");
                if let Some(crd) = crd {
                    let ev = Event {
                        type_: EventType::Warning,
                        reason: "OnCompletionNotDeclared".into(),
                        note: Some(p.chars().take(1000).collect()),
                        action: "CheckCRD".into(),
                        secondary: None,
                    };
                    if let Err(e) = recorder.publish(&ev, &crd.object_ref(&())).await {
                        tracing::warn!(error = %e, "cannot publish the CRD Event");
                    }
                }
            }
            (None, _) => tracing::info!("CRD {CRD_NAME} keeps spec.onCompletion"),
        }
        last = problem;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    fn crd(versions: serde_json::Value) -> CustomResourceDefinition {
        serde_json::from_value(json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": CRD_NAME},
            "spec": {"group": "kelos.dev", "scope": "Namespaced",
                     "names": {"plural": "taskspawners", "kind": "TaskSpawner"},
                     "versions": versions}
        }))
        .unwrap()
    }

    fn version(name: &str, served: bool, spec: serde_json::Value) -> serde_json::Value {
        json!({"name": name, "served": served, "storage": served,
               "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": spec}}}})
    }

    #[test]
    fn our_generated_crd_passes() {
        let ours = kelos_hooks_shared::crd::all()
            .into_iter()
            .find(|c| c.metadata.name.as_deref() == Some(CRD_NAME))
            .unwrap();
        assert_eq!(check(&ours), Ok(()));
    }

    #[test]
    fn kelos_crd_without_on_completion_fails() {
        let c = crd(json!([
            version(
                "v1alpha1",
                true,
                json!({"type": "object", "properties": {"when": {"type": "object"}}})
            ),
            version(
                "v1alpha2",
                true,
                json!({"type": "object", "properties": {"onCompletion": {"type": "object"}}})
            ),
        ]));
        let err = check(&c).unwrap_err();
        assert!(
            err.contains("v1alpha1") && !err.contains("v1alpha2,"),
            "{err}"
        );
        assert!(err.contains("kelos-hooks-admission crds"), "{err}");
    }

    #[test]
    fn unserved_versions_and_preserve_unknown_are_fine() {
        let c = crd(json!([
            version("v1alpha1", false, json!({"type": "object"})),
            version(
                "v1alpha2",
                true,
                json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
            ),
        ]));
        assert_eq!(check(&c), Ok(()));
    }
}
