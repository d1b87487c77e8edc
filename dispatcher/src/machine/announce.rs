//! A hook that failed for good is recorded Failed only once its Warning Event is answered. The
//! Event used to be published in the background after the write: a leader killed in between (or
//! a publish refused while etcd restarted) left a Failed hook that no replica would ever announce,
//! because the next leader sees a final state. Now a SIGKILL before the answer leaves the hook
//! unfinished in the annotation, so the next leader tries it again: at worst an attempt and its
//! Event are repeated, never missing.

use chrono::{DateTime, Utc};
use kelos_hooks_shared::api::Phase;
use kelos_hooks_shared::deliveries::Deliveries;

use super::{Effect, Machine, Metric, Published};

impl Machine {
    pub(super) fn announced(
        &mut self,
        uid: &str,
        phase: Phase,
        hook: &str,
        result: Published,
        now: DateTime<Utc>,
    ) {
        // Every announcement asked for is answered exactly once, whatever became of its Task.
        self.announcing = self.announcing.saturating_sub(1);
        let Some(t) = self.tasks.get_mut(uid) else {
            return;
        };
        if t.phase != phase {
            // For the phase before a re-run: the new phase starts afresh.
            return self.drive(uid, now);
        }
        let Some(failed) = t.announcing.remove(hook) else {
            return self.drive(uid, now);
        };
        match result {
            // Not ours to record any more: the next leader (or we, leading again) decides anew.
            Published::Cancelled => {}
            Published::Yes | Published::GaveUp => {
                if result == Published::GaveUp {
                    self.out.push(Effect::Warn {
                        task_uid: uid.to_owned(),
                        message: "the hook's WebhookFailed Event could not be published in time; \
                                  recording it Failed without the Event",
                        error: failed.last_error.clone().unwrap_or_default(),
                    });
                }
                let mut one = Deliveries::new(phase);
                one.hooks.insert(hook.to_owned(), failed);
                t.deliveries.merge_from(&one);
                t.dirty = true;
                self.dirty.insert(uid.to_owned());
                self.out.push(Effect::Metric(Metric::Final("failed")));
            }
        }
        self.drive(uid, now);
    }
}
