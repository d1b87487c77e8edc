//! A hook's Failed state is written only after its Warning Event is answered, so a dispatcher
//! killed at any point repeats the attempt and the Event rather than losing the Event.

use super::*;

/// A leader with one Task `u1` whose hook `h` was just answered 410, the Event still unanswered.
fn failed_unannounced() -> (Run, Task, Announcement) {
    let on_server = task("u1", Phase::Succeeded, &[hook("h")]);
    let mut run = Run::leader();
    let a = only_attempt(&run.upsert(on_server.clone()));
    let e = run.raw_input(Input::Attempted {
        uid: a.uid.clone(),
        phase: a.phase,
        hook: a.hook.name.clone(),
        outcome: Some(answer(410)),
    });
    let asked = announcements(&e);
    assert_eq!(asked.len(), 1, "{e:?}");
    let n = &asked[0].note;
    assert!(n.warning && n.reason == reason::FAILED, "{n:?}");
    assert!(n.message.contains("HTTP 410"), "{n:?}");
    assert!(
        !metrics(&e).contains(&&Metric::Final("failed")),
        "counted once recorded"
    );
    assert!(notes(&e).len() == 1 && attempts(&e).is_empty(), "{e:?}");
    let a = asked[0].clone();
    (run, on_server, a)
}

#[test]
fn the_failed_state_is_written_only_once_its_warning_event_is_published() {
    let (mut run, _, a) = failed_unannounced();
    assert!(run.m.busy(), "shutdown waits for the Event");
    assert!(
        run.flush().is_empty(),
        "nothing final to write before the Event"
    );
    // The watch seeing the Task again (e.g. another writer) starts nothing new for the hook.
    let e = run.upsert(task("u1", Phase::Succeeded, &[hook("h")]));
    assert!(attempts(&e).is_empty(), "{e:?}");

    let e = run.announced(&a, Published::Yes);
    assert_eq!(metrics(&e), [&Metric::Final("failed")]);
    let r = run.flush_one();
    assert_eq!(state_of(&r, "h"), (HookState::Failed, 1, Some(410)));
    assert!(state(&r, "h").last_error.unwrap().contains("HTTP 410"));
    run.written(&r);
    assert!(!run.m.busy());
    assert_eq!(run.m.tracked(), 0, "reported and forgotten");
}

#[test]
fn a_sigkill_before_the_event_is_answered_repeats_the_attempt_and_the_event() {
    let (_killed, on_server, _) = failed_unannounced();
    // The next leader finds the hook unfinished on the Task (nothing was written): it sends
    // again with the same id, and the failure is announced again.
    let mut next = Run::leader();
    let a = only_attempt(&next.upsert(on_server));
    assert_eq!(a.webhook_id, "u1_Succeeded_h");
    let e = next.answer(&a, answer(410));
    assert_failed(&e, "h", "HTTP 410");
    assert_eq!(
        state_of(&next.flush_one(), "h"),
        (HookState::Failed, 1, Some(410))
    );
}

#[test]
fn losing_the_lease_before_the_event_is_answered_records_nothing() {
    let (mut run, _, a) = failed_unannounced();
    assert!(matches!(
        run.input(Input::Leader(false))[..],
        [Effect::CancelAttempts]
    ));
    assert!(run.announced(&a, Published::Cancelled).is_empty());
    assert!(run.flush().is_empty(), "the next leader decides");
    assert!(!run.m.busy());
    // Leading again: the hook is tried again, not left open.
    let e = run.input(Input::Leader(true));
    assert_eq!(sent_hooks(&e), ["h"]);
}

#[test]
fn an_event_still_refused_after_the_bounded_retry_is_logged_and_the_hook_recorded_failed() {
    let (mut run, _, a) = failed_unannounced();
    let e = run.announced(&a, Published::GaveUp);
    let warned: Vec<&str> = e
        .iter()
        .filter_map(|e| match e {
            Effect::Warn { message, .. } => Some(*message),
            _ => None,
        })
        .collect();
    assert_eq!(warned.len(), 1, "{e:?}");
    assert!(warned[0].contains("could not be published"), "{warned:?}");
    assert!(metrics(&e).contains(&&Metric::Final("failed")));
    assert_eq!(
        state_of(&run.flush_one(), "h"),
        (HookState::Failed, 1, Some(410))
    );
}

#[test]
fn a_give_up_decided_on_replay_also_waits_for_its_event() {
    // Out of attempts while nobody led: the failure is decided without an attempt.
    let mut d = Deliveries::new(Phase::Succeeded);
    for _ in 0..4 {
        d.record_retry("h", Some(500), "HTTP 500", t(20), t(10));
    }
    let on_server = with_deliveries(task("u1", Phase::Succeeded, &[hook("h")]), &d);
    let mut run = Run::leader();
    let e = run.at(t(30)).raw_input(Input::Upsert(Arc::new(on_server)));
    let asked = announcements(&e);
    assert_eq!(asked.len(), 1, "{e:?}");
    let a = asked[0].clone();
    assert!(attempts(&e).is_empty());
    assert!(run.flush().is_empty());
    run.announced(&a, Published::Yes);
    assert_eq!(state(&run.flush_one(), "h").state, HookState::Failed);
}
