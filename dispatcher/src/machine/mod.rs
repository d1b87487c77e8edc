//! The delivery state machine: an [`Input`] and the clock in, [`Effect`]s out. Pure: no I/O, no
//! tokio, no Kubernetes client — the executor performs the effects and feeds their results back, so
//! every rule of the contract is decided here and tested without a cluster.
//!
//! Per Task it tracks the hooks in force, the delivery state (the annotation's, plus our newer
//! records), which hooks are in flight or waiting for a retry, and whether a write is due.
//!
//! Growing it: a request that cannot be built (a payload template that fails to render, a routing
//! key missing from a Secret) is an [`outcome::Outcome::not_sent`], so the hook ends Failed with
//! an Event and nothing partial is sent; a new trigger (a redelivery annotation, a spawner test
//! send) is a new [`Input`] and a new kind of work a new [`Effect`] — the executor only grows a
//! `match` arm.

mod announce;
mod attempted;
pub mod backoff;
mod effect;
pub mod health;
mod input;
pub mod outcome;
pub mod plan;
pub mod redeliver;
mod spawner_test;
mod tracked;
mod webhook_id;
mod writes;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use kelos_hooks_shared::api::Task;
use rand::RngCore;

pub use effect::{Announcement, Attempt, Effect, Metric, Note, Record, Redelivery, SpawnerTest};
pub use input::{Input, Published, Timer, Written};
pub use webhook_id::webhook_id;

use crate::cluster::events::reason;
use backoff::Backoff;
use plan::{Action, Limits};
use tracked::{Hooks, Tracked, read_spawner};

/// The rules the machine applies.
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    /// Skip/give-up limits.
    pub limits: Limits,
    /// Retry delays.
    pub backoff: Backoff,
}

/// The state machine of every Task this replica knows about.
pub struct Machine {
    rules: Rules,
    /// Jitter for retry delays (seeded in tests).
    rng: Box<dyn RngCore + Send>,
    tasks: HashMap<String, Tracked>,
    /// Tasks whose state is due to be written.
    dirty: HashSet<String>,
    leader: bool,
    draining: bool,
    /// Attempts asked for and not answered yet, of any Task or phase.
    in_flight: usize,
    /// Hooks waiting for a retry timer.
    waiting: usize,
    /// Writes asked for and not answered yet.
    writes: usize,
    /// Awaited Warning Events asked for and not answered yet.
    announcing: usize,
    /// The effects of the step being taken.
    out: Vec<Effect>,
    /// Hook health per spawner and hook.
    health: health::HealthBook,
    /// TaskSpawner test requests: the value last answered (or to answer once leader) per spawner.
    tests: spawner_test::Tests,
}

/// `status.completionTime`, when set and readable.
pub fn completed_at(task: &Task) -> Option<DateTime<Utc>> {
    let at = task.status.as_ref()?.completion_time.as_ref()?;
    DateTime::parse_from_rfc3339(at)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

impl Machine {
    /// A follower machine with no Tasks; `rng` draws the retry jitter.
    pub fn new(rules: Rules, rng: Box<dyn RngCore + Send>) -> Self {
        Machine {
            rules,
            rng,
            tasks: HashMap::new(),
            dirty: HashSet::new(),
            leader: false,
            draining: false,
            in_flight: 0,
            waiting: 0,
            writes: 0,
            announcing: 0,
            out: Vec::new(),
            health: health::HealthBook::default(),
            tests: spawner_test::Tests::default(),
        }
    }

    /// Takes one input at time `now`; returns what to do.
    pub fn handle(&mut self, input: Input, now: DateTime<Utc>) -> Vec<Effect> {
        match input {
            Input::Upsert(task) => self.upsert(task, now),
            Input::Forget(uid) => self.forget(&uid),
            Input::Resync(alive) => {
                let gone: Vec<String> = self
                    .tasks
                    .keys()
                    .filter(|u| !alive.contains(*u))
                    .cloned()
                    .collect();
                for uid in gone {
                    self.forget(&uid);
                }
            }
            Input::Leader(leader) => self.set_leader(leader, now),
            Input::Draining => self.draining = true,
            Input::Timer(Timer::Retry { uid, hook }) => {
                if let Some(t) = self.tasks.get_mut(&uid)
                    && t.waiting.remove(&hook)
                {
                    self.waiting -= 1;
                }
                self.drive(&uid, now);
            }
            Input::Timer(Timer::Rewrite { uid }) => {
                if let Some(t) = self.tasks.get_mut(&uid) {
                    t.dirty = true;
                    self.dirty.insert(uid);
                }
            }
            Input::Timer(Timer::ReadSpawner { uid }) => {
                if let Some(t) = self.tasks.get(&uid)
                    && matches!(t.hooks, Hooks::Resolving)
                {
                    let effect = read_spawner(&t.task, &uid);
                    self.out.push(effect);
                }
            }
            Input::SpawnerHooks { uid, result } => self.spawner_hooks(&uid, result, now),
            Input::Attempted {
                uid,
                phase,
                hook,
                outcome,
            } => self.attempted(&uid, phase, &hook, outcome, now),
            Input::Recorded { uid, phase, result } => self.recorded(&uid, phase, result, now),
            Input::Announced {
                uid,
                phase,
                hook,
                result,
            } => self.announced(&uid, phase, &hook, result, now),
            Input::Redelivered { redelivery, result } => self.redelivered(*redelivery, result, now),
            Input::Timer(Timer::Redeliver { uid }) => self.drive(&uid, now),
            Input::TestRequested(test) => self.test_requested(*test),
        }
        std::mem::take(&mut self.out)
    }

    /// Attempts in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Hooks waiting for a retry.
    pub fn waiting(&self) -> usize {
        self.waiting
    }

    /// Tasks tracked.
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.tasks.len()
    }

    /// Whether attempts, awaited Events or writes are still outstanding, including a failed write
    /// waiting to be tried again (shutdown waits for them).
    pub fn busy(&self) -> bool {
        self.in_flight > 0
            || self.announcing > 0
            || self.writes > 0
            || self.tasks.values().any(|t| t.dirty)
    }

    fn forget(&mut self, uid: &str) {
        if let Some(t) = self.tasks.remove(uid) {
            self.waiting -= t.waiting.len();
            self.dirty.remove(uid);
        }
    }

    fn set_leader(&mut self, leader: bool, now: DateTime<Utc>) {
        if leader == self.leader {
            return;
        }
        self.leader = leader;
        if leader {
            self.tests_due();
            let uids: Vec<String> = self.tasks.keys().cloned().collect();
            for uid in uids {
                self.drive(&uid, now);
            }
        } else {
            // Stop at once: in-flight attempts are cancelled before the Lease can pass on.
            self.out.push(Effect::CancelAttempts);
        }
    }

    /// Decides and asks for what is due for one Task.
    fn drive(&mut self, uid: &str, now: DateTime<Utc>) {
        let Some(t) = self.tasks.get_mut(uid) else {
            return;
        };
        let Hooks::Ready(hooks) = &t.hooks else {
            return;
        };
        if hooks.is_empty() {
            // Nothing declared: nothing to record either.
            return self.forget(uid);
        }
        if !self.leader || self.draining {
            return;
        }
        if self.maybe_redeliver(uid, now) {
            return;
        }
        let Some(t) = self.tasks.get_mut(uid) else {
            return;
        };
        let Hooks::Ready(hooks) = &t.hooks else {
            return;
        };
        let actions = plan::plan(
            hooks,
            &t.deliveries,
            completed_at(&t.task),
            now,
            &self.rules.limits,
        );
        for (name, action) in actions {
            if t.in_flight.contains(&name)
                || t.waiting.contains(&name)
                || t.announcing.contains_key(&name)
            {
                continue;
            }
            let url = t.shown_url(&name);
            match action {
                Action::Send => {
                    let Some(hook) = t.hook(&name).cloned() else {
                        continue;
                    };
                    t.in_flight.insert(name);
                    self.in_flight += 1;
                    self.out.push(Effect::Attempt(Attempt {
                        uid: uid.to_owned(),
                        phase: t.phase,
                        task: t.task.clone(),
                        webhook_id: webhook_id(uid, t.phase, &hook.name),
                        hook,
                        test: false,
                    }));
                }
                Action::Wait(at) => {
                    t.waiting.insert(name.clone());
                    self.waiting += 1;
                    self.out.push(Effect::Timer {
                        at,
                        timer: Timer::Retry {
                            uid: uid.to_owned(),
                            hook: name,
                        },
                    });
                }
                Action::Skip(why) => {
                    t.deliveries.skip(&name, why.clone(), now);
                    t.dirty = true;
                    self.out.push(Effect::Metric(Metric::Final("skipped")));
                    let message = format!("hook {name} ({url}) skipped: {why}");
                    self.out
                        .push(t.note(false, reason::SKIPPED, &name, message));
                }
                Action::GiveUp(why) => {
                    let message = format!("hook {name} ({url}) failed: {why}");
                    let effect = t.fail(uid, &name, message, |d| d.give_up(&name, why, now));
                    self.announcing += 1;
                    self.out.push(effect);
                }
                Action::Done => {}
            }
        }
        // Read again: the loop above needed the whole Task mutably.
        let Hooks::Ready(hooks) = &t.hooks else {
            return;
        };
        if !t.reported && plan::report_due(hooks, &t.deliveries) {
            t.dirty = true;
        }
        if t.dirty {
            self.dirty.insert(uid.to_owned());
        }
        self.maybe_forget(uid);
    }

    /// Drops a Task that is reported and has nothing outstanding.
    fn maybe_forget(&mut self, uid: &str) {
        let done = self.tasks.get(uid).is_some_and(|t| {
            t.reported
                && !t.dirty
                && !t.writing
                && t.in_flight.is_empty()
                && t.waiting.is_empty()
                && t.announcing.is_empty()
        });
        if done {
            self.tasks.remove(uid);
        }
    }
}
