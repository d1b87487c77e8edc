//! Kubernetes Events on Tasks. Published in the background: an Event must never delay a delivery.
//! The one exception is a hook's Failed Warning Event: [`Events::publish_awaited`] retries it and
//! the machine records the Failed state only once it is answered, so no SIGKILL can lose it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::Semaphore;

use crate::machine::Published;
use crate::machine::backoff::Backoff;

/// Event reasons.
pub mod reason {
    /// A hook got a 2xx.
    pub const DELIVERED: &str = "WebhookDelivered";
    /// An attempt failed; another is scheduled.
    pub const RETRYING: &str = "WebhookRetrying";
    /// A hook gave up.
    pub const FAILED: &str = "WebhookFailed";
    /// A hook was not sent on purpose.
    pub const SKIPPED: &str = "WebhookSkipped";
    /// The Task had no snapshot annotation; the spawner's current hooks were used.
    pub const HOOKS_FROM_SPAWNER: &str = "HooksFromSpawner";
    /// Secret headers were ignored because they are reserved.
    pub const RESERVED_HEADERS: &str = "WebhookHeadersIgnored";
    /// The snapshot annotation could not be read.
    pub const BAD_ANNOTATION: &str = "InvalidOnCompletion";
    /// The TaskSpawner CRD does not declare spec.onCompletion.
    pub const CRD_PRUNES_HOOKS: &str = "OnCompletionNotDeclared";
    /// kelos's TaskSpawner CRD declares spec.onCompletion itself (its own reporter).
    pub const KELOS_REPORTER: &str = "KelosReporterDetected";
    /// kelos-spawner wrote the Task's snapshot in kelos's format: kelos's reporter delivers it.
    pub const LEFT_TO_KELOS: &str = "KelosReporterDelivers";
    /// A user asked for hooks of a Task to be delivered again (the Event names them).
    pub const REDELIVERY: &str = "WebhookRedeliveryRequested";
    /// On a TaskSpawner: a hook failed several attempts in a row.
    pub const HOOK_FAILING: &str = "WebhookFailing";
    /// On a TaskSpawner: a failing hook answered 2xx again.
    pub const HOOK_RECOVERED: &str = "WebhookRecovered";
    /// On a TaskSpawner: a test notification got a 2xx.
    pub const TEST_DELIVERED: &str = "WebhookTestDelivered";
    /// On a TaskSpawner: a test notification was not accepted.
    pub const TEST_FAILED: &str = "WebhookTestFailed";
}

/// Events published at once; more wait their turn.
const CONCURRENCY: usize = 16;
/// Normal Events waiting beyond this are dropped (Warnings never are): under a burst, Events must
/// not grow memory or crowd out delivery-state writes at the API server.
const MAX_PENDING_NORMAL: usize = 5_000;

/// How long a Failed Warning Event is retried before the Failed state is recorded without it:
/// long enough to outlast an etcd or API server restart, short enough that a cluster refusing
/// Events for good (e.g. RBAC) does not keep hooks open for ever.
const AWAITED_FOR: Duration = Duration::from_secs(300);
/// Delays between tries of an awaited Event.
const AWAITED_BACKOFF: Backoff = Backoff {
    base: Duration::from_millis(200),
    max: Duration::from_secs(10),
};

/// Publishes Events.
#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
    slots: Arc<Semaphore>,
    pending: Arc<AtomicUsize>,
}

impl Events {
    /// A publisher reporting as `kelos-hooks-dispatcher` / `instance`.
    pub fn new(client: Client, instance: String) -> Self {
        let reporter = Reporter {
            controller: "kelos-hooks-dispatcher".into(),
            instance: Some(instance),
        };
        Events {
            recorder: Recorder::new(client, reporter),
            slots: Arc::new(Semaphore::new(CONCURRENCY)),
            pending: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Publishes in the background; failures are logged, never fatal. `hook` goes into the
    /// Event's action: the recorder aggregates Events by (object, reason, action), so without it a
    /// second hook's failure would only bump the count of the first hook's Event.
    pub fn publish(
        &self,
        object: ObjectReference,
        warning: bool,
        reason: &'static str,
        hook: &str,
        note: String,
    ) {
        let pending = self.pending.fetch_add(1, Ordering::Relaxed);
        if !warning && pending >= MAX_PENDING_NORMAL {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            tracing::debug!(reason, "Event backlog full: dropping a Normal Event");
            return;
        }
        let this = self.clone();
        let hook = hook.to_owned();
        tokio::spawn(async move {
            let _slot = this.slots.clone().acquire_owned().await;
            this.publish_now(&object, warning, reason, &hook, note)
                .await;
            this.pending.fetch_sub(1, Ordering::Relaxed);
        });
    }

    /// Publishes and waits, trying again with backoff until the API server stores it or
    /// [`AWAITED_FOR`] has passed; each failure is logged.
    pub async fn publish_awaited(
        &self,
        object: &ObjectReference,
        warning: bool,
        reason: &'static str,
        hook: &str,
        note: &str,
    ) -> Published {
        let deadline = tokio::time::Instant::now() + AWAITED_FOR;
        let mut tries = 0;
        loop {
            tries += 1;
            let result = {
                let _slot = self.slots.acquire().await;
                self.try_publish(object, warning, reason, hook, note.to_owned())
                    .await
            };
            let Err(e) = result else {
                return Published::Yes;
            };
            let at = tokio::time::Instant::now() + AWAITED_BACKOFF.ceiling(tries);
            if at >= deadline {
                tracing::error!(error = %e, reason, hook, tries, "could not publish Event; giving up");
                return Published::GaveUp;
            }
            tracing::warn!(error = %e, reason, hook, tries, "could not publish Event; retrying");
            tokio::time::sleep_until(at).await;
        }
    }

    /// Publishes and waits (a short-lived command that must not exit first); failures are logged.
    pub async fn publish_now(
        &self,
        object: &ObjectReference,
        warning: bool,
        reason: &'static str,
        hook: &str,
        note: String,
    ) {
        if let Err(e) = self.try_publish(object, warning, reason, hook, note).await {
            tracing::warn!(error = %e, reason, "could not publish Event");
        }
    }

    /// One try.
    async fn try_publish(
        &self,
        object: &ObjectReference,
        warning: bool,
        reason: &'static str,
        hook: &str,
        note: String,
    ) -> Result<(), kube::Error> {
        let action: String = if hook.is_empty() {
            "Deliver".into()
        } else {
            format!("Deliver:{hook}").chars().take(128).collect()
        };
        // The Events API limits notes to 1 kB.
        let note: String = note.chars().take(1000).collect();
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(note),
            action,
            secondary: None,
        };
        self.recorder.publish(&event, object).await
    }
}
