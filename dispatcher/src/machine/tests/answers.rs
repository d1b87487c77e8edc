//! What each kind of answer does: the contract's status table, retries, backoff and limits.

use super::*;
use crate::machine::outcome::Class;

/// A leader that has just sent `hook` of Task `u1` (Succeeded) at `t(1)`.
fn sent(hooks: &[Hook]) -> (Run, Vec<Attempt>) {
    let mut run = Run::leader();
    let e = run.upsert(task("u1", Phase::Succeeded, hooks));
    let a = attempts(&e).into_iter().cloned().collect();
    (run, a)
}

#[test]
fn a_2xx_is_delivered_recorded_and_reported() {
    let (mut run, a) = sent(&[hook("a")]);
    assert_eq!(a[0].webhook_id, "u1_Succeeded_a");
    assert_eq!(run.m.in_flight(), 1);
    let e = run.at(t(3)).answer(&a[0], answer(204));
    let n = note(&e, reason::DELIVERED, "a");
    assert!(!n.warning);
    assert_eq!(
        n.message,
        "hook a delivered to https://hooks.example: HTTP 204 (attempt 1)"
    );
    let m = metrics(&e);
    assert!(m.contains(&&Metric::Final("delivered")), "{m:?}");
    assert!(m.contains(&&Metric::CompletionToDelivery(3.0)), "{m:?}");
    assert!(m.contains(&&Metric::AttemptDuration {
        result: "success",
        seconds: 0.02
    }));
    assert!(attempts(&e).is_empty() && timers(&e).is_empty());
    assert_eq!(run.m.in_flight(), 0);

    let r = run.flush_one();
    assert_eq!(state_of(&r, "a"), (HookState::Delivered, 1, Some(204)));
    assert_eq!(r.matching, ["a"]);
    assert!(run.m.busy(), "a write is in flight");
    assert!(run.written(&r).is_empty());
    assert_eq!(run.m.tracked(), 0, "reported: nothing left to do");
    assert!(!run.m.busy());
}

#[test]
fn a_3xx_is_a_final_failure_never_followed() {
    for status in [300, 301, 302, 303, 307, 308] {
        let (mut run, a) = sent(&[hook("a")]);
        let e = run.answer(&a[0], answer(status));
        let n = assert_failed(&e, "a", "redirects are not followed");
        assert!(n.message.ends_with("(not retried)"), "{n:?}");
        let r = run.flush_one();
        assert_eq!(state_of(&r, "a"), (HookState::Failed, 1, Some(status)));
    }
}

#[test]
fn other_4xx_and_410_are_final_failures() {
    for status in [400, 401, 403, 404, 405, 409, 410, 413, 422] {
        let (mut run, a) = sent(&[hook("a")]);
        let e = run.answer(&a[0], answer(status));
        assert_failed(&e, "a", &format!("HTTP {status}"));
        let r = run.flush_one();
        assert_eq!(state_of(&r, "a"), (HookState::Failed, 1, Some(status)));
    }
}

#[test]
fn a_final_failure_quotes_the_start_of_the_answer() {
    let (mut run, a) = sent(&[hook("a")]);
    let body = format!("invalid payload {}", "x".repeat(500));
    let o = Outcome::answered(422, None, body, Duration::ZERO);
    let e = run.answer(&a[0], o);
    let n = assert_failed(&e, "a", "HTTP 422; answer: invalid payload xxx");
    assert!(
        n.message.len() < 400,
        "quote is bounded: {}",
        n.message.len()
    );
}

#[test]
fn retryable_answers_are_retried_with_the_same_webhook_id() {
    let retryable = [
        answer(408),
        answer(429),
        answer(500),
        answer(502),
        answer(503),
        answer(599),
        Outcome::timed_out(Duration::from_secs(2), Duration::from_secs(2)),
        Outcome::unreachable("connection failed: refused".into(), Duration::ZERO),
    ];
    for o in retryable {
        let (mut run, a) = sent(&[hook("a")]);
        let e = run.answer(&a[0], o.clone());
        assert_eq!(o.class, Class::Retry);
        let (at, timer) = retry_timer(&e);
        // First retry: jitter within [base/10, base].
        assert!(at >= ms(1_100) && at <= t(2), "{at} for {o:?}");
        let n = note(&e, reason::RETRYING, "a");
        assert!(n.warning && n.message.contains("attempt 1 failed"), "{n:?}");
        assert!(!n.logs_as_warning(), "routine: logged at info");
        assert!(metrics(&e).contains(&&Metric::Retry));
        assert!(attempts(&e).is_empty(), "not before the timer");
        assert_eq!(run.m.waiting(), 1);

        let r = run.flush_one();
        let d = state(&r, "a");
        assert_eq!((d.state, d.attempts), (HookState::Retrying, 1));
        assert_eq!(d.next_attempt_at, Some(at));
        assert_eq!(d.last_error, o.error);

        // A wake-up before the time (e.g. an echo of our write) sends nothing.
        assert!(attempts(&run.written(&r)).is_empty());
        let again = only_attempt(&run.at(at).fire(&timer));
        assert_eq!(again.webhook_id, "u1_Succeeded_a");
        assert_eq!(run.m.waiting(), 0);
    }
}

/// The delays of successive retries of one hook (each answered 503 at its due time).
fn delays(seed: u64, retries: usize) -> Vec<chrono::Duration> {
    let mut run = Run::follower_seeded(seed);
    run.input(Input::Leader(true));
    let mut a = only_attempt(&run.upsert(task("u1", Phase::Succeeded, &[hook("a")])));
    let mut out = Vec::new();
    for _ in 0..retries {
        let now = run.now;
        let (at, timer) = retry_timer(&run.answer(&a, answer(503)));
        out.push(at - now);
        a = only_attempt(&run.at(at).fire(&timer));
    }
    out
}

#[test]
fn backoff_is_exponential_with_jitter_deterministic_per_seed() {
    let d = delays(7, 3);
    for (i, ceiling_ms) in [1_000, 2_000, 4_000].into_iter().enumerate() {
        let got = d[i].num_milliseconds();
        assert!(
            got >= ceiling_ms / 10 && got <= ceiling_ms,
            "retry {}: {got}ms",
            i + 1
        );
    }
    assert_eq!(d, delays(7, 3), "same seed, same delays");
    assert_ne!(d, delays(8, 3), "the jitter is drawn from the rng");
}

#[test]
fn retry_after_is_honoured_within_bounds() {
    // (Retry-After, expected delay): as sent, capped at --backoff-max, raised to --backoff-base.
    for (retry_after, expect) in [(5, 5), (3600, 60), (0, 1)] {
        let (mut run, a) = sent(&[hook("a")]);
        let o = Outcome::answered(
            429,
            Some(Duration::from_secs(retry_after)),
            String::new(),
            Duration::ZERO,
        );
        let e = run.answer(&a[0], o);
        let (at, _) = retry_timer(&e);
        assert_eq!(at, t(1 + expect), "Retry-After {retry_after}");
        let n = note(&e, reason::RETRYING, "a");
        assert!(
            n.message.ends_with(&format!("retrying in {expect}s")),
            "{n:?}"
        );
    }
}

#[test]
fn max_attempts_turns_retries_into_failed() {
    let (mut run, a) = sent(&[hook("a")]);
    let mut a = a[0].clone();
    for _ in 1..RULES.limits.max_attempts {
        let (at, timer) = retry_timer(&run.answer(&a, answer(503)));
        a = only_attempt(&run.at(at).fire(&timer));
    }
    let e = run.answer(&a, answer(503));
    assert_failed(
        &e,
        "a",
        "gave up after 4 attempts (--max-attempts); last error: HTTP 503",
    );
    let r = run.flush_one();
    let d = state(&r, "a");
    assert_eq!(
        (d.state, d.attempts, d.next_attempt_at),
        (HookState::Failed, 4, None)
    );
    assert!(d.last_error.unwrap().contains("4 attempts"));
}

#[test]
fn max_retry_duration_turns_retries_into_failed() {
    let (mut run, a) = sent(&[hook("a")]);
    let wait = |s| {
        Outcome::answered(
            503,
            Some(Duration::from_secs(s)),
            String::new(),
            Duration::ZERO,
        )
    };
    // First attempt at t(1): the window closes at t(601).
    let (at, timer) = retry_timer(&run.answer(&a[0], wait(60)));
    let a = only_attempt(&run.at(at).fire(&timer));
    // Answered at t(590); the next retry (t(650)) would be past the window.
    let e = run.at(t(590)).answer(&a, wait(60));
    assert_failed(
        &e,
        "a",
        "past --max-retry-duration 600s; last error: HTTP 503",
    );
    let r = run.flush_one();
    assert_eq!(state_of(&r, "a"), (HookState::Failed, 2, Some(503)));
}

#[test]
fn refusals_and_unusable_secrets_are_final_missing_secrets_retried() {
    let finals = [
        Outcome::refused(
            "hooks.example resolves to 10.0.0.1 (10.0.0.0/8)",
            Duration::ZERO,
        ),
        Outcome::not_sent(false, "signing secret: key is not whsec_ base64".into()),
    ];
    for o in finals {
        let (mut run, a) = sent(&[hook("a")]);
        let why = o.error.clone().unwrap();
        let e = run.answer(&a[0], o);
        assert_failed(&e, "a", &why);
        assert_eq!(
            state_of(&run.flush_one(), "a"),
            (HookState::Failed, 1, None)
        );
    }
    let (mut run, a) = sent(&[hook("a")]);
    let o = Outcome::not_sent(true, "header Secret: Secret ns/h not found".into());
    let e = run.answer(&a[0], o);
    retry_timer(&e);
    assert!(
        note(&e, reason::RETRYING, "a")
            .message
            .contains("not found")
    );
}

#[test]
fn attempt_warnings_become_warning_events() {
    let (mut run, a) = sent(&[hook("a")]);
    let warning = "hook a: Secret h key(s) Host ignored: reserved headers cannot be overridden";
    let e = run.answer(&a[0], answer(200).with_warnings(vec![warning.into()]));
    let n = note(&e, reason::RESERVED_HEADERS, "a");
    assert!(n.warning);
    assert_eq!(n.message, warning);
    note(&e, reason::DELIVERED, "a");
}

#[test]
fn every_final_failure_has_a_warning_event_saying_why() {
    // Each way a hook can end Failed, with the words its Event must carry.
    let cases: [(&str, Vec<Outcome>); 4] = [
        ("HTTP 400", vec![answer(400)]),
        ("redirects are not followed", vec![answer(307)]),
        ("refused", vec![Outcome::refused("blocked", Duration::ZERO)]),
        ("--max-attempts", vec![answer(500); 4]),
    ];
    for (why, outcomes) in cases {
        let (mut run, a) = sent(&[hook("a")]);
        let mut a = a[0].clone();
        let mut e = Vec::new();
        for o in outcomes {
            e = run.answer(&a, o);
            if let Some((at, timer)) = timers(&e).first().map(|(at, t)| (*at, (*t).clone())) {
                a = only_attempt(&run.at(at).fire(&timer));
            }
        }
        assert_failed(&e, "a", why);
        assert_eq!(state(&run.flush_one(), "a").state, HookState::Failed);
    }
}
