//! Reads a TaskSpawner's current hooks, for Tasks created without the snapshot annotation (the
//! admission webhook was down). A short cache lets the Tasks of one spawner share one read.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kelos_hooks_shared::api::{Hook, TaskSpawner};
use kube::{Api, Client};

use crate::error::Result;

/// How long a spawner's hooks are reused for its other Tasks.
const TTL: Duration = Duration::from_secs(30);

/// (namespace, spawner) → when read, its hooks.
type Cache = HashMap<(String, String), (Instant, Vec<Hook>)>;

/// Spawner reader with a short cache.
pub struct SpawnerHooks {
    client: Client,
    cache: Mutex<Cache>,
}

impl SpawnerHooks {
    /// A reader using `client`.
    pub fn new(client: Client) -> Self {
        SpawnerHooks {
            client,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The hooks of `namespace/name`; empty when the spawner does not exist.
    pub async fn get(&self, namespace: &str, name: &str) -> Result<Vec<Hook>> {
        let key = (namespace.to_owned(), name.to_owned());
        {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((_, hooks)) = cache.get(&key).filter(|(at, _)| at.elapsed() < TTL) {
                return Ok(hooks.clone());
            }
        }
        let api: Api<TaskSpawner> = Api::namespaced(self.client.clone(), namespace);
        let hooks = match api.get_opt(name).await? {
            Some(ts) => ts.hooks().to_vec(),
            None => Vec::new(),
        };
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|_, (at, _)| at.elapsed() < TTL);
        cache.insert(key, (Instant::now(), hooks.clone()));
        Ok(hooks)
    }
}
