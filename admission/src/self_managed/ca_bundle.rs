//! The `caBundle` patch of a webhook configuration (pure).
//!
//! A strategic merge patch keyed by webhook `name` (the `webhooks` list's patch merge key)
//! touches only `clientConfig.caBundle` of each entry, so it never clobbers concurrent edits of
//! other fields and needs no resourceVersion.

use serde_json::{Value, json};

/// The webhooks of a configuration: name and current `clientConfig.caBundle` (decoded bytes).
pub type Entries = Vec<(String, Option<Vec<u8>>)>;

/// The patch setting `bundle` on every entry whose `caBundle` differs; `None` when all match.
pub fn patch(entries: &[(String, Option<Vec<u8>>)], bundle: &[u8]) -> Option<Value> {
    let encoded = k8s_openapi::ByteString(bundle.to_vec());
    let changed: Vec<Value> = entries
        .iter()
        .filter(|(_, current)| current.as_deref() != Some(bundle))
        .map(|(name, _)| json!({"name": name, "clientConfig": {"caBundle": encoded}}))
        .collect();
    if changed.is_empty() {
        None
    } else {
        Some(json!({ "webhooks": changed }))
    }
}

/// Entries of a webhook configuration, validating or mutating: both keep them in the same
/// `webhooks[].name` and `webhooks[].clientConfig.caBundle` fields.
pub fn entries<C: serde::Serialize>(config: &C) -> Entries {
    let value = serde_json::to_value(config).unwrap_or(Value::Null);
    let webhooks = value["webhooks"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    webhooks
        .iter()
        .filter_map(|w| {
            let name = w["name"].as_str()?.to_owned();
            // Absent (or null) is "no bundle", not an empty one.
            let bundle = match &w["clientConfig"]["caBundle"] {
                Value::Null => None,
                b => serde_json::from_value::<k8s_openapi::ByteString>(b.clone())
                    .ok()
                    .map(|b| b.0),
            };
            Some((name, bundle))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use k8s_openapi::api::admissionregistration::v1::{
        MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
    };

    use super::*;

    const PEM: &[u8] = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";

    #[test]
    fn patches_only_entries_that_differ() {
        let entries = vec![
            ("a.kelos-hooks.dev".to_owned(), None),
            ("b.kelos-hooks.dev".to_owned(), Some(PEM.to_vec())),
            ("c.kelos-hooks.dev".to_owned(), Some(b"old".to_vec())),
        ];
        let p = patch(&entries, PEM).unwrap();
        let b64 =
            "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCkFBQUEKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=";
        assert_eq!(
            p,
            json!({"webhooks": [
                {"name": "a.kelos-hooks.dev", "clientConfig": {"caBundle": b64}},
                {"name": "c.kelos-hooks.dev", "clientConfig": {"caBundle": b64}},
            ]})
        );
    }

    #[test]
    fn nothing_to_do_when_everything_matches_or_there_are_no_webhooks() {
        let entries = vec![("a".to_owned(), Some(PEM.to_vec()))];
        assert_eq!(patch(&entries, PEM), None);
        assert_eq!(patch(&[], PEM), None);
    }

    #[test]
    fn reads_entries_of_a_configuration() {
        let mutating: MutatingWebhookConfiguration = serde_json::from_value(json!({
            "metadata": {"name": "m"},
            "webhooks": [{"name": "m1", "clientConfig": {"url": "https://127.0.0.1/m", "caBundle": "b2xk"},
                          "sideEffects": "None", "admissionReviewVersions": ["v1"]}]
        }))
        .unwrap();
        assert_eq!(
            entries(&mutating),
            vec![("m1".to_owned(), Some(b"old".to_vec()))]
        );
        let c: ValidatingWebhookConfiguration = serde_json::from_value(json!({
            "metadata": {"name": "x"},
            "webhooks": [
                {"name": "one", "clientConfig": {"url": "https://127.0.0.1/x"},
                 "sideEffects": "None", "admissionReviewVersions": ["v1"]},
                {"name": "two", "clientConfig": {"url": "https://127.0.0.1/y", "caBundle": "b2xk"},
                 "sideEffects": "None", "admissionReviewVersions": ["v1"]},
            ]
        }))
        .unwrap();
        let entries = entries(&c);
        assert_eq!(
            entries,
            vec![
                ("one".to_owned(), None),
                ("two".to_owned(), Some(b"old".to_vec()))
            ]
        );
        // The patch applied to the object gives every entry the bundle.
        let p = patch(&entries, PEM).unwrap();
        assert_eq!(p["webhooks"].as_array().unwrap().len(), 2);
    }
}
