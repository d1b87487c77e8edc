//! The TaskSpawner CRD, watched (a kube-runtime watcher on that one object) and judged by the
//! shared check (`kelos_hooks_shared::crd_check`): `/readyz`, metrics, logs and an Event on the
//! CRD say plainly when it would prune `spec.onCompletion`, or that kelos carries its own
//! onCompletion reporter. A read error keeps the last verdict: it says nothing about the CRD.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kelos_hooks_shared::crd_check::{CRD_NAME, Follower, KELOS_REPORTER_NOTE, Step, Verdict};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use kelos_hooks_runtime::Health;

use crate::events::{Events, reason};
use crate::metrics::Metrics;

/// Readiness check: the TaskSpawner CRD keeps `spec.onCompletion`.
pub const READY_CHECK: &str = "TaskSpawner CRD";

fn crd_ref() -> ObjectReference {
    ObjectReference {
        api_version: Some("apiextensions.k8s.io/v1".into()),
        kind: Some("CustomResourceDefinition".into()),
        name: Some(CRD_NAME.into()),
        ..Default::default()
    }
}

async fn report(
    verdict: &Verdict,
    installed: bool,
    health: &Health,
    metrics: &Metrics,
    events: &Events,
) {
    health.set(READY_CHECK, verdict.problem().map(str::to_owned));
    let reporter = *verdict == Verdict::KelosReporter;
    health.set_note(
        READY_CHECK,
        reporter.then(|| KELOS_REPORTER_NOTE.to_owned()),
    );
    metrics.crd_ok.set(i64::from(verdict.problem().is_none()));
    metrics.kelos_reporter.set(i64::from(reporter));
    match verdict {
        Verdict::Problem(p) => {
            tracing::error!(problem = %p, "TaskSpawner CRD check failed");
            if installed {
                events.publish(crd_ref(), true, reason::CRD_PRUNES_HOOKS, "", p.clone());
            }
        }
        Verdict::KelosReporter => {
            tracing::warn!("{KELOS_REPORTER_NOTE}");
            events.publish(
                crd_ref(),
                false,
                reason::KELOS_REPORTER,
                "",
                KELOS_REPORTER_NOTE.to_owned(),
            );
        }
        Verdict::Keeps => tracing::info!("TaskSpawner CRD declares spec.onCompletion"),
    }
}

/// Watches the CRD until `stop`.
pub async fn run(
    client: Client,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    events: Events,
    stop: CancellationToken,
) {
    health.set(READY_CHECK, Some(format!("CRD {CRD_NAME} not read yet")));
    let api: Api<CustomResourceDefinition> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("metadata.name={CRD_NAME}"));
    let stream = watcher(api, config).default_backoff();
    futures::pin_mut!(stream);
    let mut follower = Follower::default();
    loop {
        let item = tokio::select! {
            _ = stop.cancelled() => return,
            item = stream.next() => item,
        };
        let seen = match follower.step(item) {
            Step::Seen(seen) => seen.map(|crd| *crd),
            Step::Failed(why) => {
                tracing::warn!("{why}");
                continue;
            }
            Step::Wait => continue,
            Step::End => return,
        };
        if let Some(verdict) = follower.judge(seen.as_ref()) {
            report(&verdict, seen.is_some(), &health, &metrics, &events).await;
        }
    }
}
