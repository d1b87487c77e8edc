//! What the machine is told: changes from the Task watch, leadership, timers it asked for, and the
//! results of the effects it asked for.

use std::collections::HashSet;
use std::sync::Arc;

use kelos_hooks_shared::api::{Hook, Phase, Task};
use kelos_hooks_shared::deliveries::Deliveries;

use super::outcome::Outcome;
use crate::error::Result;

/// One thing that happened.
#[derive(Debug)]
pub enum Input {
    /// A terminal Task with hooks was added or changed.
    Upsert(Arc<Task>),
    /// A Task needs nothing any more (deleted, reported, not terminal any more).
    Forget(String),
    /// After a re-list: every Task not in the set is gone.
    Resync(HashSet<String>),
    /// This replica became the leader (`true`) or stopped being it.
    Leader(bool),
    /// Shutting down: no new attempts; attempts in flight may still end and be recorded.
    Draining,
    /// A timer asked for with [`Effect::Timer`](super::Effect::Timer) is due.
    Timer(Timer),
    /// The TaskSpawner's hooks, read for a Task without snapshot annotation (`Ok(empty)` when the
    /// spawner is gone or has none).
    SpawnerHooks {
        /// Task UID.
        uid: String,
        /// The hooks, or why they could not be read.
        result: Result<Vec<Hook>>,
    },
    /// An attempt asked for with [`Effect::Attempt`](super::Effect::Attempt) ended.
    Attempted {
        /// Task UID.
        uid: String,
        /// The phase the attempt was for.
        phase: Phase,
        /// Hook name.
        hook: String,
        /// `None`: cancelled or not started (leadership lost, shutdown); nothing is known.
        outcome: Option<Outcome>,
    },
    /// A write asked for with [`Effect::Redeliver`](super::Effect::Redeliver) ended.
    Redelivered {
        /// What was asked.
        redelivery: Box<super::Redelivery>,
        /// What the Task now holds, or why the write did not happen.
        result: Result<Written>,
    },
    /// A TaskSpawner's `kelos.dev/webhook-test` holds a value not answered yet.
    TestRequested(Box<super::SpawnerTest>),
    /// A Warning Event asked for with [`Effect::Announce`](super::Effect::Announce) ended.
    Announced {
        /// Task UID.
        uid: String,
        /// The phase the hook failed for.
        phase: Phase,
        /// Hook name.
        hook: String,
        /// Whether it was published.
        result: Published,
    },
    /// A write asked for with [`Effect::Record`](super::Effect::Record) ended.
    Recorded {
        /// Task UID.
        uid: String,
        /// The phase the write was for.
        phase: Phase,
        /// What the Task now holds, or why the write did not happen.
        result: Result<Written>,
    },
}

/// What became of a Warning Event the machine waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Published {
    /// The API server stored it.
    Yes,
    /// Still refused when the bounded retry time ran out: the Failed state is recorded anyway
    /// (the log says so), or the hook would never end.
    GaveUp,
    /// Leadership was lost or the dispatcher stopped: nothing is recorded, the next leader
    /// tries the hook again.
    Cancelled,
}

/// Timers: each comes back as [`Input::Timer`] when due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Timer {
    /// A hook's retry is due.
    Retry {
        /// Task UID.
        uid: String,
        /// Hook name.
        hook: String,
    },
    /// Try a failed annotation write again.
    Rewrite {
        /// Task UID.
        uid: String,
    },
    /// Try a failed redelivery write again.
    Redeliver {
        /// Task UID.
        uid: String,
    },
    /// Read the TaskSpawner's hooks again after a failed read.
    ReadSpawner {
        /// Task UID.
        uid: String,
    },
}

/// A successful write of the delivery annotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// The delivery state now on the Task (ours merged with what others recorded).
    pub deliveries: Deliveries,
    /// The Task's new `resourceVersion` (`None` when nothing needed writing).
    pub resource_version: Option<String>,
}
