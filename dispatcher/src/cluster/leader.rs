//! Lease-based leader election (coordination.k8s.io/v1), with kube's API only.
//!
//! Expiry is judged by when *this* replica last saw the holder's record change (as client-go does),
//! so clock skew between replicas cannot cause two leaders. A leader that cannot renew within the
//! renew deadline (two thirds of the lease) steps down — stops sending and cancels in-flight
//! attempts — well before another replica may take over.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Lease settings.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Lease name.
    pub name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This replica's identity.
    pub identity: String,
    /// Validity of the lease without renewal.
    pub duration: Duration,
    /// Renewal period.
    pub renew_interval: Duration,
}

impl LeaseConfig {
    /// The leader steps down when it has not renewed for this long.
    pub fn renew_deadline(&self) -> Duration {
        self.duration * 2 / 3
    }
}

#[derive(Default)]
struct Observed {
    record: Option<(Option<String>, Option<MicroTime>)>,
    at: Option<Instant>,
}

enum Verdict {
    Leading,
    Following,
}

async fn try_acquire_or_renew(
    api: &Api<Lease>,
    cfg: &LeaseConfig,
    observed: &mut Observed,
) -> kube::Result<Verdict> {
    let now = MicroTime(Timestamp::now());
    let secs = i32::try_from(cfg.duration.as_secs())
        .unwrap_or(i32::MAX)
        .max(1);
    let Some(mut lease) = api.get_opt(&cfg.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(cfg.name.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(cfg.identity.clone()),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_duration_seconds: Some(secs),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(Verdict::Leading),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Verdict::Following),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    let record = (holder.clone(), spec.renew_time.clone());
    if observed.record.as_ref() != Some(&record) {
        observed.record = Some(record);
        observed.at = Some(Instant::now());
    }
    let theirs_duration = Duration::from_secs(
        u64::try_from(spec.lease_duration_seconds.unwrap_or(secs)).unwrap_or(15),
    );
    let expired = observed.at.is_none_or(|at| at.elapsed() > theirs_duration);
    let mine = holder.as_deref() == Some(cfg.identity.as_str());
    if !mine && holder.is_some() && !expired {
        return Ok(Verdict::Following);
    }
    if !mine {
        spec.acquire_time = Some(now.clone());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        spec.holder_identity = Some(cfg.identity.clone());
    }
    spec.renew_time = Some(now);
    spec.lease_duration_seconds = Some(secs);
    // replace carries metadata.resourceVersion: a concurrent writer makes this fail with 409.
    match api.replace(&cfg.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(Verdict::Leading),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Verdict::Following),
        Err(e) => Err(e),
    }
}

/// Gives the lease up (graceful shutdown), so another replica takes over at once.
async fn release(api: &Api<Lease>, cfg: &LeaseConfig) {
    if let Ok(Some(mut lease)) = api.get_opt(&cfg.name).await
        && let Some(spec) = lease
            .spec
            .as_mut()
            .filter(|s| s.holder_identity.as_deref() == Some(cfg.identity.as_str()))
    {
        spec.holder_identity = None;
        if let Err(e) = api.replace(&cfg.name, &PostParams::default(), &lease).await {
            tracing::warn!(error = %e, "could not release the Lease");
        }
    }
}

/// Runs the election until `shutdown`, publishing leadership on `tx`.
pub async fn run(
    client: Client,
    cfg: LeaseConfig,
    tx: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let mut observed = Observed::default();
    let mut last_renew: Option<Instant> = None;
    loop {
        let leading = *tx.borrow();
        // Never let one API call run past the renew deadline.
        let budget = match (leading, last_renew) {
            (true, Some(at)) => cfg
                .renew_deadline()
                .saturating_sub(at.elapsed())
                .min(cfg.renew_interval),
            _ => cfg.renew_interval,
        }
        .max(Duration::from_millis(100));
        let verdict = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = tokio::time::timeout(budget, try_acquire_or_renew(&api, &cfg, &mut observed)) => r,
        };
        match verdict {
            Ok(Ok(Verdict::Leading)) => {
                last_renew = Some(Instant::now());
                if !leading {
                    tracing::info!(identity = %cfg.identity, lease = %cfg.name, "became leader");
                    tx.send_replace(true);
                }
            }
            Ok(Ok(Verdict::Following)) => {
                if leading {
                    tracing::warn!(identity = %cfg.identity, "lost the Lease to another replica");
                    tx.send_replace(false);
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "Lease request failed"),
            Err(_) => tracing::warn!("Lease request timed out"),
        }
        if *tx.borrow() && last_renew.is_none_or(|at| at.elapsed() >= cfg.renew_deadline()) {
            tracing::warn!(identity = %cfg.identity, "could not renew the Lease in time: stepping down");
            tx.send_replace(false);
        }
        let pause = if *tx.borrow() {
            cfg.renew_interval
        } else {
            cfg.renew_interval.min(Duration::from_secs(2))
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(pause) => {}
        }
    }
    if *tx.borrow() {
        tx.send_replace(false);
        release(&api, &cfg).await;
    }
}
