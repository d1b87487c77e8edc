//! Operator requests: redelivery on demand, spawner test requests, and hook health turns.

use kelos_hooks_shared::annotations::{REDELIVER, REDELIVER_BY};

use super::*;
use crate::machine::SpawnerTest;
use crate::machine::health::spawner_ref;

fn redeliveries(e: &[Effect]) -> Vec<&super::super::Redelivery> {
    e.iter()
        .filter_map(|e| match e {
            Effect::Redeliver(r) => Some(r),
            _ => None,
        })
        .collect()
}

/// A reported Task u1 (phase Succeeded): a delivered, b failed; with a redelivery request.
fn asked(value: &str, by: Option<&str>) -> Task {
    let mut d = Deliveries::new(Phase::Succeeded);
    d.record_success("a", 200, t(1));
    d.record_final_failure("b", Some(404), "HTTP 404", t(1));
    let task = with_report(
        with_deliveries(task("u1", Phase::Succeeded, &[hook("a"), hook("b")]), &d),
        Phase::Succeeded,
    );
    let task = annotate(task, REDELIVER, value.into());
    match by {
        Some(by) => annotate(task, REDELIVER_BY, by.into()),
        None => task,
    }
}

fn accepted(run: &mut Run, r: &super::super::Redelivery) -> Vec<Effect> {
    run.input(Input::Redelivered {
        redelivery: Box::new(r.clone()),
        result: Ok(Written {
            deliveries: r.deliveries.clone(),
            resource_version: Some("9".into()),
        }),
    })
}

#[test]
fn a_redelivery_resets_the_hook_resends_it_with_the_same_id_and_reports_again() {
    let mut run = Run::leader();
    let e = run.at(t(100)).upsert(asked("b", Some("alice")));
    assert!(
        attempts(&e).is_empty(),
        "nothing is sent before the reset is written: {e:?}"
    );
    let r = redeliveries(&e);
    assert_eq!(r.len(), 1, "{e:?}");
    let r = r[0].clone();
    assert_eq!(
        (r.hooks.as_slice(), r.by.as_str()),
        (["b".to_owned()].as_slice(), "alice")
    );
    let b = r.deliveries.get("b").unwrap();
    assert_eq!((b.state, b.attempts), (HookState::Retrying, 0));
    assert_eq!(r.deliveries.get("a").unwrap().state, HookState::Delivered);
    // While the write is out, the watch repeating the Task asks for nothing more.
    assert!(run.upsert(asked("b", Some("alice"))).is_empty());
    assert!(run.flush().is_empty());

    let e = accepted(&mut run, &r);
    let n = note(&e, reason::REDELIVERY, "");
    assert!(
        !n.warning && n.message.contains("alice") && n.message.contains("hook(s) b"),
        "{n:?}"
    );
    let a = only_attempt(&e);
    assert_eq!(a.hook.name, "b");
    assert_eq!(
        a.webhook_id, "u1_Succeeded_b",
        "same id as the first delivery"
    );
    note(&run.answer(&a, answer(200)), reason::DELIVERED, "b");
    let rec = run.flush_one();
    assert_eq!(state_of(&rec, "b"), (HookState::Delivered, 1, Some(200)));
    assert_eq!(state_of(&rec, "a"), (HookState::Delivered, 1, Some(200)));
    run.written(&rec);
    assert_eq!(run.m.tracked(), 0, "reported again, then forgotten");
}

#[test]
fn star_waits_for_an_attempt_in_flight_and_names_unknown_hooks() {
    let mut run = Run::leader();
    let hooks = [hook("a"), hook("f")];
    let first = only_attempt(&run.upsert(task("u1", Phase::Succeeded, &hooks[..1])));
    // The request arrives while a's first attempt is out: wait for it.
    let req = annotate(
        annotate(
            task("u1", Phase::Succeeded, &hooks[..1]),
            REDELIVER,
            "*".into(),
        ),
        REDELIVER_BY,
        "bob".into(),
    );
    assert!(redeliveries(&run.upsert(req.clone())).is_empty());
    let e = run.answer(&first, answer(500));
    let r = redeliveries(&e);
    assert_eq!(r.len(), 1, "acted on once the attempt answered: {e:?}");
    assert_eq!(r[0].hooks, ["a"]);
    let r = r[0].clone();
    // The retry that answer scheduled is superseded: the redelivery sends at once.
    let (_, retry) = retry_timer(&e);
    let again = only_attempt(&accepted(&mut run, &r));
    assert_eq!(again.webhook_id, first.webhook_id);
    assert!(
        attempts(&run.fire(&retry)).is_empty(),
        "no second attempt from the old timer"
    );

    // Names that are no hook of the Task are reported.
    let mut run = Run::leader();
    let e = run.upsert(asked("b, nope", None));
    let r = redeliveries(&e)[0].clone();
    assert_eq!(r.unknown, ["nope"]);
    let e = accepted(&mut run, &r);
    let n = note(&e, reason::REDELIVERY, "");
    assert!(
        n.warning && n.message.contains("nope") && n.message.contains("unknown user"),
        "{n:?}"
    );
}

#[test]
fn a_conflicting_redelivery_write_is_decided_again() {
    let mut run = Run::leader();
    let r = redeliveries(&run.upsert(asked("*", Some("alice"))))[0].clone();
    assert_eq!(r.hooks, ["a", "b"]);
    let e = run.input(Input::Redelivered {
        redelivery: Box::new(r),
        result: Err(crate::error::Error::WriteConflicts),
    });
    let (_, timer) = timers(&e)[0];
    let timer = timer.clone();
    assert!(matches!(timer, Timer::Redeliver { .. }), "{e:?}");
    let again = run.fire(&timer);
    assert_eq!(redeliveries(&again).len(), 1, "{again:?}");
    // A follower does nothing with a request.
    let mut follower = Run::follower();
    assert!(follower.upsert(asked("*", Some("alice"))).is_empty());
}

fn spawner_test(value: &str) -> SpawnerTest {
    SpawnerTest {
        spawner: spawner_ref("ns", "spawner"),
        value: value.into(),
        hooks: vec![hook("a")],
    }
}

#[test]
fn each_test_value_is_answered_once_by_the_leader() {
    let mut run = Run::follower();
    assert!(
        run.input(Input::TestRequested(Box::new(spawner_test("1"))))
            .is_empty()
    );
    let e = run.input(Input::Leader(true));
    assert!(
        matches!(&e[..], [Effect::Test(t)] if t.value == "1"),
        "{e:?}"
    );
    assert!(
        run.input(Input::TestRequested(Box::new(spawner_test("1"))))
            .is_empty(),
        "answered already"
    );
    let e = run.input(Input::TestRequested(Box::new(spawner_test("2"))));
    assert!(
        matches!(&e[..], [Effect::Test(t)] if t.value == "2"),
        "{e:?}"
    );
}

#[test]
fn failing_hooks_are_announced_on_the_spawner_once_not_per_task() {
    let mut run = Run::leader();
    let mut failing = Vec::new();
    for i in 0..6 {
        let uid = format!("u{i}");
        let a = only_attempt(&run.upsert(task(&uid, Phase::Succeeded, &[hook("a")])));
        let e = run.answer(&a, answer(404));
        failing.extend(
            notes(&e)
                .into_iter()
                .filter(|n| n.reason == reason::HOOK_FAILING)
                .cloned(),
        );
        run.flush();
    }
    assert_eq!(failing.len(), 1, "{failing:?}");
    assert_eq!(failing[0].object.kind.as_deref(), Some("TaskSpawner"));
    assert!(failing[0].message.contains("HTTP 404"), "{:?}", failing[0]);
    let a = only_attempt(&run.upsert(task("ok", Phase::Succeeded, &[hook("a")])));
    note(&run.answer(&a, answer(200)), reason::HOOK_RECOVERED, "a");
}
