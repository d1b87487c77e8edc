//! Around the attempts: leadership, shutdown, writes and their failures, the spawner fallback, old
//! Tasks, limits reached while nobody was leader, and forgetting.

use std::collections::HashSet;

use super::*;
use crate::error::Error;

/// The read of Task u1's spawner ended.
fn spawner_read(run: &mut Run, result: crate::error::Result<Vec<Hook>>) -> Vec<Effect> {
    run.input(Input::SpawnerHooks {
        uid: "u1".into(),
        result,
    })
}

fn api_error(message: &str, reason: &str, code: u16) -> kube::Error {
    kube::Error::Api(
        kube::core::Status::failure(message, reason)
            .with_code(code)
            .boxed(),
    )
}

#[test]
fn a_follower_sends_nothing_and_a_lost_lease_cancels_in_flight_attempts() {
    let mut run = Run::follower();
    assert!(
        run.upsert(task("u1", Phase::Succeeded, &[hook("a")]))
            .is_empty()
    );
    assert_eq!(run.m.tracked(), 1, "kept, ready for a failover");
    let a = only_attempt(&run.input(Input::Leader(true)));
    assert_eq!(a.webhook_id, "u1_Succeeded_a");
    let e = run.input(Input::Leader(false));
    assert!(matches!(e[..], [Effect::CancelAttempts]), "{e:?}");
    // The cancelled attempt reports back without an outcome: nothing is recorded or sent.
    assert!(run.cancelled(&a).is_empty());
    assert!(run.flush().is_empty());
    assert_eq!(run.m.in_flight(), 0);
    // Leader again: the same delivery, the same id.
    let again = only_attempt(&run.input(Input::Leader(true)));
    assert_eq!(again.webhook_id, a.webhook_id);
    assert!(
        run.input(Input::Leader(true)).is_empty(),
        "no change, nothing to do"
    );
}

#[test]
fn a_follower_does_not_retry_when_a_timer_fires() {
    let mut run = Run::leader();
    let a = only_attempt(&run.upsert(task("u1", Phase::Succeeded, &[hook("a")])));
    let (at, timer) = retry_timer(&run.answer(&a, answer(500)));
    run.input(Input::Leader(false));
    assert!(run.at(at).fire(&timer).is_empty());
    let again = only_attempt(&run.input(Input::Leader(true)));
    assert_eq!(again.hook.name, "a");
}

#[test]
fn draining_starts_nothing_new_but_records_what_ends() {
    let mut run = Run::leader();
    let a = only_attempt(&run.upsert(task("u1", Phase::Succeeded, &[hook("a")])));
    run.input(Input::Draining);
    assert!(
        run.upsert(task("u2", Phase::Succeeded, &[hook("a")]))
            .is_empty()
    );
    assert!(run.m.busy());
    note(&run.answer(&a, answer(200)), reason::DELIVERED, "a");
    let r = run.flush_one();
    assert_eq!(r.uid, "u1");
    assert!(run.m.busy(), "the write is still out");
    run.written(&r);
    assert!(!run.m.busy());
}

#[test]
fn failed_writes_are_retried_and_a_gone_task_is_dropped() {
    let failures = [
        Error::WriteConflicts,
        Error::Kube(api_error(
            "etcdserver: request timed out",
            "InternalError",
            500,
        )),
    ];
    for failure in failures {
        let mut run = Run::leader();
        let a = only_attempt(&run.upsert(task("u1", Phase::Succeeded, &[hook("a")])));
        run.answer(&a, answer(200));
        let r = run.flush_one();
        let shown = failure.to_string();
        let e = run.at(t(5)).input(Input::Recorded {
            uid: "u1".into(),
            phase: Phase::Succeeded,
            result: Err(failure),
        });
        assert!(metrics(&e).contains(&&Metric::StateWriteError));
        assert!(
            e.iter()
                .any(|e| matches!(e, Effect::Warn { task_uid, error, .. } if task_uid == "u1" && *error == shown)),
            "{e:?}"
        );
        let all = timers(&e);
        assert_eq!(all, [(t(6), &Timer::Rewrite { uid: "u1".into() })]);
        assert!(run.flush().is_empty(), "not before the timer");
        assert!(run.m.busy());
        run.at(t(6)).fire(&Timer::Rewrite { uid: "u1".into() });
        let again = run.flush_one();
        assert_eq!(again.deliveries, r.deliveries);
        run.written(&again);
        assert_eq!(run.m.tracked(), 0);
    }

    let mut run = Run::leader();
    let a = only_attempt(&run.upsert(task("u1", Phase::Succeeded, &[hook("a")])));
    run.answer(&a, answer(200));
    run.flush_one();
    let e = run.input(Input::Recorded {
        uid: "u1".into(),
        phase: Phase::Succeeded,
        result: Err(Error::TaskGone),
    });
    assert!(e.is_empty(), "{e:?}");
    assert_eq!(run.m.tracked(), 0);
    assert!(!run.m.busy());
}

#[test]
fn a_task_has_one_write_in_flight_and_later_outcomes_join_the_next() {
    let mut run = Run::leader();
    let e = run.upsert(task("u1", Phase::Succeeded, &[hook("a"), hook("b")]));
    let (a, b) = (attempts(&e)[0].clone(), attempts(&e)[1].clone());
    run.answer(&a, answer(200));
    let first = run.flush_one();
    run.answer(&b, answer(200));
    assert!(run.flush().is_empty(), "one write at a time");
    run.written(&first);
    let second = run.flush_one();
    assert_eq!(state(&second, "a").state, HookState::Delivered);
    assert_eq!(state(&second, "b").state, HookState::Delivered);
    // Outcomes of several hooks that end together are one write.
    let mut run = Run::leader();
    let e = run.upsert(task("u2", Phase::Succeeded, &[hook("a"), hook("b")]));
    for a in attempts(&e) {
        run.answer(a, answer(200));
    }
    assert_eq!(run.flush_one().deliveries.hooks.len(), 2);
}

#[test]
fn the_report_phase_waits_for_every_matching_hook() {
    let hooks = [
        hook("a"),
        hook("b"),
        hook_on("f", Some(vec![Phase::Failed])),
    ];
    let mut run = Run::leader();
    let e = run.upsert(task("u1", Phase::Succeeded, &hooks));
    assert_eq!(sent_hooks(&e), ["a", "b"], "f does not fire on Succeeded");
    let (a, b) = (attempts(&e)[0].clone(), attempts(&e)[1].clone());
    run.answer(&a, answer(200));
    let (at, timer) = retry_timer(&run.answer(&b, answer(503)));
    let r = run.flush_one();
    assert_eq!(r.matching, ["a", "b"]);
    run.written(&r);
    assert_eq!(run.m.tracked(), 1, "b is not final: no report yet");
    let b = only_attempt(&run.at(at).fire(&timer));
    run.answer(&b, answer(200));
    let r = run.flush_one();
    run.written(&r);
    assert_eq!(run.m.tracked(), 0, "reported; f does not count");
}

#[test]
fn a_task_without_snapshot_uses_its_spawners_hooks_and_says_so() {
    let mut run = Run::leader();
    let e = run.upsert(bare_task("u1", Phase::Failed));
    assert!(
        matches!(&e[..], [Effect::ReadSpawner { uid, namespace, spawner }]
            if uid == "u1" && namespace == "ns" && spawner == "spawner"),
        "{e:?}"
    );
    // The read fails: retried in 5s, with a warning in the log.
    let e = spawner_read(
        &mut run,
        Err(Error::Kube(api_error("forbidden", "Forbidden", 403))),
    );
    assert!(e.iter().any(|e| matches!(e, Effect::Warn { .. })), "{e:?}");
    let retry = Timer::ReadSpawner { uid: "u1".into() };
    assert_eq!(timers(&e), [(t(6), &retry)]);
    let e = run.at(t(6)).fire(&retry);
    assert!(matches!(&e[..], [Effect::ReadSpawner { .. }]), "{e:?}");
    // Read: an Event says where the hooks came from, and they are sent.
    let e = spawner_read(&mut run, Ok(vec![hook("issues")]));
    let n = note(&e, reason::HOOKS_FROM_SPAWNER, "");
    assert!(!n.warning);
    assert!(
        n.message
            .contains("1 current hook(s) of TaskSpawner spawner"),
        "{n:?}"
    );
    assert_eq!(only_attempt(&e).webhook_id, "u1_Failed_issues");
    // A stale retry timer reads nothing more.
    assert!(run.fire(&retry).is_empty());
}

#[test]
fn a_spawner_without_hooks_leaves_nothing_to_do() {
    let mut run = Run::leader();
    run.upsert(bare_task("u1", Phase::Failed));
    let e = spawner_read(&mut run, Ok(Vec::new()));
    assert!(e.is_empty(), "{e:?}");
    assert_eq!(run.m.tracked(), 0);
    assert!(run.flush().is_empty());
}

#[test]
fn a_follower_reads_the_spawner_but_leaves_the_event_to_the_leader() {
    let mut run = Run::follower();
    run.upsert(bare_task("u1", Phase::Failed));
    let e = spawner_read(&mut run, Ok(vec![hook("issues")]));
    assert!(e.is_empty(), "{e:?}");
    assert_eq!(
        only_attempt(&run.input(Input::Leader(true))).hook.name,
        "issues"
    );
}

#[test]
fn an_invalid_snapshot_is_a_warning_and_nothing_is_sent() {
    let mut run = Run::leader();
    let e = run.upsert(annotate(
        bare_task("u1", Phase::Succeeded),
        ON_COMPLETION,
        "{not json".into(),
    ));
    let n = note(&e, reason::BAD_ANNOTATION, "");
    assert!(
        n.warning && n.message.contains("no webhooks are sent"),
        "{n:?}"
    );
    assert!(attempts(&e).is_empty());
    assert_eq!(run.m.tracked(), 0);
}

#[test]
fn a_snapshot_in_kelos_format_is_left_to_kelos_reporter() {
    let mut run = Run::leader();
    let kelos = r#"[{"name":"notify","webhook":{"url":"https://h.example.com/x"}}]"#;
    let e = run.upsert(annotate(
        bare_task("u1", Phase::Succeeded),
        ON_COMPLETION,
        kelos.into(),
    ));
    let n = note(&e, reason::LEFT_TO_KELOS, "");
    assert!(
        !n.warning && n.message.contains("kelos's onCompletion reporter"),
        "{n:?}"
    );
    assert!(
        e.iter()
            .any(|x| matches!(x, Effect::Metric(Metric::LeftToKelos))),
        "{e:?}"
    );
    assert!(attempts(&e).is_empty(), "never sent twice");
    assert!(
        !e.iter().any(|x| matches!(x, Effect::Record(_))),
        "nothing recorded: {e:?}"
    );
    assert_eq!(run.m.tracked(), 0);
}

#[test]
fn tasks_older_than_max_age_are_skipped_not_sent() {
    let mut run = Run::leader();
    let hooks = [hook("a"), hook("b")];
    // b was attempted before (a dispatcher outage): it is not skipped.
    let mut d = Deliveries::new(Phase::Succeeded);
    d.record_retry("b", Some(503), "HTTP 503", t(7000), t(6990));
    let e = run
        .at(t(7200))
        .upsert(with_deliveries(task("u1", Phase::Succeeded, &hooks), &d));
    let n = note(&e, reason::SKIPPED, "a");
    assert!(!n.warning && n.message.contains("--max-age 3600s"), "{n:?}");
    assert!(metrics(&e).contains(&&Metric::Final("skipped")));
    assert_eq!(sent_hooks(&e), ["b"]);
    let r = run.flush_one();
    let a = state(&r, "a");
    assert_eq!((a.state, a.attempts), (HookState::Skipped, 0));
}

#[test]
fn limits_reached_while_nobody_was_leader_fail_with_a_warning() {
    let hooks = [hook("spent"), hook("late")];
    let mut d = Deliveries::new(Phase::Succeeded);
    for _ in 0..4 {
        d.record_retry("spent", Some(500), "HTTP 500", t(20), t(10));
    }
    d.record_retry("late", Some(503), "HTTP 503", t(700), t(10));
    let mut run = Run::leader();
    let e = run
        .at(t(30))
        .upsert(with_deliveries(task("u1", Phase::Succeeded, &hooks), &d));
    for (hook, why) in [
        ("spent", "4 attempts made; last error: HTTP 500"),
        (
            "late",
            "retry window (--max-retry-duration) closed; last error: HTTP 503",
        ),
    ] {
        let n = note(&e, reason::FAILED, hook);
        assert!(n.warning && n.message.contains(why), "{n:?}");
    }
    assert!(attempts(&e).is_empty());
    let r = run.flush_one();
    assert_eq!(state(&r, "spent").state, HookState::Failed);
    assert_eq!(state(&r, "late").state, HookState::Failed);
}

#[test]
fn forgotten_tasks_leave_no_state_and_late_results_are_absorbed() {
    let mut run = Run::leader();
    let a1 = only_attempt(&run.upsert(task("u1", Phase::Succeeded, &[hook("a")])));
    let a2 = only_attempt(&run.upsert(task("u2", Phase::Succeeded, &[hook("a")])));
    let (at, timer) = retry_timer(&run.answer(&a2, answer(503)));
    assert_eq!(run.m.waiting(), 1);
    run.input(Input::Resync(HashSet::from(["u1".to_owned()])));
    assert_eq!((run.m.tracked(), run.m.waiting()), (1, 0));
    assert!(run.at(at).fire(&timer).is_empty());
    run.input(Input::Forget("u1".into()));
    assert_eq!(run.m.tracked(), 0);
    assert!(run.answer(&a1, answer(200)).is_empty());
    assert_eq!(run.m.in_flight(), 0);
    assert!(run.flush().is_empty());
    assert!(!run.m.busy());
}

#[test]
fn a_task_whose_snapshot_has_no_hooks_is_dropped() {
    let mut run = Run::leader();
    assert!(run.upsert(task("u1", Phase::Succeeded, &[])).is_empty());
    assert_eq!(run.m.tracked(), 0);
}
