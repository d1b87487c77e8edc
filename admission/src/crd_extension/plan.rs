//! What to change in kelos's TaskSpawner CRD (pure): JSON patches that put in, or take out, the
//! `spec.onCompletion` schema kelos-hooks contributes.
//!
//! `spec.versions` is an atomic list, so ownership (managedFields) cannot be finer than the whole
//! list: any write to it, by any means, makes the writer the owner of all of `spec.versions`. A
//! server-side apply would also have to carry kelos's versions whole (an apply of a partial list
//! replaces the list), asserting our copy of kelos's schema as ours from then on, and could put
//! back a version kelos has since removed. So these are JSON patches (recorded as an `Update`,
//! which never conflicts with kelos's forced applies and asserts nothing afterwards): a `test` of
//! the `resourceVersion` read makes the patch apply to exactly the object judged, or fail (then
//! the watch brings the newer one), and each `add`/`remove` touches one property.

use std::collections::BTreeMap;

use kelos_hooks_shared::crd::{is_ours, on_completion_schema, v1alpha1_refusal_schema};
use serde_json::{Value, json};

/// The field manager of our patches.
pub const FIELD_MANAGER: &str = "kelos-hooks-admission";

/// What each version's `spec.properties.onCompletion` should be.
#[derive(Clone, Debug)]
pub struct Wanted {
    by_version: BTreeMap<&'static str, Value>,
}

impl Default for Wanted {
    fn default() -> Self {
        Wanted {
            by_version: BTreeMap::from([
                ("v1alpha2", on_completion_schema()),
                ("v1alpha1", v1alpha1_refusal_schema()),
            ]),
        }
    }
}

/// The decision for one observed CRD.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// Everything is in place.
    InPlace,
    /// kelos declares `spec.onCompletion` itself (a build with its own reporter): left alone.
    KelosOwn,
    /// Apply `ops` (a JSON patch).
    Patch {
        /// The patch.
        ops: Value,
        /// Versions whose `onCompletion` was missing (a kelos install or upgrade replaced the
        /// CRD); the others were an older kelos-hooks schema, now updated.
        restored: Vec<String>,
        /// Who last wrote `spec.versions` (and so removed the property), from managedFields.
        removed_by: Option<String>,
    },
    /// The CRD has no shape this can extend.
    Cannot(String),
}

/// Path of `spec.properties` in version `index`'s schema.
fn spec_path(index: usize) -> String {
    format!("/spec/versions/{index}/schema/openAPIV3Schema/properties/spec")
}

fn preconditions(crd: &Value) -> Vec<Value> {
    vec![json!({"op": "test", "path": "/metadata/resourceVersion",
                "value": crd["metadata"]["resourceVersion"]})]
}

fn test_name(index: usize, name: &str) -> Value {
    json!({"op": "test", "path": format!("/spec/versions/{index}/name"), "value": name})
}

/// Plans the patch that makes `crd` (as JSON) carry `wanted`. `accepted` holds, per version, the
/// schema as the API server returned it after our last patch (if it normalised ours, that form
/// counts as in place too, so we never patch in a loop).
pub fn ensure(crd: &Value, wanted: &Wanted, accepted: &BTreeMap<String, Value>) -> Plan {
    let versions = crd["spec"]["versions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let served = |name: &str| {
        versions
            .iter()
            .position(|v| v["name"] == name && v["served"] == json!(true))
    };
    if served("v1alpha2").is_none() {
        return Plan::Cannot(
            "it does not serve kelos.dev/v1alpha2, the version kelos-hooks reads and writes".into(),
        );
    }
    let mut ops = preconditions(crd);
    let mut restored = Vec::new();
    for (name, schema) in &wanted.by_version {
        let Some(index) = served(name) else {
            continue;
        };
        let spec = &versions[index]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        if !spec.is_object() {
            return Plan::Cannot(format!("version {name} declares no spec object to extend"));
        }
        let current = &spec["properties"]["onCompletion"];
        if current.is_object() && !is_ours(current) {
            // kelos's own onCompletion: theirs, in every version.
            return Plan::KelosOwn;
        }
        if current == schema || accepted.get(*name) == Some(current) {
            continue;
        }
        if current.is_null() {
            restored.push((*name).to_owned());
        }
        ops.push(test_name(index, name));
        ops.push(if spec["properties"].is_object() {
            json!({"op": "add", "path": format!("{}/properties/onCompletion", spec_path(index)), "value": schema})
        } else {
            json!({"op": "add", "path": format!("{}/properties", spec_path(index)), "value": {"onCompletion": schema}})
        });
    }
    if ops.len() == 1 {
        return Plan::InPlace;
    }
    Plan::Patch {
        ops: Value::Array(ops),
        restored,
        removed_by: last_versions_writer(crd),
    }
}

/// The patch taking our `onCompletion` out of every version that carries it (`None`: nothing
/// of ours is there). kelos's own declaration is never touched.
pub fn remove(crd: &Value) -> Option<Value> {
    let mut ops = preconditions(crd);
    for (index, version) in crd["spec"]["versions"].as_array()?.iter().enumerate() {
        let current = &version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["onCompletion"];
        if is_ours(current) {
            ops.push(test_name(
                index,
                version["name"].as_str().unwrap_or_default(),
            ));
            ops.push(json!({"op": "remove", "path": format!("{}/properties/onCompletion", spec_path(index))}));
        }
    }
    (ops.len() > 1).then_some(Value::Array(ops))
}

/// The patch dropping our managedFields entry (left from our patches: ownership of the atomic
/// `spec.versions`, no longer true once our property is out). `None` when there is none.
pub fn forget_ownership(crd: &Value) -> Option<Value> {
    let index = crd["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .position(|m| m["manager"] == FIELD_MANAGER)?;
    let mut ops = preconditions(crd);
    ops.push(json!({"op": "test", "path": format!("/metadata/managedFields/{index}/manager"), "value": FIELD_MANAGER}));
    ops.push(json!({"op": "remove", "path": format!("/metadata/managedFields/{index}")}));
    Some(Value::Array(ops))
}

/// `manager (operation) at time` of the latest other manager owning `spec.versions`.
fn last_versions_writer(crd: &Value) -> Option<String> {
    crd["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .filter(|m| m["manager"] != FIELD_MANAGER)
        .filter(|m| m["fieldsV1"]["f:spec"]["f:versions"].is_object())
        .max_by(|a, b| a["time"].as_str().cmp(&b["time"].as_str()))
        .map(|m| {
            format!(
                "{} ({}) at {}",
                m["manager"].as_str().unwrap_or("?"),
                m["operation"].as_str().unwrap_or("?"),
                m["time"].as_str().unwrap_or("?")
            )
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn version(name: &str, storage: bool, spec_props: Value) -> Value {
        json!({"name": name, "served": true, "storage": storage, "schema": {"openAPIV3Schema": {
            "type": "object", "properties": {"spec": {"type": "object", "properties": spec_props}}}}})
    }

    fn kelos_crd(v1: Value, v2: Value) -> Value {
        json!({
            "metadata": {"name": "taskspawners.kelos.dev", "resourceVersion": "42", "managedFields": [
                {"manager": "kelos", "operation": "Apply", "time": "2026-12-01T10:00:00Z",
                 "fieldsV1": {"f:spec": {"f:versions": {}, "f:group": {}}}},
                {"manager": "kubectl-label", "operation": "Update", "time": "2026-12-01T11:00:00Z",
                 "fieldsV1": {"f:metadata": {"f:labels": {}}}},
            ]},
            "spec": {"versions": [version("v1alpha1", false, v1), version("v1alpha2", true, v2)]}
        })
    }

    /// `crd` with the JSON patch applied (a minimal RFC 6902 for add/remove/test).
    fn apply(crd: &Value, ops: &Value) -> Value {
        let mut out = crd.clone();
        for op in ops.as_array().unwrap() {
            let path = op["path"].as_str().unwrap();
            match op["op"].as_str().unwrap() {
                "test" => assert_eq!(out.pointer(path), Some(&op["value"]), "{op}"),
                "add" => {
                    let (parent, key) = path.rsplit_once('/').unwrap();
                    out.pointer_mut(parent).unwrap()[key] = op["value"].clone();
                }
                "remove" => {
                    let (parent, key) = path.rsplit_once('/').unwrap();
                    match out.pointer_mut(parent).unwrap() {
                        Value::Object(m) => {
                            m.remove(key);
                        }
                        Value::Array(a) => {
                            a.remove(key.parse().unwrap());
                        }
                        other => panic!("{other}"),
                    }
                }
                other => panic!("{other}"),
            }
        }
        out
    }

    #[test]
    fn kelos_crd_gets_both_properties_then_is_in_place() {
        let crd = kelos_crd(
            json!({"when": {"type": "object"}}),
            json!({"when": {"type": "object"}}),
        );
        let wanted = Wanted::default();
        let Plan::Patch {
            ops,
            restored,
            removed_by,
        } = ensure(&crd, &wanted, &BTreeMap::new())
        else {
            panic!()
        };
        assert_eq!(restored, ["v1alpha1", "v1alpha2"]);
        assert_eq!(
            removed_by.as_deref(),
            Some("kelos (Apply) at 2026-12-01T10:00:00Z")
        );
        assert_eq!(
            ops[0],
            json!({"op": "test", "path": "/metadata/resourceVersion", "value": "42"})
        );
        assert_eq!(
            ops[1],
            json!({"op": "test", "path": "/spec/versions/0/name", "value": "v1alpha1"})
        );
        let patched = apply(&crd, &ops);
        let spec2 =
            &patched["spec"]["versions"][1]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(spec2["properties"]["onCompletion"], on_completion_schema());
        assert_eq!(
            spec2["properties"]["when"],
            json!({"type": "object"}),
            "kelos's fields untouched"
        );
        assert_eq!(ensure(&patched, &wanted, &BTreeMap::new()), Plan::InPlace);

        // Taken out again, kelos's schema is as it was.
        let removed = apply(&patched, &remove(&patched).unwrap());
        assert_eq!(removed["spec"], crd["spec"]);
        assert_eq!(remove(&removed), None);
    }

    #[test]
    fn a_spec_without_properties_gets_them() {
        let mut crd = kelos_crd(json!({}), json!({}));
        crd["spec"]["versions"][1]["schema"]["openAPIV3Schema"]["properties"]["spec"] =
            json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
        let Plan::Patch { ops, .. } = ensure(&crd, &Wanted::default(), &BTreeMap::new()) else {
            panic!()
        };
        let patched = apply(&crd, &ops);
        assert_eq!(
            patched["spec"]["versions"][1]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
                ["onCompletion"],
            on_completion_schema()
        );
    }

    #[test]
    fn an_older_schema_of_ours_is_updated_and_a_normalised_one_accepted() {
        let mut old = on_completion_schema();
        old["properties"]["hooks"]["maxItems"] = json!(4);
        let crd = kelos_crd(
            json!({"onCompletion": v1alpha1_refusal_schema()}),
            json!({"onCompletion": old.clone()}),
        );
        let Plan::Patch { ops, restored, .. } = ensure(&crd, &Wanted::default(), &BTreeMap::new())
        else {
            panic!()
        };
        assert!(restored.is_empty(), "updated, not restored");
        assert_eq!(
            ops.as_array().unwrap().len(),
            3,
            "one version touched: {ops}"
        );
        let accepted = BTreeMap::from([("v1alpha2".to_owned(), old)]);
        assert_eq!(ensure(&crd, &Wanted::default(), &accepted), Plan::InPlace);
    }

    #[test]
    fn kelos_own_on_completion_is_left_alone() {
        let own = json!({"type": "object", "description": "OnCompletion configures outbound notifications"});
        let crd = kelos_crd(
            json!({"onCompletion": own.clone()}),
            json!({"onCompletion": own}),
        );
        assert_eq!(
            ensure(&crd, &Wanted::default(), &BTreeMap::new()),
            Plan::KelosOwn
        );
        assert_eq!(remove(&crd), None, "never removes kelos's own");
    }

    #[test]
    fn a_crd_without_v1alpha2_cannot_be_extended() {
        let mut crd = kelos_crd(json!({}), json!({}));
        crd["spec"]["versions"][1]["served"] = json!(false);
        assert!(
            matches!(ensure(&crd, &Wanted::default(), &BTreeMap::new()), Plan::Cannot(m) if m.contains("v1alpha2"))
        );
    }

    #[test]
    fn our_managed_fields_entry_can_be_dropped() {
        let mut crd = kelos_crd(json!({}), json!({}));
        assert_eq!(forget_ownership(&crd), None);
        crd["metadata"]["managedFields"].as_array_mut().unwrap().push(json!(
            {"manager": FIELD_MANAGER, "operation": "Update", "fieldsV1": {"f:spec": {"f:versions": {}}}}));
        let ops = forget_ownership(&crd).unwrap();
        let out = apply(&crd, &ops);
        assert_eq!(
            out["metadata"]["managedFields"].as_array().unwrap().len(),
            2
        );
        assert!(
            out["metadata"]["managedFields"]
                .as_array()
                .unwrap()
                .iter()
                .all(|m| m["manager"] != FIELD_MANAGER)
        );
        // Our own entry never counts as the writer that removed the property.
        assert_eq!(
            last_versions_writer(&crd).as_deref(),
            Some("kelos (Apply) at 2026-12-01T10:00:00Z")
        );
    }
}
