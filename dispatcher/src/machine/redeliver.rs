//! Re-sending on demand: a Task's `kelos.dev/webhook-redeliver` annotation (`name,name` or `*`)
//! puts the named hooks back to "due now" whatever their state, in one conditional write that also
//! removes the request (and the report phase, so the Task is reported again once they are final).
//!
//! The re-send keeps the hook's `webhook-id`: Standard Webhooks gives the same message the same id,
//! and a redelivery is the same message (the same Task reaching the same phase), so a receiver
//! that already processed it can recognise it and one that lost it processes it once.

use chrono::{DateTime, Utc};
use kelos_hooks_shared::annotations::{REDELIVER, REDELIVER_BY, Redeliver};
use kelos_hooks_shared::api::{Hook, Phase};
use kelos_hooks_shared::deliveries::{Deliveries, HookDelivery, HookState};

use super::tracked::{Hooks, Tracked, annotation};
use super::{Effect, Machine, Redelivery, Timer, Written, plan};
use crate::cluster::events::reason;
use crate::error::{Error, Result};

/// Wait before trying a failed redelivery write again.
const RETRY_AFTER: chrono::Duration = chrono::Duration::seconds(1);

/// Who is named in the Event when the admission server did not stamp the requester.
const UNKNOWN_REQUESTER: &str = "an unknown user (no kelos.dev/webhook-redeliver-by stamp)";

/// The hooks a request names, split into those that fire on `phase` and the other names.
pub fn targets(request: &Redeliver, hooks: &[Hook], phase: Phase) -> (Vec<String>, Vec<String>) {
    let firing: Vec<&str> = plan::matching(hooks, phase)
        .map(|h| h.name.as_str())
        .collect();
    match request {
        Redeliver::All => (firing.iter().map(|h| (*h).to_owned()).collect(), Vec::new()),
        Redeliver::Hooks(names) => names
            .iter()
            .cloned()
            .partition(|n| firing.contains(&n.as_str())),
    }
}

/// `deliveries` with each of `hooks` due now: a fresh attempt budget and retry window, the last
/// status kept for the record, the reason in `lastError`.
pub fn reset(
    deliveries: &Deliveries,
    hooks: &[String],
    by: &str,
    now: DateTime<Utc>,
) -> Deliveries {
    let mut out = deliveries.clone();
    for name in hooks {
        let last_status = deliveries.get(name).and_then(|d| d.last_status);
        out.hooks.insert(
            name.clone(),
            HookDelivery {
                state: HookState::Retrying,
                attempts: 0,
                last_status,
                last_error: Some(format!("redelivery requested by {by}")),
                next_attempt_at: Some(now),
                first_attempt_at: None,
                updated_at: now,
            },
        );
    }
    out
}

/// The pending request of a Task: its value and who asked.
fn request(t: &Tracked) -> Option<(String, String)> {
    let value = annotation(&t.task, REDELIVER)?.clone();
    let by = annotation(&t.task, REDELIVER_BY)
        .filter(|b| !b.is_empty())
        .cloned()
        .unwrap_or_else(|| UNKNOWN_REQUESTER.to_owned());
    Some((value, by))
}

impl Machine {
    /// Acts on a Task's redelivery request when it can; `true` while one is being written (the
    /// Task then waits: nothing is sent or recorded in between).
    pub(super) fn maybe_redeliver(&mut self, uid: &str, now: DateTime<Utc>) -> bool {
        let Some(t) = self.tasks.get_mut(uid) else {
            return false;
        };
        if t.redelivering {
            return true;
        }
        let Some((value, by)) = request(t) else {
            return false;
        };
        let Hooks::Ready(hooks) = &t.hooks else {
            return false;
        };
        let (hooks_again, unknown) = targets(&Redeliver::parse(&value), hooks, t.phase);
        // An attempt or a write still out would land on top of the reset: wait for it (its
        // answer drives this Task again).
        if t.writing
            || hooks_again
                .iter()
                .any(|h| t.in_flight.contains(h) || t.announcing.contains_key(h))
        {
            return true;
        }
        let deliveries = reset(&t.deliveries, &hooks_again, &by, now);
        t.redelivering = true;
        self.out.push(Effect::Redeliver(Redelivery {
            uid: uid.to_owned(),
            phase: t.phase,
            task: t.task.clone(),
            deliveries,
            hooks: hooks_again,
            unknown,
            by,
        }));
        true
    }

    pub(super) fn redelivered(
        &mut self,
        r: Redelivery,
        result: Result<Written>,
        now: DateTime<Utc>,
    ) {
        let uid = r.uid.clone();
        let Some(t) = self.tasks.get_mut(&uid) else {
            return;
        };
        t.redelivering = false;
        if t.phase != r.phase {
            return self.drive(&uid, now);
        }
        match result {
            Ok(written) => {
                // The reset replaces what we knew: merging would let the old final records win.
                t.deliveries = written.deliveries;
                t.reported = false;
                let task = std::sync::Arc::make_mut(&mut t.task);
                if written.resource_version.is_some() {
                    task.metadata.resource_version = written.resource_version;
                }
                if let Some(ann) = task.metadata.annotations.as_mut() {
                    ann.remove(REDELIVER);
                    ann.remove(REDELIVER_BY);
                    ann.remove(kelos_hooks_shared::annotations::REPORT_PHASE);
                    ann.insert(
                        kelos_hooks_shared::annotations::DELIVERIES.to_owned(),
                        t.deliveries.encode(),
                    );
                }
                for h in &r.hooks {
                    if t.waiting.remove(h) {
                        self.waiting -= 1;
                    }
                }
                let mut message = if r.hooks.is_empty() {
                    format!("redelivery requested by {}: no hook to send again", r.by)
                } else {
                    format!(
                        "redelivery of hook(s) {} requested by {}: sending again with the same webhook-id",
                        r.hooks.join(", "),
                        r.by
                    )
                };
                if !r.unknown.is_empty() {
                    message.push_str(&format!(
                        "; ignored {}: not a hook of this Task firing on {}",
                        r.unknown.join(", "),
                        r.phase
                    ));
                }
                let effect = t.note(
                    !r.unknown.is_empty() || r.hooks.is_empty(),
                    reason::REDELIVERY,
                    "",
                    message,
                );
                self.out.push(effect);
                self.drive(&uid, now);
            }
            Err(Error::TaskGone) => self.forget(&uid),
            // A conflict: the Task changed; the watch brings the new version, acted on then, and a
            // timer makes sure of it if nothing else drives the Task.
            Err(e) => {
                self.out.push(Effect::Warn {
                    task_uid: uid.clone(),
                    message: "could not record the redelivery request; retrying",
                    error: e.to_string(),
                });
                self.out.push(Effect::Timer {
                    at: now + RETRY_AFTER,
                    timer: Timer::Redeliver { uid },
                });
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::machine::tests::hook_on as hook;
    use chrono::TimeZone;

    #[test]
    fn targets_are_the_named_hooks_that_fire_on_the_phase() {
        let hooks = [
            hook("a", None),
            hook("b", None),
            hook("f", Some(vec![Phase::Failed])),
        ];
        let (go, unknown) = targets(&Redeliver::All, &hooks, Phase::Succeeded);
        assert_eq!((go, unknown), (vec!["a".into(), "b".into()], vec![]));
        let (go, unknown) = targets(&Redeliver::parse("b,f,zz"), &hooks, Phase::Succeeded);
        assert_eq!(go, ["b"]);
        assert_eq!(unknown, ["f", "zz"]);
    }

    #[test]
    fn reset_gives_a_fresh_budget_and_keeps_others() {
        let t0 = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        let mut d = Deliveries::new(Phase::Succeeded);
        d.record_final_failure("a", Some(404), "HTTP 404", t0);
        d.record_success("b", 200, t0);
        let now = t0 + chrono::Duration::seconds(60);
        let r = reset(&d, &["a".into()], "alice", now);
        let a = r.get("a").unwrap();
        assert_eq!(
            (a.state, a.attempts, a.last_status, a.next_attempt_at),
            (HookState::Retrying, 0, Some(404), Some(now))
        );
        assert!(a.first_attempt_at.is_none());
        assert!(a.last_error.as_deref().unwrap().contains("alice"));
        assert_eq!(r.get("b"), d.get("b"));
    }
}
