//! The TaskSpawner watch for test requests: every spawner carrying `kelos.dev/webhook-test` is
//! forwarded to the machine, which answers each value once per process as leader; the executor
//! skips values the [`TestLedger`](super::test_ledger::TestLedger) records as answered (by an
//! earlier process or leader).

use futures::{StreamExt, TryStreamExt};
use kelos_hooks_shared::annotations::TEST;
use kelos_hooks_shared::api::TaskSpawner;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::mpsc::UnboundedSender;

use crate::executor::Msg;
use crate::machine::health::spawner_ref;
use crate::machine::{Input, SpawnerTest};

/// The test request a spawner carries, if any.
pub fn pending_test(ts: &TaskSpawner) -> Option<SpawnerTest> {
    let ann = ts.metadata.annotations.as_ref()?;
    let value = ann.get(TEST).filter(|v| !v.is_empty())?;
    let ns = ts.metadata.namespace.as_deref().unwrap_or_default();
    let name = ts.metadata.name.as_deref().unwrap_or_default();
    let mut spawner = spawner_ref(ns, name);
    spawner.uid = ts.metadata.uid.clone();
    Some(SpawnerTest {
        spawner,
        value: value.clone(),
        hooks: ts.hooks().to_vec(),
    })
}

/// Runs the watch until the receiver is gone.
pub async fn run(client: Client, namespace: Option<String>, tx: UnboundedSender<Msg>) {
    let api: Api<TaskSpawner> = match &namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .applied_objects();
    let mut stream = std::pin::pin!(stream.into_stream());
    while let Some(item) = stream.next().await {
        let ts = match item {
            Ok(ts) => ts,
            Err(e) => {
                tracing::warn!(error = %e, "TaskSpawner watch error (retrying with backoff)");
                continue;
            }
        };
        if let Some(test) = pending_test(&ts)
            && tx
                .send(Msg::Input(Input::TestRequested(Box::new(test))))
                .is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use kelos_hooks_shared::api::TaskSpawnerSpec;

    #[test]
    fn a_test_value_is_a_request() {
        let mut ts = TaskSpawner::new("s", TaskSpawnerSpec::default());
        ts.metadata.namespace = Some("n".into());
        assert!(pending_test(&ts).is_none());
        ts.metadata.annotations = Some([(TEST.to_owned(), "1".to_owned())].into());
        let t = pending_test(&ts).unwrap();
        assert_eq!(
            (t.value.as_str(), t.spawner.name.as_deref()),
            ("1", Some("s"))
        );
        ts.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(TEST.to_owned(), "2".to_owned());
        assert_eq!(pending_test(&ts).unwrap().value, "2");
        ts.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(TEST.to_owned(), String::new());
        assert!(pending_test(&ts).is_none(), "empty is no request");
    }
}
