//! What the machine asks for. The executor performs each effect; those that have a result feed it
//! back as an [`Input`](super::Input).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::ObjectReference;
use kelos_hooks_shared::api::{Hook, Phase, Task};
use kelos_hooks_shared::deliveries::Deliveries;

use super::input::Timer;
use crate::cluster::events::reason;

/// One thing to do.
#[derive(Debug)]
pub enum Effect {
    /// Make one attempt; answer with [`Input::Attempted`](super::Input::Attempted).
    Attempt(Attempt),
    /// Cancel every attempt in flight (leadership lost); each still answers, with no outcome.
    CancelAttempts,
    /// Read the TaskSpawner's hooks; answer with [`Input::SpawnerHooks`](super::Input::SpawnerHooks).
    ReadSpawner {
        /// Task UID.
        uid: String,
        /// Namespace of the Task and the spawner.
        namespace: String,
        /// TaskSpawner name.
        spawner: String,
    },
    /// Write the delivery annotation; answer with [`Input::Recorded`](super::Input::Recorded).
    Record(Record),
    /// Write a redelivery reset and remove the request; answer with
    /// [`Input::Redelivered`](super::Input::Redelivered).
    Redeliver(Redelivery),
    /// Send one test notification to each hook of a TaskSpawner.
    Test(SpawnerTest),
    /// Feed [`Input::Timer`](super::Input::Timer) back at `at`.
    Timer {
        /// When.
        at: DateTime<Utc>,
        /// What.
        timer: Timer,
    },
    /// Publish a Kubernetes Event (and log it), in the background.
    Event(Note),
    /// Publish a hook's Failed Warning Event and wait for it (retried for a bounded time); answer
    /// with [`Input::Announced`](super::Input::Announced). The Failed state is only written after
    /// the answer, so a SIGKILL in between leads to a repeated Event, never a missing one.
    Announce(Announcement),
    /// Count something.
    Metric(Metric),
    /// Log a warning that has no Event (an API call that failed and is retried).
    Warn {
        /// Task UID.
        task_uid: String,
        /// What failed.
        message: &'static str,
        /// Why.
        error: String,
    },
}

/// One delivery attempt to make.
#[derive(Clone, Debug)]
pub struct Attempt {
    /// Task UID.
    pub uid: String,
    /// The terminal phase being reported.
    pub phase: Phase,
    /// The Task (for the payload).
    pub task: Arc<Task>,
    /// The hook to send to.
    pub hook: Hook,
    /// `webhook-id`: the same for every attempt of this Task, phase and hook.
    pub webhook_id: String,
    /// A test notification (`type: kelos.task.test`, a sample Task), not a delivery.
    pub test: bool,
}

/// One write of a Task's delivery state.
#[derive(Clone, Debug)]
pub struct Record {
    /// Task UID (the write is refused if the Task was replaced).
    pub uid: String,
    /// The phase the state is for.
    pub phase: Phase,
    /// The Task as last seen (name, namespace, resourceVersion, current annotations).
    pub task: Arc<Task>,
    /// Our delivery state, merged into what the Task holds (per hook, further along wins).
    pub deliveries: Deliveries,
    /// Hooks firing on the phase: the report phase is written once all of them are final.
    pub matching: Vec<String>,
}

/// A redelivery request acted on: the reset state to write in place of the Task's (conditional on
/// the Task's resourceVersion), removing the request and the report phase.
#[derive(Clone, Debug)]
pub struct Redelivery {
    /// Task UID.
    pub uid: String,
    /// The phase the state is for.
    pub phase: Phase,
    /// The Task as last seen.
    pub task: Arc<Task>,
    /// The state to write: the hooks asked for due now, the others as they were.
    pub deliveries: Deliveries,
    /// Hooks sent again.
    pub hooks: Vec<String>,
    /// Names in the request that are not hooks of the Task firing on the phase.
    pub unknown: Vec<String>,
    /// Who asked (the admission server's stamp).
    pub by: String,
}

/// A TaskSpawner test request to answer (`kelos.dev/webhook-test` changed).
#[derive(Clone, Debug, PartialEq)]
pub struct SpawnerTest {
    /// The spawner.
    pub spawner: ObjectReference,
    /// The request's value (recorded as answered once every hook has had its attempt).
    pub value: String,
    /// The spawner's hooks.
    pub hooks: Vec<Hook>,
}

/// A Kubernetes Event to publish.
#[derive(Clone, Debug, PartialEq)]
pub struct Note {
    /// The object it is about.
    pub object: ObjectReference,
    /// Warning (`true`) or Normal.
    pub warning: bool,
    /// One of [`reason`](crate::cluster::events::reason).
    pub reason: &'static str,
    /// Hook name (empty when about the Task as a whole).
    pub hook: String,
    /// What happened, for a human (URLs show scheme and host only).
    pub message: String,
}

impl Note {
    /// Whether the log line is a warning: retries are Warning Events (so `kubectl describe` shows
    /// them) but routine and self-healing, so they log at info.
    pub fn logs_as_warning(&self) -> bool {
        self.warning && self.reason != reason::RETRYING
    }
}

/// A Warning Event that must be published before the hook's final state is recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct Announcement {
    /// Task UID.
    pub uid: String,
    /// The phase the hook failed for.
    pub phase: Phase,
    /// Hook name.
    pub hook: String,
    /// The Event.
    pub note: Note,
}

/// A metric to bump.
#[derive(Clone, Debug, PartialEq)]
pub enum Metric {
    /// A hook reached a final state: `delivered`, `failed` or `skipped`.
    Final(&'static str),
    /// A retry was scheduled.
    Retry,
    /// An attempt took this long; `result` is its class label.
    AttemptDuration {
        /// `success`, `retry` or `final`.
        result: &'static str,
        /// Seconds.
        seconds: f64,
    },
    /// Seconds from the Task's completionTime to a 2xx.
    CompletionToDelivery(f64),
    /// A write of the delivery annotation failed (it is retried).
    StateWriteError,
    /// A Task was left to kelos's own onCompletion reporter.
    LeftToKelos,
    /// A hook of a spawner started failing (`true`) or recovered.
    HookFailing {
        /// Namespace.
        namespace: String,
        /// TaskSpawner.
        spawner: String,
        /// Hook.
        hook: String,
        /// Failing now.
        failing: bool,
    },
}
