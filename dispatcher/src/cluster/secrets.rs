//! Reads the Secrets a hook references, at attempt time. Values never reach logs or Events.
//!
//! A short cache (a few seconds) keeps a burst of completions from turning into one Secret read per
//! delivery; a rotated Secret is picked up once the entry expires.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kelos_hooks_shared::api::{SecretKeyRef, SecretRef};
use kelos_hooks_shared::redact::redact;
use kube::{Api, Client};

use crate::error::{Error, Result};
use crate::send::sign::SigningKey;

/// The data of one Secret.
pub type SecretData = Arc<BTreeMap<String, Vec<u8>>>;

fn data(secret: Secret) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = secret
        .string_data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    out.extend(
        secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0)),
    );
    out
}

/// The value of key `r.key`; a missing key may yet be added, so it is worth retrying.
fn key_of<'d>(data: &'d SecretData, namespace: &str, r: &SecretKeyRef) -> Result<&'d Vec<u8>> {
    data.get(&r.key).ok_or_else(|| Error::Secret {
        message: format!("Secret {namespace}/{} has no key {:?}", r.name, r.key),
        retryable: true,
    })
}

/// Secret reader with a short-lived cache.
pub struct Secrets {
    client: Client,
    ttl: Duration,
    cache: Mutex<HashMap<(String, String), (Instant, SecretData)>>,
}

impl Secrets {
    /// A reader caching each Secret for `ttl`.
    pub fn new(client: Client, ttl: Duration) -> Self {
        Secrets {
            client,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    async fn get(&self, namespace: &str, name: &str) -> Result<SecretData> {
        let key = (namespace.to_owned(), name.to_owned());
        {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((_, d)) = cache.get(&key).filter(|(at, _)| at.elapsed() < self.ttl) {
                return Ok(d.clone());
            }
        }
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let found = match api.get_opt(name).await {
            Ok(Some(s)) => Arc::new(data(s)),
            Ok(None) => {
                return Err(Error::Secret {
                    message: format!("Secret {namespace}/{name} not found"),
                    retryable: true,
                });
            }
            Err(e) => {
                return Err(Error::Secret {
                    message: format!(
                        "reading Secret {namespace}/{name}: {}",
                        redact(&e.to_string())
                    ),
                    retryable: true,
                });
            }
        };
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let ttl = self.ttl;
        cache.retain(|_, (at, _)| at.elapsed() < ttl);
        cache.insert(key, (Instant::now(), found.clone()));
        Ok(found)
    }

    /// Every key of the `secretRef` Secret.
    pub async fn header_data(&self, namespace: &str, r: &SecretRef) -> Result<SecretData> {
        self.get(namespace, &r.name).await
    }

    /// The PagerDuty routing key named by `pagerDuty.routingKeySecretRef` (UTF-8, trimmed).
    pub async fn routing_key(&self, namespace: &str, r: &SecretKeyRef) -> Result<String> {
        let data = self.get(namespace, &r.name).await?;
        let raw = key_of(&data, namespace, r)?;
        match std::str::from_utf8(raw).map(str::trim) {
            Ok(key) if !key.is_empty() => Ok(key.to_owned()),
            _ => Err(Error::Secret {
                message: format!(
                    "Secret {namespace}/{} key {:?} is not a routing key (empty or not text)",
                    r.name, r.key
                ),
                retryable: false,
            }),
        }
    }

    /// The signing key named by `signingSecretRef`.
    pub async fn signing_key(&self, namespace: &str, r: &SecretKeyRef) -> Result<SigningKey> {
        let data = self.get(namespace, &r.name).await?;
        let raw = key_of(&data, namespace, r)?;
        SigningKey::parse(raw).map_err(|e| Error::Secret {
            message: format!("Secret {namespace}/{} key {:?}: {e}", r.name, r.key),
            retryable: false,
        })
    }
}
