//! The TaskSpawner CRD, watched (a kube-runtime watcher on that one object): judged by the shared
//! check (`kelos_hooks_shared::crd_check`), reported through `/readyz`, a metric, logs and Events
//! on the CRD; and with `--extend-kelos-crd`, kept extended ([`crate::crd_extension`]) every time
//! kelos replaces it. A read error keeps the last verdict: it says nothing about the CRD, and
//! turning not-ready on it would take the TaskSpawner webhooks (failure policy Fail) down with it.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kelos_hooks_shared::crd_check::{CRD_NAME, Follower, KELOS_REPORTER_NOTE, Step, Verdict};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};

use kelos_hooks_runtime::Health;
use kelos_hooks_runtime::health::SHUTTING_DOWN;

use crate::crd_extension::{Ensured, Extension};
use crate::metrics::Metrics;

/// Readiness check: the TaskSpawner CRD keeps `spec.onCompletion`.
pub const READY_CHECK: &str = "TaskSpawner CRD";

/// Time before a failed extension patch is tried again (from a fresh read).
const RETRY: Duration = Duration::from_secs(10);

struct Reporting {
    recorder: Recorder,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    /// The last restore, for `/readyz`.
    restored: Option<String>,
    /// The last extension failure told in an Event (each is told once).
    failed: Option<String>,
}

impl Reporting {
    async fn event(
        &self,
        crd: &CustomResourceDefinition,
        type_: EventType,
        reason: &str,
        note: &str,
    ) {
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note.chars().take(1000).collect()),
            action: "CheckCRD".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &crd.object_ref(&())).await {
            tracing::warn!(error = %e, "cannot publish the CRD Event");
        }
    }

    fn note(&self, verdict: Option<&Verdict>) {
        let reporter =
            matches!(verdict, Some(Verdict::KelosReporter)).then_some(KELOS_REPORTER_NOTE);
        let problem = verdict.and_then(Verdict::problem);
        let notes: Vec<&str> = problem
            .into_iter()
            .chain(reporter)
            .chain(self.restored.as_deref())
            .collect();
        self.health
            .set_note(READY_CHECK, (!notes.is_empty()).then(|| notes.join("\n")));
    }

    async fn verdict(&self, verdict: &Verdict, crd: Option<&CustomResourceDefinition>) {
        // A CRD that drops hooks is reported (note, Event, metric, log) but does not make this
        // server unready: TaskSpawner writes fail closed on it, kelos's own among them.
        self.health.clear(READY_CHECK);
        self.metrics
            .crd_problem
            .set(i64::from(verdict.problem().is_some()));
        self.note(Some(verdict));
        match verdict {
            Verdict::Problem(p) => {
                tracing::error!("{p}");
                if let Some(crd) = crd {
                    self.event(crd, EventType::Warning, "OnCompletionNotDeclared", p)
                        .await;
                }
            }
            Verdict::KelosReporter => {
                tracing::warn!("{KELOS_REPORTER_NOTE}");
                if let Some(crd) = crd {
                    self.event(
                        crd,
                        EventType::Normal,
                        "KelosReporterDetected",
                        KELOS_REPORTER_NOTE,
                    )
                    .await;
                }
            }
            Verdict::Keeps => tracing::info!("CRD {CRD_NAME} keeps spec.onCompletion"),
        }
    }
}

/// Watches the CRD until the process ends; `extension` when `--extend-kelos-crd`.
pub async fn run(
    client: Client,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    mut extension: Option<Extension>,
) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let reporter = Reporter {
        controller: "kelos-hooks-admission".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let mut reporting = Reporting {
        recorder: Recorder::new(client, reporter),
        health,
        metrics,
        restored: None,
        failed: None,
    };
    reporting
        .health
        .set(READY_CHECK, Some(format!("CRD {CRD_NAME} not read yet")));
    let config = watcher::Config::default().fields(&format!("metadata.name={CRD_NAME}"));
    let stream = watcher(api.clone(), config).default_backoff();
    futures::pin_mut!(stream);
    let mut follower = Follower::default();
    let mut retry = false;
    loop {
        let seen = tokio::select! {
            item = stream.next() => match follower.step(item) {
                Step::Seen(seen) => seen.map(|crd| *crd),
                Step::Wait => continue,
                Step::Failed(why) => { tracing::warn!("{why}"); continue }
                Step::End => return,
            },
            _ = tokio::time::sleep(RETRY), if retry => match api.get_opt(CRD_NAME).await {
                Ok(seen) => seen,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read CRD {CRD_NAME}; retrying");
                    continue;
                }
            },
        };
        retry = false;
        let mut crd = seen;
        if let (Some(ext), Some(current)) = (extension.as_mut(), crd.as_ref())
            // Stopping: leave the CRD to the replicas that stay (and to `crd-extension remove`).
            && reporting.health.problem(SHUTTING_DOWN).is_none()
        {
            match ext.ensure(&api, current).await {
                Ensured::Patched {
                    crd: patched,
                    summary,
                    restored,
                } => {
                    reporting.metrics.observe_crd_extension_patch(if restored {
                        "restored"
                    } else {
                        "updated"
                    });
                    tracing::info!("{summary}");
                    reporting.restored = Some(format!(
                        "{summary} at {}",
                        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                    ));
                    reporting.failed = None;
                    reporting
                        .event(
                            &patched,
                            EventType::Normal,
                            "OnCompletionRestored",
                            &summary,
                        )
                        .await;
                    reporting.note(None);
                    crd = Some(*patched);
                }
                Ensured::Failed(why) => {
                    reporting.metrics.observe_crd_extension_patch("failed");
                    tracing::warn!("{why}; retrying in {RETRY:?}");
                    if reporting.failed.as_ref() != Some(&why) {
                        reporting
                            .event(current, EventType::Warning, "CRDExtensionFailed", &why)
                            .await;
                        reporting.failed = Some(why);
                    }
                    retry = true;
                }
                Ensured::InPlace | Ensured::KelosOwn => {}
            }
        }
        if let Some(verdict) = follower.judge(crd.as_ref()) {
            reporting.verdict(&verdict, crd.as_ref()).await;
        }
    }
}
