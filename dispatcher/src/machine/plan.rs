//! What to do for each hook of a terminal Task, given the recorded state and the clock. Pure.

use std::time::Duration;

use chrono::{DateTime, Utc};
use kelos_hooks_shared::api::{Hook, Phase};
use kelos_hooks_shared::deliveries::{Deliveries, HookDelivery, HookState};

/// Limits that turn retries into final failures and old Tasks into skips.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Tasks that completed longer ago than this are skipped (nothing sent).
    pub max_age: Duration,
    /// Attempts after which a hook is Failed.
    pub max_attempts: u32,
    /// Time after the first attempt after which a hook is Failed instead of retried.
    pub max_retry_duration: Duration,
}

/// The decision for one hook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Make an attempt now.
    Send,
    /// A retry is scheduled for this time.
    Wait(DateTime<Utc>),
    /// Do not send; record `Skipped` with this reason.
    Skip(String),
    /// Stop retrying; record `Failed` with this reason.
    GiveUp(String),
    /// The hook is final: nothing to do.
    Done,
}

fn chrono_dur(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Hooks that fire on `phase`, in declaration order.
pub fn matching(hooks: &[Hook], phase: Phase) -> impl Iterator<Item = &Hook> {
    hooks.iter().filter(move |h| h.fires_on(phase))
}

/// The action for every hook that fires on `deliveries.phase`.
pub fn plan(
    hooks: &[Hook],
    deliveries: &Deliveries,
    completed_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    limits: &Limits,
) -> Vec<(String, Action)> {
    matching(hooks, deliveries.phase)
        .map(|h| {
            (
                h.name.clone(),
                decide(deliveries.get(&h.name), completed_at, now, limits),
            )
        })
        .collect()
}

fn decide(
    record: Option<&HookDelivery>,
    completed_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    limits: &Limits,
) -> Action {
    let Some(d) = record.filter(|d| d.state != HookState::Pending || d.attempts > 0) else {
        // Never attempted: skip if the Task finished before the window (install into a busy cluster).
        return match completed_at {
            Some(at) if now - at > chrono_dur(limits.max_age) => Action::Skip(format!(
                "Task completed at {}, more than --max-age {}s ago",
                at.to_rfc3339(),
                limits.max_age.as_secs()
            )),
            _ => Action::Send,
        };
    };
    if d.state.is_final() {
        return Action::Done;
    }
    if d.attempts >= limits.max_attempts {
        return Action::GiveUp(give_up_reason(d, format!("{} attempts made", d.attempts)));
    }
    let window_end = d
        .first_attempt_at
        .map(|f| f + chrono_dur(limits.max_retry_duration));
    match d.next_attempt_at {
        Some(next) if window_end.is_some_and(|end| next > end) => Action::GiveUp(give_up_reason(
            d,
            "retry window (--max-retry-duration) closed".into(),
        )),
        Some(next) if next > now => Action::Wait(next),
        _ => Action::Send,
    }
}

fn give_up_reason(d: &HookDelivery, why: String) -> String {
    match &d.last_error {
        Some(e) => format!("{why}; last error: {e}"),
        None => why,
    }
}

/// What a retryable failure leads to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AfterRetryable {
    /// Retry at this time.
    RetryAt(DateTime<Utc>),
    /// Out of attempts or out of time: fail now with this reason.
    Fail(String),
}

/// Decides after a retryable failure. `prior` is the record before this attempt; `first_attempt`
/// when the first attempt was made (this one if none before); `delay` the backoff.
pub fn after_retryable(
    prior_attempts: u32,
    first_attempt: DateTime<Utc>,
    now: DateTime<Utc>,
    delay: Duration,
    limits: &Limits,
) -> AfterRetryable {
    let attempts = prior_attempts + 1;
    if attempts >= limits.max_attempts {
        return AfterRetryable::Fail(format!(
            "gave up after {attempts} attempts (--max-attempts)"
        ));
    }
    let next = now + chrono_dur(delay);
    if next > first_attempt + chrono_dur(limits.max_retry_duration) {
        return AfterRetryable::Fail(format!(
            "gave up after {attempts} attempts: next retry would be past --max-retry-duration {}s",
            limits.max_retry_duration.as_secs()
        ));
    }
    AfterRetryable::RetryAt(next)
}

/// Whether every hook firing on the phase is final, so `webhook-report-phase` can be written.
pub fn report_due(hooks: &[Hook], deliveries: &Deliveries) -> bool {
    deliveries.all_final(matching(hooks, deliveries.phase).map(|h| h.name.as_str()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use kelos_hooks_shared::api::Webhook;

    fn hook(name: &str, phases: Option<Vec<Phase>>) -> Hook {
        Hook {
            name: name.into(),
            phases,
            webhook: Webhook {
                url: "https://h.example/x".into(),
                secret_ref: None,
                signing_secret_ref: None,
                format: None,
                pager_duty: None,
                template: None,
            },
        }
    }
    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()
    }
    const L: Limits = Limits {
        max_age: Duration::from_secs(3600),
        max_attempts: 3,
        max_retry_duration: Duration::from_secs(600),
    };

    #[test]
    fn phase_filters_select_hooks() {
        let hooks = [
            hook("both", None),
            hook("ok", Some(vec![Phase::Succeeded])),
            hook("bad", Some(vec![Phase::Failed])),
        ];
        let p = plan(
            &hooks,
            &Deliveries::new(Phase::Failed),
            Some(t(0)),
            t(1),
            &L,
        );
        assert_eq!(
            p,
            vec![("both".into(), Action::Send), ("bad".into(), Action::Send)]
        );
        let p = plan(
            &hooks,
            &Deliveries::new(Phase::Succeeded),
            Some(t(0)),
            t(1),
            &L,
        );
        assert_eq!(
            p.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["both", "ok"]
        );
    }

    #[test]
    fn old_tasks_are_skipped_only_before_any_attempt() {
        let hooks = [hook("a", None), hook("b", None)];
        let mut d = Deliveries::new(Phase::Succeeded);
        d.record_retry("b", Some(500), "HTTP 500", t(7300), t(7200));
        let p = plan(&hooks, &d, Some(t(0)), t(7201), &L);
        assert!(
            matches!(&p[0].1, Action::Skip(r) if r.contains("max-age")),
            "{p:?}"
        );
        assert_eq!(p[1].1, Action::Wait(t(7300)));
        // A Task without completionTime is never skipped.
        assert_eq!(
            plan(
                &hooks,
                &Deliveries::new(Phase::Succeeded),
                None,
                t(99999),
                &L
            )[0]
            .1,
            Action::Send
        );
    }

    #[test]
    fn resume_from_annotation() {
        let hooks = [
            hook("done", None),
            hook("due", None),
            hook("later", None),
            hook("spent", None),
            hook("late", None),
        ];
        let mut d = Deliveries::new(Phase::Succeeded);
        d.record_success("done", 200, t(0));
        d.record_retry("due", Some(503), "HTTP 503", t(5), t(0));
        d.record_retry("later", None, "timeout", t(50), t(0));
        for _ in 0..3 {
            d.record_retry("spent", Some(500), "HTTP 500", t(5), t(0));
        }
        d.record_retry("late", Some(500), "HTTP 500", t(700), t(0));
        let p = plan(&hooks, &d, Some(t(0)), t(10), &L);
        assert_eq!(p[0].1, Action::Done);
        assert_eq!(p[1].1, Action::Send);
        assert_eq!(p[2].1, Action::Wait(t(50)));
        assert!(
            matches!(&p[3].1, Action::GiveUp(r) if r.contains("3 attempts") && r.contains("HTTP 500")),
            "{p:?}"
        );
        assert!(
            matches!(&p[4].1, Action::GiveUp(r) if r.contains("max-retry-duration")),
            "{p:?}"
        );
    }

    #[test]
    fn retryable_failures_respect_limits() {
        let d = Duration::from_secs(10);
        assert_eq!(
            after_retryable(0, t(0), t(0), d, &L),
            AfterRetryable::RetryAt(t(10))
        );
        assert!(
            matches!(after_retryable(2, t(0), t(20), d, &L), AfterRetryable::Fail(r) if r.contains("3 attempts"))
        );
        assert!(
            matches!(after_retryable(1, t(0), t(595), d, &L), AfterRetryable::Fail(r) if r.contains("max-retry-duration"))
        );
    }

    #[test]
    fn report_phase_when_all_matching_final() {
        let hooks = [hook("a", None), hook("f", Some(vec![Phase::Failed]))];
        let mut d = Deliveries::new(Phase::Succeeded);
        assert!(!report_due(&hooks, &d));
        d.record_retry("a", Some(500), "x", t(1), t(0));
        assert!(!report_due(&hooks, &d));
        d.record_final_failure("a", Some(400), "HTTP 400", t(2));
        assert!(
            report_due(&hooks, &d),
            "the Failed-only hook does not match Succeeded"
        );
        assert!(report_due(&[], &Deliveries::new(Phase::Failed)));
    }
}
