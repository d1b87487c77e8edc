//! CustomResourceDefinitions generated from the Rust types.
//!
//! The derived schemas type only what kelos-hooks owns; kelos' own fields are declared
//! `x-kubernetes-preserve-unknown-fields` so the API server keeps them. The structural rules of
//! `onCompletion` (enum, `maxItems: 8`, https pattern, unique names and phases) are in the schema
//! too, as a second layer behind the admission server.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition, JSONSchemaProps,
};
use kube::CustomResourceExt;
use serde_json::{Value, json};

use crate::api::{Task, TaskSpawner};

/// The TaskSpawner and Task CRDs, as kelos-hooks installs them when asked (`crds.install`).
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![task_spawner(), task()]
}

/// `taskspawners.kelos.dev` with `spec.onCompletion` typed.
pub fn task_spawner() -> CustomResourceDefinition {
    let mut crd = TaskSpawner::crd();
    edit_schema(&mut crd, |schema| {
        let props = &mut schema["properties"];
        let spec = &mut props["spec"];
        spec["x-kubernetes-preserve-unknown-fields"] = json!(true);
        let hooks = &mut spec["properties"]["onCompletion"]["properties"]["hooks"];
        hooks["x-kubernetes-list-type"] = json!("map");
        hooks["x-kubernetes-list-map-keys"] = json!(["name"]);
        hooks["items"]["properties"]["phases"]["x-kubernetes-list-type"] = json!("set");
        props["status"] = preserved_object("Written by the kelos controller.");
    });
    crd.spec.names.short_names = Some(vec!["ts".into()]);
    crd
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
