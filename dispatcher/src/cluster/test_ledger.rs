//! Which TaskSpawner test requests were answered: one JSON annotation (`namespace/name` → the
//! `kelos.dev/webhook-test` value answered) on a Lease of the dispatcher's own, next to the
//! leader Lease. A spawner annotation would need write access to TaskSpawners (and so to their
//! hooks); this needs get/update of one named object. Read before each test (tests are rare),
//! written after; a conflict re-reads.

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, PostParams};

/// The annotation holding the answered requests.
pub const ANSWERED: &str = "kelos.dev/webhook-tests-answered";
/// Writes tried before giving up (conflicts with another writer).
const TRIES: usize = 5;

/// The record.
pub struct TestLedger {
    api: Api<Lease>,
    name: String,
}

fn answered_of(lease: Option<&Lease>) -> BTreeMap<String, String> {
    lease
        .and_then(|l| l.metadata.annotations.as_ref()?.get(ANSWERED))
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default()
}

/// The key of a spawner in the record.
pub fn key(namespace: &str, spawner: &str) -> String {
    format!("{namespace}/{spawner}")
}

impl TestLedger {
    /// The Lease `name` in `namespace`.
    pub fn new(client: Client, namespace: &str, name: String) -> Self {
        TestLedger {
            api: Api::namespaced(client, namespace),
            name,
        }
    }

    /// Whether `value` was answered for the spawner `key`.
    pub async fn answered(&self, key: &str, value: &str) -> kube::Result<bool> {
        let lease = self.api.get_opt(&self.name).await?;
        Ok(answered_of(lease.as_ref()).get(key).map(String::as_str) == Some(value))
    }

    /// Records `value` as answered for `key`.
    pub async fn record(&self, key: &str, value: &str) -> kube::Result<()> {
        let mut last = None;
        for _ in 0..TRIES {
            let current = self.api.get_opt(&self.name).await?;
            let mut answered = answered_of(current.as_ref());
            answered.insert(key.to_owned(), value.to_owned());
            let text = serde_json::to_string(&answered).unwrap_or_default();
            let result = match current {
                Some(mut lease) => {
                    lease
                        .metadata
                        .annotations
                        .get_or_insert_with(Default::default)
                        .insert(ANSWERED.to_owned(), text);
                    self.api
                        .replace(&self.name, &PostParams::default(), &lease)
                        .await
                }
                None => {
                    let lease = Lease {
                        metadata: ObjectMeta {
                            name: Some(self.name.clone()),
                            annotations: Some([(ANSWERED.to_owned(), text)].into()),
                            ..Default::default()
                        },
                        spec: None,
                    };
                    self.api.create(&PostParams::default(), &lease).await
                }
            };
            match result {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 => last = Some(kube::Error::Api(s)),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            kube::Error::Api(kube::core::Status::failure("write conflicts", "Conflict").boxed())
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_record_and_tolerates_garbage() {
        let mut lease = Lease::default();
        assert!(answered_of(Some(&lease)).is_empty());
        lease.metadata.annotations = Some([(ANSWERED.to_owned(), "not json".to_owned())].into());
        assert!(answered_of(Some(&lease)).is_empty());
        lease.metadata.annotations =
            Some([(ANSWERED.to_owned(), r#"{"ns/s":"2"}"#.to_owned())].into());
        assert_eq!(answered_of(Some(&lease))[&key("ns", "s")], "2");
    }
}
