//! The executor: one async loop that feeds the [`Machine`] and performs its effects. Attempts,
//! Secret and TaskSpawner reads, timers and annotation writes run as spawned tasks that report back
//! through the loop's channel, so the machine's state needs no locks.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use kelos_hooks_runtime::Health;
use kelos_hooks_shared::api::Task;
use kelos_hooks_shared::redact::redact;
use kube::{Api, Client};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

use crate::cluster::events::Events;
use crate::cluster::record::{self, Known};
use crate::cluster::redeliver;
use crate::cluster::secrets::Secrets;
use crate::cluster::spawner::SpawnerHooks;
use crate::cluster::test_ledger::{self, TestLedger};
use crate::machine::{
    Announcement, Effect, Input, Machine, Metric, Note, Published, Record, Rules, SpawnerTest,
    Timer,
};
use crate::metrics::{HookLabel, Metrics, ResultLabel};
use crate::send::client::SafeClient;
use crate::send::{SendLimits, Sender};
use crate::test_send;

/// Annotation writes in flight at once: a burst must not open thousands of API requests.
const WRITE_SLOTS: usize = 32;
/// How long a Secret read is reused.
const SECRET_TTL: Duration = Duration::from_secs(5);
/// Inputs already queued that are taken before writing, so outcomes that ended together become
/// one write per Task.
const BATCH: usize = 1024;

/// Messages into the loop.
#[derive(Debug)]
pub enum Msg {
    /// For the machine.
    Input(Input),
    /// The Task watch has listed everything once (readiness).
    Synced,
}

/// Executor settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// What the machine applies.
    pub rules: Rules,
    /// Concurrency and timeout of attempts.
    pub send: SendLimits,
    /// How long SIGTERM waits for in-flight attempts.
    pub shutdown_timeout: Duration,
    /// Namespace and name of the Lease recording answered TaskSpawner test requests.
    pub tests_lease: (String, String),
}

/// The loop's state.
pub struct Executor {
    machine: Machine,
    shutdown_timeout: Duration,
    tx: UnboundedSender<Msg>,
    kube: Client,
    sender: Arc<Sender>,
    spawners: Arc<SpawnerHooks>,
    ledger: Arc<TestLedger>,
    write_slots: Arc<Semaphore>,
    events: Events,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    /// Cancelled when leadership is lost (then replaced) and at the end of shutdown.
    term: CancellationToken,
    /// Cancelled at shutdown: attempts not yet sending are not started.
    no_new: CancellationToken,
}

/// Inputs that finish outstanding work: the only ones taken while draining.
fn settles(input: &Input) -> bool {
    matches!(
        input,
        Input::Attempted { .. }
            | Input::Announced { .. }
            | Input::Recorded { .. }
            | Input::Timer(Timer::Rewrite { .. })
    )
}

impl Executor {
    /// An executor sending through `http`; `tx` must be the sender of the loop's channel.
    pub fn new(
        settings: Settings,
        http: SafeClient,
        kube: Client,
        events: Events,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        tx: UnboundedSender<Msg>,
    ) -> Self {
        let no_new = CancellationToken::new();
        let secrets = Secrets::new(kube.clone(), SECRET_TTL);
        Executor {
            machine: Machine::new(settings.rules, Box::new(StdRng::from_os_rng())),
            shutdown_timeout: settings.shutdown_timeout,
            tx,
            sender: Arc::new(Sender::new(http, secrets, settings.send, no_new.clone())),
            spawners: Arc::new(SpawnerHooks::new(kube.clone())),
            ledger: Arc::new(TestLedger::new(
                kube.clone(),
                &settings.tests_lease.0,
                settings.tests_lease.1.clone(),
            )),
            kube,
            write_slots: Arc::new(Semaphore::new(WRITE_SLOTS)),
            events,
            metrics,
            health,
            term: CancellationToken::new(),
            no_new,
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
                _ = shutdown.cancelled() => {
                    tracing::info!(in_flight = self.machine.in_flight(), "shutting down: no new attempts");
                    self.step(Input::Draining);
                    self.no_new.cancel();
                    break;
                }
                changed = leader.changed() => {
                    if changed.is_err() { break; }
                    let l = *leader.borrow_and_update();
                    self.set_leader(l);
                }
                msg = rx.recv() => {
                    let Some(msg) = msg else { break };
                    self.receive(msg);
                    for _ in 0..BATCH {
                        match rx.try_recv() {
                            Ok(m) => self.receive(m),
                            Err(_) => break,
                        }
                    }
                    self.flush();
                }
            }
            self.gauges();
        }
        self.drain(&mut rx).await;
    }

    async fn drain(&mut self, rx: &mut UnboundedReceiver<Msg>) {
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        while self.machine.busy() {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    in_flight = self.machine.in_flight(),
                    "shutdown timeout: handing unfinished attempts to the next leader"
                );
                break;
            }
            self.flush();
            if let Ok(Some(Msg::Input(input))) = tokio::time::timeout_at(deadline, rx.recv()).await
                && settles(&input)
            {
                self.step(input);
            }
        }
        self.term.cancel();
        tracing::info!("dispatcher stopped");
    }

    fn set_leader(&mut self, leader: bool) {
        self.metrics.leader.set(i64::from(leader));
        self.step(Input::Leader(leader));
    }

    fn gauges(&self) {
        let in_flight = self.machine.in_flight() as i64;
        self.metrics.in_flight.set(in_flight);
        self.metrics
            .queue_depth
            .set(in_flight + self.machine.waiting() as i64);
    }

    fn receive(&mut self, msg: Msg) {
        match msg {
            Msg::Input(input) => self.step(input),
            Msg::Synced => self.health.clear(crate::cluster::watch::READY_CHECK),
        }
    }

    fn step(&mut self, input: Input) {
        for effect in self.machine.handle(input, Utc::now()) {
            self.perform(effect);
        }
    }

    fn flush(&mut self) {
        for effect in self.machine.flush() {
            self.perform(effect);
        }
    }

    fn perform(&mut self, effect: Effect) {
        match effect {
            Effect::Attempt(a) => {
                let sender = self.sender.clone();
                let tx = self.tx.clone();
                let cancel = self.term.child_token();
                tokio::spawn(async move {
                    let outcome = tokio::select! {
                        _ = cancel.cancelled() => None,
                        o = sender.send(&a) => o,
                    };
                    let _ = tx.send(Msg::Input(Input::Attempted {
                        uid: a.uid,
                        phase: a.phase,
                        hook: a.hook.name,
                        outcome,
                    }));
                });
            }
            Effect::CancelAttempts => {
                self.term.cancel();
                self.term = CancellationToken::new();
            }
            Effect::ReadSpawner {
                uid,
                namespace,
                spawner,
            } => {
                let spawners = self.spawners.clone();
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let result = spawners.get(&namespace, &spawner).await;
                    let _ = tx.send(Msg::Input(Input::SpawnerHooks { uid, result }));
                });
            }
            Effect::Record(r) => self.record(r),
            Effect::Redeliver(r) => {
                self.metrics.redeliveries.inc();
                let api: Api<Task> = Api::namespaced(
                    self.kube.clone(),
                    r.task.metadata.namespace.as_deref().unwrap_or("default"),
                );
                let tx = self.tx.clone();
                let slots = self.write_slots.clone();
                tokio::spawn(async move {
                    let _slot = slots.acquire_owned().await;
                    let result = redeliver::write(&api, &r).await;
                    let _ = tx.send(Msg::Input(Input::Redelivered {
                        redelivery: Box::new(r),
                        result,
                    }));
                });
            }
            Effect::Test(test) => self.test(test),
            Effect::Timer { at, timer } => {
                let delay = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = tx.send(Msg::Input(Input::Timer(timer)));
                });
            }
            Effect::Event(note) => self.publish(note),
            Effect::Announce(a) => self.announce(a),
            Effect::Metric(m) => self.count(m),
            Effect::Warn {
                task_uid,
                message,
                error,
            } => tracing::warn!(task_uid, error = %redact(&error), "{message}"),
        }
    }

    fn record(&self, r: Record) {
        let Record {
            uid,
            phase,
            task,
            deliveries,
            matching,
        } = r;
        let known = Known::of(&task);
        let name = task.metadata.name.clone().unwrap_or_default();
        let api: Api<Task> = Api::namespaced(
            self.kube.clone(),
            task.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let tx = self.tx.clone();
        let slots = self.write_slots.clone();
        tokio::spawn(async move {
            let _slot = slots.acquire_owned().await;
            let result =
                record::write(&api, &name, &uid, &deliveries, &matching, Some(known)).await;
            let _ = tx.send(Msg::Input(Input::Recorded { uid, phase, result }));
        });
    }

    /// Answers a spawner's test request: one attempt per hook, an Event per result, then the value
    /// recorded as answered on the spawner.
    fn test(&self, test: SpawnerTest) {
        let sender = self.sender.clone();
        let events = self.events.clone();
        let metrics = self.metrics.clone();
        let ledger = self.ledger.clone();
        let cancel = self.term.child_token();
        tokio::spawn(async move {
            let ns = test.spawner.namespace.clone().unwrap_or_default();
            let name = test.spawner.name.clone().unwrap_or_default();
            let key = test_ledger::key(&ns, &name);
            match ledger.answered(&key, &test.value).await {
                Ok(true) => return,
                Ok(false) => {}
                // Unknown: sending again is the lesser harm (a test is idempotent for receivers).
                Err(e) => {
                    tracing::warn!(spawner = %key, error = %e, "could not read the answered test requests")
                }
            }
            let mut notes = Vec::new();
            if test.hooks.is_empty() {
                notes.push(test_send::no_hooks(&test.spawner));
            }
            let results = tokio::select! {
                _ = cancel.cancelled() => return,
                r = test_send::send_all(&sender, &test, Utc::now()) => r,
            };
            for (hook, outcome) in &results {
                let n = test_send::note(&test, hook, outcome.as_ref());
                let result = if n.warning { "failed" } else { "delivered" };
                metrics
                    .tests
                    .get_or_create(&ResultLabel {
                        result: result.into(),
                    })
                    .inc();
                notes.push(n);
            }
            for n in notes {
                tracing::info!(spawner = %key, hook = %n.hook, reason = n.reason, "{}", n.message);
                events.publish(n.object, n.warning, n.reason, &n.hook, n.message);
            }
            if let Err(e) = ledger.record(&key, &test.value).await {
                tracing::warn!(spawner = %key, error = %e, "could not record the answered test request");
            }
        });
    }

    /// Publishes a Failed Warning Event and reports when it is answered (cancelled with the
    /// attempts: a replica that is no longer leader must not record the hook).
    fn announce(&self, a: Announcement) {
        self.log(&a.note);
        let events = self.events.clone();
        let tx = self.tx.clone();
        let cancel = self.term.child_token();
        tokio::spawn(async move {
            let Announcement {
                uid,
                phase,
                hook,
                note: n,
            } = a;
            let result = tokio::select! {
                _ = cancel.cancelled() => Published::Cancelled,
                r = events.publish_awaited(&n.object, n.warning, n.reason, &n.hook, &n.message) => r,
            };
            let _ = tx.send(Msg::Input(Input::Announced {
                uid,
                phase,
                hook,
                result,
            }));
        });
    }

    fn log(&self, n: &Note) {
        let task_uid = n.object.uid.as_deref().unwrap_or_default();
        let task = format!(
            "{}/{}",
            n.object.namespace.as_deref().unwrap_or_default(),
            n.object.name.as_deref().unwrap_or_default()
        );
        if n.logs_as_warning() {
            tracing::warn!(task_uid, task, hook = %n.hook, reason = n.reason, "{}", n.message);
        } else {
            tracing::info!(task_uid, task, hook = %n.hook, reason = n.reason, "{}", n.message);
        }
    }

    fn publish(&self, n: Note) {
        self.log(&n);
        self.events
            .publish(n.object, n.warning, n.reason, &n.hook, n.message);
    }

    fn count(&self, m: Metric) {
        match m {
            Metric::Final(outcome) => self.metrics.outcome(outcome),
            Metric::Retry => {
                self.metrics.retries.inc();
            }
            Metric::AttemptDuration { result, seconds } => self
                .metrics
                .attempt_duration
                .get_or_create(&ResultLabel {
                    result: result.into(),
                })
                .observe(seconds),
            Metric::CompletionToDelivery(seconds) => {
                self.metrics.completion_to_delivery.observe(seconds)
            }
            Metric::StateWriteError => {
                self.metrics.state_write_errors.inc();
            }
            Metric::LeftToKelos => {
                self.metrics.left_to_kelos.inc();
            }
            Metric::HookFailing {
                namespace,
                spawner,
                hook,
                failing,
            } => {
                self.metrics
                    .hook_failing
                    .get_or_create(&HookLabel {
                        spawner_namespace: namespace,
                        spawner,
                        hook,
                    })
                    .set(i64::from(failing));
            }
        }
    }
}
