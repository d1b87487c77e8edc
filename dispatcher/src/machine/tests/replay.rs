//! Resuming from the annotation (a SIGKILLed or replaced dispatcher), per-hook independence, and
//! re-runs into another phase.

use super::*;

#[test]
fn sigkill_replay_resends_what_was_in_flight_with_the_same_id_and_never_a_delivered_hook() {
    // What the killed dispatcher had recorded: a delivered; b and d retrying (b due, d not);
    // c had an attempt in flight, so nothing was recorded for it.
    let hooks = [hook("a"), hook("b"), hook("c"), hook("d")];
    let mut d = Deliveries::new(Phase::Succeeded);
    d.record_success("a", 200, t(1));
    d.record_retry("b", Some(503), "HTTP 503", t(5), t(1));
    d.record_retry("d", None, "timed out after 2s", t(100), t(1));
    let on_server = with_deliveries(task("u1", Phase::Succeeded, &hooks), &d);

    let mut run = Run::leader();
    let e = run.at(t(10)).upsert(on_server.clone());
    assert_eq!(sent_hooks(&e), ["b", "c"]);
    for a in attempts(&e) {
        assert_eq!(a.webhook_id, format!("u1_Succeeded_{}", a.hook.name));
    }
    let (at, timer) = retry_timer(&e);
    assert_eq!(
        (at, timer),
        (
            t(100),
            Timer::Retry {
                uid: "u1".into(),
                hook: "d".into()
            }
        )
    );
    // The watch delivering the same object again starts nothing twice.
    assert!(run.upsert(on_server).is_empty());

    let sent: Vec<Attempt> = attempts(&e).into_iter().cloned().collect();
    for a in &sent {
        run.answer(a, answer(200));
    }
    let r = run.flush_one();
    assert_eq!(
        state_of(&r, "a"),
        (HookState::Delivered, 1, Some(200)),
        "untouched"
    );
    assert_eq!(state_of(&r, "b"), (HookState::Delivered, 2, Some(200)));
    assert_eq!(state_of(&r, "c"), (HookState::Delivered, 1, Some(200)));
    assert_eq!(state(&r, "d").state, HookState::Retrying);
    assert!(attempts(&run.written(&r)).is_empty());
    assert_eq!(run.m.tracked(), 1, "d still to go");
}

#[test]
fn a_fresh_dispatcher_writes_a_missing_report_phase_without_sending() {
    // Every hook final on the Task, but the dispatcher died before writing the report phase.
    let mut d = Deliveries::new(Phase::Failed);
    d.record_success("a", 200, t(1));
    d.record_final_failure("b", Some(404), "HTTP 404", t(1));
    let mut run = Run::leader();
    let e = run.upsert(with_deliveries(
        task("u1", Phase::Failed, &[hook("a"), hook("b")]),
        &d,
    ));
    assert!(e.is_empty(), "{e:?}");
    let r = run.flush_one();
    assert_eq!(r.deliveries, d);
    assert_eq!(r.matching, ["a", "b"]);
    run.written(&r);
    assert_eq!(run.m.tracked(), 0);
    // Already reported: nothing at all, not even a write.
    let mut run = Run::leader();
    let reported = with_report(
        with_deliveries(task("u1", Phase::Failed, &[hook("a"), hook("b")]), &d),
        Phase::Failed,
    );
    assert!(run.upsert(reported).is_empty());
    assert!(run.flush().is_empty());
    assert_eq!(run.m.tracked(), 0);
}

#[test]
fn one_failing_hook_never_makes_a_delivered_hook_send_twice() {
    let mut run = Run::leader();
    let first = run.upsert(task("u1", Phase::Succeeded, &[hook("ok"), hook("bad")]));
    let mut all_sent: Vec<String> = sent_hooks(&first).iter().map(|s| s.to_string()).collect();
    let ok = attempts(&first)[0].clone();
    let mut bad = attempts(&first)[1].clone();
    assert_eq!(
        (ok.hook.name.as_str(), bad.hook.name.as_str()),
        ("ok", "bad")
    );
    run.answer(&ok, answer(200));
    loop {
        let e = run.answer(&bad, answer(503));
        let r = run.flush_one();
        run.written(&r);
        let Some((at, timer)) = timers(&e).first().map(|(a, t)| (*a, (*t).clone())) else {
            assert_failed(&e, "bad", "4 attempts");
            assert_eq!(state_of(&r, "ok"), (HookState::Delivered, 1, Some(200)));
            break;
        };
        // Each write comes back through the watch, as on a cluster.
        let echo = with_deliveries(
            task("u1", Phase::Succeeded, &[hook("ok"), hook("bad")]),
            &r.deliveries,
        );
        assert!(attempts(&run.upsert(echo)).is_empty());
        let next = run.at(at).fire(&timer);
        all_sent.extend(sent_hooks(&next).iter().map(|s| s.to_string()));
        bad = only_attempt(&next);
    }
    assert_eq!(
        all_sent.iter().filter(|h| *h == "ok").count(),
        1,
        "{all_sent:?}"
    );
    assert_eq!(
        all_sent.iter().filter(|h| *h == "bad").count(),
        4,
        "{all_sent:?}"
    );
    assert_eq!(run.m.tracked(), 0, "all final and reported");
}

#[test]
fn another_writers_record_is_respected() {
    // We wait to retry a; meanwhile another leader's write (merged into ours by the write) says
    // it was delivered.
    let mut run = Run::leader();
    let a = only_attempt(&run.upsert(task("u1", Phase::Succeeded, &[hook("a")])));
    let (at, timer) = retry_timer(&run.answer(&a, answer(503)));
    let r = run.flush_one();
    let mut theirs = r.deliveries.clone();
    theirs.record_success("a", 200, t(2));
    run.input(Input::Recorded {
        uid: "u1".into(),
        phase: Phase::Succeeded,
        result: Ok(Written {
            deliveries: theirs,
            resource_version: Some("5".into()),
        }),
    });
    assert!(attempts(&run.at(at).fire(&timer)).is_empty());
    assert_eq!(run.m.tracked(), 0);
}

#[test]
fn a_rerun_into_another_phase_notifies_again_with_a_new_id() {
    let hooks = [
        hook("both"),
        hook_on("on-failed", Some(vec![Phase::Failed])),
        hook_on("on-succeeded", Some(vec![Phase::Succeeded])),
    ];
    let mut run = Run::leader();
    let e = run.upsert(task("u1", Phase::Failed, &hooks));
    assert_eq!(sent_hooks(&e), ["both", "on-failed"]);
    let old_both = attempts(&e)[0].clone();
    let on_failed = attempts(&e)[1].clone();
    assert_eq!(old_both.webhook_id, "u1_Failed_both");
    run.answer(&on_failed, answer(200));
    let old_write = run.flush_one();
    assert_eq!(old_write.phase, Phase::Failed);

    // The Task is re-run and succeeds while the old attempt of `both` is still in flight: that
    // hook waits for it; the annotation of the old phase is not resumed.
    let rerun = with_report(
        with_deliveries(task("u1", Phase::Succeeded, &hooks), &old_write.deliveries),
        Phase::Failed,
    );
    let e = run.upsert(rerun);
    assert_eq!(sent_hooks(&e), ["on-succeeded"]);
    assert_eq!(attempts(&e)[0].webhook_id, "u1_Succeeded_on-succeeded");

    // Results of the old phase are ignored, and free the hook for the new one.
    assert!(run.written(&old_write).is_empty());
    let e = run.answer(&old_both, answer(200));
    assert!(notes(&e).is_empty(), "{e:?}");
    let new_both = only_attempt(&e);
    assert_eq!(new_both.webhook_id, "u1_Succeeded_both");
    run.answer(&new_both, answer(200));
    let r = run.flush_one();
    assert_eq!(r.phase, Phase::Succeeded);
    assert_eq!(r.matching, ["both", "on-succeeded"]);
    assert_eq!(state_of(&r, "both"), (HookState::Delivered, 1, Some(200)));
    assert!(r.deliveries.get("on-failed").is_none());
}
