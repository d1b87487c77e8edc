//! The delivery loop. One task owns all per-Task state; attempts, Secret reads, spawner look-ups,
//! timers and annotation writes run as spawned tasks that report back through one channel, so the
//! state needs no locks and every decision is made in one place.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use kelos_hooks_shared::annotations::{
    DELIVERIES, ON_COMPLETION, REPORT_PHASE, SPAWNER_LABEL, decode_snapshot,
};
use kelos_hooks_shared::api::{Hook, Phase, Task, TaskSpawner};
use kelos_hooks_shared::deliveries::Deliveries;
use kelos_hooks_shared::payload;
use kelos_hooks_shared::redact::scheme_and_host;
use kube::{Api, Client, Resource};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::client::SafeClient;
use crate::deliver::{self, AttemptResult};
use crate::events::{Events, reason};
use crate::headers;
use crate::metrics::{Metrics, ResultLabel};
use crate::outcome::Class;
use crate::plan::{self, Action, AfterRetryable, Limits};
use crate::secrets;
use crate::state_writer::{self, Known, WriteError};
use crate::webhook_id::webhook_id;
use kelos_hooks_runtime::Health;

/// Messages into the loop.
#[derive(Debug)]
pub enum Msg {
    /// A terminal Task with hooks was added or changed.
    Upsert(Arc<Task>),
    /// A Task no longer needs anything (deleted, reported, not terminal any more).
    Forget(String),
    /// After a re-list: every Task not in the set is gone.
    Resync(HashSet<String>),
    /// The watch has listed everything once.
    Synced,
    /// The spawner's hooks for a Task without snapshot.
    Hooks {
        uid: String,
        spawner: String,
        result: Result<Vec<Hook>, String>,
    },
    /// A scheduled retry is due.
    Wake { uid: String, hook: String },
    /// An attempt ended (`None`: cancelled, nothing known).
    Outcome {
        uid: String,
        phase: Phase,
        hook: String,
        result: Option<AttemptResult>,
        warnings: Vec<String>,
    },
    /// An annotation write ended.
    Written {
        uid: String,
        phase: Phase,
        result: Result<(Deliveries, Option<String>), String>,
        gone: bool,
    },
    /// Try a failed write again.
    Rewrite(String),
}

/// Loop settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Skip/give-up limits.
    pub limits: Limits,
    /// Retry delays.
    pub backoff: Backoff,
    /// One attempt's timeout.
    pub request_timeout: Duration,
    /// Attempts in flight at once.
    pub max_concurrency: usize,
    /// Attempts in flight per host.
    pub max_per_host: usize,
    /// How long SIGTERM waits for in-flight attempts.
    pub shutdown_timeout: Duration,
}

enum Hooks {
    Resolving,
    Ready(Vec<Hook>),
}

struct Tracked {
    task: Arc<Task>,
    phase: Phase,
    hooks: Hooks,
    deliveries: Deliveries,
    in_flight: HashSet<String>,
    waiting: HashSet<String>,
    dirty: bool,
    writing: bool,
    reported: bool,
}

impl Tracked {
    fn hook(&self, name: &str) -> Option<&Hook> {
        match &self.hooks {
            Hooks::Ready(h) => h.iter().find(|h| h.name == name),
            Hooks::Resolving => None,
        }
    }
}

/// (namespace, spawner) → when read, its hooks.
type SpawnerCache = HashMap<(String, String), (std::time::Instant, Vec<Hook>)>;

/// Shared by attempt tasks.
struct AttemptCtx {
    http: SafeClient,
    kube: Client,
    global: Arc<Semaphore>,
    per_host: Mutex<HashMap<String, Arc<Semaphore>>>,
    max_per_host: usize,
    timeout: Duration,
    /// Bounds concurrent annotation writes (a burst must not open thousands of API requests).
    write_slots: Arc<Semaphore>,
    /// Secret reader (short cache).
    secrets: secrets::Secrets,
    /// Cancelled at shutdown: attempts that have not started sending are not started.
    no_new: CancellationToken,
    /// Recently read spawner hooks, so Tasks of one spawner share one read.
    spawners: Mutex<SpawnerCache>,
}

impl AttemptCtx {
    fn host_semaphore(&self, url: &str) -> Arc<Semaphore> {
        let host = scheme_and_host(url);
        let mut map = self.per_host.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(host)
            .or_insert_with(|| Arc::new(Semaphore::new(self.max_per_host)))
            .clone()
    }
}

/// The loop's state.
pub struct Dispatcher {
    settings: Settings,
    tasks: HashMap<String, Tracked>,
    dirty: HashSet<String>,
    tx: UnboundedSender<Msg>,
    ctx: Arc<AttemptCtx>,
    events: Events,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    leader: bool,
    term: CancellationToken,
    draining: bool,
    in_flight: i64,
    waiting: i64,
    writes: usize,
}

fn parse_time(s: Option<&String>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn annotation<'a>(task: &'a Task, key: &str) -> Option<&'a String> {
    task.metadata.annotations.as_ref().and_then(|a| a.get(key))
}

impl Dispatcher {
    /// A dispatcher sending through `http`; `tx` must be the sender of the loop's channel.
    pub fn new(
        settings: Settings,
        http: SafeClient,
        kube: Client,
        events: Events,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        tx: UnboundedSender<Msg>,
    ) -> Self {
        let ctx = Arc::new(AttemptCtx {
            http,
            kube: kube.clone(),
            global: Arc::new(Semaphore::new(settings.max_concurrency)),
            per_host: Mutex::new(HashMap::new()),
            max_per_host: settings.max_per_host,
            timeout: settings.request_timeout,
            no_new: CancellationToken::new(),
            write_slots: Arc::new(Semaphore::new(32)),
            secrets: secrets::Secrets::new(kube.clone(), Duration::from_secs(5)),
            spawners: Mutex::new(HashMap::new()),
        });
        Dispatcher {
            settings,
            tasks: HashMap::new(),
            dirty: HashSet::new(),
            tx,
            ctx,
            events,
            metrics,
            health,
            leader: false,
            term: CancellationToken::new(),
            draining: false,
            in_flight: 0,
            waiting: 0,
            writes: 0,
        }
    }

    /// Runs until `shutdown`, then drains: in-flight attempts may finish (up to the shutdown
    /// timeout) and their outcomes are written; anything else stays in the annotation for the next
    /// leader.
    pub async fn run(
        mut self,
        mut rx: UnboundedReceiver<Msg>,
        mut leader: watch::Receiver<bool>,
        shutdown: CancellationToken,
    ) {
        self.set_leader(*leader.borrow_and_update());
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled(), if !self.draining => {
                    tracing::info!(in_flight = self.in_flight, "shutting down: no new attempts");
                    self.draining = true;
                    self.ctx.no_new.cancel();
                    break;
                }
                changed = leader.changed() => {
                    if changed.is_err() { break; }
                    let l = *leader.borrow_and_update();
                    self.set_leader(l);
                }
                msg = rx.recv() => {
                    let Some(msg) = msg else { break };
                    self.handle(msg);
                    // Take everything already queued before writing: outcomes that completed
                    // together become one write per Task.
                    for _ in 0..1024 {
                        match rx.try_recv() {
                            Ok(m) => self.handle(m),
                            Err(_) => break,
                        }
                    }
                    self.flush();
                }
            }
            self.metrics.queue_depth.set(self.in_flight + self.waiting);
        }
        self.drain(&mut rx).await;
    }

    async fn drain(&mut self, rx: &mut UnboundedReceiver<Msg>) {
        let deadline = tokio::time::Instant::now() + self.settings.shutdown_timeout;
        while self.in_flight > 0 || self.writes > 0 || !self.dirty.is_empty() {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    in_flight = self.in_flight,
                    "shutdown timeout: handing unfinished attempts to the next leader"
                );
                self.term.cancel();
                break;
            }
            self.flush();
            if let Ok(Some(msg)) = tokio::time::timeout_at(deadline, rx.recv()).await
                && matches!(
                    msg,
                    Msg::Outcome { .. } | Msg::Written { .. } | Msg::Rewrite(_)
                )
            {
                self.handle(msg);
            }
        }
        self.term.cancel();
        tracing::info!("dispatcher stopped");
    }

    fn set_leader(&mut self, leader: bool) {
        if leader == self.leader {
            return;
        }
        self.leader = leader;
        self.metrics.leader.set(i64::from(leader));
        if leader {
            self.term = CancellationToken::new();
            let uids: Vec<String> = self.tasks.keys().cloned().collect();
            for uid in uids {
                self.drive(&uid);
            }
        } else {
            // Stop at once: in-flight attempts are cancelled before the Lease can pass on.
            self.term.cancel();
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Upsert(task) => self.upsert(task),
            Msg::Forget(uid) => self.forget(&uid),
            Msg::Resync(alive) => {
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
            Msg::Synced => self.health.clear(crate::watch::READY_CHECK),
            Msg::Hooks {
                uid,
                spawner,
                result,
            } => self.hooks_resolved(&uid, &spawner, result),
            Msg::Wake { uid, hook } => {
                if let Some(t) = self.tasks.get_mut(&uid)
                    && t.waiting.remove(&hook)
                {
                    self.waiting -= 1;
                }
                self.drive(&uid);
            }
            Msg::Outcome {
                uid,
                phase,
                hook,
                result,
                warnings,
            } => self.outcome(&uid, phase, &hook, result, warnings),
            Msg::Written {
                uid,
                phase,
                result,
                gone,
            } => self.written(&uid, phase, result, gone),
            Msg::Rewrite(uid) => {
                if let Some(t) = self.tasks.get_mut(&uid) {
                    t.dirty = true;
                    self.dirty.insert(uid);
                }
            }
        }
    }

    fn forget(&mut self, uid: &str) {
        if let Some(t) = self.tasks.remove(uid) {
            self.waiting -= t.waiting.len() as i64;
            self.dirty.remove(uid);
        }
    }

    fn upsert(&mut self, task: Arc<Task>) {
        let (Some(uid), Some(phase)) = (task.metadata.uid.clone(), task.terminal_phase()) else {
            return;
        };
        let annotated =
            Deliveries::resume(annotation(&task, DELIVERIES).map(String::as_str), phase);
        let reported = annotation(&task, REPORT_PHASE).is_some_and(|p| p == phase.as_str());
        match self.tasks.get_mut(&uid) {
            Some(t) if t.phase == phase => {
                t.deliveries.merge_from(&annotated);
                t.reported |= reported;
                t.task = task;
            }
            existing => {
                // New, or a re-run that reached another phase: start from the annotation.
                let hooks = existing.and_then(|t| {
                    match std::mem::replace(&mut t.hooks, Hooks::Resolving) {
                        Hooks::Ready(h) => Some(h),
                        Hooks::Resolving => None,
                    }
                });
                // Attempts and writes of the old phase still report back: keep counting them
                // (their results are ignored by phase).
                let (in_flight, writing) = match self.tasks.remove(&uid) {
                    Some(old) => {
                        self.waiting -= old.waiting.len() as i64;
                        (old.in_flight, old.writing)
                    }
                    None => (HashSet::new(), false),
                };
                let hooks = match hooks {
                    Some(h) => Hooks::Ready(h),
                    None => self.initial_hooks(&task, &uid),
                };
                let tracked = Tracked {
                    task,
                    phase,
                    hooks,
                    deliveries: annotated,
                    in_flight,
                    waiting: HashSet::new(),
                    dirty: false,
                    writing,
                    reported,
                };
                self.tasks.insert(uid.clone(), tracked);
            }
        }
        self.drive(&uid);
    }

    fn initial_hooks(&self, task: &Task, uid: &str) -> Hooks {
        if let Some(snapshot) = annotation(task, ON_COMPLETION) {
            return match decode_snapshot(snapshot) {
                Ok(s) => Hooks::Ready(s.hooks),
                Err(e) => {
                    self.events.publish(
                        task.object_ref(&()),
                        true,
                        reason::BAD_ANNOTATION,
                        "",
                        format!("annotation {ON_COMPLETION} is not valid ({e}); no webhooks are sent for this Task"),
                    );
                    Hooks::Ready(Vec::new())
                }
            };
        }
        let spawner = task
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SPAWNER_LABEL))
            .cloned()
            .unwrap_or_default();
        let ns = task.metadata.namespace.clone().unwrap_or_default();
        spawn_spawner_lookup(
            self.ctx.clone(),
            self.tx.clone(),
            uid.to_owned(),
            ns,
            spawner,
            Duration::ZERO,
        );
        Hooks::Resolving
    }

    fn hooks_resolved(&mut self, uid: &str, spawner: &str, result: Result<Vec<Hook>, String>) {
        let Some(t) = self.tasks.get_mut(uid) else {
            return;
        };
        match result {
            Ok(hooks) => {
                if !hooks.is_empty() && self.leader {
                    self.events.publish(
                        t.task.object_ref(&()),
                        false,
                        reason::HOOKS_FROM_SPAWNER,
                        "",
                        format!(
                            "Task has no {ON_COMPLETION} annotation (the admission webhook was unavailable when it was created): using the {} current hook(s) of TaskSpawner {spawner}",
                            hooks.len()
                        ),
                    );
                }
                t.hooks = Hooks::Ready(hooks);
                self.drive(uid);
            }
            Err(e) => {
                tracing::warn!(task_uid = uid, spawner, error = %e, "could not read the TaskSpawner; retrying");
                let ns = t.task.metadata.namespace.clone().unwrap_or_default();
                spawn_spawner_lookup(
                    self.ctx.clone(),
                    self.tx.clone(),
                    uid.to_owned(),
                    ns,
                    spawner.to_owned(),
                    Duration::from_secs(5),
                );
            }
        }
    }

    /// Decides and starts what is due for one Task.
    fn drive(&mut self, uid: &str) {
        let now = Utc::now();
        let leader = self.leader && !self.draining;
        let Some(t) = self.tasks.get(uid) else { return };
        if matches!(&t.hooks, Hooks::Ready(h) if h.is_empty()) {
            // Nothing declared: nothing to record either.
            self.forget(uid);
            return;
        }
        let Some(t) = self.tasks.get_mut(uid) else {
            return;
        };
        let Hooks::Ready(hooks) = &t.hooks else {
            return;
        };
        if !leader {
            return;
        }
        let completed_at = parse_time(
            t.task
                .status
                .as_ref()
                .and_then(|s| s.completion_time.as_ref()),
        );
        let actions = plan::plan(
            hooks,
            &t.deliveries,
            completed_at,
            now,
            &self.settings.limits,
        );
        let mut to_send = Vec::new();
        for (name, action) in actions {
            if t.in_flight.contains(&name) || t.waiting.contains(&name) {
                continue;
            }
            let url = hooks
                .iter()
                .find(|h| h.name == name)
                .map(|h| scheme_and_host(&h.webhook.url))
                .unwrap_or_default();
            match action {
                Action::Send => to_send.push(name),
                Action::Wait(at) => {
                    t.waiting.insert(name.clone());
                    self.waiting += 1;
                    spawn_wake(self.tx.clone(), uid.to_owned(), name, at);
                }
                Action::Skip(why) => {
                    t.deliveries.skip(&name, why.clone(), now);
                    t.dirty = true;
                    self.metrics.outcome("skipped");
                    self.events.publish(
                        t.task.object_ref(&()),
                        false,
                        reason::SKIPPED,
                        &name,
                        format!("hook {name} ({url}) skipped: {why}"),
                    );
                }
                Action::GiveUp(why) => {
                    t.deliveries.give_up(&name, why.clone(), now);
                    t.dirty = true;
                    self.metrics.outcome("failed");
                    self.events.publish(
                        t.task.object_ref(&()),
                        true,
                        reason::FAILED,
                        &name,
                        format!("hook {name} ({url}) failed: {why}"),
                    );
                }
                Action::Done => {}
            }
        }
        if plan::report_due(hooks, &t.deliveries) && !t.reported {
            t.dirty = true;
        }
        if t.dirty {
            self.dirty.insert(uid.to_owned());
        }
        for name in to_send {
            self.start_attempt(uid, &name);
        }
        self.maybe_forget(uid);
    }

    fn maybe_forget(&mut self, uid: &str) {
        let done = self.tasks.get(uid).is_some_and(|t| {
            t.reported && !t.dirty && !t.writing && t.in_flight.is_empty() && t.waiting.is_empty()
        });
        if done {
            self.tasks.remove(uid);
        }
    }

    fn start_attempt(&mut self, uid: &str, name: &str) {
        let Some(t) = self.tasks.get_mut(uid) else {
            return;
        };
        let Some(hook) = t.hook(name).cloned() else {
            return;
        };
        t.in_flight.insert(name.to_owned());
        self.in_flight += 1;
        self.metrics.in_flight.set(self.in_flight);
        let task = t.task.clone();
        let phase = t.phase;
        let ctx = self.ctx.clone();
        let tx = self.tx.clone();
        let cancel = self.term.child_token();
        let uid = uid.to_owned();
        tokio::spawn(async move {
            let run = one_attempt(&ctx, &task, &hook, phase, &uid);
            let (result, warnings) = tokio::select! {
                _ = cancel.cancelled() => (None, Vec::new()),
                r = run => r.map_or((None, Vec::new()), |(r, w)| (Some(r), w)),
            };
            let _ = tx.send(Msg::Outcome {
                uid,
                phase,
                hook: hook.name,
                result,
                warnings,
            });
        });
    }

    fn outcome(
        &mut self,
        uid: &str,
        phase: Phase,
        name: &str,
        result: Option<AttemptResult>,
        warnings: Vec<String>,
    ) {
        let now = Utc::now();
        let Some(t) = self.tasks.get_mut(uid) else {
            self.in_flight -= 1;
            return;
        };
        if t.in_flight.remove(name) {
            self.in_flight -= 1;
        }
        self.metrics.in_flight.set(self.in_flight);
        let Some(r) = result else {
            // Cancelled: nothing is known, nothing recorded; the next leader (or we) will retry.
            return self.drive(uid);
        };
        if t.phase != phase {
            // An attempt for the phase before a re-run: the new phase's hooks may now go.
            return self.drive(uid);
        }
        let obj = t.task.object_ref(&());
        for w in warnings {
            self.events
                .publish(obj.clone(), true, reason::RESERVED_HEADERS, name, w);
        }
        let url = t
            .hook(name)
            .map(|h| scheme_and_host(&h.webhook.url))
            .unwrap_or_default();
        let label = match r.class {
            Class::Success => "success",
            Class::Retry => "retry",
            Class::Final => "final",
        };
        self.metrics
            .attempt_duration
            .get_or_create(&ResultLabel {
                result: label.into(),
            })
            .observe(r.elapsed.as_secs_f64());
        let prior = t.deliveries.get(name).cloned();
        let attempts = prior.as_ref().map_or(0, |p| p.attempts) + 1;
        let error = r.error.clone().unwrap_or_default();
        let status = r
            .status
            .map_or_else(|| "no answer".to_owned(), |s| format!("HTTP {s}"));
        let excerpt = if r.body_excerpt.trim().is_empty() {
            String::new()
        } else {
            format!(
                "; answer: {}",
                r.body_excerpt.chars().take(200).collect::<String>()
            )
        };
        match r.class {
            Class::Success => {
                t.deliveries
                    .record_success(name, r.status.unwrap_or(200), now);
                self.metrics.outcome("delivered");
                if let Some(done) = parse_time(
                    t.task
                        .status
                        .as_ref()
                        .and_then(|s| s.completion_time.as_ref()),
                ) {
                    self.metrics
                        .completion_to_delivery
                        .observe((now - done).num_milliseconds().max(0) as f64 / 1000.0);
                }
                self.events.publish(
                    obj,
                    false,
                    reason::DELIVERED,
                    name,
                    format!("hook {name} delivered to {url}: {status} (attempt {attempts})"),
                );
                tracing::info!(task_uid = uid, hook = name, url = %url, status = ?r.status, attempts, "delivered");
            }
            Class::Retry => {
                let first = prior
                    .as_ref()
                    .and_then(|p| p.first_attempt_at)
                    .unwrap_or(now);
                let delay = self
                    .settings
                    .backoff
                    .next(attempts, r.retry_after, &mut rand::rng());
                match plan::after_retryable(attempts - 1, first, now, delay, &self.settings.limits)
                {
                    AfterRetryable::RetryAt(next) => {
                        t.deliveries
                            .record_retry(name, r.status, error.clone(), next, now);
                        t.waiting.insert(name.to_owned());
                        self.waiting += 1;
                        spawn_wake(self.tx.clone(), uid.to_owned(), name.to_owned(), next);
                        self.metrics.retries.inc();
                        self.events.publish(
                            obj,
                            true,
                            reason::RETRYING,
                            name,
                            format!("hook {name} to {url}: attempt {attempts} failed ({error}){excerpt}; retrying in {}s", delay.as_secs()),
                        );
                        tracing::info!(task_uid = uid, hook = name, url = %url, error = %error, attempts, retry_in = ?delay, "retrying");
                    }
                    AfterRetryable::Fail(why) => {
                        let why = format!("{why}; last error: {error}");
                        t.deliveries
                            .record_final_failure(name, r.status, why.clone(), now);
                        self.metrics.outcome("failed");
                        self.events.publish(
                            obj,
                            true,
                            reason::FAILED,
                            name,
                            format!("hook {name} to {url} failed: {why}{excerpt}"),
                        );
                        tracing::warn!(task_uid = uid, hook = name, url = %url, reason = %why, "failed");
                    }
                }
            }
            Class::Final => {
                t.deliveries
                    .record_final_failure(name, r.status, error.clone(), now);
                self.metrics.outcome("failed");
                self.events.publish(
                    obj,
                    true,
                    reason::FAILED,
                    name,
                    format!("hook {name} to {url} failed: {error}{excerpt} (not retried)"),
                );
                tracing::warn!(task_uid = uid, hook = name, url = %url, error = %error, "failed (final)");
            }
        }
        t.dirty = true;
        self.dirty.insert(uid.to_owned());
        self.drive(uid);
    }

    /// Starts one write per dirty Task not already being written.
    fn flush(&mut self) {
        let dirty: Vec<String> = self.dirty.drain().collect();
        for uid in dirty {
            let Some(t) = self.tasks.get_mut(&uid) else {
                continue;
            };
            if t.writing || !t.dirty {
                continue;
            }
            let Hooks::Ready(hooks) = &t.hooks else {
                continue;
            };
            t.dirty = false;
            t.writing = true;
            self.writes += 1;
            let matching: Vec<String> = plan::matching(hooks, t.phase)
                .map(|h| h.name.clone())
                .collect();
            let ours = t.deliveries.clone();
            let phase = t.phase;
            let known = Known::of(&t.task);
            let name = t.task.metadata.name.clone().unwrap_or_default();
            let api: Api<Task> = Api::namespaced(
                self.ctx.kube.clone(),
                t.task.metadata.namespace.as_deref().unwrap_or("default"),
            );
            let tx = self.tx.clone();
            let slots = self.ctx.write_slots.clone();
            tokio::spawn(async move {
                let _slot = slots.acquire_owned().await;
                let (result, gone) =
                    match state_writer::write(&api, &name, &uid, &ours, &matching, Some(known))
                        .await
                    {
                        Ok(w) => (Ok(w), false),
                        Err(WriteError::Gone) => (Err("gone".to_owned()), true),
                        Err(e) => (Err(e.to_string()), false),
                    };
                let _ = tx.send(Msg::Written {
                    uid,
                    phase,
                    result,
                    gone,
                });
            });
        }
    }

    fn written(
        &mut self,
        uid: &str,
        phase: Phase,
        result: Result<(Deliveries, Option<String>), String>,
        gone: bool,
    ) {
        self.writes = self.writes.saturating_sub(1);
        let Some(t) = self.tasks.get_mut(uid) else {
            return;
        };
        t.writing = false;
        if t.phase != phase {
            // A write for the phase before a re-run: irrelevant now; the new phase may write.
            if t.dirty {
                self.dirty.insert(uid.to_owned());
            }
            return;
        }
        match result {
            Ok((merged, rv)) => {
                let report = match &t.hooks {
                    Hooks::Ready(h) => plan::report_due(h, &merged),
                    Hooks::Resolving => false,
                };
                // Remember what the server now holds, so the next write needs no extra read.
                let task = Arc::make_mut(&mut t.task);
                if rv.is_some() {
                    task.metadata.resource_version = rv;
                }
                let ann = task
                    .metadata
                    .annotations
                    .get_or_insert_with(Default::default);
                ann.insert(DELIVERIES.to_owned(), merged.encode());
                if report {
                    ann.insert(REPORT_PHASE.to_owned(), merged.phase.as_str().to_owned());
                    t.reported = true;
                }
                t.deliveries.merge_from(&merged);
            }
            Err(_) if gone => {
                self.forget(uid);
                return;
            }
            Err(e) => {
                self.metrics.state_write_errors.inc();
                tracing::warn!(task_uid = uid, error = %e, "could not record delivery state; retrying");
                t.dirty = true;
                let tx = self.tx.clone();
                let uid = uid.to_owned();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let _ = tx.send(Msg::Rewrite(uid));
                });
                return;
            }
        }
        if t.dirty {
            self.dirty.insert(uid.to_owned());
        }
        self.drive(uid);
    }
}

/// One attempt with Secret reads; returns the result and Event-worthy warnings.
async fn one_attempt(
    ctx: &AttemptCtx,
    task: &Task,
    hook: &Hook,
    phase: Phase,
    uid: &str,
) -> Option<(AttemptResult, Vec<String>)> {
    let _global = ctx.global.clone().acquire_owned().await.ok()?;
    let _host = ctx
        .host_semaphore(&hook.webhook.url)
        .acquire_owned()
        .await
        .ok()?;
    // Shutting down: what has not started yet is left to the next leader.
    if ctx.no_new.is_cancelled() {
        return None;
    }
    let ns = task.metadata.namespace.as_deref().unwrap_or("default");
    let mut warnings = Vec::new();
    let signing_key = match &hook.webhook.signing_secret_ref {
        Some(r) => match ctx.secrets.signing_key(ns, r).await {
            Ok(k) => Some(k),
            Err(e) => {
                let class = if e.retryable {
                    Class::Retry
                } else {
                    Class::Final
                };
                return Some((
                    setup_failure(class, format!("signing secret: {}", e.message)),
                    warnings,
                ));
            }
        },
        None => None,
    };
    let extra = match &hook.webhook.secret_ref {
        Some(r) => match ctx.secrets.header_data(ns, r).await {
            Ok(data) => match headers::from_secret(&data) {
                Ok(h) => {
                    if !h.ignored.is_empty() {
                        warnings.push(format!(
                            "hook {}: Secret {} key(s) {} ignored: reserved headers cannot be overridden",
                            hook.name,
                            r.name,
                            h.ignored.join(", ")
                        ));
                    }
                    h.headers
                }
                Err(e) => {
                    return Some((
                        setup_failure(Class::Final, format!("header Secret {}: {e}", r.name)),
                        warnings,
                    ));
                }
            },
            Err(e) => {
                return Some((
                    setup_failure(Class::Retry, format!("header Secret: {}", e.message)),
                    warnings,
                ));
            }
        },
        None => Vec::new(),
    };
    let now = Utc::now();
    let id = webhook_id(uid, phase, &hook.name);
    let completed = parse_time(
        task.status
            .as_ref()
            .and_then(|s| s.completion_time.as_ref()),
    )
    .unwrap_or(now);
    let body = payload::build(task, hook, phase, &id, completed);
    let req = deliver::Request {
        url: &hook.webhook.url,
        id: &id,
        body: &body.bytes,
        content_type: body.content_type,
        signing_key: signing_key.as_ref(),
        extra_headers: &extra,
        timeout: ctx.timeout,
    };
    Some((deliver::attempt(&ctx.http, &req, now).await, warnings))
}

fn setup_failure(class: Class, error: String) -> AttemptResult {
    AttemptResult {
        class,
        status: None,
        error: Some(error),
        retry_after: None,
        body_excerpt: String::new(),
        elapsed: Duration::ZERO,
    }
}

fn spawn_wake(tx: UnboundedSender<Msg>, uid: String, hook: String, at: DateTime<Utc>) {
    let delay = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let _ = tx.send(Msg::Wake { uid, hook });
    });
}

/// How long a spawner's hooks read for a Task without snapshot are reused for its other Tasks.
const SPAWNER_CACHE_TTL: Duration = Duration::from_secs(30);

fn spawn_spawner_lookup(
    ctx: Arc<AttemptCtx>,
    tx: UnboundedSender<Msg>,
    uid: String,
    ns: String,
    spawner: String,
    after: Duration,
) {
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        let key = (ns.clone(), spawner.clone());
        let cached = {
            let cache = ctx.spawners.lock().unwrap_or_else(|e| e.into_inner());
            cache
                .get(&key)
                .filter(|(at, _)| at.elapsed() < SPAWNER_CACHE_TTL)
                .map(|(_, h)| h.clone())
        };
        let result = match cached {
            Some(hooks) => Ok(hooks),
            None => {
                let api: Api<TaskSpawner> = Api::namespaced(ctx.kube.clone(), &ns);
                let result = match api.get_opt(&spawner).await {
                    Ok(Some(ts)) => Ok(ts.hooks().to_vec()),
                    Ok(None) => Ok(Vec::new()),
                    Err(e) => Err(e.to_string()),
                };
                if let Ok(hooks) = &result {
                    let mut cache = ctx.spawners.lock().unwrap_or_else(|e| e.into_inner());
                    cache.retain(|_, (at, _)| at.elapsed() < SPAWNER_CACHE_TTL);
                    cache.insert(key, (std::time::Instant::now(), hooks.clone()));
                }
                result
            }
        };
        let _ = tx.send(Msg::Hooks {
            uid,
            spawner,
            result,
        });
    });
}
