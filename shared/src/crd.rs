//! CustomResourceDefinitions generated from the Rust types, and the pieces kelos-hooks puts into
//! kelos's own TaskSpawner CRD.
//!
//! The derived schemas type only what kelos-hooks owns; kelos' own fields are declared
//! `x-kubernetes-preserve-unknown-fields` so the API server keeps them. The rules of
//! `onCompletion` that a schema can express are CEL `x-kubernetes-validations` carrying the
//! admission server's wording ([`cel`]), so a user reads the same message whether the API server
//! or the webhook answers.

mod cel;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition, JSONSchemaProps,
};
use kube::CustomResourceExt;
use serde_json::{Value, json};

use crate::api::{Task, TaskSpawner};

/// Name of the TaskSpawner CRD (kelos's, or the one kelos-hooks installs).
pub const TASKSPAWNER_CRD: &str = "taskspawners.kelos.dev";

/// Written into the `description` of every schema piece kelos-hooks contributes: tells our
/// `onCompletion` apart from one a kelos build declares itself (its own reporter).
pub const MARK: &str = "(kelos-hooks)";

/// The TaskSpawner and Task CRDs, as kelos-hooks installs them when asked (`crds.install`).
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![task_spawner(), task()]
}

/// `taskspawners.kelos.dev` with `spec.onCompletion` typed and its rules in CEL.
pub fn task_spawner() -> CustomResourceDefinition {
    let mut crd = TaskSpawner::crd();
    edit_schema(&mut crd, |schema| {
        let props = &mut schema["properties"];
        let spec = &mut props["spec"];
        spec["x-kubernetes-preserve-unknown-fields"] = json!(true);
        let on_completion = &mut spec["properties"]["onCompletion"];
        on_completion["description"] = json!(format!(
            "Webhooks fired when a spawned Task reaches Succeeded or Failed {MARK}."
        ));
        cel::add_rules(on_completion);
        props["status"] = preserved_object("Written by the kelos controller.");
    });
    crd.spec.names.short_names = Some(vec!["ts".into()]);
    crd
}

/// The `spec.properties.onCompletion` schema kelos-hooks puts into the served v1alpha2 version of
/// kelos's TaskSpawner CRD: the same as in [`task_spawner`].
pub fn on_completion_schema() -> Value {
    let crd = serde_json::to_value(task_spawner()).unwrap_or(Value::Null);
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["onCompletion"]
        .clone()
}

/// The `spec.properties.onCompletion` schema kelos-hooks puts into kelos's v1alpha1: kelos's
/// conversion to the stored v1alpha2 drops the field, so hooks written through v1alpha1 would be
/// lost without a word. Declared here only to refuse them with a message that says what to do.
pub fn v1alpha1_refusal_schema() -> Value {
    json!({
        "description": format!(
            "Not available in kelos.dev/v1alpha1: write spec.onCompletion through kelos.dev/v1alpha2 {MARK}."
        ),
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
        "x-kubernetes-validations": [{
            "rule": "false",
            "reason": "FieldValueForbidden",
            "message": "kelos.dev/v1alpha1 cannot carry spec.onCompletion (kelos's conversion to the \
                        stored kelos.dev/v1alpha2 drops it, so the hooks would be lost); apply this \
                        TaskSpawner as apiVersion: kelos.dev/v1alpha2",
        }],
    })
}

/// Whether a schema node was contributed by kelos-hooks (its description carries [`MARK`]).
pub fn is_ours(schema: &Value) -> bool {
    schema["description"]
        .as_str()
        .is_some_and(|d| d.contains(MARK))
}

/// `tasks.kelos.dev` with the status fields a notification reports typed.
pub fn task() -> CustomResourceDefinition {
    let mut crd = Task::crd();
    edit_schema(&mut crd, |schema| {
        let props = &mut schema["properties"];
        props["spec"]["x-kubernetes-preserve-unknown-fields"] = json!(true);
        props["status"]["x-kubernetes-preserve-unknown-fields"] = json!(true);
        // kelos stores costUSD as int-or-string (a Quantity).
        props["status"]["properties"]["usage"]["properties"]["costUSD"] =
            json!({"x-kubernetes-int-or-string": true, "nullable": true});
    });
    if let Some(version) = crd.spec.versions.first_mut() {
        version.additional_printer_columns = Some(vec![
            column("Type", ".spec.type"),
            column("Phase", ".status.phase"),
            column(
                "Report",
                ".metadata.annotations.kelos\\.dev/webhook-report-phase",
            ),
        ]);
    }
    crd
}

/// The CRDs as multi-document YAML-compatible JSON lines (what `crds` prints).
pub fn to_json_documents() -> Vec<String> {
    all()
        .iter()
        .filter_map(|crd| serde_json::to_string_pretty(crd).ok())
        .collect()
}

fn column(name: &str, path: &str) -> CustomResourceColumnDefinition {
    CustomResourceColumnDefinition {
        name: name.into(),
        json_path: path.into(),
        type_: "string".into(),
        ..Default::default()
    }
}

fn preserved_object(description: &str) -> Value {
    json!({
        "type": "object",
        "description": description,
        "nullable": true,
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// Applies `edit` to the openAPIV3Schema of every version, through JSON: the typed
/// `JSONSchemaProps` has no room for vendor extensions on arbitrary nodes.
fn edit_schema(crd: &mut CustomResourceDefinition, edit: impl Fn(&mut Value)) {
    for version in &mut crd.spec.versions {
        let Some(validation) = version.schema.as_mut() else {
            continue;
        };
        let Some(props) = validation.open_api_v3_schema.take() else {
            continue;
        };
        let mut value = serde_json::to_value(props).unwrap_or(Value::Null);
        edit(&mut value);
        validation.open_api_v3_schema = serde_json::from_value::<JSONSchemaProps>(value).ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pieces_we_contribute_are_marked_and_typed() {
        let oc = on_completion_schema();
        assert!(is_ours(&oc), "{oc}");
        assert_eq!(oc["properties"]["hooks"]["type"], "array");
        assert!(is_ours(&v1alpha1_refusal_schema()));
        assert!(!is_ours(
            &json!({"description": "OnCompletion configures outbound notifications"})
        ));
        assert!(!is_ours(&Value::Null));
    }

    #[test]
    fn every_schema_piece_is_a_valid_json_schema_props() {
        for piece in [on_completion_schema(), v1alpha1_refusal_schema()] {
            let typed: JSONSchemaProps = serde_json::from_value(piece.clone()).unwrap_or_default();
            assert_eq!(serde_json::to_value(typed).ok(), Some(piece));
        }
    }
}
