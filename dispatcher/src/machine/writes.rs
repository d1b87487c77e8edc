//! When the delivery annotation is written, and what a write's result changes. Outcomes that end
//! together become one write per Task; a Task has at most one write in flight.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use kelos_hooks_shared::annotations::{DELIVERIES, REPORT_PHASE};
use kelos_hooks_shared::api::Phase;

use super::{Effect, Hooks, Machine, Metric, Record, Timer, Written, plan};
use crate::error::{Error, Result};

/// Wait before trying a failed write again.
const REWRITE_AFTER: chrono::Duration = chrono::Duration::seconds(1);

impl Machine {
    /// Asks for one write per Task whose state changed and that has no write in flight. Call it
    /// after a batch of inputs.
    pub fn flush(&mut self) -> Vec<Effect> {
        let dirty: Vec<String> = self.dirty.drain().collect();
        for uid in dirty {
            let Some(t) = self.tasks.get_mut(&uid) else {
                continue;
            };
            if t.writing || !t.dirty || t.redelivering {
                // Asked for again when the write in flight ends.
                continue;
            }
            let Hooks::Ready(hooks) = &t.hooks else {
                continue;
            };
            t.dirty = false;
            t.writing = true;
            self.writes += 1;
            let matching = plan::matching(hooks, t.phase)
                .map(|h| h.name.clone())
                .collect();
            self.out.push(Effect::Record(Record {
                uid,
                phase: t.phase,
                task: t.task.clone(),
                deliveries: t.deliveries.clone(),
                matching,
            }));
        }
        std::mem::take(&mut self.out)
    }

    pub(super) fn recorded(
        &mut self,
        uid: &str,
        phase: Phase,
        result: Result<Written>,
        now: DateTime<Utc>,
    ) {
        self.writes = self.writes.saturating_sub(1);
        let Some(t) = self.tasks.get_mut(uid) else {
            return;
        };
        t.writing = false;
        if t.phase != phase {
            // A write for the phase before a re-run: irrelevant now; the new phase may write.
            if t.dirty {
                self.dirty.insert(uid.to_owned());
            }
            return;
        }
        match result {
            Ok(Written {
                deliveries,
                resource_version,
            }) => {
                let report = match &t.hooks {
                    Hooks::Ready(h) => plan::report_due(h, &deliveries),
                    Hooks::Resolving => false,
                };
                // Remember what the server now holds, so the next write needs no extra read.
                let task = Arc::make_mut(&mut t.task);
                if resource_version.is_some() {
                    task.metadata.resource_version = resource_version;
                }
                let ann = task
                    .metadata
                    .annotations
                    .get_or_insert_with(Default::default);
                ann.insert(DELIVERIES.to_owned(), deliveries.encode());
                if report {
                    ann.insert(
                        REPORT_PHASE.to_owned(),
                        deliveries.phase.as_str().to_owned(),
                    );
                    t.reported = true;
                }
                t.deliveries.merge_from(&deliveries);
            }
            Err(Error::TaskGone) => return self.forget(uid),
            Err(e) => {
                self.out.push(Effect::Metric(Metric::StateWriteError));
                self.out.push(Effect::Warn {
                    task_uid: uid.to_owned(),
                    message: "could not record delivery state; retrying",
                    error: e.to_string(),
                });
                t.dirty = true;
                self.out.push(Effect::Timer {
                    at: now + REWRITE_AFTER,
                    timer: Timer::Rewrite {
                        uid: uid.to_owned(),
                    },
                });
                return;
            }
        }
        if t.dirty {
            self.dirty.insert(uid.to_owned());
        }
        self.drive(uid, now);
    }
}
