//! What an attempt's outcome changes: the hook's record (Delivered, Retrying with the next time,
//! or — once its Warning Event is published — Failed), the Event saying so, the metrics, and a
//! retry timer.

use chrono::{DateTime, Utc};
use kelos_hooks_shared::api::Phase;

use super::outcome::{Class, Outcome};
use super::plan::{self, AfterRetryable};
use super::tracked::spawner_of;
use super::{Effect, Machine, Metric, Timer, completed_at};
use crate::cluster::events::reason;

/// Most characters of the receiver's answer quoted in an Event.
const EXCERPT_IN_EVENT: usize = 200;

impl Machine {
    pub(super) fn attempted(
        &mut self,
        uid: &str,
        phase: Phase,
        name: &str,
        outcome: Option<Outcome>,
        now: DateTime<Utc>,
    ) {
        // Every attempt asked for is answered exactly once, whatever became of its Task.
        self.in_flight = self.in_flight.saturating_sub(1);
        let Some(t) = self.tasks.get_mut(uid) else {
            return;
        };
        t.in_flight.remove(name);
        let Some(r) = outcome else {
            // Cancelled: nothing is known, nothing recorded; the next leader (or we) will retry.
            return self.drive(uid, now);
        };
        if t.phase != phase {
            // An attempt for the phase before a re-run: the new phase's hook may now go.
            return self.drive(uid, now);
        }
        for w in &r.warnings {
            let effect = t.note(true, reason::RESERVED_HEADERS, name, w.clone());
            self.out.push(effect);
        }
        let url = t.shown_url(name);
        self.out.push(Effect::Metric(Metric::AttemptDuration {
            result: r.class.label(),
            seconds: r.elapsed.as_secs_f64(),
        }));
        let prior = t.deliveries.get(name).cloned();
        let attempts = prior.as_ref().map_or(0, |p| p.attempts) + 1;
        let error = r.error.clone().unwrap_or_default();
        let status = r
            .status
            .map_or_else(|| "no answer".to_owned(), |s| format!("HTTP {s}"));
        let excerpt = if r.body_excerpt.trim().is_empty() {
            String::new()
        } else {
            let quoted: String = r.body_excerpt.chars().take(EXCERPT_IN_EVENT).collect();
            format!("; answer: {quoted}")
        };
        let spawner = spawner_of(&t.task);
        if !spawner.is_empty() {
            let ns = t.task.metadata.namespace.as_deref().unwrap_or_default();
            let last = match (&r.class, &r.error) {
                (Class::Success, _) | (_, None) => status.clone(),
                (_, Some(e)) => e.clone(),
            };
            let ok = r.class == Class::Success;
            let turns = self.health.observe(ns, &spawner, name, ok, last, now);
            self.out.extend(turns);
        }
        match r.class {
            Class::Success => {
                t.deliveries
                    .record_success(name, r.status.unwrap_or(200), now);
                self.out.push(Effect::Metric(Metric::Final("delivered")));
                if let Some(done) = completed_at(&t.task) {
                    let seconds = (now - done).num_milliseconds().max(0) as f64 / 1000.0;
                    self.out
                        .push(Effect::Metric(Metric::CompletionToDelivery(seconds)));
                }
                let message =
                    format!("hook {name} delivered to {url}: {status} (attempt {attempts})");
                self.out
                    .push(t.note(false, reason::DELIVERED, name, message));
            }
            Class::Retry => {
                let first = prior
                    .as_ref()
                    .and_then(|p| p.first_attempt_at)
                    .unwrap_or(now);
                let delay = self
                    .rules
                    .backoff
                    .next(attempts, r.retry_after, &mut self.rng);
                match plan::after_retryable(attempts - 1, first, now, delay, &self.rules.limits) {
                    AfterRetryable::RetryAt(next) => {
                        t.deliveries
                            .record_retry(name, r.status, error.clone(), next, now);
                        t.waiting.insert(name.to_owned());
                        self.waiting += 1;
                        self.out.push(Effect::Timer {
                            at: next,
                            timer: Timer::Retry {
                                uid: uid.to_owned(),
                                hook: name.to_owned(),
                            },
                        });
                        self.out.push(Effect::Metric(Metric::Retry));
                        let message = format!(
                            "hook {name} to {url}: attempt {attempts} failed ({error}){excerpt}; retrying in {}s",
                            delay.as_secs()
                        );
                        self.out.push(t.note(true, reason::RETRYING, name, message));
                    }
                    AfterRetryable::Fail(why) => {
                        let why = format!("{why}; last error: {error}");
                        let message = format!("hook {name} to {url} failed: {why}{excerpt}");
                        let effect = t.fail(uid, name, message, |d| {
                            d.record_final_failure(name, r.status, why, now)
                        });
                        self.announcing += 1;
                        self.out.push(effect);
                        // Recorded once the Warning Event is answered.
                        return self.drive(uid, now);
                    }
                }
            }
            Class::Final => {
                let message =
                    format!("hook {name} to {url} failed: {error}{excerpt} (not retried)");
                let effect = t.fail(uid, name, message, |d| {
                    d.record_final_failure(name, r.status, error, now)
                });
                self.announcing += 1;
                self.out.push(effect);
                // Recorded once the Warning Event is answered.
                return self.drive(uid, now);
            }
        }
        t.dirty = true;
        self.dirty.insert(uid.to_owned());
        self.drive(uid, now);
    }
}
