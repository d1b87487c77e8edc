//! What the machine knows of one Task, and how a Task from the watch becomes that: the snapshot
//! annotation's hooks or (none) the spawner's, the delivery state resumed from the annotation, and
//! re-runs into another phase.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use kelos_hooks_shared::annotations::{
    DELIVERIES, ON_COMPLETION, REPORT_PHASE, SPAWNER_LABEL, decode_snapshot,
    is_kelos_reporter_snapshot,
};
use kelos_hooks_shared::api::{Hook, Phase, Task};
use kelos_hooks_shared::deliveries::{Deliveries, HookDelivery};
use kelos_hooks_shared::redact::{redact, scheme_and_host};
use kube::Resource;

use super::{Announcement, Effect, Machine, Metric, Note, Timer};
use crate::cluster::events::reason;
use crate::error::Result;

/// Wait before reading the spawner again after a failed read.
const REREAD_SPAWNER_AFTER: chrono::Duration = chrono::Duration::seconds(5);

/// The hooks in force for a Task.
pub(super) enum Hooks {
    /// Being read from the TaskSpawner (the Task has no snapshot annotation).
    Resolving,
    /// Known.
    Ready(Vec<Hook>),
}

/// What the machine knows of one terminal Task.
pub(super) struct Tracked {
    pub(super) task: Arc<Task>,
    pub(super) phase: Phase,
    pub(super) hooks: Hooks,
    pub(super) deliveries: Deliveries,
    /// Hooks with an attempt in flight (possibly for the phase before a re-run).
    pub(super) in_flight: HashSet<String>,
    /// Hooks with a retry timer pending.
    pub(super) waiting: HashSet<String>,
    /// Hooks that failed for good, with the record to write once their Warning Event is answered.
    pub(super) announcing: HashMap<String, HookDelivery>,
    /// The delivery state has changed since the last write started.
    pub(super) dirty: bool,
    /// A write is in flight.
    pub(super) writing: bool,
    /// `webhook-report-phase` holds this phase.
    pub(super) reported: bool,
    /// A redelivery request is being written (nothing else is sent or written meanwhile).
    pub(super) redelivering: bool,
}

impl Tracked {
    pub(super) fn hook(&self, name: &str) -> Option<&Hook> {
        match &self.hooks {
            Hooks::Ready(h) => h.iter().find(|h| h.name == name),
            Hooks::Resolving => None,
        }
    }

    /// The hook's URL as Events and logs may show it.
    pub(super) fn shown_url(&self, name: &str) -> String {
        self.hook(name)
            .map(|h| scheme_and_host(&h.webhook.url))
            .unwrap_or_default()
    }

    pub(super) fn note(
        &self,
        warning: bool,
        reason: &'static str,
        hook: &str,
        message: String,
    ) -> Effect {
        Effect::Event(self.note_of(warning, reason, hook, message))
    }

    /// Hook `name` failed for good: `record` applies the failure to a copy of its record, kept
    /// until the Warning Event saying `message` is answered (only then is it written).
    pub(super) fn fail(
        &mut self,
        uid: &str,
        name: &str,
        message: String,
        record: impl FnOnce(&mut Deliveries),
    ) -> Effect {
        let mut copy = Deliveries::new(self.phase);
        if let Some(d) = self.deliveries.get(name) {
            copy.hooks.insert(name.to_owned(), d.clone());
        }
        record(&mut copy);
        if let Some(d) = copy.hooks.remove(name) {
            self.announcing.insert(name.to_owned(), d);
        }
        Effect::Announce(Announcement {
            uid: uid.to_owned(),
            phase: self.phase,
            hook: name.to_owned(),
            note: self.note_of(true, reason::FAILED, name, message),
        })
    }

    fn note_of(&self, warning: bool, reason: &'static str, hook: &str, message: String) -> Note {
        Note {
            object: self.task.object_ref(&()),
            warning,
            reason,
            hook: hook.to_owned(),
            message,
        }
    }
}

pub(super) fn annotation<'a>(task: &'a Task, key: &str) -> Option<&'a String> {
    task.metadata.annotations.as_ref().and_then(|a| a.get(key))
}

pub(super) fn spawner_of(task: &Task) -> String {
    task.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SPAWNER_LABEL))
        .cloned()
        .unwrap_or_default()
}

impl Machine {
    pub(super) fn upsert(&mut self, task: Arc<Task>, now: DateTime<Utc>) {
        let (Some(uid), Some(phase)) = (task.metadata.uid.clone(), task.terminal_phase()) else {
            return;
        };
        let annotated =
            Deliveries::resume(annotation(&task, DELIVERIES).map(String::as_str), phase);
        let reported = annotation(&task, REPORT_PHASE).is_some_and(|p| p == phase.as_str());
        match self.tasks.get_mut(&uid) {
            Some(t) if t.phase == phase => {
                t.deliveries.merge_from(&annotated);
                t.reported |= reported;
                t.task = task;
            }
            _ => {
                // New, or a re-run that reached another phase: start from the annotation.
                // Attempts and writes of the old phase still report back: keep counting them
                // (their results are ignored by phase); the hooks in force stay the same.
                let (hooks, in_flight, writing) = match self.tasks.remove(&uid) {
                    Some(old) => {
                        self.waiting -= old.waiting.len();
                        let hooks = match old.hooks {
                            Hooks::Ready(h) => Some(Hooks::Ready(h)),
                            Hooks::Resolving => None,
                        };
                        (hooks, old.in_flight, old.writing)
                    }
                    None => (None, HashSet::new(), false),
                };
                let hooks = match hooks {
                    Some(h) => h,
                    None => self.initial_hooks(&task, &uid),
                };
                let tracked = Tracked {
                    task,
                    phase,
                    hooks,
                    deliveries: annotated,
                    in_flight,
                    waiting: HashSet::new(),
                    announcing: HashMap::new(),
                    dirty: false,
                    writing,
                    reported,
                    redelivering: false,
                };
                self.tasks.insert(uid.clone(), tracked);
            }
        }
        self.drive(&uid, now);
    }

    /// The snapshot annotation's hooks, or (none) a read of the spawner's.
    fn initial_hooks(&mut self, task: &Arc<Task>, uid: &str) -> Hooks {
        let Some(snapshot) = annotation(task, ON_COMPLETION) else {
            self.out.push(read_spawner(task, uid));
            return Hooks::Resolving;
        };
        match decode_snapshot(snapshot) {
            Ok(s) => Hooks::Ready(s.hooks),
            // kelos-spawner of a kelos build with its own reporter wrote it (our mutating webhook
            // was not there): kelos delivers this Task, so sending would be twice.
            Err(_) if is_kelos_reporter_snapshot(snapshot) => {
                self.out.push(Effect::Metric(Metric::LeftToKelos));
                self.out.push(Effect::Event(Note {
                    object: task.object_ref(&()),
                    warning: false,
                    reason: reason::LEFT_TO_KELOS,
                    hook: String::new(),
                    message: format!(
                        "kelos-spawner wrote {ON_COMPLETION} in kelos's own format: kelos's onCompletion \
                         reporter delivers this Task's hooks, so kelos-hooks sends nothing for it"
                    ),
                }));
                Hooks::Ready(Vec::new())
            }
            Err(e) => {
                self.out.push(Effect::Event(Note {
                    object: task.object_ref(&()),
                    warning: true,
                    reason: reason::BAD_ANNOTATION,
                    hook: String::new(),
                    message: format!(
                        "annotation {ON_COMPLETION} is not valid ({}); no webhooks are sent for this Task",
                        // serde quotes the offending value, which may be a URL with a credential.
                        redact(&e.to_string())
                    ),
                }));
                Hooks::Ready(Vec::new())
            }
        }
    }

    pub(super) fn spawner_hooks(
        &mut self,
        uid: &str,
        result: Result<Vec<Hook>>,
        now: DateTime<Utc>,
    ) {
        let Some(t) = self.tasks.get_mut(uid) else {
            return;
        };
        match result {
            Ok(hooks) => {
                if !hooks.is_empty() && self.leader {
                    let message = format!(
                        "Task has no {ON_COMPLETION} annotation (the admission webhook was unavailable when it was created): using the {} current hook(s) of TaskSpawner {}",
                        hooks.len(),
                        spawner_of(&t.task)
                    );
                    let effect = t.note(false, reason::HOOKS_FROM_SPAWNER, "", message);
                    self.out.push(effect);
                }
                t.hooks = Hooks::Ready(hooks);
                self.drive(uid, now);
            }
            Err(e) => {
                self.out.push(Effect::Warn {
                    task_uid: uid.to_owned(),
                    message: "could not read the TaskSpawner; retrying",
                    error: e.to_string(),
                });
                self.out.push(Effect::Timer {
                    at: now + REREAD_SPAWNER_AFTER,
                    timer: Timer::ReadSpawner {
                        uid: uid.to_owned(),
                    },
                });
            }
        }
    }
}

pub(super) fn read_spawner(task: &Task, uid: &str) -> Effect {
    Effect::ReadSpawner {
        uid: uid.to_owned(),
        namespace: task.metadata.namespace.clone().unwrap_or_default(),
        spawner: spawner_of(task),
    }
}
