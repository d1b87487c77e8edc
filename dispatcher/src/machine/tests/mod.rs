//! Transition tests of the machine, one scenario per rule of the contract, driven as the executor
//! drives it: inputs in, effects inspected, with a fixed clock and seeded jitter.

mod answers;
mod lifecycle;
mod operate;
mod replay;
mod warning_first;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use kelos_hooks_shared::annotations::{
    DELIVERIES, ON_COMPLETION, REPORT_PHASE, SPAWNER_LABEL, encode_snapshot,
};
use kelos_hooks_shared::api::{Hook, Phase, Task, TaskSpec, TaskStatus, Webhook};
use kelos_hooks_shared::deliveries::{Deliveries, HookDelivery, HookState};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::backoff::Backoff;
use super::outcome::Outcome;
use super::plan::Limits;
use super::{
    Announcement, Attempt, Effect, Input, Machine, Metric, Note, Published, Record, Rules, Timer,
    Written,
};
use crate::cluster::events::reason;

/// `--max-age 1h`, `--max-attempts 4`, `--max-retry-duration 10m`, backoff 1s…60s.
const RULES: Rules = Rules {
    limits: Limits {
        max_age: Duration::from_secs(3600),
        max_attempts: 4,
        max_retry_duration: Duration::from_secs(600),
    },
    backoff: Backoff {
        base: Duration::from_secs(1),
        max: Duration::from_secs(60),
    },
};

/// Seconds after the Tasks' completion time.
fn t(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()
}

fn ms(ms: i64) -> DateTime<Utc> {
    t(0) + chrono::Duration::milliseconds(ms)
}

/// A hook firing on `phases` (all when `None`), for tests across the machine's modules.
pub(super) fn hook_on(name: &str, phases: Option<Vec<Phase>>) -> Hook {
    Hook {
        name: name.into(),
        phases,
        webhook: Webhook {
            url: format!("https://hooks.example/{name}?token=s3cret"),
            secret_ref: None,
            signing_secret_ref: None,
            format: None,
            pager_duty: None,
            template: None,
        },
    }
}

fn hook(name: &str) -> Hook {
    hook_on(name, None)
}

/// A Task `uid` that reached `phase` at `t(0)`, without any annotation.
fn bare_task(uid: &str, phase: Phase) -> Task {
    let mut task = Task::new(&format!("task-{uid}"), TaskSpec::default());
    task.metadata.namespace = Some("ns".into());
    task.metadata.uid = Some(uid.into());
    task.metadata.resource_version = Some("1".into());
    task.metadata.labels = Some([(SPAWNER_LABEL.to_owned(), "spawner".to_owned())].into());
    task.status = Some(TaskStatus {
        phase: Some(phase.as_str().into()),
        completion_time: Some(t(0).to_rfc3339()),
        ..Default::default()
    });
    task
}

fn annotate(mut task: Task, key: &str, value: String) -> Task {
    task.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(key.to_owned(), value);
    task
}

/// A Task with the snapshot annotation of `hooks`.
fn task(uid: &str, phase: Phase, hooks: &[Hook]) -> Task {
    annotate(bare_task(uid, phase), ON_COMPLETION, encode_snapshot(hooks))
}

/// The Task as the dispatcher left it: with this delivery annotation.
fn with_deliveries(task: Task, d: &Deliveries) -> Task {
    annotate(task, DELIVERIES, d.encode())
}

fn with_report(task: Task, phase: Phase) -> Task {
    annotate(task, REPORT_PHASE, phase.as_str().into())
}

fn answer(status: u16) -> Outcome {
    Outcome::answered(status, None, String::new(), Duration::from_millis(20))
}

/// A machine driven like the executor drives it.
struct Run {
    m: Machine,
    now: DateTime<Utc>,
}

impl Run {
    fn follower_seeded(seed: u64) -> Self {
        Run {
            m: Machine::new(RULES, Box::new(StdRng::seed_from_u64(seed))),
            now: t(1),
        }
    }

    fn follower() -> Self {
        Self::follower_seeded(7)
    }

    fn leader() -> Self {
        let mut run = Self::follower();
        assert!(run.input(Input::Leader(true)).is_empty());
        run
    }

    fn at(&mut self, now: DateTime<Utc>) -> &mut Self {
        self.now = now;
        self
    }

    /// Takes `input` with the Events API answering: every awaited Warning Event is published
    /// at once, and the effects of that answer are appended.
    fn input(&mut self, input: Input) -> Vec<Effect> {
        let mut e = self.raw_input(input);
        let asked: Vec<Announcement> = announcements(&e).into_iter().cloned().collect();
        for a in asked {
            let more = self.announced(&a, Published::Yes);
            e.extend(more);
        }
        e
    }

    /// Takes `input` alone: awaited Warning Events stay unanswered.
    fn raw_input(&mut self, input: Input) -> Vec<Effect> {
        self.m.handle(input, self.now)
    }

    /// The Events API answered `a` with `result`.
    fn announced(&mut self, a: &Announcement, result: Published) -> Vec<Effect> {
        self.raw_input(Input::Announced {
            uid: a.uid.clone(),
            phase: a.phase,
            hook: a.hook.clone(),
            result,
        })
    }

    fn upsert(&mut self, task: Task) -> Vec<Effect> {
        self.input(Input::Upsert(Arc::new(task)))
    }

    fn answer(&mut self, a: &Attempt, outcome: Outcome) -> Vec<Effect> {
        self.input(Input::Attempted {
            uid: a.uid.clone(),
            phase: a.phase,
            hook: a.hook.name.clone(),
            outcome: Some(outcome),
        })
    }

    fn cancelled(&mut self, a: &Attempt) -> Vec<Effect> {
        self.input(Input::Attempted {
            uid: a.uid.clone(),
            phase: a.phase,
            hook: a.hook.name.clone(),
            outcome: None,
        })
    }

    fn fire(&mut self, timer: &Timer) -> Vec<Effect> {
        self.input(Input::Timer(timer.clone()))
    }

    fn flush(&mut self) -> Vec<Effect> {
        self.m.flush()
    }

    /// The one write a flush asks for.
    fn flush_one(&mut self) -> Record {
        let e = self.flush();
        let r = records(&e);
        assert_eq!(r.len(), 1, "{e:?}");
        r[0].clone()
    }

    /// The API server accepted `r` as it was (no other writer).
    fn written(&mut self, r: &Record) -> Vec<Effect> {
        self.input(Input::Recorded {
            uid: r.uid.clone(),
            phase: r.phase,
            result: Ok(Written {
                deliveries: r.deliveries.clone(),
                resource_version: Some("2".into()),
            }),
        })
    }
}

/// The effects of one kind: `of!(e, Effect::Attempt(a) => a)`.
macro_rules! of {
    ($effects:expr, $pattern:pat => $value:expr) => {
        $effects
            .iter()
            .filter_map(|e| match e {
                $pattern => Some($value),
                _ => None,
            })
            .collect()
    };
}

fn attempts(e: &[Effect]) -> Vec<&Attempt> {
    of!(e, Effect::Attempt(a) => a)
}

/// The one attempt `e` asks for.
fn only_attempt(e: &[Effect]) -> Attempt {
    let a = attempts(e);
    assert_eq!(a.len(), 1, "{e:?}");
    a[0].clone()
}

fn sent_hooks(e: &[Effect]) -> Vec<&str> {
    let mut names: Vec<&str> = attempts(e).iter().map(|a| a.hook.name.as_str()).collect();
    names.sort_unstable();
    names
}

fn records(e: &[Effect]) -> Vec<&Record> {
    of!(e, Effect::Record(r) => r)
}

/// Every Event: published in the background or awaited.
fn notes(e: &[Effect]) -> Vec<&Note> {
    of!(e, Effect::Event(n) | Effect::Announce(Announcement { note: n, .. }) => n)
}

fn announcements(e: &[Effect]) -> Vec<&Announcement> {
    of!(e, Effect::Announce(a) => a)
}

fn timers(e: &[Effect]) -> Vec<(DateTime<Utc>, &Timer)> {
    of!(e, Effect::Timer { at, timer } => (*at, timer))
}

/// The one retry timer `e` asks for.
fn retry_timer(e: &[Effect]) -> (DateTime<Utc>, Timer) {
    let all = timers(e);
    assert_eq!(all.len(), 1, "{e:?}");
    assert!(matches!(all[0].1, Timer::Retry { .. }), "{e:?}");
    (all[0].0, all[0].1.clone())
}

fn metrics(e: &[Effect]) -> Vec<&Metric> {
    of!(e, Effect::Metric(m) => m)
}

/// The Event with `reason` about `hook`.
fn note<'a>(e: &'a [Effect], reason: &str, hook: &str) -> &'a Note {
    notes(e)
        .into_iter()
        .find(|n| n.reason == reason && n.hook == hook)
        .unwrap_or_else(|| panic!("no {reason} Event for {hook} in {e:?}"))
}

/// Every final failure: a Warning Event saying why, the `failed` metric, no retry.
fn assert_failed<'a>(e: &'a [Effect], hook: &str, why: &str) -> &'a Note {
    assert!(
        announcements(e).iter().any(|a| a.hook == hook),
        "the Failed Event is awaited: {e:?}"
    );
    let n = note(e, reason::FAILED, hook);
    assert!(n.warning && n.logs_as_warning(), "{n:?}");
    assert!(n.message.contains(why), "{why:?} not in {:?}", n.message);
    assert!(
        n.message.contains("https://hooks.example") && !n.message.contains("s3cret"),
        "URL shown as scheme and host only: {:?}",
        n.message
    );
    assert!(
        metrics(e).contains(&&Metric::Final("failed")),
        "{:?}",
        metrics(e)
    );
    assert!(attempts(e).is_empty() && timers(e).is_empty(), "{e:?}");
    n
}

fn state(r: &Record, hook: &str) -> HookDelivery {
    r.deliveries
        .get(hook)
        .cloned()
        .unwrap_or_else(|| panic!("{hook} not recorded: {:?}", r.deliveries))
}

fn state_of(r: &Record, hook: &str) -> (HookState, u32, Option<u16>) {
    let d = state(r, hook);
    (d.state, d.attempts, d.last_status)
}
